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

All arrays here are NumPy; masks are float32 with values in [0, 1].
"""

from __future__ import annotations

import os
import re
import struct
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from ..errors import NstjaxError, NstjaxWarning
from ..models import vgg

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

#: A colour must cover at least this fraction of the pixels of one
#: segmentation to become a region when a palette is derived automatically.
DEFAULT_MIN_FRACTION = 0.001

#: Euclidean RGB distance (0..441) under which two colours count as the same
#: region when snapping noisy (e.g. JPEG) segmentations. Hand-made
#: segmentations use clearly distinct colours, far more than 40 apart, while
#: JPEG noise inside a flat region at quality >= 50 stays well below it.
DEFAULT_TOLERANCE = 40.0

# Above this fraction of pixels farther than `tolerance` from every palette
# colour, the palette evidently does not describe the image: warn.
_FAR_PIXEL_WARN_FRACTION = 0.10


class MaskWarning(NstjaxWarning):
    """A mask was resized, a region was dropped, or a region vanished at a layer."""


# --------------------------------------------------------------------------
# colours
# --------------------------------------------------------------------------

_HEX_RE = re.compile(r"#?([0-9a-fA-F]{6})")


def rgb_to_hex(rgb: Sequence[int] | np.ndarray) -> str:
    """``(135, 206, 235)`` -> ``"#87ceeb"`` (lower case, with ``#``)."""
    r, g, b = (int(v) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def hex_to_rgb(text: str) -> tuple[int, int, int]:
    """``"#87ceeb"`` or ``"87CEEB"`` -> ``(135, 206, 235)``.

    Raises NstjaxError for anything that is not six hex digits (an optional
    leading ``#`` and surrounding spaces are allowed).
    """
    m = _HEX_RE.fullmatch(text.strip())
    if m is None:
        raise NstjaxError(f"{text.strip()!r} is not a colour: expected #rrggbb (six hex digits)")
    v = int(m.group(1), 16)
    return (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF


def _pack(rgb: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] -> uint32 [...] keys ``r << 16 | g << 8 | b`` (one int per colour)."""
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _unpack(keys: np.ndarray) -> np.ndarray:
    """uint32 [...] keys -> uint8 [..., 3] colours."""
    keys = np.asarray(keys, dtype=np.uint32)
    return np.stack([(keys >> 16) & 0xFF, (keys >> 8) & 0xFF, keys & 0xFF], axis=-1).astype(np.uint8)


def _key_hex(key: int) -> str:
    return f"#{int(key):06x}"


# --------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------


def _check_shape(shape: tuple[int, int] | None) -> tuple[int, int] | None:
    if shape is None:
        return None
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (height, width), got {shape!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive (height, width), got {shape!r}")
    return h, w


def _open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode ``path``; every failure becomes an NstjaxError naming it."""
    try:
        img = Image.open(path)
        img.load()  # decode now, so truncated files fail here and not later
    except FileNotFoundError:
        raise NstjaxError("no such file", path) from None
    except IsADirectoryError:
        raise NstjaxError("is a directory, not an image", path) from None
    except PermissionError:
        raise NstjaxError("permission denied", path) from None
    except Image.DecompressionBombError as e:
        raise NstjaxError(f"image is too large to load safely ({e})", path) from None
    except Image.UnidentifiedImageError:
        raise NstjaxError("not an image that Pillow can read", path) from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as e:
        # Pillow signals corrupt or truncated data with any of these.
        raise NstjaxError(f"cannot decode image ({e})", path) from None
    try:
        # Apply the EXIF orientation (a lossless rotation/flip) so the mask
        # lines up with the photo as viewers, and the image loader, show it.
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a malformed EXIF block must not stop a mask load
        pass
    return img


def _size_text(w: int, h: int) -> str:
    return f"{w}x{h}"


def load_segmentation(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Load a colour-coded segmentation image.

    Pixels of equal colour belong to the same region. RGBA, LA, P (palette),
    L and 1-bit images are converted to RGB; alpha is ignored. 16-bit and
    floating-point images (Pillow modes ``I``/``F``) are refused: a
    segmentation is a picture of flat colours, save it as 8-bit RGB or
    palette PNG.

    Args:
      path: image file. PNG (or another lossless format) is best; JPEG noise
        is repaired by :func:`match_regions`, but only approximately.
      shape: ``(height, width)`` wanted, normally the size of the image the
        segmentation describes. If the file's size differs it is resized with
        NEAREST neighbour — never interpolated, since a blend of two region
        colours would be a new, meaningless colour — and a :class:`MaskWarning`
        naming the file, its size and the target size is emitted.

    Returns:
      uint8 array ``[H, W, 3]`` (RGB, 0..255), C-contiguous.

    Raises:
      NstjaxError: missing or unreadable file, or an unsupported mode.
    """
    shape = _check_shape(shape)
    img = _open_image(path)
    if img.mode.startswith(("I", "F")):
        raise NstjaxError(
            f"{img.mode} (16-bit or floating-point) segmentation images are not supported;"
            " save it as 8-bit RGB or palette PNG",
            path,
        )
    try:
        img = img.convert("RGB")
    except (OSError, ValueError) as e:
        raise NstjaxError(f"cannot convert image mode {img.mode} to RGB ({e})", path) from None
    if shape is not None and (img.height, img.width) != shape:
        h, w = shape
        warnings.warn(
            f"{os.fspath(path)}: segmentation is {_size_text(img.width, img.height)} (WxH),"
            f" resizing it to {_size_text(w, h)} with nearest neighbour (no colour interpolation)",
            MaskWarning,
            stacklevel=2,
        )
        img = img.resize((w, h), Image.Resampling.NEAREST)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def load_gray_mask(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Load a grayscale mask: the simple, one-mask-per-style form of guidance.

    White (1.0) means "this style here", black (0.0) "not here"; grays give a
    soft, partial weight. Colour images are converted to luminance (ITU-R
    601), alpha is ignored; 16-bit images are scaled by 1/65535 and
    floating-point images are taken as they are, clipped to [0, 1].

    Args:
      path: image file.
      shape: ``(height, width)`` wanted. If the size differs the mask is
        resized BILINEARLY (area-weighted when shrinking, as Pillow does) and
        a :class:`MaskWarning` is emitted. Unlike a colour segmentation,
        interpolating a soft mask is harmless: a blend of two weights is a
        meaningful intermediate weight, and it keeps edges from aliasing.

    Returns:
      float32 array ``[H, W]`` with values in [0, 1].

    Raises:
      NstjaxError: missing or unreadable file.
    """
    shape = _check_shape(shape)
    img = _open_image(path)
    mode = img.mode
    try:
        if mode.startswith("I;16"):
            arr = np.asarray(img, dtype=np.float32) / 65535.0
        elif mode == "I":
            # 32-bit integer: what older Pillow gives for 16-bit PNGs.
            arr = np.asarray(img, dtype=np.float32) / 65535.0
        elif mode == "F":
            arr = np.asarray(img, dtype=np.float32)
        else:
            arr = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as e:
        raise NstjaxError(f"cannot convert image mode {mode} to grayscale ({e})", path) from None
    arr = np.clip(np.nan_to_num(arr, nan=0.0), 0.0, 1.0).astype(np.float32)
    if shape is not None and arr.shape != shape:
        h, w = shape
        warnings.warn(
            f"{os.fspath(path)}: mask is {_size_text(arr.shape[1], arr.shape[0])} (WxH),"
            f" resizing it to {_size_text(w, h)} bilinearly",
            MaskWarning,
            stacklevel=2,
        )
        resized = Image.fromarray(arr, mode="F").resize((w, h), Image.Resampling.BILINEAR)
        # Bilinear weights are convex, but clip the float round-off anyway.
        arr = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    return np.ascontiguousarray(arr, dtype=np.float32)


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
        rgb = _unpack(np.uint32(key)).astype(np.float32)
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
    uniq, inverse = np.unique(keys.ravel(), return_inverse=True)
    # Work on distinct colours, not pixels: a JPEG has thousands of colours
    # but millions of pixels.
    d = np.linalg.norm(
        _unpack(uniq).astype(np.float32)[:, None, :] - _unpack(palette).astype(np.float32)[None, :, :],
        axis=-1,
    )
    nearest = d.argmin(axis=1)
    snapped = palette[nearest][inverse].reshape(keys.shape)
    dist = d[np.arange(len(uniq)), nearest][inverse].reshape(keys.shape)
    return snapped, dist


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
    keys = [_pack(s) for s in segs]

    pal: np.ndarray | None = None
    if palette is not None:
        p = np.asarray(palette)
        if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] == 0:
            raise NstjaxError(f"palette must be a non-empty K x 3 array of RGB colours, got shape {p.shape}")
        if not np.issubdtype(p.dtype, np.integer) or p.min() < 0 or p.max() > 255:
            raise NstjaxError("palette colours must be integers in 0..255")
        pal = np.unique(_pack(p.astype(np.uint8)))
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
        colors=_unpack(region_keys).reshape(-1, 3),
        content_masks=content_masks,
        style_masks=style_masks,
        style_presence=presence,
        content_fractions=np.array([content_fr[int(k)] for k in region_keys], dtype=np.float32),
        unmatched=tuple(unmatched),
        snapped=pal is not None,
        content_name=cname,
        style_names=snames,
    )


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


# --------------------------------------------------------------------------
# which style image(s) each region takes its style from
# --------------------------------------------------------------------------

_INDEX_RE = re.compile(r"[+-]?\d+")


def parse_region_styles(spec: str | None, n_styles: int) -> dict[str, tuple[int, ...]]:
    """Parse a region -> style-image assignment such as ``"#87ceeb:0,#228b22:1"``.

    Entries are ``COLOUR:INDEX`` separated by commas; ``COLOUR`` is six hex
    digits with an optional ``#`` (case-insensitive), ``INDEX`` a 0-based
    style-image index. A colour listed more than once takes its style from all
    the listed images. Spaces and empty entries are ignored.

    Regions not listed (and all regions when ``spec`` is empty or None) use
    the default of :func:`resolve_region_styles`: with one style image every
    region uses style 0; with several, a region takes its style from every
    style image whose segmentation contains its colour.

    Args:
      spec: the specification, or None / ``""`` for the default.
      n_styles: number of style images (>= 1).

    Returns:
      ``{"#rrggbb": (index, ...)}``, colours in lower case, indices sorted and
      distinct; ``{}`` for the default.

    Raises:
      NstjaxError: a bad colour, an index that is not a whole number or is
        out of range, or an entry without ``:``.
    """
    if n_styles < 1:
        raise ValueError(f"n_styles must be >= 1, got {n_styles}")
    result: dict[str, set[int]] = {}
    if spec is None:
        return {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        if item.count(":") != 1:
            raise NstjaxError(
                f"region styles entry {item!r}: expected COLOUR:INDEX, e.g. #87ceeb:0"
            )
        colour_text, index_text = (s.strip() for s in item.split(":"))
        try:
            colour = rgb_to_hex(hex_to_rgb(colour_text))
        except NstjaxError as e:
            raise NstjaxError(f"region styles entry {item!r}: {e.problem}") from None
        if not _INDEX_RE.fullmatch(index_text):
            raise NstjaxError(
                f"region styles entry {item!r}: style index {index_text!r} is not a whole number"
            )
        index = int(index_text)
        if not 0 <= index < n_styles:
            valid = "0" if n_styles == 1 else f"0..{n_styles - 1}"
            raise NstjaxError(
                f"region styles entry {item!r}: style index {index} is out of range;"
                f" there {'is 1 style image' if n_styles == 1 else f'are {n_styles} style images'}"
                f" (valid: {valid})"
            )
        result.setdefault(colour, set()).add(index)
    return {c: tuple(sorted(ix)) for c, ix in result.items()}


def resolve_region_styles(
    match: RegionMatch,
    assignment: Mapping[str, Sequence[int]] | None = None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> np.ndarray:
    """Decide which style image(s) each region of ``match`` takes its style from.

    Default (regions not in ``assignment``): with one style image, style 0;
    with several, every style image whose segmentation contains the region
    (``match.style_presence``). A region listed in ``assignment`` uses exactly
    the listed style images.

    An assignment colour is matched to the region of the same colour, or, if
    none (a JPEG segmentation may have shifted a region's colour slightly), to
    the nearest region colour within ``tolerance``.

    Args:
      match: from :func:`match_regions`.
      assignment: from :func:`parse_region_styles` (``{"#rrggbb": (i, ...)}``).

    Returns:
      bool ``[S, R]``: ``True`` where region ``r`` takes style from image ``s``.
      Every region has at least one ``True``, always where that style's
      segmentation contains the region.

    Raises:
      NstjaxError: a listed colour is not a region, or a listed style image's
        segmentation does not contain that region (there would be no style
        pixels to take a Gram matrix from).
    """
    use = match.style_presence.copy()
    if not assignment:
        return use
    n_styles = use.shape[0]
    colors = match.colors.astype(np.float32)
    for colour, indices in assignment.items():
        rgb = np.array(hex_to_rgb(colour), dtype=np.float32)
        d = np.linalg.norm(colors - rgb, axis=1) if len(colors) else np.array([])
        if d.size == 0 or d.min() > tolerance:
            raise NstjaxError(
                f"region styles: {rgb_to_hex(rgb.astype(int))} is not a region shared by the content"
                f" and a style segmentation (regions: {', '.join(match.hex_colors)})"
            )
        r = int(d.argmin())
        use[:, r] = False
        for i in indices:
            if not 0 <= i < n_styles:
                raise NstjaxError(f"region styles: style index {i} is out of range (0..{n_styles - 1})")
            if not match.style_presence[i, r]:
                raise NstjaxError(
                    f"region styles: region {match.hex_colors[r]} is assigned style {i},"
                    f" but {match.style_names[i]} has no pixel of that colour",
                )
            use[i, r] = True
    return use
