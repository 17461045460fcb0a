"""Job kinds ("modes" on the page): what a job of each kind accepts, and how it runs.

A kind turns a request's ``settings`` (a JSON object keyed by the names of the
system's settings schema, :mod:`nstjax.schema`, the same table the CLI's options
come from) into a prepared job, then runs it in the server's worker thread,
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
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import NstjaxError
from ..schema import Schema, SettingsError, setting_name

__all__ = [
    "JobContext",
    "JobKind",
    "KINDS",
    "Outcome",
    "ServeLimits",
    "SettingsError",
    "StylizeKind",
    "plan_estimate",
    "register_kind",
    "seconds_or_none",
]


@dataclasses.dataclass(frozen=True)
class ServeLimits:
    """What one request may ask of the server.

    max_upload_bytes: the whole request body (all images and the settings together).
    max_pixels: width * height of any one uploaded image (decompression-bomb guard).
    max_size: the longest side of an output, in pixels.
    max_styles: style images per job.
    max_queue: jobs waiting or running at once; a request beyond gets 429 with ``Retry-After`` (load shedding:
      each queued job keeps its uploads on disk until it runs).
    """

    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = 50_000_000
    max_size: int = 2048
    max_styles: int = 8
    max_queue: int = 16


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
        """Report progress (step, steps, loss, terms, eta_seconds, phase, ...) and, optionally, the current image.

        ``phase`` is ``"compiling"`` while a program compiles (the first step, a new scale or stage), else
        ``"running"``; ``eta_seconds`` the seconds left in the whole job (``None``: unknown).

        ``image`` is called only when the server wants a new preview frame (a few per second at most).
        """

    def warn(self, message: str) -> None:
        """A one-line note shown with the job (e.g. random weights were used)."""

    @property
    def directory(self) -> Path:
        """The job's own directory, where a kind may write images beside the result (recreate: ``stages/``)."""

    def stage(self, name: str) -> None:
        """Record that the stage image ``name`` is written in :attr:`directory` and may be downloaded."""

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


# --------------------------------------------------------------------------- stylize (Gatys)

WEIGHT_NAMES_SECONDS = 5.0
"""How long the list of weight names a request may give is kept (weights imported meanwhile appear after)."""

_WEIGHT_NAMES: list = [0.0, ()]  # [time.monotonic() when read, the names]
_WEIGHT_NAMES_LOCK = threading.Lock()


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

    def __init__(self, schema: Schema | None = None, config_type: type | None = None):
        """``schema``: the settings a request may give (default :data:`nstjax.nst.settings.STYLIZE_SETTINGS`,
        CLI-only settings left out); ``config_type``: the config they build (default ``StylizeConfig``).
        Both are parameters so an extended schema reaches the form and the API unchanged."""
        from ..nst.config import StylizeConfig
        from ..nst.settings import STYLIZE_SETTINGS

        self.full_schema = schema or STYLIZE_SETTINGS
        self.schema = self.full_schema.web()
        self.config_type = config_type or StylizeConfig

    @staticmethod
    def weight_names() -> tuple[str, ...]:
        """What ``weights`` may be in a request: names (sources and imported files), never a path.

        Read again at most every :data:`WEIGHT_NAMES_SECONDS`: listing the imported files checks each one
        (a quarter of a second for a few VGG files), too slow for every request of a busy server.
        """
        from ..weights import list_imported, sources

        with _WEIGHT_NAMES_LOCK:
            read_at, names = _WEIGHT_NAMES
            if not names or time.monotonic() - read_at > WEIGHT_NAMES_SECONDS:
                names = ("auto", "random", *sources(), *(s.name for s in list_imported() if s.problem is None))
                _WEIGHT_NAMES[:] = [time.monotonic(), names]
            return names

    def prepare(self, settings: Mapping[str, Any], styles: int, limits: ServeLimits) -> StylizeJob:
        from ..nst.settings import config_from_settings

        given = {setting_name(k): v for k, v in settings.items()}
        unknown = sorted(set(given) - set(self.schema.names))
        if unknown:
            cli_only = {s.name for s in self.full_schema if not s.web}
            note = " (CLI-only: the server always writes PNG)" if cli_only & set(unknown) else ""
            raise SettingsError(f"unknown settings: {', '.join(unknown)}{note}; known: {', '.join(self.schema.names)}")
        if isinstance(settings.get("weights"), str):
            settings = {**settings, "weights": settings["weights"].strip().lower()}
        try:
            values = self.schema.checked(settings, choices={"weights": self.weight_names()})
        except SettingsError as e:
            if str(e).startswith(("weights must be one of", "init must be one of")):
                raise SettingsError(f"{e} (a request cannot name a file)") from None
            raise
        try:
            config = config_from_settings(values, config_type=self.config_type)
        except NstjaxError as e:
            raise SettingsError(str(e)) from None
        largest = max((config.size, *config.scales))
        if largest > limits.max_size:
            raise SettingsError(f"size {largest} is larger than this server allows ({limits.max_size} px)")
        if config.style_blend and len(config.style_blend) != styles:
            raise SettingsError(f"style_blend has {len(config.style_blend)} values for {styles} style images")
        if len(config.style_scale) not in (1, styles):
            raise SettingsError(f"style_scale has {len(config.style_scale)} values for {styles} style images")
        clean = {k: values[k] for k in self.schema.names if k in given and values[k] is not None}
        return StylizeJob(config=config, weights=values["weights"], settings=clean)

    def describe(self, limits: ServeLimits) -> dict[str, Any]:
        from ..nst.config import PRESETS, auto_preset_name, preset
        from ..nst.settings import settings_of_config

        fields = []
        for setting in self.schema:
            field = setting.form_field(self.weight_names() if setting.name == "weights" else None)
            if setting.name == "size":
                field["max"] = limits.max_size
            fields.append(field)
        auto = auto_preset_name()
        presets = {name: settings_of_config(preset(name)) for name in PRESETS}
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
        steps: list[int] = []

        def on_start(plan) -> None:  # after the weights load, before the first scale compiles
            if context.should_stop():
                raise StopStylize
            steps[:] = plan.steps
            estimate = plan_estimate(plan.estimate.seconds, plan.estimate.compile_total, len(plan.shapes))
            context.plan({"shapes": [list(s) for s in plan.shapes], "steps": list(plan.steps), "device": plan.device,
                          "weights": plan.weights_source, **estimate})  # fmt: skip
            context.progress({"phase": "compiling", "scale": 1, "scales": len(plan.shapes), "step": 0,
                              "steps": sum(plan.steps), "eta_seconds": estimate["estimate_seconds"]})  # fmt: skip

        def on_progress(p) -> None:
            if context.should_stop():
                raise StopStylize
            # The last chunk of a scale: the next scale (more pixels, new shapes) compiles its programs now.
            compiling = p.step >= p.steps and p.scale < p.scales
            context.progress(
                {
                    "phase": "compiling" if compiling else "running",
                    "scale": p.scale,
                    "scales": p.scales,
                    "size": list(p.size),
                    "step": sum(steps[: p.scale - 1]) + p.step,
                    "steps": sum(steps) or p.steps,
                    "scale_step": p.step,
                    "scale_steps": p.steps,
                    "loss": _finite(p.loss),
                    "terms": {k: _finite(v) for k, v in p.terms.items()},
                    "evals_per_second": round(float(p.evals_per_second), 2),
                    "eta_seconds": seconds_or_none(p.eta),  # the library's: cost-weighted, compilations included
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


def seconds_or_none(value: float) -> float | None:
    """A duration for the job's JSON: seconds to 0.1 s, ``None`` when unknown (NaN, infinite or negative)."""
    value = float(value)
    return round(value, 1) if math.isfinite(value) and value >= 0 else None


def plan_estimate(seconds: float, compile_seconds: float, compilations: int) -> dict[str, Any]:
    """The estimate fields of a job's ``plan``, from the library's estimate (the CLI's plan line shows the same):
    ``estimate_seconds`` the whole run, compilations included (``None`` when not estimated), ``compile_seconds``
    the compilations' part of it and ``compilations`` how many there are."""
    total = seconds_or_none(float(seconds) + float(compile_seconds))
    return {"estimate_seconds": total, "compile_seconds": seconds_or_none(compile_seconds),
            "compilations": int(compilations)}  # fmt: skip


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
