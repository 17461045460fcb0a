"""What a recreation will do, decided before any long work: :func:`make_plan`.

The inputs are read and checked (sketch colours in the palette, the painting's label map sharing a class
with the sketch, the exemplar folder, the run directories) and the stages chosen, so a bad input fails in
one line before weights load or an optimiser runs.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import NstjaxError
from ..io import images
from ..labels import Palette, load_palette, read_label_map, resize_labels
from ..models import vgg
from ..nst.config import StylizeConfig
from ..nst.estimate import estimate_run
from ..nst.run import describe_device
from ..train.estimate import Phase, total_seconds
from .classes import Fallback, resolve_fallbacks
from .config import RecreateConfig
from .events import RecreatePlan, RecreateWarning, StagePlan
from .exemplars import (
    MAX_SCAN,
    ExemplarPair,
    PhotoGuidance,
    choose_exemplars,
    fit_labels,
    load_exemplars,
    photo_guidance,
    scan_exemplars,
)

__all__ = ["MIN_COARSE_SIDE", "MODEL_STAGE", "Plan", "make_plan", "stage_phases"]

MODEL_STAGE = Phase("model", 1, 2.0, 15.0)
"""A trained-model stage (SPADE/pix2pix, CycleGAN) in an estimate: one forward pass (a rough 2 s) after a
compilation (a rough 15 s on a CPU); they are short beside the NST stages."""

MIN_COARSE_SIDE = 64
"""Exemplar stage: coarser passes (size/4, size/2) only where they are at least this many pixels."""

FINAL_STAGE = {"nst": "plain", "semantic-nst": "semantic", "cyclegan": "cyclegan"}
"""The stage whose image is the output, per painter."""


@dataclasses.dataclass(frozen=True, eq=False)
class Plan:
    """A recreation's inputs, read and checked, and the stages it runs.

    Attributes:
      config: the settings.
      palette: the loaded palette; ``classes``: names of the sketch's classes, in id order.
      kind: the painter used (``nst``, ``semantic-nst``, ``cyclegan``); ``final``: the stage whose image is
        the output; ``cyclegan_dir``: the CycleGAN run (``cyclegan`` only).
      output: the checked output path or None; ``stages_dir``: the stages folder or None.
      shape: (h, w) of the photo and the paintings: the sketch fitted to ``base.size``.
      labels: int32 [h, w] sketch class ids at ``shape``.
      painting: float32 [H, W, 3] RGB in [0, 1], at its own size.
      painting_labels: int32 [H, W] class ids of the painting, or None.
      painting_fallbacks: per sketch class, the painting class whose style it takes (None without labels);
        ``whole``: the id of the whole-painting pseudo-region (``len(palette)``) when a class has no
        stand-in, else None.
      chosen_pairs, guidance: the exemplars used by stage 1 and what they give the NST engine (exemplar
        stage only; empty and None with a photo model).
      base, photo_config, paint_config: the NST configs (``photo_config`` None with a photo model).
      run_plain, run_semantic: which NST painters run (the painter's own, plus both when comparing).
      stages: the stages in the order they run.
    """

    config: RecreateConfig
    palette: Palette
    classes: tuple[str, ...]
    kind: str
    final: str
    cyclegan_dir: Path | None
    output: Path | None
    stages_dir: Path | None
    shape: tuple[int, int]
    labels: np.ndarray
    painting: np.ndarray
    painting_labels: np.ndarray | None
    painting_fallbacks: dict[int, Fallback] | None
    whole: int | None
    chosen_pairs: tuple[ExemplarPair, ...]
    guidance: PhotoGuidance | None
    base: StylizeConfig
    photo_config: StylizeConfig | None
    paint_config: StylizeConfig
    run_plain: bool
    run_semantic: bool
    stages: tuple[StagePlan, ...]

    @property
    def needs_vgg(self) -> bool:
        """Whether any stage runs NST (and so needs VGG weights)."""
        return self.guidance is not None or self.run_plain or self.run_semantic

    def method(self, stage: str) -> str:
        """How stage ``stage`` runs, in words (as planned: ``"plain NST"``, ``"CycleGAN run DIR"``)."""
        return next(s.method for s in self.stages if s.name == stage)

    def announce(self, vgg_weights, *, flops_per_second: float | None = None) -> RecreatePlan:
        """The :class:`~nstjax.recreate.events.RecreatePlan` event, once the weights are known: each NST
        stage with its estimate (every scale at its own cost, :func:`~nstjax.nst.estimate.estimate_run`).

        ``flops_per_second``: the device speed (default this machine's measured one).
        """
        network = None if vgg_weights is None else vgg.network_of(vgg_weights.params)
        configs = {"photo": self.photo_config, "plain": self.paint_config, "semantic": self.paint_config}
        stages = []
        for stage in self.stages:
            config = configs.get(stage.name) if stage.steps else None
            if config is not None and network is not None:
                shapes = [images.fit_longest_side(self.shape, longest) for longest, _ in config.schedule]
                estimate = estimate_run(config, shapes, network=network, flops_per_second=flops_per_second)
                stage = dataclasses.replace(stage, estimate=estimate)
            stages.append(stage)
        phases, _ = stage_phases(stages)
        work, compiling = total_seconds(phases)
        return RecreatePlan(
            shape=self.shape,
            stages=tuple(stages),
            final=self.final,
            weights_source=None if vgg_weights is None else getattr(vgg_weights, "label", vgg_weights.source),
            device=describe_device(),
            classes=self.classes,
            seconds=work,
            compile_seconds=compiling,
            compilations=sum(1 for p in phases if p.compile_seconds > 0),
        )


def stage_phases(stages) -> tuple[list[Phase], dict[str, int]]:
    """The work of a recreation's :class:`~nstjax.recreate.events.StagePlan` s as phases (an NST stage's
    scales, a model stage's one pass: :data:`MODEL_STAGE`), and each stage's first phase index."""
    phases: list[Phase] = []
    first: dict[str, int] = {}
    for stage in stages:
        first[stage.name] = len(phases)
        if stage.estimate is not None:
            phases += stage.estimate.phases(stage.name)
        else:
            phases.append(dataclasses.replace(MODEL_STAGE, name=stage.name))
    return phases, first


def _read_labels(value, palette: Palette, what: str) -> np.ndarray:
    """A label map from a path (colour sketch or index PNG) or an int [H, W] array: int32 class ids."""
    if isinstance(value, str | os.PathLike):
        return read_label_map(value, palette)
    labels = np.asarray(value)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise NstjaxError(f"{what} must be a path or an int [H, W] label map, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(palette)):
        raise NstjaxError(f"{what} holds class ids outside 0-{len(palette) - 1} (palette {palette.name!r})")
    return labels.astype(np.int32)


def _class_names(ids, palette: Palette) -> list[str]:
    return [palette.names[int(i)] for i in ids]


def _photo_scales(size: int, config: StylizeConfig) -> tuple[int, ...]:
    """The exemplar stage's coarser passes: size/4 and size/2 where VGG's layers still fit (>= 64 px)."""
    layers = [n for n, _ in config.style_layers] + [n for n, _ in config.content_layers]
    need = max(MIN_COARSE_SIDE, 2 * vgg.min_input_size(layers, config.padding))
    return tuple(s for s in (size // 4, size // 2) if s >= need)


def _painting_fallbacks(sketch_classes: np.ndarray, p_labels: np.ndarray, palette: Palette, where):
    """(fallbacks per sketch class, whole-painting region id or None); warns about borrowed styles."""
    painting_classes = np.unique(p_labels)
    if np.intersect1d(sketch_classes, painting_classes).size == 0:
        raise NstjaxError(
            f"the painting's label map shares no class with the sketch (sketch: "
            f"{', '.join(_class_names(sketch_classes, palette))}; painting: "
            f"{', '.join(_class_names(painting_classes, palette))}); label the painting with the sketch's "
            "classes, or use --painter nst",
            where,
        )
    fallbacks = resolve_fallbacks(sketch_classes.tolist(), painting_classes.tolist(), palette)
    borrowed = [fb.describe(palette) for fb in fallbacks.values() if not fb.exact]
    if borrowed:
        warnings.warn(
            f"sketch classes missing from the painting take a stand-in's style: {', '.join(borrowed)}",
            RecreateWarning,
            stacklevel=4,  # recreate()'s caller
        )
    whole = len(palette) if any(fb.source is None for fb in fallbacks.values()) else None
    return fallbacks, whole


def make_plan(sketch, painting, painting_labels, output, config: RecreateConfig) -> Plan:
    """Read and check the inputs of :func:`~nstjax.recreate.recreate` and choose its stages.

    Args:
      sketch: colour sketch or index PNG (path), or int [H, W] class ids.
      painting: path or float [H, W, 3] RGB in [0, 1].
      painting_labels: path or int [H, W] class ids, or None; resized to the painting (with a warning).
      output: the output image path, or None.
      config: the settings.

    Raises:
      NstjaxError: one line naming the file.
    """
    pal = load_palette(config.palette)
    kind, cyclegan_dir = config.painter_kind(painting_labels is not None)
    if kind == "semantic-nst" and painting_labels is None:
        raise NstjaxError(
            "the semantic-nst painter needs the painting's label map (--painting-labels; make one with "
            "`nstjax label-painting`)"
        )
    output = None if output is None else images.check_output_path(output)
    stages_dir = None if config.stages is None else Path(config.stages)
    if stages_dir is not None and stages_dir.exists() and not stages_dir.is_dir():
        raise NstjaxError("exists and is not a folder", stages_dir)

    # The inputs, checked before any weights or long work.
    sketch_full = _read_labels(sketch, pal, "sketch")
    painting_img = images.image_array(painting, "painting")
    labels_path = painting_labels if isinstance(painting_labels, str | os.PathLike) else None
    p_labels = None
    if painting_labels is not None:
        p_labels = _read_labels(painting_labels, pal, "painting labels")
        p_labels = fit_labels(p_labels, painting_img.shape[:2], labels_path or "painting labels", "the painting")
    base = config.nst_base()
    shape = images.fit_longest_side(sketch_full.shape, base.size)
    labels = resize_labels(sketch_full, shape) if shape != sketch_full.shape else sketch_full
    sketch_classes = np.unique(labels)
    fallbacks, whole = (None, None)
    if p_labels is not None:
        fallbacks, whole = _painting_fallbacks(sketch_classes, p_labels, pal, labels_path)

    # Stage 1's inputs.
    chosen_pairs: list[ExemplarPair] = []
    guidance = None
    if config.exemplars is not None:
        pairs = scan_exemplars(config.exemplars, max_scan=MAX_SCAN)
        candidates = [read_label_map(p.labels_path, pal) for p in pairs]
        picks = choose_exemplars(labels, candidates, len(pal), config.max_exemplars)
        chosen_pairs = [pairs[i] for i in picks]
        ex_labels, ex_photos = load_exemplars(chosen_pairs, pal)
        guidance = photo_guidance(labels, ex_photos, ex_labels, pal)
    elif not Path(config.photo_model).is_dir():
        raise NstjaxError("no SPADE/pix2pix run directory here", config.photo_model)
    if cyclegan_dir is not None and not cyclegan_dir.is_dir():
        raise NstjaxError("no CycleGAN run directory here", cyclegan_dir)

    # The stages.
    photo_config = None
    if guidance is not None:
        scales = _photo_scales(base.size, base) if config.photo_scales is None else tuple(config.photo_scales)
        photo_config = base.replace(
            content_weight=config.photo_content_weight, init="noise", scales=scales, scale_steps=()
        )
    paint_config = base.replace(init="content")
    run_plain = kind == "nst" or config.compares
    run_semantic = p_labels is not None and (kind == "semantic-nst" or config.compares)
    paint_steps = tuple(s for _, s in paint_config.schedule)
    if guidance is not None:
        photo_steps = tuple(s for _, s in photo_config.schedule)
        stages = [StagePlan("photo", f"exemplar-guided NST from {len(chosen_pairs)} exemplar(s)", photo_steps)]
    else:
        stages = [StagePlan("photo", f"SPADE/pix2pix run {config.photo_model}")]
    if run_plain:
        stages.append(StagePlan("plain", "plain NST", paint_steps))
    if run_semantic:
        stages.append(StagePlan("semantic", "semantic NST", paint_steps))
    if kind == "cyclegan":
        stages.append(StagePlan("cyclegan", f"CycleGAN run {cyclegan_dir}"))

    return Plan(
        config=config, palette=pal, classes=tuple(_class_names(sketch_classes, pal)), kind=kind,
        final=FINAL_STAGE[kind], cyclegan_dir=cyclegan_dir, output=output, stages_dir=stages_dir, shape=shape,
        labels=labels, painting=painting_img, painting_labels=p_labels, painting_fallbacks=fallbacks, whole=whole,
        chosen_pairs=tuple(chosen_pairs), guidance=guidance, base=base, photo_config=photo_config,
        paint_config=paint_config, run_plain=run_plain, run_semantic=run_semantic, stages=tuple(stages),
    )  # fmt: skip
