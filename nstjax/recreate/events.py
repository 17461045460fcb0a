"""What a recreation reports while it runs: a plan, then per stage a start, progress and an end.

The library never prints; :func:`nstjax.recreate.recreate` calls ``on_start``
with a :class:`RecreatePlan` and ``progress`` with :class:`StageStart`,
:class:`StageProgress` and :class:`StageDone` events, and warns with
:class:`RecreateWarning`. The CLI renders them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import NstjaxWarning

__all__ = ["RecreatePlan", "RecreateWarning", "StageDone", "StageProgress", "StageStart", "StagePlan"]


class RecreateWarning(NstjaxWarning):
    """A label map was resized, a class borrowed another's style, an exemplar pair was skipped."""


@dataclass(frozen=True)
class StagePlan:
    """One stage to run.

    name: ``photo`` (sketch -> photo), ``plain`` (plain NST), ``semantic`` (semantic NST) or
      ``cyclegan`` (CycleGAN painter).
    method: how, in words (``"exemplar-guided NST from 3 exemplars"``).
    steps: optimiser steps at each scale (empty for a trained model).
    """

    name: str
    method: str
    steps: tuple[int, ...] = ()


@dataclass(frozen=True)
class RecreatePlan:
    """Reported once, after the inputs are read and before the first stage.

    shape: (h, w) of the photo and the paintings. weights_source: ``random``, ``keras``, … (``None`` when
    no stage needs VGG). final: the stage whose image is the output.
    """

    shape: tuple[int, int]
    stages: tuple[StagePlan, ...]
    final: str
    weights_source: str | None
    device: str
    classes: tuple[str, ...]


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


@dataclass(frozen=True)
class StageDone:
    name: str
    seconds: float
    detail: str = ""
