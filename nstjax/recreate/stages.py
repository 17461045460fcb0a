"""The stages of a recreation, each a small function of the :class:`~nstjax.recreate.plan.Plan`.

sketch → photo (:func:`photo_stage`) → painting (:func:`plain_stage`, :func:`semantic_stage`,
:func:`cyclegan_stage`), then :func:`score_stages`, :func:`final_stage` (the output file) and
:func:`sheet_stage`. A :class:`StageRunner` reports each stage's events,
times it, and writes its image into the stages folder as soon as it is done, atomically: an interrupt
(Ctrl-C, :class:`~nstjax.nst.run.StopStylize`) keeps every finished stage on disk, and the running NST
stage's best image so far too (:meth:`StageRunner.nst`; :func:`interrupted_stage` then writes the latest
image to the output file and ``recreate.json``).

Images are float32 [H, W, 3] RGB in [0, 1]; label maps int32 [H, W] class ids.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NstjaxError
from ..io import images
from ..labels import Palette, colorize, save_label_map
from ..nst import run as nst_run
from ..nst.config import StylizeConfig
from ..nst.masks import MaskWarning
from ..train.estimate import WorkEta
from ._models import render_photo, translate_painting
from .events import RecreateInterrupted, StageDone, StageProgress, StageStart
from .exemplars import remap_labels
from .plan import Plan
from .score import sky_on_ground_patch_score, sky_on_ground_score
from .sheet import contact_sheet

__all__ = [
    "STAGE_FILES",
    "Scores",
    "StageRunner",
    "cyclegan_stage",
    "final_stage",
    "interrupted_stage",
    "photo_stage",
    "plain_stage",
    "score_stages",
    "semantic_stage",
    "sheet_stage",
    "sketch_stage",
]

STAGE_FILES = {"sketch": "sketch.png", "photo": "photo.png", "plain": "plain_nst.png", "semantic": "semantic_nst.png",
               "cyclegan": "cyclegan.png", "final": "final.png"}  # fmt: skip
"""File names in the stages folder."""

# Colours for the "whole painting" pseudo-region: the first one far from every palette colour is used.
_SENTINELS = ((0, 0, 0), (255, 0, 255), (0, 255, 255), (255, 255, 0), (0, 0, 255), (255, 0, 0), (0, 255, 0))

ProgressCallback = Callable[[StageStart | StageProgress | StageDone], None]


class StageRunner:
    """Runs stages one after another for one recreation.

    Reports :class:`StageStart`, :class:`StageProgress` (NST stages) and :class:`StageDone` to
    ``progress``, and keeps each finished stage's image (``images``), time in seconds (``times``) and NST
    result (``runs``). With a stages folder, each image is written there (atomically) before its
    ``StageDone``. ``eta`` (a :class:`~nstjax.train.estimate.WorkEta` over every stage's phases, ``first``
    the index of each stage's first phase) gives :attr:`StageProgress.eta`.

    On an interrupt during an NST stage, its best image so far is kept as ``partial`` (name, image) and
    written into the stages folder under the stage's file name, then the interrupt propagates.
    """

    def __init__(self, vgg_weights, stages_dir: Path | None, progress: ProgressCallback | None,
                 eta: WorkEta | None = None, first: dict[str, int] | None = None):  # fmt: skip
        self.vgg_weights = vgg_weights
        self.stages_dir = stages_dir
        self.progress = progress
        self.eta = eta
        self.first = first or {}
        self.images: dict[str, np.ndarray] = {}
        self.times: dict[str, float] = {}
        self.runs: dict[str, Any] = {}
        self.running: str | None = None
        self.partial: tuple[str, np.ndarray] | None = None

    def _report(self, event) -> None:
        if self.progress is not None:
            self.progress(event)

    def _start(self, name: str, method: str, steps: int) -> None:
        self.running = name
        if self.eta is not None and name in self.first:
            self.eta.start(self.first[name])
        self._report(StageStart(name, method, steps))

    def _done(self, name: str, image: np.ndarray, started: float, detail: str = "") -> np.ndarray:
        self.times[name] = time.perf_counter() - started
        self.images[name] = image
        if self.stages_dir is not None:
            images.save_image(self.stages_dir / STAGE_FILES[name], image)
        if self.eta is not None and name in self.first:  # the stage's last phase is done
            later = [i for i in self.first.values() if i > self.first[name]]
            last = (min(later) if later else len(self.eta.phases)) - 1
            self.eta.update(last, self.eta.phases[last].units)
        self.running = None
        self._report(StageDone(name, self.times[name], detail))
        return image

    def nst(self, name: str, method: str, content, styles, config: StylizeConfig, **kwargs) -> np.ndarray:
        """One NST run (:func:`nstjax.nst.run.run_stylize`) as stage ``name``; its progress over all scales."""
        steps = [s for _, s in config.schedule]
        total, offsets = sum(steps), np.cumsum([0, *steps])
        self._start(name, method, total)

        def forward(p) -> None:
            eta = math.nan
            if self.eta is not None and name in self.first:
                eta = self.eta.update(self.first[name] + p.scale - 1, p.step)
            self._report(StageProgress(name, int(offsets[p.scale - 1]) + p.step, total, p, eta))

        started = time.perf_counter()
        with warnings.catch_warnings():
            # A small class (a tree in a tiny sketch, a class one exemplar lacks) has no pixels at the
            # deepest layers: expected here, and it only means no style loss there.
            warnings.filterwarnings("ignore", message=r".* is empty at layer", category=MaskWarning)
            try:
                result = nst_run.run_stylize(
                    content, styles, weights=self.vgg_weights, config=config,
                    progress=forward if self.progress is not None or self.eta is not None else None, **kwargs,
                )  # fmt: skip
            except nst_run.StylizeInterrupted as interrupted:  # keep the best image so far, then stop
                self.partial = (name, interrupted.result.image)
                self.runs[name] = interrupted.result
                if self.stages_dir is not None:
                    images.save_image(self.stages_dir / STAGE_FILES[name], interrupted.result.image)
                raise
        self.runs[name] = result
        return self._done(name, result.image, started, f"loss {result.loss:.4g}, {result.steps} steps")

    def model(self, name: str, method: str, fn: Callable[[], np.ndarray]) -> np.ndarray:
        """``fn()`` (a trained model) as stage ``name``: no step progress."""
        self._start(name, method, 0)
        started = time.perf_counter()
        return self._done(name, fn(), started)


def sketch_stage(plan: Plan) -> None:
    """Create the stages folder and write the sketch at the working size into it (no-op without one)."""
    if plan.stages_dir is None:
        return
    try:
        plan.stages_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NstjaxError(f"cannot create the stages folder: {e.strerror or e}", plan.stages_dir) from None
    save_label_map(plan.stages_dir / STAGE_FILES["sketch"], plan.labels, plan.palette, kind="color")


def photo_stage(plan: Plan, runner: StageRunner) -> np.ndarray:
    """Stage 1, sketch → photo: exemplar-guided NST from a flat mean-colour start, or a SPADE/pix2pix run."""
    method = plan.method("photo")
    g = plan.guidance
    if g is not None:
        return runner.nst("photo", method, g.content, g.styles, plan.photo_config,
                          content_mask=g.content_mask, style_masks=g.style_masks)  # fmt: skip
    model, seed = plan.config.photo_model, plan.base.seed
    return runner.model("photo", method, lambda: render_photo(model, plan.labels, seed=seed))


def plain_stage(plan: Plan, runner: StageRunner, photo: np.ndarray) -> np.ndarray:
    """Plain Gatys NST of the photo in the painting's style (the whole painting's Gram matrices)."""
    return runner.nst("plain", plan.method("plain"), photo, plan.painting, plan.paint_config)


def _sentinel(palette: Palette) -> np.ndarray:
    """A uint8 RGB colour far from every palette colour, for the whole-painting region."""
    colors = palette.colors.astype(np.float32)
    for c in _SENTINELS:
        if np.linalg.norm(colors - np.array(c, np.float32), axis=1).min() > 80:
            return np.array(c, np.uint8)
    raise NstjaxError(f"palette {palette.name!r} leaves no free colour for the whole-painting region")


def semantic_stage(plan: Plan, runner: StageRunner, photo: np.ndarray) -> np.ndarray:
    """Semantic NST: each sketch class takes the style of its class (or stand-in) in the painting.

    A class with no stand-in takes the style of the whole painting: the painting again as a second style,
    all one region in a colour no class has.
    """
    pal, painting = plan.palette, plan.painting
    colors = np.concatenate([pal.colors, _sentinel(pal)[None]]) if plan.whole is not None else pal.colors
    content_mask = colors[remap_labels(plan.labels, plan.painting_fallbacks, plan.whole)]
    styles, style_masks = [painting], [colorize(plan.painting_labels, pal)]
    if plan.whole is not None:
        styles.append(painting)
        style_masks.append(np.broadcast_to(colors[plan.whole], (*painting.shape[:2], 3)).copy())
    return runner.nst("semantic", plan.method("semantic"), photo, styles, plan.paint_config,
                      content_mask=content_mask, style_masks=style_masks)  # fmt: skip


def cyclegan_stage(plan: Plan, runner: StageRunner, photo: np.ndarray) -> np.ndarray:
    """A trained CycleGAN run paints the photo (photo → painting domain)."""
    run_dir = plan.cyclegan_dir
    return runner.model("cyclegan", plan.method("cyclegan"), lambda: translate_painting(run_dir, photo))


@dataclasses.dataclass(frozen=True)
class Scores:
    """Sky-on-ground scores (0..1) per stage, and the full record of each (``as_dict``), by colour and by
    patches; ``note`` says why some or all are missing."""

    colour: dict[str, float] = dataclasses.field(default_factory=dict)
    colour_details: dict[str, Any] = dataclasses.field(default_factory=dict)
    patches: dict[str, float] = dataclasses.field(default_factory=dict)
    patch_details: dict[str, Any] = dataclasses.field(default_factory=dict)
    note: str | None = None


def score_stages(plan: Plan, stage_images: dict[str, np.ndarray]) -> Scores:
    """Score the photo (the unpainted baseline) and each painted stage, where the painting's labels allow."""
    if plan.painting_labels is None:
        return Scores(note="no painting labels: the score needs the painting's sky and ground")
    colour, colour_details, patches, patch_details = {}, {}, {}, {}
    note = None
    for name in ("photo", "plain", "semantic", "cyclegan"):
        if name not in stage_images:
            continue
        args = (stage_images[name], plan.labels, plan.painting, plan.painting_labels)
        try:
            s = sky_on_ground_score(*args, palette=plan.palette)
            t = sky_on_ground_patch_score(*args, palette=plan.palette)
        except NstjaxError as e:
            note = str(e)
            break
        colour[name], patches[name] = s.score, t.score
        colour_details[name], patch_details[name] = s.as_dict(), t.as_dict()
    return Scores(colour, colour_details, patches, patch_details, note)


def final_stage(plan: Plan, image: np.ndarray) -> None:
    """Write the painting to the output file and as ``final.png`` in the stages folder (each atomically)."""
    if plan.output is not None:
        images.save_image(plan.output, image)
    if plan.stages_dir is not None:
        images.save_image(plan.stages_dir / STAGE_FILES["final"], image)


def sheet_stage(plan: Plan, stage_images: dict[str, np.ndarray], image: np.ndarray, scores: Scores,
                *, random_weights: bool) -> None:  # fmt: skip
    """Write ``sheet.png`` into the stages folder: sketch, photo, plain, semantic and final side by side,
    each captioned with its scores (no-op without a stages folder)."""
    if plan.stages_dir is None:
        return

    def caption(name: str, title: str) -> str:
        if name in scores.colour:
            patches = f", patches {100 * scores.patches[name]:.0f}%" if name in scores.patches else ""
            return f"{title}\nsky on ground {100 * scores.colour[name]:.0f}%{patches}"
        return title

    note = " (random VGG features)" if random_weights else ""
    panels = [
        ("sketch", colorize(plan.labels, plan.palette)),
        (caption("photo", "photo (stage 1)"), stage_images.get("photo")),
        (caption("plain", "plain NST" + note), stage_images.get("plain")),
        (caption("semantic", "semantic NST" + note), stage_images.get("semantic")),
        (caption(plan.final, f"final: {plan.final}"), image),
    ]
    images.save_image(plan.stages_dir / "sheet.png", contact_sheet(panels))


def interrupted_stage(plan: Plan, runner: StageRunner) -> RecreateInterrupted:
    """After an interrupt: write the latest image (the running stage's best so far, else the last finished
    stage's) to the output file, and return the :class:`RecreateInterrupted` to raise. The finished stages
    and the running stage's best so far are in the stages folder already (:class:`StageRunner`)."""
    image, image_stage = None, None
    if runner.partial is not None:
        image_stage, image = runner.partial
    elif runner.images:
        image_stage = list(runner.images)[-1]
        image = runner.images[image_stage]
    output = None
    if image is not None and plan.output is not None:
        images.save_image(plan.output, image)
        output = plan.output
    partial = None if runner.partial is None else runner.partial[0]
    return RecreateInterrupted(runner.running, tuple(runner.images), partial, image, image_stage, output,
                               plan.stages_dir)  # fmt: skip
