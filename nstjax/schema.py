"""Settings as data: one :class:`Schema` per system, read by the CLI, the web form and the JSON API.

A system (Gatys style transfer, a trainer, recreate) declares each of its
user-facing settings once, as a :class:`Setting`: its name, help, unit,
type, choices or range, default and how the web page shows it. From that
table

* ``nstjax.cli`` generates the Typer options (``--name``, help, choices, range),
* ``nstjax.serve`` generates the page's form and checks the JSON API's values,
* the system's own ``config_from_settings`` builds its frozen config,

so a setting added to a schema appears in ``--help``, the form, the API and the
Python config without further code. This module knows nothing of Typer or
FastAPI: it holds the declarations and the checks all three share.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = ["Schema", "Setting", "SettingsError", "WIDGETS", "form_text", "setting_name"]

WIDGETS = ("select", "range", "log-range", "number", "text", "checkbox", "style-weights")
"""How the page shows a setting: a drop-down, a slider (linear or over powers of ten: ``min``/``max``
of a ``log-range`` are exponents), a number box, a text box, a check box, or one weight per style image."""


class SettingsError(ValueError):
    """A request's settings cannot make a job; the message is one line and names the setting."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One user-facing setting of a system.

    name: the Python name; the CLI option is ``--name-with-dashes`` (or ``flags``), the API key is ``name``
        (``name-with-dashes`` is accepted too).
    type: ``int``, ``float``, ``str`` or ``bool`` of the value as typed (comma lists are ``str``), or ``Path``:
        a file or folder of the machine that runs the command, so a CLI-only setting (a request never names one).
    help: one or two sentences, as ``--help`` shows them.
    default: the value when the setting is not given; ``None`` means "not given: the preset's or the
        config's own value stays".
    unit: what the number counts (``px``, ``steps``, ``[0, 1] pixel units``); shown by the web form.
    choices: the allowed values of a ``str`` setting (``()`` = free text).
    minimum, maximum: hard bounds, enforced by the CLI and the API (``None`` = unbounded).
    label: the web form's label; ``group``: ``basic`` (shown) or ``advanced`` (folded).
    widget: one of :data:`WIDGETS`; ``look``: its extra attributes (``step``, ``placeholder``, a slider's
        ``min``/``max``, ``zero`` for a log slider that may also be 0).
    flags: CLI spellings when not ``--name-with-dashes`` (e.g. ``("--lr",)`` or ``("--quiet", "-q")``).
    web: ``False`` for CLI-only settings (output quality, a terminal's quiet flag).
    web_help, web_choices: the form's help and choices where the CLI's take a file a request cannot name
        (``init`` takes an image file on the command line, only ``content``, ``noise``, … from the web).
    required: the command line must give it (an output file); no default, and CLI-only (``web=False``).
    """

    name: str
    type: type
    help: str
    default: Any = None
    unit: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    label: str = ""
    group: str = "advanced"
    widget: str = "text"
    look: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    flags: tuple[str, ...] = ()
    web: bool = True
    web_help: str = ""
    web_choices: tuple[str, ...] = ()
    required: bool = False

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"setting name {self.name!r} is not an identifier")
        if self.type not in (int, float, str, bool, Path):
            raise ValueError(f"setting {self.name}: type must be int, float, str, bool or Path")
        if self.type is Path and self.web:
            raise ValueError(f"setting {self.name}: a Path is CLI-only (web=False): a request never names a file")
        if self.required and (self.default is not None or self.web):
            raise ValueError(f"setting {self.name}: a required setting has no default and is CLI-only (web=False)")
        if self.widget not in WIDGETS:
            raise ValueError(f"setting {self.name}: unknown widget {self.widget!r}")
        if self.group not in ("basic", "advanced"):
            raise ValueError(f"setting {self.name}: group must be basic or advanced")

    @property
    def cli_flags(self) -> tuple[str, ...]:
        """``("--content-weight",)``: how the option is spelled on the command line."""
        return self.flags or ("--" + self.name.replace("_", "-"),)

    def check(self, value: Any, choices: Sequence[str] | None = None) -> Any:
        """``value`` (from JSON) as this setting's type, within its choices and bounds.

        ``choices`` replaces the declared ones (for lists known only at run time, such as weight names).
        ``None`` stays ``None`` (not given). Raises :class:`SettingsError` with one line naming the setting.
        """
        if value is None:
            return None
        allowed = tuple(choices) if choices is not None else (self.web_choices or self.choices)
        if allowed:
            if value not in allowed:
                raise SettingsError(f"{self.name} must be one of {', '.join(allowed)}; got {value!r}")
            return value
        if self.type is bool:
            if not isinstance(value, bool):
                raise SettingsError(f"{self.name} must be true or false, got {value!r}")
            return value
        if self.type in (int, float):
            number = _number(self.name, value, self.type)
            if self.minimum is not None and number < self.minimum:
                raise SettingsError(f"{self.name} must be at least {self.minimum:g}, got {number:g}")
            if self.maximum is not None and number > self.maximum:
                raise SettingsError(f"{self.name} must be at most {self.maximum:g}, got {number:g}")
            return number
        return _text(self.name, value)

    def form_field(self, choices: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON for the web page: key, label, help, type, choices, widget, group and the widget's extras."""
        allowed = list(choices if choices is not None else (self.web_choices or self.choices))
        label = self.label or self.name.replace("_", " ").capitalize()
        kind = "choice" if allowed else {int: "int", float: "float", bool: "bool"}.get(self.type, "str")
        field = {
            "key": self.name,
            "label": f"{label} ({self.unit})" if self.unit and self.unit not in label else label,
            "help": self.web_help or self.help,
            "type": kind,
            "choices": allowed,
            "widget": "select" if allowed and self.widget == "text" else self.widget,
            "group": self.group,
            "unit": self.unit,
        }
        if self.default is not None:
            field["default"] = self.default
        if self.widget not in ("log-range",):  # a log slider's min/max are exponents, set in look
            field.update({k: v for k, v in (("min", self.minimum), ("max", self.maximum)) if v is not None})
        field.update(self.look)
        return field


@dataclasses.dataclass(frozen=True)
class Schema:
    """The settings of one system, in the order ``--help`` and the form list them."""

    system: str
    settings: tuple[Setting, ...]

    def __post_init__(self):
        names = [s.name for s in self.settings]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"schema {self.system}: settings declared twice: {', '.join(twice)}")

    def __iter__(self) -> Iterator[Setting]:
        return iter(self.settings)

    def __contains__(self, name: object) -> bool:
        return any(s.name == name for s in self.settings)

    def __getitem__(self, name: str) -> Setting:
        for setting in self.settings:
            if setting.name == name:
                return setting
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.settings)

    def defaults(self) -> dict[str, Any]:
        """Every setting at its default (``None`` for "not given")."""
        return {s.name: s.default for s in self.settings}

    def web(self) -> Schema:
        """The settings a web request may give (CLI-only ones left out)."""
        return dataclasses.replace(self, settings=tuple(s for s in self.settings if s.web))

    def with_settings(self, *added: Setting, without: Sequence[str] = ()) -> Schema:
        """A copy with ``added`` appended and the settings named in ``without`` left out."""
        kept = tuple(s for s in self.settings if s.name not in without)
        return dataclasses.replace(self, settings=(*kept, *added))

    def checked(
        self, given: Mapping[str, Any], choices: Mapping[str, Sequence[str]] | None = None
    ) -> dict[str, Any]:
        """Every setting's value: the defaults, then ``given`` (JSON from a request) checked.

        Keys may be spelled ``style_weight``, ``style-weight`` or ``--style-weight``. ``choices`` overrides the
        declared choices of some settings (run-time lists). Unknown or repeated keys raise :class:`SettingsError`.
        """
        values = self.defaults()
        named: dict[str, Any] = {}
        for key, value in given.items():
            if not isinstance(key, str):
                raise SettingsError(f"setting names must be strings, got {key!r}")
            name = setting_name(key)
            if name in named:
                raise SettingsError(f"setting {name!r} given twice")
            named[name] = value
        unknown = sorted(name for name in named if name not in self)
        if unknown:
            raise SettingsError(f"unknown settings: {', '.join(unknown)}; known: {', '.join(self.names)}")
        for name, value in named.items():
            values[name] = self[name].check(value, (choices or {}).get(name))
        return values


def setting_name(key: str) -> str:
    """A request's key as a setting name: ``style_weight``, ``style-weight`` and ``--style-weight`` are one."""
    return str(key).strip().lstrip("-").replace("-", "_")


def form_text(value: Any) -> Any:
    """A config value the way the form and the CLI write it: ``(("relu4_2", 1.0),)`` -> ``"relu4_2:1"``,
    ``(256, 512)`` -> ``"256,512"``; scalars unchanged."""
    if isinstance(value, tuple):
        return ",".join(
            f"{item[0]}:{item[1]:g}" if isinstance(item, tuple) else (f"{item:g}" if isinstance(item, float) else str(item))
            for item in value
        )
    return value


def _number(name: str, value: Any, kind: type) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        what = "an integer" if kind is int else "a finite number"
        raise SettingsError(f"{name} must be {what}, got {value!r}")
    if kind is int:
        if value != int(value):
            raise SettingsError(f"{name} must be an integer, got {value!r}")
        return int(value)
    return float(value)


def _text(name: str, value: Any) -> str:
    # comma-list settings ("0.7,0.3"): a JSON list of numbers or names is accepted and joined
    if isinstance(value, list | tuple) and value and all(
        isinstance(v, int | float | str) and not isinstance(v, bool) for v in value
    ):
        return ",".join(str(v) for v in value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise SettingsError(f"{name} must be a string, got {value!r}")
    if len(value) > 1000:
        raise SettingsError(f"{name} is too long ({len(value)} characters)")
    return value


