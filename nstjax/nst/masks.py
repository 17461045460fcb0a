"""Region masks for spatially controlled style transfer (Gatys et al. 2017).

"Controlling Perceptual Factors in Neural Style Transfer" replaces the single
style loss by a sum over regions ``r``: the features of a layer are multiplied
by region ``r``'s mask at that layer's resolution before the Gram matrix is
taken, and the guided Gram of the content image is compared with the guided
Gram of the style image(s) for the *same* region. This module supplies the
masks; the Gram part lives in :mod:`nstjax.losses`.

Two forms of guidance are supported:

* **Colour-coded segmentations** (:func:`load_segmentation`,
  :func:`match_regions`): one RGB image for the content and one per style,
  where equal colours mean the same region (sky, grass, ...). Regions are
  matched between the content and the styles by colour.
* **Grayscale masks** (:func:`load_gray_mask`): the simple form, one mask per
  style over the content image (white = "this style here").

Either kind of full-resolution mask is carried down to every VGG-19 layer by
:func:`layer_masks`. With several style images, :func:`parse_region_styles`
and :func:`resolve_region_styles` decide which style image(s) each region
takes its style from.

Files are read by :mod:`nstjax.nst.mask_files`, regions matched by
:mod:`nstjax.nst.mask_regions`, styles chosen per region by
:mod:`nstjax.nst.region_styles`; this module carries masks down to the VGG-19
layers (the arithmetic the guided style loss uses), and every public name of
the four is importable from here. All arrays are NumPy; masks are float32
with values in [0, 1].
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from ..labels import hex_to_rgb, rgb_to_hex
from ..models import vgg
from .mask_files import MaskWarning, load_gray_mask, load_segmentation
from .mask_regions import (
    DEFAULT_MIN_FRACTION,
    DEFAULT_TOLERANCE,
    RegionMatch,
    UnmatchedColor,
    match_regions,
)
from .region_styles import parse_region_styles, resolve_region_styles

__all__ = [
    "DEFAULT_MIN_FRACTION",
    "DEFAULT_TOLERANCE",
    "MaskWarning",
    "RegionMatch",
    "UnmatchedColor",
    "hex_to_rgb",
    "layer_masks",
    "layer_stage",
    "load_gray_mask",
    "load_segmentation",
    "match_regions",
    "parse_region_styles",
    "resolve_region_styles",
    "rgb_to_hex",
]


# --------------------------------------------------------------------------
# masks at each VGG-19 layer
# --------------------------------------------------------------------------

def layer_stage(name: str) -> int:
    """Number of 2x2 poolings between the input and VGG-19 layer ``name``.

    ``conv{b}_{n}`` / ``relu{b}_{n}`` -> ``b - 1``; ``pool{b}`` -> ``b``. A
    layer at stage ``k`` has spatial size ``(H >> k, W >> k)``.

    Raises NstjaxError for a name that is not a VGG-19 layer.
    """
    (name,) = vgg.validate_layers((name,), "VGG-19 layer")
    return vgg.layer_halvings(name)


def _avg_pool2(x: np.ndarray) -> np.ndarray:
    """2x2 average pool, stride 2, VALID (floor): ``[..., H, W] -> [..., H//2, W//2]``."""
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    x = x[..., : 2 * h, : 2 * w]  # VALID: an odd last row/column is dropped, as max-pool does
    x = x.reshape(*x.shape[:-2], h, 2, w, 2)
    return x.mean(axis=(-3, -1), dtype=np.float32)


def layer_masks(
    masks: np.ndarray,
    layers: Sequence[str],
    *,
    region_names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Carry full-resolution masks down to the resolution of each VGG-19 layer.

    Rule: at each pooling stage (pool1..pool5 of the network) the mask is
    2x2 average-pooled with stride 2 and VALID padding (floor), exactly the
    shape arithmetic of the network's 2x2/2 max pooling. A mask value at a
    layer is therefore the fraction of the region inside that feature's pooled
    footprint (a ``2^k x 2^k`` input block at stage ``k``): 1 deep inside the
    region, 0 outside, a fraction on boundaries. Conv/relu layers keep their
    block's resolution: ``conv{b}_*``/``relu{b}_*`` have ``b - 1`` poolings
    behind them, ``pool{b}`` has ``b``, i.e. sizes ``(H >> k, W >> k)``.

    Because VALID pooling drops an odd last row/column, a region lying only
    there can vanish (all zeros) at deeper layers; likewise everything is empty
    at a layer whose size is 0 (input too small). Such a region is kept (so
    ``R`` is the same at every layer) but a :class:`MaskWarning` names it and
    the layers: it contributes no style loss there, and a Gram matrix
    normalised by mask area must guard against the zero area.

    Args:
      masks: float ``[R, H, W]`` (one mask per region) or ``[H, W]`` (a single
        mask), values in [0, 1] (0/1 or soft).
      layers: VGG-19 layer names, e.g. ``["relu1_1", "relu2_1", ...]``.
      region_names: optional names of the ``R`` regions (e.g.
        ``RegionMatch.hex_colors``) for warnings.

    Returns:
      ``{layer: float32 array}`` in the order of ``layers``; the leading
      dimensions of ``masks`` are kept, so ``[R, h, w]`` (or ``[h, w]``) with
      ``(h, w) = (H >> k, W >> k)``. Layers of the same stage share one
      read-only array.

    Raises:
      NstjaxError: an unknown layer name.
      ValueError: ``masks`` is not 2-D or 3-D.
    """
    # A copy: the levels are made read-only below, which must not touch the caller's array.
    masks = np.array(masks, dtype=np.float32, copy=True)
    if masks.ndim not in (2, 3):
        raise ValueError(f"masks must be [R, H, W] or [H, W], got shape {masks.shape}")
    stages = [layer_stage(name) for name in layers]
    pyramid = [masks]
    for _ in range(max(stages, default=0)):
        pyramid.append(_avg_pool2(pyramid[-1]))
    for level in pyramid:
        level.flags.writeable = False
    out = {name: pyramid[k] for name, k in zip(layers, stages)}

    # Warn about regions with no area at some layer (see docstring).
    planes = masks[None] if masks.ndim == 2 else masks
    n_regions = planes.shape[0]
    if region_names is None:
        region_names = [f"region {r}" for r in range(n_regions)] if masks.ndim == 3 else ["mask"]
    elif len(region_names) != n_regions:
        raise ValueError(f"{len(region_names)} region_names for {n_regions} regions")
    empty: dict[int, list[str]] = {}
    for name, k in zip(layers, stages):
        level = pyramid[k] if masks.ndim == 3 else pyramid[k][None]
        area = level.reshape(n_regions, -1).sum(axis=1)
        for r in np.flatnonzero(area <= 0):
            empty.setdefault(int(r), []).append(name)
    for r, names in empty.items():
        warnings.warn(
            f"{region_names[r]} is empty at layer{'s' if len(names) > 1 else ''} {', '.join(names)}"
            f" (mask {planes.shape[-2]}x{planes.shape[-1]} HxW); it contributes no style loss there",
            MaskWarning,
            stacklevel=2,
        )
    return out
