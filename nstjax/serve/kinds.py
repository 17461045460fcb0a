"""Job kinds ("modes" on the page): what a job of each kind accepts, and how it runs.

A kind turns a request's ``settings`` (a JSON object keyed by the CLI's option
names) into a prepared job, then runs it in the server's worker thread,
reporting through a :class:`JobContext`. Today there is one kind, ``stylize``
(Gatys et al.'s optimisation, :func:`nstjax.nst.run.run_stylize`); later
systems (recreate, fast, adain) register theirs with :func:`register_kind` and
appear in the page's mode list without changes to the app.

Nothing here touches the file system except through the paths the job queue
hands in: a request can never name a file (``init`` and ``weights`` accept
names only).
"""

from __future__ import annotations

import dataclasses
import math
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import NstjaxError

__all__ = [
    "JobContext",
    "JobKind",
    "KINDS",
    "Outcome",
    "ServeLimits",
    "SettingsError",
    "StylizeKind",
    "register_kind",
]


class SettingsError(ValueError):
    """A request's settings cannot make a job; the message is one line and names the setting."""


@dataclasses.dataclass(frozen=True)
class ServeLimits:
    """What one request may ask of the server.

    max_upload_bytes: the whole request body (all images and the settings together).
    max_pixels: width * height of any one uploaded image (decompression-bomb guard).
    max_size: the longest side of an output, in pixels.
    max_styles: style images per job.
    """

    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = 50_000_000
    max_size: int = 2048
    max_styles: int = 8


@dataclasses.dataclass
class Outcome:
    """What a finished (or stopped) job produced.

    image: float32 [H, W, 3] RGB in [0, 1], or ``None`` when nothing ran.
    stopped: True when the job was stopped before its end (the image is the best so far).
    error: a one-line problem that still left an image (e.g. the loss became NaN), else ``None``.
    summary: JSON-ready facts shown with the result (loss, steps, seconds, weights, ...).
    """

    image: np.ndarray | None
    stopped: bool = False
    error: str | None = None
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)


class JobContext(Protocol):
    """What a running job sees of the server (implemented by the job queue)."""

    def should_stop(self) -> bool:
        """True once someone asked to stop this job."""

    def plan(self, plan: Mapping[str, Any]) -> None:
        """Report what the job is about to do (shapes, steps, device, weights, estimate)."""

    def progress(self, progress: Mapping[str, Any], image: Callable[[], np.ndarray] | None = None) -> None:
        """Report progress (step, steps, loss, terms, eta_seconds, ...) and, optionally, the current image.

        ``image`` is called only when the server wants a new preview frame (a few per second at most).
        """

    def warn(self, message: str) -> None:
        """A one-line note shown with the job (e.g. random weights were used)."""

    def weights(self, spec: str | None, seed: int) -> Any:
        """VGG weights for ``spec`` (a source name, ``random``, ``auto`` or ``None`` for the server's default).

        Loaded once per spec and kept; warnings go to :meth:`warn`.
        """


class JobKind(Protocol):
    """One mode of the page. ``name`` is what requests send as ``mode``."""

    name: str
    title: str
    description: str

    def describe(self, limits: ServeLimits) -> dict[str, Any]:
        """JSON for the page: title, inputs, fields (with widgets and groups), presets."""

    def prepare(self, settings: Mapping[str, Any], styles: int, limits: ServeLimits) -> Any:
        """Check ``settings`` for a job with ``styles`` style images; raise :class:`SettingsError` if bad.

        Returns whatever :meth:`run` needs (for ``stylize``, a config and a weights spec).
        """

    def run(self, prepared: Any, content: Path, styles: Sequence[Path], context: JobContext) -> Outcome:
        """Run the job on the inputs (files the server stored and checked). Raises NstjaxError on bad input."""


KINDS: dict[str, JobKind] = {}
"""The registry: mode name -> kind, in the order the page lists them."""


def register_kind(kind: JobKind) -> JobKind:
    """Add ``kind`` to :data:`KINDS` (replacing one of the same name); returns it."""
    KINDS[kind.name] = kind
    return kind


# --------------------------------------------------------------------------- settings keyed by CLI option names


def normalize_keys(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``{"content-weight": 1}`` -> ``{"content_weight": 1}``: the CLI's flag spelling works too."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if not isinstance(key, str):
            raise SettingsError(f"setting names must be strings, got {key!r}")
        name = key.strip().lstrip("-").replace("-", "_")
        if name in out:
            raise SettingsError(f"setting {name!r} given twice")
        out[name] = value
    return out


def option_type(annotation: Any) -> tuple[type, tuple[str, ...]]:
    """(base type, choices) of a CLI option's ``Annotated[Optional[T], typer.Option]`` annotation.

    ``Optional[Literal["a", "b"]]`` gives ``(str, ("a", "b"))``; ``Optional[int]`` gives ``(int, ())``.
    """
    base = typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation
    args = [a for a in typing.get_args(base) if a is not type(None)] if typing.get_origin(base) is not None else []
    if typing.get_origin(base) is typing.Literal:
        return str, tuple(typing.get_args(base))
    if args:  # Optional[X]
        inner = args[0]
        if typing.get_origin(inner) is typing.Literal:
            return str, tuple(typing.get_args(inner))
        return inner, ()
    return base, ()


def option_help(annotation: Any) -> str:
    """The ``help=`` text of a CLI option's annotation, or ``""``."""
    for meta in typing.get_args(annotation)[1:]:
        if getattr(meta, "help", None):
            return str(meta.help)
    return ""


def coerce(name: str, value: Any, kind: type, choices: Sequence[str]) -> Any:
    """``value`` checked against an option's type; lists of numbers are accepted for comma-list options."""
    if value is None:
        return None
    if choices:
        if value not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{name} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise SettingsError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise SettingsError(f"{name} must be a finite number, got {value!r}")
        return float(value)
    # str options: comma lists such as "0.7,0.3" (a JSON list of numbers is accepted and joined)
    if (
        isinstance(value, list | tuple)
        and value
        and all(isinstance(v, int | float | str) and not isinstance(v, bool) for v in value)
    ):
        return ",".join(str(v) for v in value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise SettingsError(f"{name} must be a string, got {value!r}")
    if len(value) > 1000:
        raise SettingsError(f"{name} is too long ({len(value)} characters)")
    return value


# --------------------------------------------------------------------------- stylize (Gatys)

# CLI options a server job does not take: output files are always PNG, and there is no terminal.
_CLI_ONLY = ("quality", "quiet")

# How the page shows each option: (label, widget, group, extra). Options not listed are advanced text fields.
_FIELD_LOOKS: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "preset": ("Preset", "select", "basic", {}),
    "size": ("Size (longest side, px)", "range", "basic", {"min": 64, "step": 32}),
    "steps": ("Steps", "range", "basic", {"min": 10, "max": 2000, "step": 10}),
    "weights": ("VGG weights", "select", "basic", {}),
    "content_weight": ("Content weight", "log-range", "basic", {"min": -2, "max": 3}),
    "style_weight": ("Style weight", "log-range", "basic", {"min": 1, "max": 7}),
    "tv_weight": ("Smoothness (TV) weight", "log-range", "basic", {"min": -1, "max": 8, "zero": True}),
    "preserve_color": ("Colour preservation", "select", "basic", {}),
    "style_blend": ("Style blend", "style-weights", "basic", {}),
    "optimizer": ("Optimiser", "select", "advanced", {}),
    "lr": ("Adam learning rate", "number", "advanced", {"min": 0, "step": 0.005}),
    "init": ("Start from", "select", "advanced", {}),
    "seed": ("Seed", "number", "advanced", {"min": 0, "step": 1}),
    "scales": ("Coarse-to-fine scales", "text", "advanced", {"placeholder": "e.g. 3 or 256,512"}),
    "scale_steps": ("Steps at coarser scales", "text", "advanced", {"placeholder": "e.g. 300,200"}),
    "style_scale": ("Style scale", "text", "advanced", {"placeholder": "e.g. 1 or 0.8,1.2"}),
    "tolerance": ("Early-stop tolerance", "number", "advanced", {"min": 0, "step": 1e-5}),
    "pooling": ("Pooling", "select", "advanced", {}),
    "padding": ("Padding", "select", "advanced", {}),
    "content_layers": ("Content layers", "text", "advanced", {}),
    "style_layers": ("Style layers", "text", "advanced", {}),
    "color_match": ("Histogram matching", "select", "advanced", {}),
    "dtype": ("Compute dtype", "select", "advanced", {}),
    "remat": ("Rematerialisation", "select", "advanced", {}),
}


# Where the CLI's help mentions files, which a request cannot name.
_HELP = {
    "init": "Start image: content, noise, style or grey.",
    "weights": "auto, keras, torchvision, gatys or random (a file only through the server's --weights).",
}


def _layers_text(layers) -> str:
    return ",".join(f"{name}:{weight:g}" for name, weight in layers)


def config_values(config) -> dict[str, Any]:
    """A :class:`~nstjax.nst.config.StylizeConfig` as option-name -> value, the way the page shows them."""
    return {
        "size": config.size,
        "steps": config.steps,
        "optimizer": config.optimizer,
        "lr": config.learning_rate,
        "content_weight": config.content_weight,
        "style_weight": config.style_weight,
        "tv_weight": config.tv_weight,
        "content_layers": _layers_text(config.content_layers),
        "style_layers": _layers_text(config.style_layers),
        "pooling": config.pooling,
        "padding": config.padding,
        "init": config.init,
        "scales": ",".join(str(s) for s in config.scales),
        "scale_steps": ",".join(str(s) for s in config.scale_steps),
        "seed": config.seed,
        "dtype": config.dtype,
        "remat": config.remat,
        "tolerance": config.tolerance,
        "style_blend": ",".join(f"{v:g}" for v in config.style_blend),
        "style_scale": ",".join(f"{v:g}" for v in config.style_scale),
        "preserve_color": config.preserve_color,
        "color_match": config.color_match,
    }


@dataclasses.dataclass(frozen=True)
class StylizeJob:
    """A checked stylize request: the config and the weights spec (``None`` = the server's default)."""

    config: Any
    weights: str | None
    settings: dict[str, Any]


class StylizeKind:
    """Gatys et al.'s style transfer by optimisation: :func:`nstjax.nst.run.run_stylize`."""

    name = "stylize"
    title = "Style transfer (Gatys, optimisation)"
    description = (
        "Optimises the image itself so its VGG features match the photo's content and the paintings' "
        "textures. Slow but the most faithful; any style image works."
    )

    def options(self) -> dict[str, tuple[Any, Any]]:
        """The CLI's shared options (``nstjax.cli.nst.STYLE_OPTIONS``) that a job takes."""
        from ..cli.nst import STYLE_OPTIONS

        return {k: v for k, v in STYLE_OPTIONS.items() if k not in _CLI_ONLY}

    @staticmethod
    def weight_names() -> tuple[str, ...]:
        """What ``weights`` may be in a request: names (sources and imported files), never a path."""
        from ..weights import list_imported, sources

        return ("auto", "random", *sources(), *(s.name for s in list_imported() if s.problem is None))

    def prepare(self, settings: Mapping[str, Any], styles: int, limits: ServeLimits) -> StylizeJob:
        from ..cli.nst import config_from_options
        from ..nst.config import INITS

        options = self.options()
        given = normalize_keys(settings)
        unknown = sorted(k for k in given if k not in options)
        if unknown:
            extra = " (CLI-only: the server always writes PNG)" if set(unknown) & set(_CLI_ONLY) else ""
            raise SettingsError(f"unknown settings: {', '.join(unknown)}{extra}; known: {', '.join(options)}")
        values = {name: default for name, (_, default) in options.items()}
        for name, value in given.items():
            kind, choices = option_type(options[name][0])
            if name == "weights":
                choices = self.weight_names()
                value = value.strip().lower() if isinstance(value, str) else value
                if value is not None and value not in choices:
                    raise SettingsError(
                        f"weights must be one of {', '.join(choices)} (a request cannot name a file); got {value!r}"
                    )
            elif name == "init":
                choices = INITS
                if value is not None and value not in choices:
                    raise SettingsError(
                        f"init must be one of {', '.join(INITS)} (a request cannot name a file); got {value!r}"
                    )
            values[name] = coerce(name, value, kind, choices)
        values["quality"], values["quiet"] = 95, True  # CLI-only, unused here
        try:
            config = config_from_options(values)
        except NstjaxError as e:
            raise SettingsError(str(e)) from None
        largest = max((config.size, *config.scales))
        if largest > limits.max_size:
            raise SettingsError(f"size {largest} is larger than this server allows ({limits.max_size} px)")
        if config.style_blend and len(config.style_blend) != styles:
            raise SettingsError(f"style_blend has {len(config.style_blend)} values for {styles} style images")
        if len(config.style_scale) not in (1, styles):
            raise SettingsError(f"style_scale has {len(config.style_scale)} values for {styles} style images")
        clean = {k: v for k, v in ((k, values[k]) for k in given) if v is not None}
        return StylizeJob(config=config, weights=values["weights"], settings=clean)

    def describe(self, limits: ServeLimits) -> dict[str, Any]:
        from ..nst.config import INITS, PRESETS, auto_preset_name, preset

        fields = []
        for name, (annotation, _default) in self.options().items():
            kind, choices = option_type(annotation)
            label, widget, group, extra = _FIELD_LOOKS.get(
                name, (name.replace("_", " ").capitalize(), "text", "advanced", {})
            )
            if name == "weights":
                choices = self.weight_names()
            elif name == "init":
                choices = INITS
            field = {
                "key": name,
                "label": label,
                "help": _HELP.get(name) or option_help(annotation),
                "type": "choice" if choices else {int: "int", float: "float", bool: "bool"}.get(kind, "str"),
                "choices": list(choices),
                "widget": "select" if choices and widget == "text" else widget,
                "group": group,
                **extra,
            }
            if name == "size":
                field["max"] = limits.max_size
            fields.append(field)
        auto = auto_preset_name()
        presets = {name: config_values(preset(name)) for name in PRESETS}
        presets["auto"] = {**presets[auto]}
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputs": {"content": {"min": 1, "max": 1}, "styles": {"min": 1, "max": limits.max_styles}},
            "fields": fields,
            "presets": presets,
            "auto_preset": auto,
        }

    def run(self, prepared: StylizeJob, content: Path, styles: Sequence[Path], context: JobContext) -> Outcome:
        from ..io.images import load_image
        from ..nst.run import StopStylize, StylizeInterrupted, run_stylize

        config = prepared.config
        weights = context.weights(prepared.weights, config.seed)
        state: dict[str, Any] = {"plan": None, "scale": 0, "done_before": 0, "last": None, "rate": None}

        def on_start(plan) -> None:
            if context.should_stop():
                raise StopStylize
            state["plan"] = plan
            context.plan(
                {
                    "shapes": [list(s) for s in plan.shapes],
                    "steps": list(plan.steps),
                    "device": plan.device,
                    "weights": plan.weights_source,
                    "estimate_seconds": round(float(plan.estimate.seconds), 1),
                }
            )

        def on_progress(p) -> None:
            if context.should_stop():
                raise StopStylize
            plan = state["plan"]
            steps = list(plan.steps) if plan else [p.steps]
            shapes = list(plan.shapes) if plan else [p.size]
            if p.scale != state["scale"]:  # a new scale: the earlier ones count as done
                state.update(scale=p.scale, done_before=sum(steps[: p.scale - 1]), last=None, rate=None)
            now = time.perf_counter()
            if state["last"] is not None:  # steps per second at this scale, compile time left out
                t0, s0 = state["last"]
                if p.step > s0 and now > t0:
                    rate = (p.step - s0) / (now - t0)
                    state["rate"] = rate if state["rate"] is None else 0.5 * state["rate"] + 0.5 * rate
            state["last"] = (now, p.step)
            eta = None
            if state["rate"]:
                # Later scales cost more per step, in proportion to their pixels.
                here = shapes[p.scale - 1][0] * shapes[p.scale - 1][1]
                later = sum(n * (h * w) / here for n, (h, w) in zip(steps[p.scale :], shapes[p.scale :], strict=True))
                eta = ((p.steps - p.step) + later) / state["rate"]
            elif plan is not None:
                eta = max(0.0, float(plan.estimate.seconds) * (1 - (state["done_before"] + p.step) / sum(steps)))
            context.progress(
                {
                    "scale": p.scale,
                    "scales": p.scales,
                    "size": list(p.size),
                    "step": state["done_before"] + p.step,
                    "steps": sum(steps),
                    "scale_step": p.step,
                    "scale_steps": p.steps,
                    "loss": _finite(p.loss),
                    "terms": {k: _finite(v) for k, v in p.terms.items()},
                    "evals_per_second": round(float(p.evals_per_second), 2),
                    "eta_seconds": None if eta is None else round(eta, 1),
                },
                image=p.best_image,
            )

        # The files were decoded once when uploaded (under the server's pixel limit); arrays from here on.
        content_image = load_image(content)
        style_images = [load_image(s) for s in styles]
        try:
            result = run_stylize(
                content_image, style_images, weights=weights, config=config, progress=on_progress, on_start=on_start
            )
        except StylizeInterrupted as interrupted:
            return Outcome(image=interrupted.result.image, stopped=True, summary=_summary(interrupted.result))
        except StopStylize:  # stopped before the first step: nothing to keep
            return Outcome(image=None, stopped=True)
        error = None
        if result.stopped == "nonfinite":
            error = (
                f"the loss became NaN or infinite after {result.steps} steps (try smaller weights or learning "
                "rate); kept the last finite image"
            )
        return Outcome(image=result.image, error=error, summary=_summary(result))


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _summary(result) -> dict[str, Any]:
    h, w = result.image.shape[:2]
    return {
        "size": [h, w],
        "loss": _finite(result.loss),
        "terms": {k: _finite(v) for k, v in result.terms.items()},
        "steps": int(result.steps),
        "evaluations": int(result.evaluations),
        "stopped": result.stopped,
        "seconds": round(float(result.seconds), 2),
        "weights": result.weights_source,
    }


register_kind(StylizeKind())
