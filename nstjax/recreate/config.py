"""The settings of a recreation, as data: :class:`RecreateConfig`.

Everything :func:`~nstjax.recreate.recreate` takes apart from its inputs (the
sketch, the painting and its label map) and its output file, one field per
setting, checked when the config is made. Which painter ``auto`` means, the
working size and the NST configs of the stages depend on the inputs too, so
they are decided later, by :func:`nstjax.recreate.plan.make_plan`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

from ..errors import NstjaxError
from ..labels import Palette
from ..nst.config import StylizeConfig, preset
from .exemplars import DEFAULT_MAX_EXEMPLARS

__all__ = ["DEFAULT_PHOTO_CONTENT_WEIGHT", "PAINTERS", "RecreateConfig", "parse_painter"]

PAINTERS = ("auto", "nst", "semantic-nst", "cyclegan:RUN_DIR")
"""Stage-2 choices; ``auto`` = ``semantic-nst`` with painting labels, else ``nst``."""

DEFAULT_PHOTO_CONTENT_WEIGHT = 0.02
"""Weight of the flat per-class mean-colour image as the exemplar stage's content (style weight 5e3):
enough to keep each region near its class's mean colour, far too weak to keep the flat look."""


def parse_painter(painter: str | None, has_labels: bool) -> tuple[str, Path | None]:
    """``"nst"`` / ``"semantic-nst"`` / ``"cyclegan:DIR"`` / ``"auto"`` -> (kind, run dir or None)."""
    painter = (painter or "auto").strip()
    if painter == "auto":
        return ("semantic-nst" if has_labels else "nst"), None
    if painter in ("nst", "semantic-nst"):
        return painter, None
    if painter.startswith("cyclegan:") and painter[len("cyclegan:") :].strip():
        return "cyclegan", Path(painter[len("cyclegan:") :].strip())
    raise NstjaxError(f"painter must be auto, nst, semantic-nst or cyclegan:RUN_DIR; got {painter!r}")


def _positive_int(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and int(value) == value and value >= 1
    except (TypeError, ValueError):
        return False


@dataclasses.dataclass(frozen=True)
class RecreateConfig:
    """How to recreate a painting: every setting of :func:`~nstjax.recreate.recreate`.

    Made (and checked, one-line NstjaxError) before any input is read. Paths are kept as given, so
    ``recreate.json`` records them as the caller wrote them.
    """

    photo_model: str | os.PathLike | None = None
    """Stage 1 with a trained SPADE/pix2pix run directory."""
    exemplars: str | os.PathLike | None = None
    """Stage 1 by exemplar-guided NST from ``DIR/labels/<stem>.png`` + ``DIR/photos/<stem>.png``.
    Exactly one of ``photo_model`` and ``exemplars``."""
    painter: str = "auto"
    """Stage 2: ``auto`` (``semantic-nst`` with painting labels, else ``nst``), ``nst``, ``semantic-nst``
    or ``cyclegan:RUN_DIR``."""
    size: int | None = None
    """Longest side of the photo and the painting in pixels; None: the NST config's."""
    steps: int | None = None
    """Optimiser steps of each NST stage at its final scale; None: the NST config's."""
    weights: Any = None
    """VGG weights spec (``auto``, ``random``, a name, a file) or loaded :class:`~nstjax.models.VGGWeights`;
    None: ``auto``."""
    stages: str | os.PathLike | None = None
    """A folder for every stage's image, ``sheet.png`` and ``recreate.json``; None: none."""
    seed: int = 0
    """Seeds the noise start, random weights and the sketch-to-photo model."""
    nst_config: StylizeConfig | None = None
    """Base :class:`~nstjax.nst.config.StylizeConfig` of the NST stages; None: the ``auto`` preset.
    ``size``, ``steps`` and ``seed`` override it."""
    palette: Palette | str = "landscape"
    """The label palette of the sketch and the painting's label map."""
    max_exemplars: int = DEFAULT_MAX_EXEMPLARS
    """Exemplar pairs used (the best-covering ones, :func:`~nstjax.recreate.exemplars.choose_exemplars`)."""
    photo_content_weight: float = DEFAULT_PHOTO_CONTENT_WEIGHT
    """Content weight of the flat mean-colour image in the exemplar stage."""
    photo_scales: tuple[int, ...] | None = None
    """Longest sides of the exemplar stage's coarser passes; None: size/4 and size/2 where >= 64 px."""
    compare: bool | None = None
    """Also run plain and semantic NST (when labels allow) whatever the painter, for the sheet and the
    scores; None: when ``stages`` is given."""

    def __post_init__(self) -> None:
        parse_painter(self.painter, has_labels=False)  # its syntax; what `auto` means depends on the inputs
        if (self.photo_model is None) == (self.exemplars is None):
            raise NstjaxError(
                "stage 1 needs exactly one of a photo model (--photo-model RUN_DIR) and exemplars (--exemplars DIR)"
            )
        for name in ("size", "steps", "max_exemplars"):
            value = getattr(self, name)
            if value is not None and not _positive_int(value):
                raise NstjaxError(f"{name} must be a positive integer, got {value!r}")
        w = self.photo_content_weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise NstjaxError(f"photo_content_weight must be a finite non-negative number, got {w!r}")
        if self.photo_scales is not None and not all(_positive_int(s) for s in self.photo_scales):
            raise NstjaxError(f"photo scales must be positive integers, got {tuple(self.photo_scales)}")

    def painter_kind(self, has_labels: bool) -> tuple[str, Path | None]:
        """The painter used (``nst``, ``semantic-nst`` or ``cyclegan``) and the CycleGAN run, if any."""
        return parse_painter(self.painter, has_labels)

    @property
    def compares(self) -> bool:
        """Whether plain and semantic NST run beside the painter."""
        return self.stages is not None if self.compare is None else bool(self.compare)

    def nst_base(self) -> StylizeConfig:
        """The NST stages' base config: ``nst_config`` (or the ``auto`` preset) with ``size``, ``steps``, ``seed``."""
        base = self.nst_config if self.nst_config is not None else preset(None)
        overrides = dict(size=self.size, steps=self.steps, seed=self.seed)
        return base.replace(**{k: v for k, v in overrides.items() if v is not None})
