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


from ..lazy import lazy_exports

# Public name -> the module that defines it, imported on first use (nstjax --help never imports JAX).
_EXPORTS = {
    "FALLBACKS": ".classes",
    "GROUND_CLASSES": ".classes",
    "SKY_CLASSES": ".classes",
    "Fallback": ".classes",
    "resolve_fallbacks": ".classes",
    "RecreateConfig": ".config",
    "RecreateInterrupted": ".events",
    "RecreatePlan": ".events",
    "RecreateWarning": ".events",
    "StageDone": ".events",
    "StagePlan": ".events",
    "StageProgress": ".events",
    "StageStart": ".events",
    "ExemplarPair": ".exemplars",
    "choose_exemplars": ".exemplars",
    "scan_exemplars": ".exemplars",
    "PaintingLabels": ".labeller",
    "label_painting": ".labeller",
    "write_painting_labels": ".labeller",
    "PAINTERS": ".pipeline",
    "RecreateResult": ".pipeline",
    "parse_painter": ".pipeline",
    "recreate": ".pipeline",
    "recreate_painting": ".pipeline",
    "SkyOnGround": ".score",
    "SkyPatchesOnGround": ".score",
    "sky_on_ground_patch_score": ".score",
    "sky_on_ground_score": ".score",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
