"""Array operations on label maps: one-hot encoding, nearest-neighbour resizing, colours, class areas.

Label maps are integer arrays ``[..., H, W]`` of class indices (any leading
batch axes). :func:`one_hot` and :func:`resize_labels` accept NumPy arrays and
JAX arrays (also inside ``jax.jit``) and return the same kind; the others are NumPy.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from ._palette import Palette, load_palette

__all__ = ["class_areas", "colorize", "one_hot", "resize_labels"]


def _is_jax(x) -> bool:
    jax = sys.modules.get("jax")  # a JAX array (or tracer) can only exist once jax is imported
    return jax is not None and isinstance(x, jax.Array)


def one_hot(labels, num_classes: int):
    """One-hot encode class indices: ``[..., H, W]`` ints -> float32 ``[..., H, W, K]``.

    Ids outside ``[0, num_classes)`` give an all-zero vector. NumPy in, NumPy
    out; a JAX array (or a tracer under ``jax.jit``; ``num_classes`` must then be
    static) gives a JAX array.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if _is_jax(labels):
        import jax.numpy as jnp

        return (labels[..., None] == jnp.arange(num_classes, dtype=labels.dtype)).astype(jnp.float32)
    ids = np.asarray(labels)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"labels must hold integer class ids, got dtype {ids.dtype}")
    return (ids[..., None] == np.arange(num_classes, dtype=ids.dtype)).astype(np.float32)


def resize_labels(labels, shape: tuple[int, int]):
    """Resize ``[..., H, W]`` class indices to ``[..., h, w]`` by nearest neighbour.

    Output pixel ``i`` takes input pixel ``floor((i + 0.5) * H / h)`` (pixel
    centres, like Pillow's ``NEAREST``), so ids are copied, never blended, and
    only ids already present can appear. Works on NumPy and JAX arrays.
    """
    h, w = (int(v) for v in shape)
    if h < 1 or w < 1:
        raise ValueError(f"target shape must be positive, got {shape}")
    src = labels if _is_jax(labels) else np.asarray(labels)
    if src.ndim < 2:
        raise ValueError(f"labels must have shape [..., H, W], got {src.shape}")
    if not np.issubdtype(src.dtype, np.integer):
        raise TypeError(f"labels must hold integer class ids, got dtype {src.dtype}; resize images with resize_image")
    in_h, in_w = src.shape[-2:]
    rows = np.minimum((np.arange(h) * 2 + 1) * in_h // (2 * h), in_h - 1)
    cols = np.minimum((np.arange(w) * 2 + 1) * in_w // (2 * w), in_w - 1)
    return src[..., rows[:, None], cols[None, :]]


def _checked_ids(labels, pal: Palette) -> np.ndarray:
    ids = np.asarray(labels)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"labels must hold integer class ids, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= len(pal)):
        raise ValueError(
            f"labels hold ids outside 0-{len(pal) - 1} (palette {pal.name!r}): min {ids.min()}, max {ids.max()}"
        )
    return ids


def colorize(labels, palette: Palette | str | os.PathLike = "landscape") -> np.ndarray:
    """Paint class indices ``[..., H, W]`` in the palette's colours: uint8 ``[..., H, W, 3]`` RGB."""
    pal = load_palette(palette)
    return pal.colors[_checked_ids(labels, pal)]


def class_areas(labels, palette: Palette | str | os.PathLike = "landscape") -> dict[str, float]:
    """Fraction of pixels of each class, ``{name: fraction}`` for every class in palette order.

    Counts over all pixels of ``labels`` (``[..., H, W]``, batch axes included);
    absent classes get 0.0 and the fractions sum to 1.
    """
    pal = load_palette(palette)
    ids = _checked_ids(labels, pal)
    counts = np.bincount(ids.ravel(), minlength=len(pal))
    total = max(int(ids.size), 1)
    return {name: float(counts[i]) / total for i, name in enumerate(pal.names)}
