"""The lost-painting pipeline: a colour-coded sketch → a photo-like scene → a painting.

After the "Wild Vegetation" recreation (a Van Gogh known only from a letter
sketch): plain Gatys transfer put the painting's sky colours on the ground, so
the pipeline goes through a photo and paints it region by region.

* :func:`recreate` (``nstjax recreate``; its settings as data: :class:`RecreateConfig`):
  stage 1 by exemplar-guided NST (:mod:`~nstjax.recreate.exemplars`) or a trained
  SPADE/pix2pix run; stage 2 by semantic NST (class fallbacks in
  :mod:`~nstjax.recreate.classes`), plain NST or a trained CycleGAN run; every
  stage, a contact sheet and ``recreate.json``.
* :func:`sky_on_ground_score`: the failure, measured by pixel colour, and :func:`sky_on_ground_patch_score`
  beside it, by patches' colour and brush texture (moons, swirls, bands) (:mod:`~nstjax.recreate.score`).
* :func:`label_painting` (``nstjax label-painting``): a painting's label map by
  k-means colour clustering in CIELAB plus a class per cluster (:mod:`~nstjax.recreate.labeller`).

See ``docs/recreate.md``.
"""

from .classes import FALLBACKS, GROUND_CLASSES, SKY_CLASSES, Fallback, resolve_fallbacks
from .config import RecreateConfig
from .events import RecreatePlan, RecreateWarning, StageDone, StagePlan, StageProgress, StageStart
from .exemplars import ExemplarPair, choose_exemplars, scan_exemplars
from .labeller import PaintingLabels, label_painting, write_painting_labels
from .pipeline import PAINTERS, RecreateResult, parse_painter, recreate
from .score import SkyOnGround, SkyPatchesOnGround, sky_on_ground_patch_score, sky_on_ground_score

recreate_painting = recreate
"""The same function as :func:`recreate`, under a name ``nstjax`` can re-export (``nstjax.recreate`` is the package)."""

__all__ = [
    "FALLBACKS",
    "GROUND_CLASSES",
    "PAINTERS",
    "SKY_CLASSES",
    "ExemplarPair",
    "Fallback",
    "PaintingLabels",
    "RecreateConfig",
    "RecreatePlan",
    "RecreateResult",
    "RecreateWarning",
    "SkyOnGround",
    "SkyPatchesOnGround",
    "StageDone",
    "StagePlan",
    "StageProgress",
    "StageStart",
    "choose_exemplars",
    "label_painting",
    "parse_painter",
    "recreate",
    "recreate_painting",
    "resolve_fallbacks",
    "scan_exemplars",
    "sky_on_ground_patch_score",
    "sky_on_ground_score",
    "write_painting_labels",
]
