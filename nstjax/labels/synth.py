"""Procedural landscape (label map, photo) pairs: synthetic training and test data, NumPy only.

Each scene is drawn from a seed: a sky gradient with clouds, ridged mountains
with snow caps, hills, a meadow with flower speckles, dirt patches, a road,
water (sea with a sand beach, a winding river, a lake), rocks, bushes, houses
and trees, in the ``landscape`` palette. The photo paints every class with its
own texture statistics: a mean colour, noise of a class-specific scale,
direction and amplitude, and a vertical gradient (sky lighter towards the
horizon, sea darker towards the viewer, ...), so a label-conditioned model
has a measurable class -> colour mapping to learn. :func:`expected_class_colors`
gives each class's mean photo colour for tests of such models.

The data are **synthetic**: flat geometric shapes and value noise, not photos.
They are for tests, demos and smoke runs, never a stand-in for a real dataset.

Deterministic per seed (NumPy's PCG64); about 5-10 ms per 128 x 128 pair on one CPU core.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import NstjaxError
from ..io.atomic import atomic_path
from ..io.images import save_image
from ._files import save_label_map
from ._palette import Palette, load_palette

__all__ = [
    "MAX_SYNTH_SIZE",
    "MIN_SYNTH_SIZE",
    "SynthDataset",
    "SynthProgress",
    "expected_class_colors",
    "synth_landscape",
    "synth_palette",
    "write_synth_dataset",
]

#: Smallest and largest side (pixels) of a synthetic scene.
MIN_SYNTH_SIZE = 16
MAX_SYNTH_SIZE = 4096

class _Texture(NamedTuple):
    """How one class is painted in the photo.

    mean: RGB in [0, 1]. tint: how the (grey) noise spreads over R, G, B.
    noise: amplitude of each shared noise field: coarse, medium, fine, grain,
    horizontal streaks (waves), vertical streaks (grass blades). grad: RGB change
    from the top to the bottom of the image, centred on the class's own pixels,
    so it shapes the texture without moving the mean.
    """

    mean: tuple[float, float, float]
    tint: tuple[float, float, float]
    noise: tuple[float, float, float, float, float, float]
    grad: tuple[float, float, float]


_T = _Texture
_TEXTURES: dict[str, _Texture] = {
    "sky": _T((0.47, 0.66, 0.90), (0.8, 0.9, 1.0), (0.015, 0, 0, 0.004, 0, 0), (0.30, 0.22, 0.08)),
    "cloud": _T((0.86, 0.87, 0.90), (1.0, 1.0, 1.0), (0.03, 0.04, 0.01, 0.005, 0, 0), (-0.30, -0.30, -0.25)),
    "mountain": _T((0.32, 0.34, 0.44), (0.9, 0.9, 1.0), (0.03, 0.05, 0.035, 0.01, 0, 0), (0.10, 0.10, 0.08)),
    "snow": _T((0.95, 0.96, 0.99), (1.0, 1.0, 0.9), (0, 0.015, 0.012, 0.004, 0, 0), (-0.10, -0.08, -0.04)),
    "hill": _T((0.50, 0.52, 0.28), (1.0, 1.0, 0.6), (0.03, 0.04, 0.02, 0.01, 0, 0), (0.06, 0.04, 0.0)),
    "rock": _T((0.66, 0.64, 0.60), (1.0, 1.0, 1.0), (0, 0.05, 0.06, 0.02, 0, 0), (-0.10, -0.10, -0.10)),
    "tree": _T((0.13, 0.24, 0.10), (0.6, 1.0, 0.5), (0, 0.02, 0.05, 0.02, 0, 0), (0.0, 0.0, 0.0)),
    "bush": _T((0.30, 0.42, 0.17), (0.7, 1.0, 0.5), (0, 0.03, 0.05, 0.015, 0, 0), (0.0, 0.0, 0.0)),
    "grass": _T((0.45, 0.66, 0.24), (0.8, 1.0, 0.5), (0.03, 0.02, 0, 0.015, 0, 0.06), (-0.08, -0.12, -0.04)),
    "flower": _T((0.92, 0.42, 0.70), (1.0, 0.8, 1.0), (0, 0, 0.04, 0.02, 0, 0), (0.0, 0.0, 0.0)),
    "dirt": _T((0.45, 0.32, 0.20), (1.0, 0.8, 0.6), (0.02, 0.04, 0.03, 0.015, 0, 0), (0.0, 0.0, 0.0)),
    "sand": _T((0.87, 0.79, 0.58), (1.0, 0.95, 0.8), (0, 0.02, 0.02, 0.012, 0, 0), (0.0, 0.0, 0.0)),
    "road": _T((0.45, 0.44, 0.43), (1.0, 1.0, 1.0), (0, 0.015, 0.01, 0.02, 0, 0), (0.04, 0.04, 0.04)),
    "sea": _T((0.12, 0.30, 0.50), (0.6, 0.9, 1.0), (0, 0, 0, 0.006, 0.05, 0), (-0.10, -0.12, -0.14)),
    "river": _T((0.22, 0.42, 0.40), (0.7, 1.0, 1.0), (0, 0, 0, 0.006, 0.05, 0), (-0.06, -0.06, -0.06)),
    "water": _T((0.25, 0.45, 0.64), (0.7, 0.9, 1.0), (0, 0.01, 0, 0.005, 0.035, 0), (-0.06, -0.06, -0.06)),
    "house": _T((0.76, 0.36, 0.26), (1.0, 0.7, 0.6), (0, 0, 0.02, 0.02, 0.04, 0), (0.0, 0.0, 0.0)),
}

# Each image shifts every class's mean by up to this much per channel (lighting variety).
_JITTER = 0.02


def synth_palette() -> Palette:
    """The palette of the synthetic label maps: ``load_palette("landscape")``."""
    return _landscape()


@lru_cache(maxsize=1)
def _landscape() -> Palette:
    pal = load_palette("landscape")
    missing = set(pal.names) ^ set(_TEXTURES)
    if missing:  # the palette file and the texture table must describe the same classes
        raise RuntimeError(f"landscape palette and synth textures disagree on: {sorted(missing)}")
    return pal


def expected_class_colors() -> np.ndarray:
    """Mean photo colour of each class, float32 ``[K, 3]`` RGB in [0, 1], in ``landscape`` palette order.

    Over many pixels (and images) the photo's pixels of class ``k`` average to
    ``expected_class_colors()[k]`` within about 0.03 per channel (per-image
    lighting jitter of +-0.02, noise, and a little clipping near white).
    """
    pal = _landscape()
    return np.array([_TEXTURES[n].mean for n in pal.names], dtype=np.float32)


# --------------------------------------------------------------------------- #
# Noise
# --------------------------------------------------------------------------- #


def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def _axis_weights(n: int, cells: float) -> tuple[np.ndarray, np.ndarray]:
    pos = (np.arange(n, dtype=np.float32) + 0.5) * (cells / n)
    i0 = np.floor(pos).astype(np.int64)
    return i0, _smoothstep(pos - i0)


def _noise2d(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[float, float]) -> np.ndarray:
    """Value noise: a random grid of ``cells`` (rows, cols) cells, smoothly interpolated; mean 0, std 1."""
    h, w = shape
    cy, cx = max(cells[0], 1.0), max(cells[1], 1.0)
    grid = rng.standard_normal((int(np.ceil(cy)) + 1, int(np.ceil(cx)) + 1)).astype(np.float32)
    r0, fr = _axis_weights(h, cy)
    c0, fc = _axis_weights(w, cx)
    top = grid[r0][:, c0] * (1 - fc) + grid[r0][:, c0 + 1] * fc
    bottom = grid[r0 + 1][:, c0] * (1 - fc) + grid[r0 + 1][:, c0 + 1] * fc
    out = top * (1 - fr[:, None]) + bottom * fr[:, None]
    out -= out.mean()
    out /= out.std() + 1e-6
    return out


def _noise1d(rng: np.random.Generator, n: int, cells: float, octaves: int = 1) -> np.ndarray:
    """1-D fractal value noise along ``n`` samples; mean 0, std 1."""
    total = np.zeros(n, np.float32)
    for k in range(octaves):
        c = cells * 2**k
        grid = rng.standard_normal(int(np.ceil(c)) + 1).astype(np.float32)
        i0, f = _axis_weights(n, c)
        total += 0.5**k * (grid[i0] * (1 - f) + grid[i0 + 1] * f)
    total -= total.mean()
    return total / (total.std() + 1e-6)


def _unit(v: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1]."""
    lo, hi = v.min(), v.max()
    return (v - lo) / (hi - lo + 1e-6)


# --------------------------------------------------------------------------- #
# Scenes
# --------------------------------------------------------------------------- #


def _shape(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        h = w = int(size)
    else:
        try:
            h, w = (int(v) for v in size)
        except (TypeError, ValueError):
            raise NstjaxError(f"size must be a number of pixels or (height, width), got {size!r}") from None
    if not (MIN_SYNTH_SIZE <= h <= MAX_SYNTH_SIZE and MIN_SYNTH_SIZE <= w <= MAX_SYNTH_SIZE):
        raise NstjaxError(
            f"synthetic scene size must be {MIN_SYNTH_SIZE}-{MAX_SYNTH_SIZE} pixels per side, got {h}x{w}"
        )
    return h, w


def synth_landscape(seed: int, size: int | tuple[int, int] = 128) -> tuple[np.ndarray, np.ndarray]:
    """One procedural landscape: ``(labels, photo)``.

    Args:
      seed: any int >= 0; the same seed and size always give the same pair.
      size: side of a square scene, or ``(height, width)``; 16-4096 pixels per side.

    Returns:
      labels: int32 ``[H, W]`` class indices into :func:`synth_palette` (``landscape``).
      photo: float32 ``[H, W, 3]`` RGB in [0, 1], the scene painted with each class's texture.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise NstjaxError(f"seed must be an int >= 0, got {seed!r}")
    h, w = _shape(size)
    pal = _landscape()
    rng = np.random.default_rng(int(seed))
    labels = _scene_labels(rng, h, w, pal)
    photo = _scene_photo(rng, labels, pal)
    return labels, photo


def _scene_labels(rng: np.random.Generator, h: int, w: int, pal: Palette) -> np.ndarray:
    c = {name: np.int32(i) for i, name in enumerate(pal.names)}
    yy = ((np.arange(h, dtype=np.float32) + 0.5) / h)[:, None]  # 0 at the top, 1 at the bottom
    xx = ((np.arange(w, dtype=np.float32) + 0.5) / w)[None, :]
    lab = np.full((h, w), c["sky"], np.int32)
    horizon = rng.uniform(0.36, 0.6)

    # Clouds: thresholded noise, denser high in the sky.
    if rng.random() < 0.85:
        field = _noise2d(rng, (h, w), (3, 5)) + 0.5 * _noise2d(rng, (h, w), (7, 12)) - 1.2 * yy / horizon
        region = yy < 0.8 * horizon
        cover = rng.uniform(0.1, 0.35)
        thr = np.quantile(field[np.broadcast_to(region, (h, w))], 1 - cover)
        lab[(field > thr) & region] = c["cloud"]

    # Mountains: a ridged 1-D profile; snow above a wavy snow line.
    if rng.random() < 0.85:
        top = horizon - rng.uniform(0.14, 0.34)
        profile = 1.0 - np.abs(_noise1d(rng, w, rng.uniform(1.5, 3.5), octaves=3)) * 0.6
        profile = 0.2 + 0.8 * _unit(profile + 0.5 * _noise1d(rng, w, 1.2))
        ridge = horizon - (horizon - top) * profile
        mountain = yy >= ridge[None, :]
        lab[mountain] = c["mountain"]
        if rng.random() < 0.75:
            snowline = top + rng.uniform(0.2, 0.45) * (horizon - top) + 0.015 * _noise1d(rng, w, w / 6)
            lab[mountain & (yy < snowline[None, :])] = c["snow"]

    # Hills: a smooth rolling line just above the horizon.
    if rng.random() < 0.75:
        hill = horizon - rng.uniform(0.04, 0.13) * (0.35 + 0.65 * _unit(_noise1d(rng, w, rng.uniform(1.5, 3), 2)))
        lab[yy >= hill[None, :]] = c["hill"]

    # Ground: grass from a slightly wavy ground line down.
    ground = horizon + 0.008 * _noise1d(rng, w, 4)
    below = yy >= ground[None, :]
    lab[below] = c["grass"]
    depth = np.clip((yy - horizon) / (1 - horizon), 0, 1)  # 0 at the horizon, 1 at the bottom

    if rng.random() < 0.55:  # dirt patches in the meadow
        field = _noise2d(rng, (h, w), (4, 6)) + 0.6 * _noise2d(rng, (h, w), (10, 16))
        thr = np.quantile(field[below], 1 - rng.uniform(0.05, 0.15))
        lab[below & (field > thr)] = c["dirt"]

    if rng.random() < 0.5:  # a road running towards a vanishing point on the horizon
        vx, bx = rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.85)
        half = rng.uniform(0.07, 0.18)
        bend = rng.uniform(-0.15, 0.15)
        centre = vx + (bx - vx) * depth + bend * np.sin(np.pi * depth)
        lab[below & (np.abs(xx - centre) < 0.004 + half * depth)] = c["road"]

    if rng.random() < 0.45:  # sea up to the horizon, with a sand beach
        reach = 0.4 + 0.6 * _unit(_noise1d(rng, w, rng.uniform(1, 2.5), 2))
        shore = ground + (1 - horizon) * rng.uniform(0.08, 0.3) * reach
        if rng.random() < 0.5:  # the coast leaves part of the view as land
            edge, left = rng.uniform(0.25, 0.75), rng.random() < 0.5
            coast = (xx < edge) if left else (xx > edge)
        else:
            coast = np.ones_like(xx, dtype=bool)
        beach = shore + (1 - horizon) * rng.uniform(0.03, 0.12)
        sand = below & coast & (yy < beach[None, :])
        if rng.random() < 0.85:
            lab[sand] = c["sand"]
        lab[below & coast & (yy < shore[None, :])] = c["sea"]

    if rng.random() < 0.45:  # a river winding towards the viewer, widening with depth
        x0 = rng.uniform(0.2, 0.8)
        centre = x0 + rng.uniform(0.05, 0.2) * np.sin(rng.uniform(2, 7) * depth + rng.uniform(0, 2 * np.pi))
        half = 0.004 + rng.uniform(0.05, 0.14) * depth
        dist = np.abs(xx - centre)
        if rng.random() < 0.4:
            lab[below & (dist < half * 1.35)] = c["sand"]
        lab[below & (dist < half)] = c["river"]

    if rng.random() < 0.4:  # a lake (still water), maybe with a sandy rim
        cy = horizon + (1 - horizon) * rng.uniform(0.2, 0.6)
        cx = rng.uniform(0.2, 0.8)
        rx = rng.uniform(0.12, 0.3)
        ry = rx * rng.uniform(0.2, 0.35) * w / h
        wobble = 1 + 0.12 * _noise1d(rng, w, 5)[None, :]
        r2 = ((xx - cx) / (rx * wobble)) ** 2 + ((yy - cy) / ry) ** 2
        if rng.random() < 0.4:
            lab[below & (r2 < 1.35)] = c["sand"]
        lab[below & (r2 < 1)] = c["water"]

    if rng.random() < 0.75:  # flower speckles, in clusters, only on grass
        grass = lab == c["grass"]
        if grass.any():
            field = 0.8 * _noise2d(rng, (h, w), (3, 5)) + _noise2d(rng, (h, w), (h / 3, w / 3))
            thr = np.quantile(field[grass], 1 - rng.uniform(0.04, 0.12))
            lab[grass & (field > thr)] = c["flower"]

    land = (lab == c["grass"]) | (lab == c["flower"]) | (lab == c["dirt"])
    objects: list[tuple[float, str, np.ndarray]] = []  # (base row, class, mask): nearer objects are drawn later

    def place_y() -> float:
        return horizon + (1 - horizon) * rng.uniform(0.04, 0.95) ** 1.5

    def on_land(base: float, cx: float) -> bool:
        r, col = min(int(base * h), h - 1), min(int(cx * w), w - 1)
        return bool(land[r, col])

    if rng.random() < 0.6:  # rocks: boulders with flat bottoms
        for _ in range(rng.integers(1, 5)):
            base, cx = place_y(), rng.uniform(0.05, 0.95)
            if not on_land(base, cx):
                continue
            scale = 0.03 + 0.12 * (base - horizon) / (1 - horizon)
            rx, ry = scale * rng.uniform(0.8, 1.3) * h / w, scale * rng.uniform(0.5, 0.8)
            mask = (((xx - cx) / rx) ** 2 + ((yy - base) / ry) ** 2 < 1) & (yy <= base + 0.2 * ry)
            objects.append((base, "rock", mask))

    if rng.random() < 0.6:  # bushes: clumps of overlapping ellipses
        for _ in range(rng.integers(1, 6)):
            base, cx = place_y(), rng.uniform(0.03, 0.97)
            if not on_land(base, cx):
                continue
            scale = 0.025 + 0.09 * (base - horizon) / (1 - horizon)
            mask = np.zeros((h, w), bool)
            for _ in range(3):
                ox, oy = rng.uniform(-1, 1) * scale * h / w, rng.uniform(-0.3, 0.1) * scale
                ex = (xx - cx - ox) / (scale * 1.1 * h / w)
                ey = (yy - base + scale * 0.5 - oy) / (scale * 0.6)
                mask |= ex**2 + ey**2 < 1
            objects.append((base, "bush", mask))

    if rng.random() < 0.55:  # houses: a wall and a roof, on land
        for _ in range(rng.integers(1, 3)):
            base, cx = place_y(), rng.uniform(0.1, 0.9)
            if not on_land(base, cx):
                continue
            scale = 0.05 + 0.22 * (base - horizon) / (1 - horizon)
            half_w, wall_h, roof_h = scale * 0.6 * h / w, scale * rng.uniform(0.45, 0.7), scale * rng.uniform(0.3, 0.5)
            wall = (np.abs(xx - cx) <= half_w) & (yy <= base) & (yy >= base - wall_h)
            roof_top = base - wall_h - roof_h
            slope = 1.15 * half_w * (yy - roof_top) / roof_h
            roof = (yy >= roof_top) & (yy < base - wall_h) & (np.abs(xx - cx) <= slope)
            objects.append((base, "house", wall | roof))

    if rng.random() < 0.8:  # trees: a trunk and a round crown
        for _ in range(rng.integers(1, 7)):
            base, cx = place_y(), rng.uniform(0.03, 0.97)
            if not on_land(base, cx):
                continue
            scale = 0.06 + 0.3 * (base - horizon) / (1 - horizon)
            trunk_h = scale * rng.uniform(0.3, 0.5)
            trunk = (np.abs(xx - cx) <= max(0.05 * scale * h / w, 0.6 / w)) & (yy <= base) & (yy >= base - trunk_h)
            crown_r = scale * rng.uniform(0.25, 0.4)
            crown_cy = base - trunk_h - crown_r * 0.7
            crown = ((xx - cx) / (crown_r * h / w * rng.uniform(0.7, 1.0))) ** 2 + ((yy - crown_cy) / crown_r) ** 2 < 1
            objects.append((base, "tree", trunk | crown))

    for _, name, mask in sorted(objects, key=lambda o: o[0]):
        lab[mask] = c[name]
    return lab


def _scene_photo(rng: np.random.Generator, labels: np.ndarray, pal: Palette) -> np.ndarray:
    h, w = labels.shape
    fields = [
        lambda: _noise2d(rng, (h, w), (3, 4)),  # coarse
        lambda: _noise2d(rng, (h, w), (10, 12)),  # medium
        lambda: _noise2d(rng, (h, w), (max(h / 4, 4), max(w / 4, 4))),  # fine
        lambda: rng.standard_normal((h, w), dtype=np.float32),  # grain
        lambda: _noise2d(rng, (h, w), (max(h / 2, 4), 3)),  # horizontal streaks (waves)
        lambda: _noise2d(rng, (h, w), (4, max(w / 2, 4))),  # vertical streaks (grass blades)
    ]
    noise = [f() for f in fields]  # always drawn, so the random stream does not depend on the scene
    jitter = rng.uniform(-_JITTER, _JITTER, size=(len(pal), 3)).astype(np.float32)
    rows = np.broadcast_to(((np.arange(h, dtype=np.float32) + 0.5) / h)[:, None], (h, w))
    photo = np.empty((h, w, 3), np.float32)
    flat_labels = labels.ravel()
    order = np.argsort(flat_labels, kind="stable")  # pixels grouped by class: one slice per class
    bounds = np.searchsorted(flat_labels[order], np.arange(len(pal) + 1))
    flat_photo = photo.reshape(-1, 3)
    flat_noise = [n.ravel() for n in noise]
    flat_rows = rows.ravel()
    for k, name in enumerate(pal.names):
        idx = order[bounds[k] : bounds[k + 1]]
        if idx.size == 0:
            continue
        spec = _TEXTURES[name]
        tex = np.zeros(idx.size, np.float32)
        for amp, field in zip(spec.noise, flat_noise):
            if amp:
                tex += amp * field[idx]
        tex -= tex.mean()
        y = flat_rows[idx]
        y = y - y.mean()
        value = (
            np.asarray(spec.mean, np.float32) + jitter[k]
            + tex[:, None] * np.asarray(spec.tint, np.float32)
            + y[:, None] * np.asarray(spec.grad, np.float32)
        )
        flat_photo[idx] = value
    np.clip(photo, 0.0, 1.0, out=photo)
    return photo


# --------------------------------------------------------------------------- #
# Datasets on disk
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class SynthProgress:
    """Reported after each pair is written: ``done`` of ``total`` pairs, the last one's file stem."""

    done: int
    total: int
    stem: str


@dataclass(frozen=True)
class SynthDataset:
    """What :func:`write_synth_dataset` wrote.

    Attributes:
      directory: the dataset folder; labels in ``directory/labels``, photos in ``directory/photos``.
      stems: file stems of the pairs, in order (``landscape_000000`` ...).
      shape: (height, width) of every image.
      seeds: the seed of each pair (``seed + i``).
    """

    directory: Path
    stems: tuple[str, ...]
    shape: tuple[int, int]
    seeds: tuple[int, ...]

    @property
    def labels_dir(self) -> Path:
        return self.directory / "labels"

    @property
    def photos_dir(self) -> Path:
        return self.directory / "photos"


_README = """\
SYNTHETIC DATA - procedurally generated by nstjax (nstjax.labels.synth), not photographs.

labels/<stem>.png  colour-coded label maps in the nstjax "landscape" palette
                   (GauGAN drawing colours; see docs/labels.md for the classes)
photos/<stem>.png  the matching procedural "photo": flat shapes painted with
                   per-class colour, noise and gradients

Pairs are matched by file stem. Pair i was drawn from seed {seed} + i at {height}x{width} pixels:
nstjax.labels.synth_landscape(seed, ({height}, {width})) gives it again exactly (same NumPy version).
Use it for tests, demos and smoke runs; a model trained on it has learnt nothing about real scenes.
"""


def write_synth_dataset(
    directory: str | os.PathLike,
    count: int,
    size: int | tuple[int, int] = 128,
    *,
    seed: int = 0,
    progress: Callable[[SynthProgress], None] | None = None,
) -> SynthDataset:
    """Write ``count`` synthetic (label map, photo) pairs under ``directory``.

    Layout: ``directory/labels/<stem>.png`` (colour PNG in the ``landscape``
    palette), ``directory/photos/<stem>.png`` (RGB PNG), matched by stem
    ``landscape_<seed + i, 6 digits>``, and ``directory/README.txt`` saying the
    data are synthetic. Every file is written atomically; existing files with
    the same names are replaced, others are left alone. Folders are created.

    Args:
      directory: the dataset folder (created if missing).
      count: number of pairs, >= 1.
      size: side of square scenes, or (height, width); 16-4096 pixels.
      seed: pair ``i`` is ``synth_landscape(seed + i, size)``.
      progress: called with a :class:`SynthProgress` after each pair.

    Raises:
      NstjaxError: bad count, size or seed, ``directory`` is a file, or a write fails.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise NstjaxError(f"count must be a positive number of pairs, got {count!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise NstjaxError(f"seed must be an int >= 0, got {seed!r}")
    shape = _shape(size)
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise NstjaxError("exists and is not a directory", root)
    try:
        for sub in (root, root / "labels", root / "photos"):
            sub.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NstjaxError(f"cannot create the dataset folder: {exc.strerror or exc}", root) from exc
    try:
        with atomic_path(root / "README.txt") as tmp:
            tmp.write_text(_README.format(seed=seed, height=shape[0], width=shape[1]), encoding="utf-8")
    except OSError as exc:
        raise NstjaxError(f"cannot write README.txt: {exc.strerror or exc}", root) from exc
    pal = _landscape()
    stems, seeds = [], []
    for i in range(int(count)):
        item_seed = int(seed) + i
        stem = f"landscape_{item_seed:06d}"
        labels, photo = synth_landscape(item_seed, shape)
        save_label_map(root / "labels" / f"{stem}.png", labels, pal, kind="color")
        save_image(root / "photos" / f"{stem}.png", photo)
        stems.append(stem)
        seeds.append(item_seed)
        if progress is not None:
            progress(SynthProgress(done=i + 1, total=int(count), stem=stem))
    return SynthDataset(directory=root, stems=tuple(stems), shape=shape, seeds=tuple(seeds))
