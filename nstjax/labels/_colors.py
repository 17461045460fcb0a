"""Colour values of label maps: ``#rrggbb`` text, packed integer keys, the nearest reference colour.

Colours are uint8 RGB triples (0..255). A *key* packs one colour into a single
integer ``r << 16 | g << 8 | b`` (uint32), so a whole image's colours can be
counted, compared and looked up with integer ``np.unique``; keys sort in the
order of their ``#rrggbb`` text. Distances are Euclidean in RGB (0..441).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ..errors import NstjaxError

__all__ = ["hex_to_rgb", "nearest_colors", "pack_rgb", "rgb_to_hex", "unpack_rgb"]

_HEX = re.compile(r"#?([0-9a-fA-F]{6})")
_BLOCK = 65536  # colours compared per step: bounded memory for photos with millions of colours


def rgb_to_hex(rgb: Sequence[int] | np.ndarray) -> str:
    """``(135, 206, 235)`` -> ``"#87ceeb"`` (lower case, with ``#``)."""
    r, g, b = (int(v) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def hex_to_rgb(text: str) -> tuple[int, int, int]:
    """``"#87ceeb"`` or ``"87CEEB"`` -> ``(135, 206, 235)``.

    Raises NstjaxError for anything that is not six hex digits (an optional
    leading ``#`` and surrounding spaces are allowed).
    """
    m = _HEX.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        shown = text.strip() if isinstance(text, str) else text
        raise NstjaxError(f"{shown!r} is not a colour: expected #rrggbb (six hex digits)")
    v = int(m.group(1), 16)
    return (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """uint8 ``[..., 3]`` colours -> uint32 ``[...]`` keys ``r << 16 | g << 8 | b``."""
    rgb = np.asarray(rgb).astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def unpack_rgb(keys: np.ndarray) -> np.ndarray:
    """uint32 ``[...]`` keys -> uint8 ``[..., 3]`` colours (the inverse of :func:`pack_rgb`)."""
    keys = np.asarray(keys, dtype=np.uint32)
    return np.stack([(keys >> 16) & 0xFF, (keys >> 8) & 0xFF, keys & 0xFF], axis=-1).astype(np.uint8)


def nearest_colors(colors: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nearest of ``reference`` (uint8 ``[K, 3]``, K >= 1) for each of ``colors`` (uint8 ``[U, 3]``).

    Returns (int64 ``[U]`` index into ``reference``, float32 ``[U]`` Euclidean RGB
    distance to it); ties go to the lower index. Work is per distinct colour, not
    per pixel: pass the ``np.unique`` colours of an image, not its pixels.
    """
    ref = np.asarray(reference).astype(np.float32).reshape(-1, 3)
    colors = np.asarray(colors).reshape(-1, 3)
    index = np.empty(len(colors), np.int64)
    dist = np.empty(len(colors), np.float32)
    for start in range(0, len(colors), _BLOCK):
        block = colors[start : start + _BLOCK].astype(np.float32)
        d2 = ((block[:, None, :] - ref[None, :, :]) ** 2).sum(-1)  # exact: integer values < 2**24
        index[start : start + len(block)] = d2.argmin(1)
        dist[start : start + len(block)] = np.sqrt(d2.min(1))
    return index, dist
