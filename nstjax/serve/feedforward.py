"""Job kinds for trained feed-forward styles: a ``fast train`` network and an ``adain train`` decoder.

``nstjax serve --fast-run RUN --adain-run RUN`` registers them, so the page offers a real result in about a
second next to Gatys' optimisation. The run directories are the server operator's choice; a request never
names one, and its settings come from the systems' schemas (:mod:`nstjax.fast.settings`,
:mod:`nstjax.adain.settings`), the image-only ones (video and CLI-only settings left out).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..schema import Schema, SettingsError, setting_name
from .kinds import JobContext, Outcome, ServeLimits

__all__ = ["AdaINKind", "FastKind"]

# Settings of a single image: the video ones (frames per batch, temporal blending) do not apply, and the
# encoder's weights are those the decoder was trained with.
_NOT_FOR_IMAGES = ("batch_size", "blend", "motion", "weights")


@dataclasses.dataclass(frozen=True)
class FeedForwardJob:
    """A checked request: the settings' values (defaults filled in) and those the request gave."""

    values: dict[str, Any]
    settings: dict[str, Any]


class _TrainedRunKind:
    """What both kinds share: a run loaded once (lazily, under a lock), settings checked against a schema."""

    name = ""
    styles = (0, 0)  # (min, max) style images; max None = the server's limit
    side = "longest"  # which side `size` sets: the longest (fast apply) or the shortest (AdaIN, as upstream)

    def __init__(self, run_dir: str | Path, schema: Schema):
        self.run_dir = Path(run_dir)
        self.schema = schema.web().with_settings(without=_NOT_FOR_IMAGES)
        self._model: Any = None
        self._lock = threading.Lock()
        self._compiled: set[tuple] = set()  # the shapes (and dtype) a job ran at: their programs are compiled

    def load(self) -> Any:
        raise NotImplementedError

    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = self.load()
            return self._model

    def prepare(self, settings: Mapping[str, Any], styles: int, limits: ServeLimits) -> FeedForwardJob:
        values = self.schema.checked(settings)
        if values.get("size") and values["size"] > limits.max_size:
            raise SettingsError(f"size {values['size']} is larger than this server allows ({limits.max_size} px)")
        blend = values.get("style_blend")
        if blend is not None and len(str(blend).split(",")) != styles:
            raise SettingsError(f"style_blend has {len(str(blend).split(','))} values for {styles} style images")
        given = {setting_name(k) for k in settings}
        return FeedForwardJob(values, {k: values[k] for k in self.schema.names if k in given})

    def describe(self, limits: ServeLimits) -> dict[str, Any]:
        fields = []
        for setting in self.schema:
            field = setting.form_field()
            if setting.name in ("size", "style_size"):
                field.update(widget="range", min=64, max=limits.max_size, step=32)
            fields.append(field)
        low, high = self.styles
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputs": {"content": {"min": 1, "max": 1},
                       "styles": {"min": low, "max": limits.max_styles if high is None else high}},
            "fields": fields,
            "presets": {},
            "auto_preset": None,
            "run": self.run_dir.name,
        }  # fmt: skip

    def stylise(self, values: dict[str, Any], content: Any, styles: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
        raise NotImplementedError

    def run(self, prepared: FeedForwardJob, content: Path, styles: Sequence[Path], context: JobContext) -> Outcome:
        from ..io.images import fit_side, load_image, resize_image
        from ..train.estimate import describe_device

        if context.should_stop():
            return Outcome(image=None, stopped=True)
        values = prepared.values
        image = load_image(content)
        if values.get("size"):
            image = resize_image(image, fit_side(image.shape[:2], values["size"], self.side))
        style_images = [load_image(s) for s in styles]
        context.plan({"shapes": [list(image.shape[:2])], "steps": [1], "device": describe_device(),
                      "weights": self.run_dir.name, "estimate_seconds": None})  # fmt: skip
        # One pass; the first at these shapes (and the first of the run: loading it) compiles, seconds on a CPU.
        key = (image.shape, tuple(s.shape for s in style_images), values.get("dtype"))
        context.progress({"phase": "running" if key in self._compiled else "compiling", "step": 0, "steps": 1,
                          "eta_seconds": None})  # fmt: skip
        start = time.perf_counter()
        out, facts = self.stylise(values, image, style_images)
        seconds = time.perf_counter() - start
        self._compiled.add(key)
        context.progress({"phase": "running", "step": 1, "steps": 1, "scale": 1, "scales": 1,
                          "size": list(out.shape[:2]), "loss": None, "terms": {}, "eta_seconds": 0.0})  # fmt: skip
        h, w = out.shape[:2]
        return Outcome(image=out, summary={"size": [h, w], "seconds": round(seconds, 3), "run": self.run_dir.name,
                                           **facts})  # fmt: skip


class FastKind(_TrainedRunKind):
    """Johnson et al.'s feed-forward network of one style (``fast train``): the photo in, the painting out."""

    name = "fast"
    title = "Fast style (trained network)"
    description = "One pass through a network trained for one painting: about a second, this style only."

    def __init__(self, run_dir: str | Path):
        from ..fast.settings import MEDIA_APPLY_SETTINGS

        super().__init__(run_dir, MEDIA_APPLY_SETTINGS)

    def load(self) -> Any:
        from ..fast.apply import load_fast_model

        return load_fast_model(self.run_dir)

    def stylise(self, values, content, styles):
        from ..fast.apply import stylize_array

        model = self.model()
        out = stylize_array(model, content[None], dtype=values.get("dtype") or "float32")[0]
        return out, {"style": model.info.get("style"), "trained_steps": model.info.get("step")}


class AdaINKind(_TrainedRunKind):
    """Huang & Belongie's AdaIN (``adain train``): any painting, one pass."""

    name = "adain"
    title = "AdaIN (any style, one pass)"
    description = "A decoder trained on many paintings re-colours the photo's features with any painting's statistics."
    styles = (1, None)
    side = "shortest"

    def __init__(self, run_dir: str | Path, weights: Any = None):
        from ..adain.settings import ADAIN_APPLY_SETTINGS

        super().__init__(run_dir, ADAIN_APPLY_SETTINGS)
        self.weights = weights

    def load(self) -> Any:
        from ..adain.apply import load_adain_model

        return load_adain_model(self.run_dir, weights=self.weights)

    def stylise(self, values, content, styles):
        from ..adain.apply import stylizer
        from ..io.images import fit_side, resize_image
        from ..nst.config import parse_floats

        if values.get("style_size"):
            styles = [resize_image(s, fit_side(s.shape[:2], values["style_size"], "shortest")) for s in styles]
        blend = None if values.get("style_blend") is None else parse_floats(values["style_blend"], "style_blend")
        run = stylizer(self.model(), styles, alpha=values["alpha"], blend=blend,
                       preserve_color=bool(values.get("preserve_color")), dtype=values.get("dtype") or "float32")  # fmt: skip
        return run(content[None])[0], {"alpha": values["alpha"]}
