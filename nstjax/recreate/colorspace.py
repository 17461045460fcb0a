"""CIELAB conversion and a small seeded k-means: what the score and the painting labeller measure with.

Colours are compared in CIELAB (D65 white, sRGB primaries): Euclidean distance
there (ΔE*ab, CIE76) follows perceived colour difference far better than RGB,
so "nearer the sky's colours" means what a viewer would say.
"""

from __future__ import annotations

import numpy as np

__all__ = ["kmeans", "nearest_center", "srgb_to_lab"]

# sRGB (linear) -> XYZ, D65 (IEC 61966-2-1).
_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]],
    dtype=np.float64,
)
_D65 = np.array([0.95047, 1.0, 1.08883])


def srgb_to_lab(rgb) -> np.ndarray:
    """sRGB in [0, 1] ``[..., 3]`` -> CIELAB ``[..., 3]`` float32 (L* in 0..100, a*, b* about -128..127).

    Values outside [0, 1] are clipped first. D65 reference white.
    """
    x = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)
    linear = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _D65
    eps = (6 / 29) ** 3
    f = np.where(xyz > eps, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)
    return lab.astype(np.float32)


def nearest_center(points: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For points ``[N, D]`` and centres ``[K, D]``: (index int64 [N], squared distance float32 [N])."""
    points = np.asarray(points, np.float32)
    centers = np.asarray(centers, np.float32)
    # |p - c|² = |p|² - 2 p·c + |c|², in chunks so a large image never builds an [N, K, D] array.
    out_i = np.empty(len(points), np.int64)
    out_d = np.empty(len(points), np.float32)
    c2 = (centers**2).sum(1)
    for start in range(0, len(points), 1 << 16):
        p = points[start : start + (1 << 16)]
        d = (p**2).sum(1)[:, None] - 2 * p @ centers.T + c2[None]
        out_i[start : start + len(p)] = d.argmin(1)
        out_d[start : start + len(p)] = np.maximum(d.min(1), 0.0)
    return out_i, out_d


def kmeans(
    points, k: int, *, seed: int = 0, iterations: int = 30, max_points: int = 20000
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded k-means (k-means++ start, Lloyd iterations) of ``points`` float ``[N, D]``.

    At most ``max_points`` points (a seeded random subset) fit the centres; every
    point is then assigned to its nearest centre. ``k`` is lowered to the number of
    distinct points when there are fewer.

    Returns:
      (centres float32 [k', D], assignment int64 [N]), centres sorted by their
      first coordinate (L* for Lab points) so the order does not depend on the seed's luck.
    """
    points = np.asarray(points, np.float32)
    if points.ndim != 2 or len(points) == 0:
        raise ValueError(f"points must be a non-empty [N, D] array, got shape {points.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rng = np.random.default_rng(seed)
    fit = points if len(points) <= max_points else points[rng.choice(len(points), max_points, replace=False)]
    distinct = np.unique(fit, axis=0)
    k = min(k, len(distinct))
    centers = [distinct[rng.integers(len(distinct))]]
    for _ in range(1, k):
        _, d = nearest_center(distinct, np.stack(centers))
        total = float(d.sum())
        if total <= 0:
            break
        centers.append(distinct[rng.choice(len(distinct), p=d / total)])
    centers = np.stack(centers)
    for _ in range(iterations):
        assign, _ = nearest_center(fit, centers)
        new = np.stack([fit[assign == j].mean(0) if np.any(assign == j) else centers[j] for j in range(len(centers))])
        if np.allclose(new, centers, atol=1e-4):
            centers = new
            break
        centers = new
    centers = centers[np.argsort(centers[:, 0], kind="stable")].astype(np.float32)
    assign, _ = nearest_center(points, centers)
    return centers, assign
