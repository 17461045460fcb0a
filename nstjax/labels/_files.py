"""Label-map files: colour-coded sketches and index PNGs in, colour or index PNGs out.

A label map in memory is an int32 ``[H, W]`` array of class indices into a
:class:`~nstjax.labels.Palette` (0 .. K-1). On disk it is either

* a **colour sketch** (``kind="color"``): an RGB image painted with the
  palette's flat colours. Colours within ``tolerance`` of a palette colour snap
  to it (JPEG noise); thin bands of blended colours along region edges
  (anti-aliasing, JPEG ringing), at most ``edge_width`` pixels from a snapped
  pixel, take the class of the neighbouring region whose colour they are
  closest to, and so do inexact seams that snapped to a third class. Exact
  palette colours are never changed. Any other colour is an error that lists
  it; or
* an **index PNG** (``kind="index"``): a single-channel image (mode ``P``,
  ``L``, ``I;16`` or ``I``) whose pixel values are the class indices.

Every problem with a file is an :class:`~nstjax.errors.NstjaxError` whose one
line names the file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import NstjaxError
from ..io.atomic import atomic_path
from ..io.images import check_output_path
from ._colors import nearest_colors, pack_rgb, rgb_to_hex, unpack_rgb
from ._palette import Palette, load_palette

__all__ = [
    "DEFAULT_EDGE_WIDTH",
    "DEFAULT_TOLERANCE",
    "LabelKind",
    "read_label_map",
    "save_label_map",
]

LabelKind = Literal["auto", "color", "index"]

#: Euclidean RGB distance (0-255 scale) within which a sketch colour snaps to the
#: nearest palette colour. JPEG noise inside a flat region at quality >= 75 stays
#: well below it; distinct sketch colours are picked by hand and far apart (the
#: GauGAN palette's closest pair, tree and dirt, is 12 apart, so colours snap to
#: the *nearest* entry, not to any entry within reach).
DEFAULT_TOLERANCE = 40.0

#: Width in pixels of the band along region edges where blended colours
#: (anti-aliasing, JPEG ringing) are given a neighbouring region's class.
DEFAULT_EDGE_WIDTH = 2

_LIST_CAP = 8  # unknown colours / bad ids listed in one error line
_INDEX_MODES = frozenset({"1", "L", "I", "I;16", "I;16L", "I;16B", "I;16N", "LA", "PA"})
_LOSSLESS_COLOR_SUFFIXES = frozenset({".png", ".bmp", ".tif", ".tiff"})


# --------------------------------------------------------------------------- #
# Reading
# --------------------------------------------------------------------------- #


def read_label_map(
    path: str | os.PathLike,
    palette: Palette | str | os.PathLike = "landscape",
    *,
    kind: LabelKind = "auto",
    tolerance: float = DEFAULT_TOLERANCE,
    edge_width: int = DEFAULT_EDGE_WIDTH,
) -> np.ndarray:
    """Read a label-map file as int32 ``[H, W]`` class indices into ``palette``.

    Args:
      path: a colour sketch (any image Pillow reads; PNG recommended) or an index PNG.
      palette: a :class:`Palette`, a shipped palette's name, or a palette JSON path.
      kind: ``"color"``, ``"index"``, or ``"auto"``: single-channel images
        (modes ``1``, ``L``, ``I;16``, ``I``) are index maps, RGB(A) images are
        sketches, and a paletted (``P``) image is a sketch when at least half of
        its pixels are exactly palette colours (so an index PNG written by
        :func:`save_label_map`, which embeds the palette, reads the same either
        way), otherwise an index map.
      tolerance: colour sketches: largest Euclidean RGB distance (0-255) at which
        a colour snaps to its nearest palette colour; 0 accepts exact colours only.
      edge_width: colour sketches: off-palette pixels within this many pixels of
        a snapped pixel are edge blends and take the class of the neighbouring
        region whose colour is nearest; snapped but inexact seams with no 3x3
        block of their class beside them (a blend that fell near a third colour)
        are decided the same way. 0 turns both off.

    Raises:
      NstjaxError: the file is missing, not an image, truncated, or over Pillow's
        decompression-bomb limit (about 89 megapixels); a sketch has colours that
        are not in the palette (each listed with its pixel count and nearest
        palette entry); an index map holds ids outside 0 .. K-1.
    """
    if kind not in ("auto", "color", "index"):
        raise ValueError(f"kind must be 'auto', 'color' or 'index', got {kind!r}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    if isinstance(edge_width, bool) or not isinstance(edge_width, int) or edge_width < 0:
        raise ValueError(f"edge_width must be an int >= 0, got {edge_width!r}")
    pal = load_palette(palette)
    path = Path(path)
    im = _open(path)
    with im:
        if kind == "auto":
            kind = _detect_kind(im, pal)
        if kind == "index":
            ids = _index_array(im, path)
        else:
            rgb = np.asarray(im.convert("RGB"))
    if kind == "index":
        return _check_ids(ids, pal, path)
    return _snap_colors(rgb, pal, path, float(tolerance), edge_width)


def _open(path: Path) -> Image.Image:
    """Open and decode an image file upright; file problems become one-line NstjaxErrors."""
    if not path.exists():
        raise NstjaxError("file not found", path)
    if path.is_dir():
        raise NstjaxError("is a directory, not a label-map image", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)  # Pillow's bomb guard (about 89 MP), made an error, bounds the size
            try:
                im.load()
            except BaseException:
                im.close()
                raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise NstjaxError(f"image too large ({exc})", path) from exc
    except PermissionError as exc:
        raise NstjaxError("permission denied: cannot read the file", path) from exc
    except UnidentifiedImageError as exc:
        raise NstjaxError("not an image file (or a format Pillow cannot read, or a damaged header)", path) from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        raise NstjaxError(f"corrupt or truncated image ({exc})", path) from exc
    try:
        upright = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a broken EXIF block: keep the stored orientation
        return im
    if upright is not im:
        im.close()
    return upright


def _detect_kind(im: Image.Image, pal: Palette) -> Literal["color", "index"]:
    if im.mode in _INDEX_MODES:
        return "index"
    if im.mode != "P":
        return "color"
    # A paletted image: a sketch saved in indexed colour, or an index map with its own colour table.
    ids = np.asarray(im)
    table = np.asarray(im.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)
    used, counts = np.unique(ids, return_counts=True)
    used_ok = used < len(table)
    colors = np.zeros((len(used), 3), np.uint8)
    colors[used_ok] = table[used[used_ok]]
    exact = (pack_rgb(colors)[:, None] == pack_rgb(pal.colors)[None, :]).any(axis=1) & used_ok
    return "color" if counts[exact].sum() * 2 >= ids.size else "index"


def _index_array(im: Image.Image, path: Path) -> np.ndarray:
    mode = im.mode
    if mode in ("LA", "PA"):
        im = im.getchannel(0)
    elif mode not in _INDEX_MODES and mode != "P":
        raise NstjaxError(
            f"not an index label map: its pixels (mode {mode}) are colours, not class ids; "
            "read it as a colour sketch",
            path,
        )
    return np.asarray(im).astype(np.int64)


def _check_ids(ids: np.ndarray, pal: Palette, path: Path) -> np.ndarray:
    k = len(pal)
    bad = (ids < 0) | (ids >= k)
    if bad.any():
        values, counts = np.unique(ids[bad], return_counts=True)
        order = np.argsort(-counts, kind="stable")
        shown = ", ".join(f"{int(values[i])} ({int(counts[i])} px)" for i in order[:_LIST_CAP])
        more = f", and {len(values) - _LIST_CAP} more ids" if len(values) > _LIST_CAP else ""
        raise NstjaxError(
            f"class ids out of range for the {pal.name!r} palette ({k} classes, ids 0-{k - 1}): {shown}{more}", path
        )
    return ids.astype(np.int32)


def _snap_colors(rgb: np.ndarray, pal: Palette, path: Path, tolerance: float, edge_width: int) -> np.ndarray:
    h, w, _ = rgb.shape
    keys = pack_rgb(rgb).ravel()
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(h, w)
    uniq_rgb = unpack_rgb(uniq)
    nearest, dist = nearest_colors(uniq_rgb, pal.colors)
    known = dist <= tolerance
    labels = np.where(known, nearest, -1)[inverse]
    if (dist == 0).all():  # a clean flat-colour sketch: nothing to snap
        return labels.astype(np.int32)

    unknown = labels < 0
    area = _erode(unknown, edge_width)  # off-palette pixels farther than edge_width from any snapped pixel
    if area.any():
        bad = np.unique(inverse[area])
        bad = bad[np.argsort(-counts[bad], kind="stable")]
        shown = ", ".join(
            f"{rgb_to_hex(uniq_rgb[u])} ({int(counts[u])} px, nearest {pal.names[nearest[u]]} "
            f"{pal.hex(nearest[u])} at distance {dist[u]:.0f})"
            for u in bad[:_LIST_CAP]
        )
        more = f", and {len(bad) - _LIST_CAP} more colours" if len(bad) > _LIST_CAP else ""
        hint = ""
        if np.all(uniq_rgb[bad][:, :1] == uniq_rgb[bad]) and int(uniq_rgb[bad].max()) < len(pal):
            hint = "; grey values below the class count: is this an index map saved as RGB? read it with kind='index'"
        raise NstjaxError(
            f"{len(bad)} colour{'s' if len(bad) != 1 else ''} not in the {pal.name!r} palette "
            f"(tolerance {tolerance:g}): {shown}{more}{hint}",
            path,
        )
    if edge_width == 0:
        return labels.astype(np.int32)
    # A blend of two region colours can land within tolerance of a third palette colour
    # (grass + flower ~ sand), and JPEG noise can tip a pixel to a near-twin colour (cloud ~
    # snow, tree ~ dirt), leaving seams and specks of classes nobody painted. Inexact pixels
    # with no 3x3 block of their class beside them are such seams: decide them again, with
    # the off-palette edge pixels, from the neighbouring regions. Exact colours are kept.
    thin = ~_supported(labels) & (dist[inverse] > 0) & ~unknown
    snapped = labels.copy()
    labels[thin] = -1
    labels = _fill_edges(labels, rgb, pal, edge_width + 1)
    left = labels < 0
    labels[left] = snapped[left]  # nothing reached (isolated pixels): keep the plain snap
    if (labels < 0).any():  # off-palette pixels whose way in went through restored pixels
        labels = _fill_edges(labels, rgb, pal, edge_width)
    return labels.astype(np.int32)


def _supported(labels: np.ndarray) -> np.ndarray:
    """Pixels next to (or in) a 3x3 block of their own class: the morphological opening of each class."""
    h, w = labels.shape
    padded = np.pad(labels, 1, mode="edge")
    shifts = [(dy, dx) for dy in range(3) for dx in range(3)]
    core = labels >= 0
    for dy, dx in shifts:
        core &= padded[dy : dy + h, dx : dx + w] == labels
    core_pad = np.pad(core, 1)
    out = np.zeros((h, w), bool)
    for dy, dx in shifts:
        out |= core_pad[dy : dy + h, dx : dx + w] & (padded[dy : dy + h, dx : dx + w] == labels)
    return out


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion by a (2r+1)-square; outside the image counts as inside the mask."""
    if radius == 0:
        return mask.copy()
    out = mask
    for axis in (0, 1):  # the square is separable: erode rows, then columns
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in range(2)], constant_values=True)
        n = out.shape[axis]
        acc = np.ones_like(out)
        for shift in range(2 * radius + 1):
            acc &= padded[shift : shift + n] if axis == 0 else padded[:, shift : shift + n]
        out = acc
    return out


_NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def _fill_edges(labels: np.ndarray, rgb: np.ndarray, pal: Palette, steps: int) -> np.ndarray:
    """Give each unlabelled (-1) pixel the class of an 8-neighbour whose palette colour is closest to its colour.

    Grows the labelled area one pixel per step; ``steps`` reaches every pixel
    within that (chessboard) distance of a labelled one.
    """
    h, w = labels.shape
    ref = pal.colors.astype(np.float32)
    for _ in range(steps):
        rows, cols = np.nonzero(labels < 0)
        if rows.size == 0:
            break
        padded = np.pad(labels, 1, constant_values=-1)
        colour = rgb[rows, cols].astype(np.float32)
        best = np.full(rows.size, -1, np.int64)
        best_d = np.full(rows.size, np.inf, np.float32)
        for dy, dx in _NEIGHBOURS:
            cand = padded[rows + 1 + dy, cols + 1 + dx]
            d = np.where(cand >= 0, ((colour - ref[np.maximum(cand, 0)]) ** 2).sum(-1), np.inf)
            take = d < best_d
            best[take], best_d[take] = cand[take], d[take]
        labels = labels.copy()
        labels[rows, cols] = best
    return labels


# --------------------------------------------------------------------------- #
# Writing
# --------------------------------------------------------------------------- #


def save_label_map(
    path: str | os.PathLike,
    labels,
    palette: Palette | str | os.PathLike = "landscape",
    *,
    kind: Literal["color", "index"] = "color",
) -> Path:
    """Write int ``[H, W]`` class indices as a colour sketch or an index PNG, atomically.

    ``kind="color"``: an RGB image in the palette's colours (``.png``, ``.bmp``
    or ``.tif``; lossy formats would blur the colours). ``kind="index"``: a
    ``.png`` whose pixel values are the class indices: mode ``P`` with the
    palette embedded (so viewers show the sketch colours) when K <= 256, else
    16-bit greyscale. :func:`read_label_map` reads either back exactly.

    Returns:
      ``Path(path)``.

    Raises:
      NstjaxError: a bad extension or output directory, or an OS error while writing.
      ValueError: ``labels`` is not a 2-D integer array of ids in [0, K).
    """
    if kind not in ("color", "index"):
        raise ValueError(f"kind must be 'color' or 'index', got {kind!r}")
    pal = load_palette(palette)
    path = Path(path)
    suffix = path.suffix.lower()
    allowed = _LOSSLESS_COLOR_SUFFIXES if kind == "color" else {".png"}
    if suffix not in allowed:
        raise NstjaxError(
            f"a {kind} label map must be written as {', '.join(sorted(allowed))} "
            f"(got {path.suffix or 'no extension'}; lossy formats blur class colours)",
            path,
        )
    check_output_path(path)
    ids = np.asarray(labels)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"labels must be an integer array [H, W], got {ids.dtype} {ids.shape}")
    k = len(pal)
    if ids.size and (ids.min() < 0 or ids.max() >= k):
        raise ValueError(f"labels hold ids outside 0-{k - 1} (palette {pal.name!r}): min {ids.min()}, max {ids.max()}")
    if kind == "color":
        image = Image.fromarray(pal.colors[ids])
    elif k <= 256:
        image = Image.frombytes("P", (ids.shape[1], ids.shape[0]), np.ascontiguousarray(ids, np.uint8).tobytes())
        image.putpalette(pal.colors.ravel().tolist())
    else:
        image = Image.fromarray(ids.astype(np.uint16))
    fmt = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}[suffix]
    try:
        with atomic_path(path) as tmp:
            image.save(tmp, format=fmt)
    except OSError as exc:
        raise NstjaxError(f"cannot write label map: {exc.strerror or exc}", path) from exc
    return path
