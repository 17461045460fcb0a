"""Regions shared by a content segmentation and style segmentations, as 0/1 masks per image.

"Controlling Perceptual Factors in Neural Style Transfer" (Gatys et al. 2017)
compares the guided Gram matrices of the content and the style(s) region by
region. :func:`match_regions` finds the regions: the colours of the content's
colour-coded segmentation that the style segmentations share (exactly, or after
snapping noisy JPEG colours to a palette), as 0/1 masks per image. Which style
image(s) each region then takes its style from is :mod:`nstjax.nst.region_styles`.

Colours are uint8 RGB; they are compared as packed integer keys and snapped
with :func:`nstjax.labels.nearest_colors`. Masks are float32 0/1 NumPy arrays.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..errors import NstjaxError
from ..labels import DEFAULT_TOLERANCE, nearest_colors, pack_rgb, rgb_to_hex, unpack_rgb
from .mask_files import MaskWarning

__all__ = [
    "DEFAULT_MIN_FRACTION",
    "DEFAULT_TOLERANCE",
    "RegionMatch",
    "UnmatchedColor",
    "match_regions",
]

#: A colour must cover at least this fraction of the pixels of one
#: segmentation to become a region when a palette is derived automatically.
DEFAULT_MIN_FRACTION = 0.001

# DEFAULT_TOLERANCE (imported above), the Euclidean RGB distance (0..441) under which two
# colours count as the same region when snapping noisy (e.g. JPEG) segmentations, is the one
# label maps snap sketch colours with: hand-made segmentations use clearly distinct colours,
# far more than 40 apart, while JPEG noise inside a flat region stays well below it.

# Above this fraction of pixels farther than `tolerance` from every palette
# colour, the palette evidently does not describe the image: warn.
_FAR_PIXEL_WARN_FRACTION = 0.10


def _key_hex(key: int) -> str:
    """A packed colour key as ``"#rrggbb"``."""
    return rgb_to_hex(unpack_rgb(key))


# --------------------------------------------------------------------------
# matching regions between content and style segmentations
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class UnmatchedColor:
    """A colour found on one side only (content but no style, or style but not content).

    Attributes:
      color: ``"#rrggbb"``.
      side: ``"content"``: in the content segmentation but in no style
        segmentation; ``"style"``: in at least one style segmentation but not
        in the content.
      fractions: image name -> fraction (0..1) of that image's pixels with
        this colour, for every image where it occurs.
      missing_from: names of the images it is absent from (for ``"content"``,
        all the style segmentations; for ``"style"``, the content).
    """

    color: str
    side: Literal["content", "style"]
    fractions: Mapping[str, float]
    missing_from: tuple[str, ...]

    def __str__(self) -> str:
        where = ", ".join(f"{name} ({100 * f:.2f}%)" for name, f in self.fractions.items())
        if self.side == "content":
            return f"{self.color}: in {where} but in no style segmentation"
        return f"{self.color}: in {where} but not in the content segmentation"


@dataclass(frozen=True, eq=False)
class RegionMatch:
    """Regions shared by the content segmentation and the style segmentations.

    ``R`` is the number of regions kept (colours present in the content *and*
    in at least one style); ``S`` the number of style segmentations. Regions
    are ordered by colour value (``0x000000`` first), so the order does not
    depend on image content.

    Attributes:
      colors: uint8 ``[R, 3]``, the RGB colour of each region.
      content_masks: float32 ``[R, H, W]`` of 0/1; every content pixel is in
        at most one region. Pixels of a dropped content-only colour (see
        ``allow_unmatched``) are in none, so they get no style loss.
      style_masks: per style segmentation, float32 ``[R, Hs, Ws]`` of 0/1. A
        region absent from that style is an all-zero mask: see
        ``style_presence``.
      style_presence: bool ``[S, R]``, whether region ``r`` has any pixel in
        style ``s``. Every region is present in at least one style.
      content_fractions: float32 ``[R]``, fraction of content pixels in each region.
      unmatched: colours found on one side only, with their pixel fractions.
      snapped: True when pixels were snapped to a palette (an explicit
        ``palette``, or noise detected), False for exact colour matching.
      content_name, style_names: the names used in messages.
    """

    colors: np.ndarray
    content_masks: np.ndarray
    style_masks: tuple[np.ndarray, ...]
    style_presence: np.ndarray
    content_fractions: np.ndarray
    unmatched: tuple[UnmatchedColor, ...] = ()
    snapped: bool = False
    content_name: str = "content segmentation"
    style_names: tuple[str, ...] = field(default_factory=tuple)

    @property
    def hex_colors(self) -> list[str]:
        """Region colours as ``"#rrggbb"`` strings, in region order."""
        return [rgb_to_hex(c) for c in self.colors]

    @property
    def num_regions(self) -> int:
        return int(self.colors.shape[0])


def _as_segmentation(seg: np.ndarray, what: str) -> np.ndarray:
    seg = np.asarray(seg)
    if seg.ndim != 3 or seg.shape[-1] != 3:
        raise ValueError(f"{what} must be [H, W, 3] RGB, got shape {seg.shape}")
    if seg.shape[0] == 0 or seg.shape[1] == 0:
        raise ValueError(f"{what} is empty: shape {seg.shape}")
    if seg.dtype != np.uint8:
        if not np.issubdtype(seg.dtype, np.integer) or seg.min() < 0 or seg.max() > 255:
            raise ValueError(f"{what} must be uint8 RGB (0..255), got dtype {seg.dtype}")
        seg = seg.astype(np.uint8)
    return seg


def _is_clean(keys: np.ndarray, min_fraction: float) -> bool:
    """True if no colour of the image is rare: under ``min_fraction`` of its pixels, or a single pixel.

    The single-pixel rule catches noise in images too small for a fraction to
    mean anything (a 30x30 JPEG: one pixel is already 0.11%).
    """
    counts = np.unique(keys, return_counts=True)[1]
    return not (counts < max(min_fraction * keys.size, 2)).any()


def _flat_pixels(seg: np.ndarray, threshold: float) -> np.ndarray:
    """bool [H, W]: pixels whose 4-neighbours all lie within ``threshold`` (RGB distance).

    Used to pick palette candidates from a noisy segmentation: inside a flat
    region JPEG noise is small, whereas the blended colours along a region
    boundary change steeply across it. A straight boundary repeats the same
    blend colour all along its length, so without this filter such blends can
    be as frequent as a small real region.
    """
    f = seg.astype(np.float32)
    ok = np.ones(seg.shape[:2], dtype=bool)
    step = np.linalg.norm(f[1:] - f[:-1], axis=-1) > threshold
    ok[1:] &= ~step
    ok[:-1] &= ~step
    step = np.linalg.norm(f[:, 1:] - f[:, :-1], axis=-1) > threshold
    ok[:, 1:] &= ~step
    ok[:, :-1] &= ~step
    return ok


def _derive_palette(
    segs: Sequence[np.ndarray],
    keys: Sequence[np.ndarray],
    clean: Sequence[bool],
    min_fraction: float,
    tolerance: float,
) -> np.ndarray:
    """Choose palette colours (uint32 keys) from noisy segmentations.

    Candidates are colours that cover at least ``min_fraction`` of one image,
    counted over flat (interior) pixels only. They are taken greedily, most
    trustworthy first, and a candidate within ``tolerance`` of a colour
    already taken is a noisy variant of it and is skipped. "Most trustworthy"
    is: present in the most *clean* images (``clean[i]``: image ``i`` has no
    rare colour, e.g. a hand-made PNG), then present (at ``min_fraction``) in
    the most images, then the largest total fraction. This prefers the exact
    colour of a clean PNG over the slightly shifted colour that JPEG turns a
    flat region into, however large that region is, so a JPEG content
    segmentation snaps onto the colours of clean style ones. The colours of
    clean images are all taken, even within ``tolerance`` of each other: in a
    clean image distinct colours are distinct regions by definition.
    """
    totals: dict[int, float] = {}
    present: dict[int, int] = {}
    present_clean: dict[int, int] = {}
    for seg, k, is_clean in zip(segs, keys, clean):
        n = k.size
        flat = k[_flat_pixels(seg, tolerance)]
        uniq, counts = np.unique(flat, return_counts=True)
        frac = counts / n
        for key, f in zip(uniq.tolist(), frac.tolist()):
            if f >= min_fraction:
                totals[key] = totals.get(key, 0.0) + f
                present[key] = present.get(key, 0) + 1
                present_clean[key] = present_clean.get(key, 0) + int(is_clean)
    order = sorted(totals, key=lambda k: (-present_clean[k], -present[k], -totals[k], k))
    chosen: list[int] = []
    chosen_rgb: list[np.ndarray] = []
    for key in order:
        rgb = unpack_rgb(np.uint32(key)).astype(np.float32)
        if present_clean[key] or all(np.linalg.norm(rgb - c) > tolerance for c in chosen_rgb):
            chosen.append(key)
            chosen_rgb.append(rgb)
    if not chosen:
        raise NstjaxError(
            f"no colour covers {100 * min_fraction:g}% of any segmentation's flat areas;"
            " these do not look like colour-coded segmentations (pass an explicit palette)"
        )
    return np.array(sorted(chosen), dtype=np.uint32)


def _snap(keys: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map every pixel key to the nearest palette key (Euclidean RGB).

    Returns the snapped keys (uint32, shape of ``keys``) and each pixel's
    distance to its palette colour (float32, same shape).
    """
    # Work on distinct colours, not pixels: a JPEG has thousands of colours
    # but millions of pixels.
    uniq, inverse = np.unique(keys.ravel(), return_inverse=True)
    nearest, dist = nearest_colors(unpack_rgb(uniq), unpack_rgb(palette))
    return palette[nearest][inverse].reshape(keys.shape), dist[inverse].reshape(keys.shape)


def match_regions(
    content_seg: np.ndarray,
    style_segs: Sequence[np.ndarray],
    *,
    palette: np.ndarray | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    min_fraction: float = DEFAULT_MIN_FRACTION,
    allow_unmatched: bool = False,
    content_name: str | os.PathLike | None = None,
    style_names: Sequence[str | os.PathLike] | None = None,
) -> RegionMatch:
    """Match the regions of a content segmentation with those of the style segmentations.

    Colour assignment, per pixel:

    * **exact** — when no ``palette`` is given and every colour of every
      segmentation covers at least ``min_fraction`` of that image's pixels,
      and at least 2 pixels (a clean, hand-made PNG), colours are compared
      exactly;
    * **snapped** — when ``palette`` (``K x 3`` uint8) is given, or when some
      colour is rarer than ``min_fraction`` (the many tiny colours of JPEG
      noise or anti-aliased edges), each pixel is snapped to the nearest
      palette colour (Euclidean RGB). Without an explicit palette one is
      derived: the distinct colours covering at least ``min_fraction`` of the
      (flat, non-boundary) pixels of the content or of a style segmentation,
      where a colour within ``tolerance`` of a more common one is merged into
      it; every colour of a segmentation that is itself clean is kept as it
      is. Rarer colours are snapped to the nearest palette colour.

    A region is a colour present in the content and in at least one style.

    * A colour in the content but in no style: by default an NstjaxError
      naming the colour (``#rrggbb``) and the style files that lack it. With
      ``allow_unmatched=True`` it is reported in ``unmatched``, warned about
      and dropped: its content pixels are in no region, so they receive no
      style loss (only the content loss and any TV loss shape them).
    * A colour in a style but not in the content: reported in ``unmatched``
      and dropped silently (nothing in the output would use it).
    * A region may be absent from some of several styles; see
      ``RegionMatch.style_presence`` and :func:`resolve_region_styles`.

    Args:
      content_seg: uint8 ``[H, W, 3]``, at the content image's size (use
        ``load_segmentation(path, shape=content.shape[:2])``).
      style_segs: one uint8 ``[Hs, Ws, 3]`` per style image, each at its own
        style image's size.
      palette: optional uint8 ``[K, 3]`` of allowed region colours.
      tolerance: RGB distance (0..441) under which colours are the same
        region when deriving a palette; also, if more than 10% of an image's
        pixels lie farther than this from every colour of an explicit
        ``palette``, a :class:`MaskWarning` says the palette does not fit.
      min_fraction: fraction of an image's pixels a colour needs to count as
        a region colour rather than noise (default 0.1%). For tiny, heavily
        compressed JPEGs, whose smeared boundaries can look like extra
        regions, pass ``palette``.
      allow_unmatched: drop content-only colours instead of failing.
      content_name, style_names: names (normally the file paths) used in
        messages; default "content segmentation", "style segmentation #i".

    Returns:
      A :class:`RegionMatch`.

    Raises:
      NstjaxError: a content colour is in no style (unless allowed), no
        region remains, or ``palette`` is malformed.
      ValueError: arrays of the wrong shape (a programming error).
    """
    if isinstance(style_segs, np.ndarray) and style_segs.ndim == 3:
        raise ValueError("style_segs must be a sequence of [H, W, 3] arrays, not one array")
    style_segs = list(style_segs)
    if not style_segs:
        raise ValueError("match_regions needs at least one style segmentation")
    cname = "content segmentation" if content_name is None else os.fspath(content_name)
    if style_names is None:
        snames = tuple(f"style segmentation #{i}" for i in range(len(style_segs)))
    else:
        snames = tuple(os.fspath(n) for n in style_names)
        if len(snames) != len(style_segs):
            raise ValueError(f"{len(snames)} style_names for {len(style_segs)} style segmentations")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if not 0 <= min_fraction < 1:
        raise ValueError(f"min_fraction must be in [0, 1), got {min_fraction}")

    segs = [_as_segmentation(content_seg, "content_seg")]
    segs += [_as_segmentation(s, f"style_segs[{i}]") for i, s in enumerate(style_segs)]
    names = (cname, *snames)
    keys = [pack_rgb(s) for s in segs]

    pal: np.ndarray | None = None
    if palette is not None:
        p = np.asarray(palette)
        if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] == 0:
            raise NstjaxError(f"palette must be a non-empty K x 3 array of RGB colours, got shape {p.shape}")
        if not np.issubdtype(p.dtype, np.integer) or p.min() < 0 or p.max() > 255:
            raise NstjaxError("palette colours must be integers in 0..255")
        pal = np.unique(pack_rgb(p.astype(np.uint8)))
    else:
        # Exact matching unless some colour is too rare to be a real region.
        clean = [_is_clean(k, min_fraction) for k in keys]
        if not all(clean):
            pal = _derive_palette(segs, keys, clean, min_fraction, tolerance)

    if pal is not None:
        snapped_keys = []
        for name, k in zip(names, keys):
            sk, dist = _snap(k, pal)
            far = float((dist > tolerance).mean())
            # Only for an explicit palette: with a derived one, far pixels are
            # boundary blends, and a substantial far colour would have become
            # a palette colour itself.
            if palette is not None and far > _FAR_PIXEL_WARN_FRACTION:
                warnings.warn(
                    f"{name}: {100 * far:.1f}% of pixels are farther than {tolerance:g} (RGB distance)"
                    f" from every palette colour; the palette does not seem to fit this segmentation",
                    MaskWarning,
                    stacklevel=2,
                )
            snapped_keys.append(sk)
        keys = snapped_keys

    # Colour -> pixel fraction, per image.
    fractions: list[dict[int, float]] = []
    for k in keys:
        uniq, counts = np.unique(k, return_counts=True)
        fractions.append({int(u): c / k.size for u, c in zip(uniq, counts)})
    content_fr, style_fr = fractions[0], fractions[1:]
    in_style = set().union(*(f.keys() for f in style_fr))

    unmatched: list[UnmatchedColor] = []
    content_only = sorted(set(content_fr) - in_style)
    for key in content_only:
        unmatched.append(
            UnmatchedColor(_key_hex(key), "content", {cname: content_fr[key]}, snames)
        )
    for key in sorted(in_style - set(content_fr)):
        where = {n: f[key] for n, f in zip(snames, style_fr) if key in f}
        unmatched.append(UnmatchedColor(_key_hex(key), "style", where, (cname,)))

    if content_only:
        listing = ", ".join(f"{_key_hex(k)} ({100 * content_fr[k]:.2f}% of pixels)" for k in content_only)
        plural = "s" if len(content_only) > 1 else ""
        if not allow_unmatched:
            raise NstjaxError(
                f"region colour{plural} {listing} of the content segmentation"
                f" {'are' if plural else 'is'} missing from every style segmentation"
                f" ({', '.join(snames)}); paint {'them' if plural else 'it'} into a style segmentation,"
                f" or allow unmatched regions (their pixels then get no style loss)",
                None if content_name is None else cname,
            )
        warnings.warn(
            f"{cname}: region colour{plural} {listing} in no style segmentation"
            f" ({', '.join(snames)}); dropped, those pixels get no style loss",
            MaskWarning,
            stacklevel=2,
        )

    region_keys = np.array(sorted(set(content_fr) & in_style), dtype=np.uint32)
    if region_keys.size == 0:
        raise NstjaxError(
            "the content segmentation shares no region colour with any style segmentation",
            None if content_name is None else cname,
        )

    def masks_for(k: np.ndarray) -> np.ndarray:
        # [R, H, W] 0/1; a broadcast comparison, one plane per region.
        return (k[None, :, :] == region_keys[:, None, None]).astype(np.float32)

    content_masks = masks_for(keys[0])
    style_masks = tuple(masks_for(k) for k in keys[1:])
    presence = np.array(
        [[int(rk) in f for rk in region_keys] for f in style_fr], dtype=bool
    ).reshape(len(style_fr), len(region_keys))
    return RegionMatch(
        colors=unpack_rgb(region_keys).reshape(-1, 3),
        content_masks=content_masks,
        style_masks=style_masks,
        style_presence=presence,
        content_fractions=np.array([content_fr[int(k)] for k in region_keys], dtype=np.float32),
        unmatched=tuple(unmatched),
        snapped=pal is not None,
        content_name=cname,
        style_names=snames,
    )
