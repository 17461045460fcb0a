"""The Recreate mode of ``nstjax serve``: the lost-painting workflow (sketch → photo → painting) in one page.

A job's content upload is the sketch (a colour sketch or index PNG in the ``landscape`` palette, drawn on the
page's canvas or opened from a file), its first style upload the painting, and an optional second one the
painting's label map. Stage 1 is the server operator's choice (``nstjax serve --photo-model RUN`` or
``--exemplars DIR``); with neither, exemplar-guided NST from synthetic pairs
(:func:`nstjax.labels.write_synth_dataset`) written once into the server's root. A request never names a
file: its settings are the web settings of :data:`nstjax.recreate.settings.RECREATE_SETTINGS`.

Each stage's image lands in ``<job dir>/stages/`` as soon as it is done (:func:`stage_file` maps the fixed
stage names to those files), so a stopped job keeps its finished stages.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ..errors import NstjaxError
from ..schema import SettingsError, setting_name
from .kinds import JobContext, Outcome, ServeLimits, StylizeKind, plan_estimate, seconds_or_none

__all__ = ["MAX_LABEL_SIDE", "SHOWN_STAGES", "STAGE_NAMES", "RecreateKind", "read_label_upload", "stage_file",
           "synthetic_exemplars"]

STAGE_NAMES = ("sketch", "photo", "plain", "semantic", "cyclegan", "final", "sheet")
"""Every name ``GET /api/jobs/{id}/stages/{name}`` accepts (``sheet``: the contact sheet)."""

SHOWN_STAGES = ("sketch", "photo", "plain", "semantic", "cyclegan", "final")
"""The stages the page shows side by side, in the order they run."""

SYNTHETIC_PAIRS = 24
"""Synthetic (label map, photo) pairs written for a server with neither ``--photo-model`` nor ``--exemplars``."""

SYNTHETIC_SIZE = 128
"""Side of those pairs in pixels."""

MAX_LABEL_SIDE = 1024
"""Longest side of a label map opened on the page's canvas (larger ones are scaled down, nearest neighbour)."""

_SYNTHETIC_FOLDER = "exemplars.synthetic"  # a dot: never taken for a job directory (ids have none)
_SYNTHETIC_LOCK = threading.Lock()


def stage_file(directory: Path, name: str) -> Path | None:
    """The image file of stage ``name`` in a job's directory, or None for a name not in :data:`STAGE_NAMES`."""
    from ..recreate.stages import STAGE_FILES

    files = {**STAGE_FILES, "sheet": "sheet.png"}
    return directory / "stages" / files[name] if name in STAGE_NAMES else None


def synthetic_exemplars(root: Path) -> Path:
    """``root/exemplars.synthetic``: :data:`SYNTHETIC_PAIRS` synthetic landscape pairs, written the first time.

    Written into a temporary sibling folder and renamed, so a half-written set is never used.
    """
    from ..labels import write_synth_dataset

    folder = Path(root) / _SYNTHETIC_FOLDER
    with _SYNTHETIC_LOCK:
        if not (folder / "README.txt").is_file():
            partial = folder.with_name(folder.name + ".partial")
            write_synth_dataset(partial, SYNTHETIC_PAIRS, SYNTHETIC_SIZE)
            partial.replace(folder)
    return folder


def read_label_upload(source: IO[bytes], label: str, root: Path, max_pixels: int) -> dict[str, Any]:
    """An uploaded sketch or label map as the page's canvas takes it: class ids of the ``landscape`` palette.

    Returns ``{"width", "height", "ids", "classes"}``: ``ids`` is base64 of uint8 [height, width] class ids,
    row by row, at most :data:`MAX_LABEL_SIDE` on the longest side; ``classes`` the names present.

    Raises:
      UploadError: 415 not an image, 413 over ``max_pixels`` pixels, 422 colours outside the palette
        (:func:`nstjax.labels.read_label_map`'s one-line error, prefixed by ``label``).
    """
    import base64
    import shutil
    import tempfile

    import numpy as np

    from ..io.images import fit_longest_side
    from ..labels import load_palette, read_label_map, resize_labels
    from .uploads import UploadError, checked_shape

    palette = load_palette("landscape")
    with tempfile.TemporaryDirectory(dir=root, prefix="label-map.") as folder:  # a dot: never a job's name
        path = Path(folder) / "upload"
        with open(path, "wb") as out:
            shutil.copyfileobj(source, out, length=1 << 20)
        checked_shape(path, label, max_pixels)
        try:
            ids = read_label_map(path, palette)
        except NstjaxError as e:
            raise UploadError(422, f"{label}: {e.problem}") from None
    shape = fit_longest_side(ids.shape, min(MAX_LABEL_SIDE, max(ids.shape)))
    if shape != ids.shape:
        ids = resize_labels(ids, shape)
    return {"width": int(ids.shape[1]), "height": int(ids.shape[0]),
            "ids": base64.b64encode(np.ascontiguousarray(ids, np.uint8).tobytes()).decode("ascii"),
            "classes": [palette.names[i] for i in np.unique(ids)]}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class RecreateJob:
    """A checked request: every setting's value (defaults filled in), those the request gave, the painter."""

    values: dict[str, Any]
    settings: dict[str, Any]
    painter: str


class RecreateKind:
    """The lost-painting pipeline, :func:`nstjax.recreate.recreate`, as a mode of the page and the API.

    Args:
      photo_model: a SPADE/pix2pix run directory for stage 1, or
      exemplars: a folder of exemplar pairs (``labels/<stem>.png`` + ``photos/<stem>.png``) for stage 1;
      synthetic_root: with neither, where synthetic exemplars are written once (the server's root).
      cyclegan_run: a CycleGAN run directory: adds the ``cyclegan`` painter to the form's choices.
      nst_config: the NST stages' base :class:`~nstjax.nst.config.StylizeConfig` (default: the ``auto``
        preset); the request's size, steps and seed override it.
    """

    name = "recreate"
    title = "Recreate a lost painting (sketch → photo → painting)"

    def __init__(self, *, photo_model: str | Path | None = None, exemplars: str | Path | None = None,
                 synthetic_root: str | Path | None = None, cyclegan_run: str | Path | None = None,
                 nst_config: Any = None):  # fmt: skip
        from ..recreate.settings import RECREATE_SETTINGS

        if photo_model is not None and exemplars is not None:
            raise ValueError("give a photo model or exemplars, not both")
        if photo_model is None and exemplars is None and synthetic_root is None:
            raise ValueError("give a photo model, exemplars, or a root for synthetic exemplars")
        self.photo_model = None if photo_model is None else Path(photo_model)
        self.exemplars = None if exemplars is None else Path(exemplars)
        self.synthetic_root = None if synthetic_root is None else Path(synthetic_root)
        self.cyclegan_run = None if cyclegan_run is None else Path(cyclegan_run)
        self.nst_config = nst_config
        self.full_schema = RECREATE_SETTINGS
        unused = ("max_exemplars",) if self.photo_model is not None else ()
        self.schema = RECREATE_SETTINGS.web().with_settings(without=unused)

    @property
    def description(self) -> str:
        if self.photo_model is not None:
            photo = f"the SPADE/pix2pix run {self.photo_model.name} turns it into a photo"
        elif self.exemplars is not None:
            photo = f"exemplar-guided NST from the pairs in {self.exemplars.name} turns it into a photo"
        else:
            photo = ("exemplar-guided NST from synthetic landscape pairs turns it into a photo (the server has no "
                     "--photo-model or --exemplars)")  # fmt: skip
        return (f"Draw a colour-coded landscape; {photo}, which is then painted region by region in the "
                "painting's style. Every stage and a sky-on-ground score come back.")  # fmt: skip

    def painters(self) -> tuple[str, ...]:
        """The painter names a request may give (``cyclegan`` only when the server has a CycleGAN run)."""
        return (*self.full_schema["painter"].web_choices, *(("cyclegan",) if self.cyclegan_run else ()))

    def _choices(self) -> dict[str, tuple[str, ...]]:
        return {"weights": StylizeKind.weight_names(), "painter": self.painters()}

    def prepare(self, settings: Mapping[str, Any], styles: int, limits: ServeLimits) -> RecreateJob:
        from ..recreate import RecreateConfig

        given = {setting_name(k) for k in settings}
        server_only = sorted(given & {s.name for s in self.full_schema if not s.web})
        if server_only:
            raise SettingsError(f"{', '.join(server_only)}: set by the server (nstjax serve --photo-model, "
                                "--exemplars), never by a request")  # fmt: skip
        if isinstance(settings.get("weights"), str):
            settings = {**settings, "weights": settings["weights"].strip().lower()}
        values = self.schema.checked(settings, choices=self._choices())
        painter = values["painter"]
        if painter == "semantic-nst" and styles < 2:
            raise SettingsError("the semantic-nst painter needs the painting's label map (a second style image)")
        try:  # the config's own checks (positive size and steps, ...), with a stand-in for stage 1
            config = RecreateConfig(exemplars=".", painter="nst" if painter == "cyclegan" else painter,
                                    size=values["size"], steps=values["steps"], seed=values["seed"],
                                    max_exemplars=values.get("max_exemplars") or 1, nst_config=self.nst_config)  # fmt: skip
            size = config.nst_base().size
        except NstjaxError as e:
            raise SettingsError(str(e)) from None
        if size > limits.max_size:
            raise SettingsError(f"size {size} is larger than this server allows ({limits.max_size} px)")
        clean = {k: values[k] for k in self.schema.names if k in given and values[k] is not None}
        return RecreateJob(values=values, settings=clean, painter=painter)

    def check_inputs(self, prepared: RecreateJob, content: Path, styles: Sequence[Path], labels: Mapping[str, Any]):
        """Read the sketch (and the painting's label map) now, so a colour outside the palette is refused at
        once with :func:`nstjax.labels.read_label_map`'s one-line error, naming the upload (SettingsError)."""
        from ..labels import read_label_map

        names = [("sketch", content, labels.get("content"))]
        if len(styles) > 1:
            names.append(("painting labels", styles[1], (labels.get("styles") or [None, None])[1]))
        for what, path, label in names:
            try:
                read_label_map(path, "landscape")
            except NstjaxError as e:
                raise SettingsError(f"{what} ({label}): {e.problem}") from None

    def describe(self, limits: ServeLimits) -> dict[str, Any]:
        from ..labels import load_palette, rgb_to_hex

        choices = self._choices()
        fields = []
        for setting in self.schema:
            field = setting.form_field(choices.get(setting.name))
            if setting.name == "size":
                field["max"] = limits.max_size
            fields.append(field)
        palette = load_palette("landscape")
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputs": {"content": {"min": 1, "max": 1, "title": "Sketch"},
                       "styles": {"min": 1, "max": 2, "titles": ["Painting", "Painting label map"]}},
            "fields": fields,
            "presets": {},
            "auto_preset": None,
            "palette": [{"id": i, "name": n, "color": rgb_to_hex(c)} for i, (n, c) in
                        enumerate(zip(palette.names, palette.colors, strict=True))],
            "stages": list(SHOWN_STAGES),
        }  # fmt: skip

    # ------------------------------------------------------------------ running

    def _stage1(self) -> dict[str, Any]:
        if self.photo_model is not None:
            return {"photo_model": self.photo_model}
        if self.exemplars is not None:
            return {"exemplars": self.exemplars}
        return {"exemplars": synthetic_exemplars(self.synthetic_root)}

    def run(self, prepared: RecreateJob, content: Path, styles: Sequence[Path], context: JobContext) -> Outcome:
        from ..nst.run import StopStylize
        from ..recreate import RecreateWarning, recreate

        if context.should_stop():
            return Outcome(image=None, stopped=True)
        values = prepared.values
        stages_dir = context.directory / "stages"
        painter = f"cyclegan:{self.cyclegan_run}" if prepared.painter == "cyclegan" else prepared.painter
        weights = context.weights(values["weights"], values["seed"])
        stage1 = self._stage1()
        track = _Tracker(context)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RecreateWarning)

            def on_start(plan) -> None:
                track.start(plan, [str(w.message) for w in caught if issubclass(w.category, RecreateWarning)])
                caught.clear()

            try:
                result = recreate(
                    content, styles[0], painting_labels=styles[1] if len(styles) > 1 else None, painter=painter,
                    size=values["size"], steps=values["steps"], seed=values["seed"], weights=weights,
                    stages=stages_dir, config=self.nst_config, compare=True, progress=track.event,
                    on_start=on_start, **({"max_exemplars": values["max_exemplars"]} if "exemplars" in stage1 else {}),
                    **stage1,
                )  # fmt: skip
            except (StopStylize, KeyboardInterrupt):  # KeyboardInterrupt: StylizeInterrupted, a stopped NST stage
                return _stopped(stages_dir, track.done, context)
            finally:
                for w in caught:
                    if issubclass(w.category, RecreateWarning):
                        context.warn(str(w.message))
        for name in ("final", "sheet"):
            context.stage(name)
        h, w = result.image.shape[:2]
        return Outcome(image=result.image, summary={
            "size": [h, w], "seconds": round(float(result.seconds), 2), "steps": track.total,
            "weights": track.weights, "final": result.final, "classes": list(track.classes),
            "scores": {k: round(float(v), 4) for k, v in result.scores.items()},
            "patch_scores": {k: round(float(v), 4) for k, v in result.patch_scores.items()},
        })  # fmt: skip


class _Tracker:
    """Turns the recreation's plan and stage events into the job's plan, progress and finished stages.

    The ETA is the library's (:attr:`~nstjax.recreate.events.StageProgress.eta`, every later stage and
    compilation counted); between its reports (a stage's start and end, a compilation) it counts down.
    """

    def __init__(self, context: JobContext):
        self.context = context
        self.offsets: dict[str, int] = {}
        self.steps: dict[str, int] = {}
        self.total = 0
        self.order: list[str] = []
        self.done: list[str] = []
        self.weights: str | None = None
        self.classes: tuple[str, ...] = ()
        self.eta: tuple[float, float] | None = None  # (seconds left, time.perf_counter() when reported)

    def _stop_if_asked(self) -> None:
        from ..nst.run import StopStylize

        if self.context.should_stop():
            raise StopStylize

    def _eta(self, seconds: float | None) -> float | None:
        """Keep ``seconds`` (when known) as the ETA from now; the ETA now, counted down since it was known."""
        now = time.perf_counter()
        if seconds is not None and math.isfinite(seconds):
            self.eta = (float(seconds), now)
        return None if self.eta is None else seconds_or_none(max(0.0, self.eta[0] - (now - self.eta[1])))

    def start(self, plan, notes: list[str]) -> None:
        for note in notes:
            self.context.warn(note)
        self._stop_if_asked()
        steps = [sum(s.steps) for s in plan.stages]
        self.total = sum(steps)
        self.offsets = {s.name: sum(steps[:i]) for i, s in enumerate(plan.stages)}
        self.steps = {s.name: n for s, n in zip(plan.stages, steps, strict=True)}
        self.order = [s.name for s in plan.stages]
        self.weights, self.classes = plan.weights_source, plan.classes
        estimate = plan_estimate(plan.seconds, plan.compile_seconds, plan.compilations)
        self.context.plan({
            "shapes": [list(plan.shape)], "steps": steps, "device": plan.device, "weights": plan.weights_source,
            **estimate, "stages": [s.name for s in plan.stages],
            "methods": {s.name: s.method for s in plan.stages}, "final": plan.final, "classes": list(plan.classes),
        })  # fmt: skip
        self.context.progress({"phase": "compiling", "step": 0, "steps": self.total,
                               "eta_seconds": self._eta(estimate["estimate_seconds"])})  # fmt: skip

    def _finished(self, name: str) -> None:
        self.done.append(name)
        self.context.stage(name)

    def event(self, event) -> None:
        from ..recreate import StageDone, StageProgress, StageStart

        if isinstance(event, StageStart) and not self.done:  # the sketch is in the stages folder by now
            self._finished("sketch")
        if isinstance(event, StageDone):
            self._finished(event.name)
        self._stop_if_asked()
        stage, step, phase = event.name, self.offsets.get(event.name, 0), "compiling"  # a stage starts compiling
        report: dict[str, Any] = {"loss": None, "terms": {}}
        image, eta = None, None
        if isinstance(event, StageProgress):
            p = event.progress
            step += event.step
            # The last chunk of a scale: the next scale compiles its programs now.
            phase = "compiling" if p.step >= p.steps and p.scale < p.scales else "running"
            image, eta = p.best_image, event.eta
            report.update(scale=p.scale, scales=p.scales, loss=_finite(p.loss),
                          terms={k: _finite(v) for k, v in p.terms.items()})  # fmt: skip
        elif isinstance(event, StageDone):  # the next stage loads or compiles now; after the last, the scores
            later = self.order[self.order.index(stage) + 1 :] if stage in self.order else []
            stage, phase = (later[0], "compiling") if later else (stage, "running")
            step += self.steps.get(event.name, 0)
        report.update(stage=stage, step=step, steps=self.total, phase=phase, eta_seconds=self._eta(eta))
        self.context.progress(report, image=image)


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _stopped(stages_dir: Path, done: list[str], context: JobContext) -> Outcome:
    """A stopped recreation: its finished stages stay; the last one is the job's image, with a sheet of them."""
    from ..io.images import load_image, save_image
    from ..recreate.sheet import contact_sheet

    shown = [(name, load_image(path)) for name in done if (path := stage_file(stages_dir.parent, name)).is_file()]
    if not shown:
        return Outcome(image=None, stopped=True)
    save_image(stages_dir / "sheet.png", contact_sheet([(f"{name} (stopped after it)" if i == len(shown) - 1 else
                                                         name, image) for i, (name, image) in enumerate(shown)]))
    context.stage("sheet")
    return Outcome(image=shown[-1][1], stopped=True, summary={"stopped_after": shown[-1][0]})
