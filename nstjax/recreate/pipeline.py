"""The lost-painting pipeline in one call: sketch → photo → painting.

Stage 1 turns a colour-coded sketch into a photo-like scene: with a trained
SPADE/pix2pix run (``photo_model``), or with no trained model at all by
exemplar-guided NST (``exemplars``, :mod:`nstjax.recreate.exemplars`). Stage 2
paints the photo in the style of a painting: semantic NST by default when the
painting's label map is given (each class of the sketch takes the style of the
same class in the painting, missing classes borrow their nearest class's,
:mod:`nstjax.recreate.classes`), plain Gatys NST, or a trained CycleGAN run.

Plain NST has no idea what is sky and what is field, so it happily puts a
painting's sky colours on the ground; :func:`~nstjax.recreate.score.sky_on_ground_score`
measures that, and a recreation with ``stages`` runs both and records the score of each.

:func:`recreate` is a plan and stages: the settings as data (:class:`~nstjax.recreate.config.RecreateConfig`),
the inputs read and the stages chosen (:func:`~nstjax.recreate.plan.make_plan`), then each stage
(:mod:`nstjax.recreate.stages`), whose image reaches the stages folder as soon as it is done.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..labels import Palette
from ..nst.estimate import nst_eta
from ..weights import resolve_weights
from .config import DEFAULT_PHOTO_CONTENT_WEIGHT, PAINTERS, RecreateConfig, parse_painter
from .events import RecreatePlan, StageDone, StageProgress, StageStart
from .exemplars import DEFAULT_MAX_EXEMPLARS
from .plan import make_plan, stage_phases
from .record import make_record, write_record
from .stages import (
    Scores,
    StageRunner,
    cyclegan_stage,
    final_stage,
    interrupted_stage,
    photo_stage,
    plain_stage,
    score_stages,
    semantic_stage,
    sheet_stage,
    sketch_stage,
)

__all__ = [
    "recreate_painting",
    "DEFAULT_PHOTO_CONTENT_WEIGHT",
    "PAINTERS",
    "RecreateResult",
    "parse_painter",
    "recreate",
]

ImageIn = str | os.PathLike | np.ndarray


@dataclasses.dataclass
class RecreateResult:
    """What :func:`recreate` made.

    image: the painting, float32 [H, W, 3] RGB in [0, 1] (the ``final`` stage's image).
    stages: every stage's image by name: ``photo``, and those that ran of ``plain``, ``semantic``,
      ``cyclegan``.
    scores: sky-on-ground colour score (0..1, :func:`~nstjax.recreate.score.sky_on_ground_score`) of the
      unpainted ``photo`` (a baseline) and each painted stage, where the painting's labels allow one.
    record: everything ``recreate.json`` holds.
    patch_scores: the same for the patch score (:func:`~nstjax.recreate.score.sky_on_ground_patch_score`:
      colour and texture, sees moons and swirls on a ground of the sky's hue).
    """

    image: np.ndarray
    labels: np.ndarray
    stages: dict[str, np.ndarray]
    final: str
    scores: dict[str, float]
    record: dict[str, Any]
    seconds: float
    output: Path | None = None
    stages_dir: Path | None = None
    patch_scores: dict[str, float] = dataclasses.field(default_factory=dict)


def recreate(
    sketch: ImageIn,
    painting: ImageIn,
    output: str | os.PathLike | None = None,
    *,
    painting_labels: ImageIn | None = None,
    photo_model: str | os.PathLike | None = None,
    exemplars: str | os.PathLike | None = None,
    painter: str = "auto",
    size: int | None = None,
    steps: int | None = None,
    weights: Any = None,
    stages: str | os.PathLike | None = None,
    seed: int = 0,
    config=None,
    palette: Palette | str = "landscape",
    max_exemplars: int = DEFAULT_MAX_EXEMPLARS,
    photo_content_weight: float = DEFAULT_PHOTO_CONTENT_WEIGHT,
    photo_scales: tuple[int, ...] | None = None,
    compare: bool | None = None,
    progress: Callable[[StageStart | StageProgress | StageDone], None] | None = None,
    on_start: Callable[[RecreatePlan], None] | None = None,
) -> RecreateResult:
    """Recreate a painting from a colour-coded sketch: sketch → photo → painting.

    Args:
      sketch: colour sketch or index PNG in ``palette`` (path), or int [H, W] class ids.
      painting: the painting whose style to take: path or float [H, W, 3] RGB in [0, 1].
      output: where to write the painting (atomically); ``None`` writes nothing but ``stages``.
      painting_labels: the painting's label map in ``palette`` (path or int array), e.g. from
        :func:`~nstjax.recreate.labeller.label_painting`. Resized to the painting by nearest neighbour
        (with a warning) when its size differs. Needed by ``semantic-nst`` and by the score.
      photo_model: stage 1 with a trained SPADE/pix2pix run directory.
      exemplars: stage 1 by exemplar-guided NST from ``DIR/labels/<stem>.png`` + ``DIR/photos/<stem>.png``.
        Exactly one of ``photo_model`` and ``exemplars``.
      painter: ``auto`` (``semantic-nst`` with painting labels, else ``nst``), ``nst``, ``semantic-nst``
        or ``cyclegan:RUN_DIR``.
      size: longest side of the photo and painting in pixels (default the config's).
      steps: optimiser steps of each NST stage at its final scale (default the config's).
      weights: VGG weights spec (``random``, ``auto``, a file …) or loaded :class:`~nstjax.models.VGGWeights`.
      stages: a folder for every stage's image, ``sheet.png`` and ``recreate.json``.
      seed: seeds the noise start, random weights and the sketch-to-photo model.
      config: base :class:`~nstjax.nst.config.StylizeConfig` of the NST stages (default the ``auto``
        preset); ``size``, ``steps`` and ``seed`` override it.
      max_exemplars: exemplar pairs used (chosen by :func:`~nstjax.recreate.exemplars.choose_exemplars`).
      photo_content_weight: content weight of the flat mean-colour image in the exemplar stage.
      photo_scales: coarser passes of the exemplar stage (default size/4, size/2 where >= 64 px).
      compare: also run plain and semantic NST (when labels allow) whatever the painter, for the sheet
        and the scores; default: when ``stages`` is given.
      progress: called with :class:`~nstjax.recreate.events.StageStart`, ``StageProgress``, ``StageDone``.
      on_start: called once with the :class:`~nstjax.recreate.events.RecreatePlan`.

    With ``stages``, each stage's image is written there (atomically) as soon as the stage is done;
    ``sheet.png``, ``final.png``, ``recreate.json`` and ``output`` come at the end.

    An interrupt (Ctrl-C, or :class:`~nstjax.nst.run.StopStylize` from ``progress``) keeps every finished
    stage and the running NST stage's best image so far (under its own name) in ``stages``, with a
    ``recreate.json`` that says where it stopped, and writes the latest image (that best so far, else the
    last finished stage's) to ``output``; then :class:`~nstjax.recreate.events.RecreateInterrupted`
    (a ``KeyboardInterrupt``) says what was kept.

    Raises:
      NstjaxError: bad input (one line naming the file): sketch colours not in the palette, painting
        labels sharing no class with the sketch, a missing exemplar folder or model, bad settings.
    """
    started = time.perf_counter()
    settings = RecreateConfig(
        photo_model=photo_model, exemplars=exemplars, painter=painter, size=size, steps=steps, weights=weights,
        stages=stages, seed=seed, nst_config=config, palette=palette, max_exemplars=max_exemplars,
        photo_content_weight=photo_content_weight, photo_scales=photo_scales, compare=compare,
    )  # fmt: skip
    plan = make_plan(sketch, painting, painting_labels, output, settings)
    vgg_weights = resolve_weights(weights, plan.base.seed) if plan.needs_vgg else None
    eta, first = None, None
    if on_start is not None or progress is not None:
        announced = plan.announce(vgg_weights)
        phases, first = stage_phases(announced.stages)
        eta = nst_eta(phases)
        if on_start is not None:
            on_start(announced)

    runner = StageRunner(vgg_weights, plan.stages_dir, progress, eta, first)
    sketch_stage(plan)
    try:
        photo = photo_stage(plan, runner)
        if plan.run_plain:
            plain_stage(plan, runner, photo)
        if plan.run_semantic:
            semantic_stage(plan, runner, photo)
        if plan.kind == "cyclegan":
            cyclegan_stage(plan, runner, photo)
    except KeyboardInterrupt:  # StylizeInterrupted too: keep what was done, then say what
        interrupted = interrupted_stage(plan, runner)
        if plan.stages_dir is not None:
            where = {"stage": interrupted.stage, "finished": list(interrupted.finished),
                     "partial": interrupted.partial, "output_from": interrupted.image_stage}
            record = make_record(plan, sketch=sketch, painting=painting, painting_labels=painting_labels,
                                 vgg_weights=vgg_weights, runner=runner, scores=Scores(note="interrupted"),
                                 seconds=time.perf_counter() - started, interrupted=where)  # fmt: skip
            write_record(plan.stages_dir, record)
        raise interrupted from None
    image = runner.images[plan.final]
    scores = score_stages(plan, runner.images)

    seconds = time.perf_counter() - started
    record = make_record(plan, sketch=sketch, painting=painting, painting_labels=painting_labels,
                         vgg_weights=vgg_weights, runner=runner, scores=scores, seconds=seconds)  # fmt: skip
    final_stage(plan, image)
    sheet_stage(plan, runner.images, image, scores, random_weights=vgg_weights is not None and vgg_weights.is_random)
    if plan.stages_dir is not None:
        write_record(plan.stages_dir, record)
    return RecreateResult(
        image=image, labels=plan.labels, stages=runner.images, final=plan.final, scores=scores.colour,
        patch_scores=scores.patches, record=record, seconds=seconds, output=plan.output,
        stages_dir=plan.stages_dir,
    )  # fmt: skip


recreate_painting = recreate
"""The same function as :func:`recreate`, under a name ``nstjax`` can re-export (``nstjax.recreate`` is the package)."""
