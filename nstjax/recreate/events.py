"""What a recreation reports while it runs: a plan, then per stage a start, progress and an end.

The library never prints; :func:`nstjax.recreate.recreate` calls ``on_start``
with a :class:`RecreatePlan` and ``progress`` with :class:`StageStart`,
:class:`StageProgress` and :class:`StageDone` events, and warns with
:class:`RecreateWarning`. The CLI renders them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NstjaxWarning

__all__ = [
    "RecreateInterrupted",
    "RecreatePlan",
    "RecreateWarning",
    "StageDone",
    "StagePlan",
    "StageProgress",
    "StageStart",
]


class RecreateWarning(NstjaxWarning):
    """A label map was resized, a class borrowed another's style, an exemplar pair was skipped."""


@dataclass(frozen=True)
class StagePlan:
    """One stage to run.

    name: ``photo`` (sketch -> photo), ``plain`` (plain NST), ``semantic`` (semantic NST) or
      ``cyclegan`` (CycleGAN painter).
    method: how, in words (``"exemplar-guided NST from 3 exemplars"``).
    steps: optimiser steps at each scale (empty for a trained model).
    estimate: the NST stage's :class:`~nstjax.nst.estimate.RunEstimate` (shapes, seconds per step at
      each scale, compilations), or None (a trained model, or not estimated yet).
    """

    name: str
    method: str
    steps: tuple[int, ...] = ()
    estimate: Any = None


@dataclass(frozen=True)
class RecreatePlan:
    """Reported once, after the inputs are read and before the first stage.

    shape: (h, w) of the photo and the paintings. weights_source: ``random``, ``keras``, … (``None`` when
    no stage needs VGG). final: the stage whose image is the output.
    seconds: expected time of every stage's steps (each scale at its own cost); compile_seconds: expected
    compilation, ``compilations`` of them (one per NST scale, one per trained model).
    """

    shape: tuple[int, int]
    stages: tuple[StagePlan, ...]
    final: str
    weights_source: str | None
    device: str
    classes: tuple[str, ...]
    seconds: float = math.nan
    compile_seconds: float = 0.0
    compilations: int = 0


@dataclass(frozen=True)
class StageStart:
    name: str
    method: str
    steps: int
    """Steps over all scales (0 for a trained model)."""


@dataclass(frozen=True)
class StageProgress:
    name: str
    step: int
    """Steps done over all scales so far."""
    steps: int
    progress: Any
    """The :class:`nstjax.nst.run.Progress` event of the NST run."""
    eta: float = math.nan
    """Seconds left in the whole recreation: this stage's remaining steps and every later stage, each
    scale at its own cost per step, compilations included (NaN: not estimated)."""


@dataclass(frozen=True)
class StageDone:
    name: str
    seconds: float
    detail: str = ""


class RecreateInterrupted(KeyboardInterrupt):
    """Ctrl-C (or :class:`~nstjax.nst.run.StopStylize`) during :func:`~nstjax.recreate.recreate`; what was
    kept.

    stage: the stage that was running (None: between stages). finished: the stages done, in order.
    partial: the running stage, when its best image so far was kept too (``stage``), else None.
    image: the latest image (the running stage's best so far, else the last finished stage's), float32
    [H, W, 3] in [0, 1], or None when no stage had an image yet. image_stage: whose it is.
    output: where ``image`` was written (the output file), or None. stages_dir: the stages folder, where
    every finished stage, the running stage's best so far and ``recreate.json`` are, or None.
    """

    def __init__(self, stage: str | None, finished: tuple[str, ...], partial: str | None, image: Any,
                 image_stage: str | None, output: Path | None, stages_dir: Path | None):  # fmt: skip
        super().__init__("interrupted")
        self.stage, self.finished, self.partial = stage, finished, partial
        self.image, self.image_stage, self.output, self.stages_dir = image, image_stage, output, stages_dir
