"""The failure the lost-painting article hit, as a number: how much of the ground wears the sky's colours.

:func:`sky_on_ground_score` takes a result image with the label map it was made
from (the sketch) and the painting with its label map. It clusters the
painting's sky pixels and its ground pixels separately (k-means in CIELAB,
:data:`~nstjax.recreate.classes.SKY_CLASSES` vs
:data:`~nstjax.recreate.classes.GROUND_CLASSES`), then gives each ground pixel of
the result the side of its nearest cluster centre (Euclidean CIELAB, ΔE*ab). The
score is the share of ground pixels whose nearest centre is a sky one: 0 = every
ground pixel looks like the painting's ground, 1 = all of it looks like its sky.

That score sees colour only, pixel by pixel. Where a painting's ground has much the
colours of its sky (The Starry Night: dark blue above and below), it cannot see a
moon, a swirl or a band of the sky painted on the ground. :func:`sky_on_ground_patch_score`
is the measure beside it that does: it describes every small patch by its mean
colour and its brush texture (lightness spread, gradient energy and orientations,
stroke coherence, bright and dark spots), fits a k-nearest-neighbour classifier on
the painting's sky and ground patches, and gives the share of the result's ground
patches it calls sky. Pure NumPy, deterministic, no VGG (the optimiser minimised VGG
losses, so a VGG-based score would grade its own homework).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import NstjaxError
from ..labels import Palette, load_palette, resize_labels
from .classes import GROUND_CLASSES, SKY_CLASSES
from .colorspace import kmeans, nearest_center, srgb_to_lab

__all__ = [
    "COLOR_FEATURES",
    "TEXTURE_FEATURES",
    "SkyOnGround",
    "SkyPatchesOnGround",
    "class_ids",
    "patch_features",
    "sky_on_ground_patch_score",
    "sky_on_ground_score",
]

DEFAULT_CLUSTERS = 4
"""Colour clusters per side (sky, ground) of the painting."""


@dataclass(frozen=True)
class SkyOnGround:
    """The sky-on-the-ground score of one image.

    score: share (0..1) of the image's ground pixels whose colour is nearer one of the painting's sky
      colour clusters than any of its ground clusters (CIELAB).
    ground_pixels: ground pixels counted in the image.
    sky_centers, ground_centers: the painting's cluster centres, float32 [k, 3] CIELAB.
    """

    score: float
    ground_pixels: int
    sky_centers: np.ndarray
    ground_centers: np.ndarray

    def as_dict(self) -> dict:
        return {
            "score": self.score,
            "ground_pixels": self.ground_pixels,
            "color_space": "CIELAB (D65), nearest k-means centre",
            "sky_centers_lab": np.round(self.sky_centers, 2).tolist(),
            "ground_centers_lab": np.round(self.ground_centers, 2).tolist(),
        }


def class_ids(names, palette: Palette) -> np.ndarray:
    """Ids of the classes of ``names`` that the palette has (others are skipped), int32 [n]."""
    return np.array([palette.index(n) for n in names if n in palette.names], np.int32)


def _as_image(value, what: str) -> np.ndarray:
    x = np.asarray(value, np.float32)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise NstjaxError(f"{what} must be an [H, W, 3] RGB array, got shape {x.shape}")
    return x


def _fit(labels, shape, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise NstjaxError(f"{what} must be an [H, W] label map, got shape {labels.shape}")
    return labels if labels.shape == tuple(shape) else resize_labels(labels, shape)


def sky_on_ground_score(
    image,
    labels,
    painting,
    painting_labels,
    *,
    palette: Palette | str = "landscape",
    clusters: int = DEFAULT_CLUSTERS,
    seed: int = 0,
) -> SkyOnGround:
    """The share of ``image``'s ground pixels coloured like ``painting``'s sky.

    Args:
      image: float [H, W, 3] RGB in [0, 1], a result.
      labels: int [h, w] class ids of ``image`` (the sketch); resized to [H, W] by nearest neighbour.
      painting: float [Hp, Wp, 3] RGB in [0, 1].
      painting_labels: int [hp, wp] class ids of the painting; resized likewise.
      palette: the palette of both label maps.
      clusters: k-means clusters per side (sky, ground) in the painting.
      seed: the k-means seed.

    Raises:
      NstjaxError: the painting has no sky or no ground pixels, or the image no ground pixels.
    """
    pal = load_palette(palette)
    image = _as_image(image, "image")
    painting = _as_image(painting, "painting")
    labels = _fit(labels, image.shape[:2], "labels")
    painting_labels = _fit(painting_labels, painting.shape[:2], "painting labels")
    sky, ground = class_ids(SKY_CLASSES, pal), class_ids(GROUND_CLASSES, pal)
    p_lab = srgb_to_lab(painting).reshape(-1, 3)
    p_sky = np.isin(painting_labels, sky).ravel()
    p_ground = np.isin(painting_labels, ground).ravel()
    if not p_sky.any() or not p_ground.any():
        missing = "sky" if not p_sky.any() else "ground"
        raise NstjaxError(
            f"the painting's labels have no {missing} pixels ({missing} classes: "
            f"{', '.join(SKY_CLASSES if missing == 'sky' else GROUND_CLASSES)}); the score needs both"
        )
    sky_c, _ = kmeans(p_lab[p_sky], clusters, seed=seed)
    ground_c, _ = kmeans(p_lab[p_ground], clusters, seed=seed)
    at = np.isin(labels, ground).ravel()
    if not at.any():
        raise NstjaxError("the image's labels have no ground pixels to score")
    nearest, _ = nearest_center(srgb_to_lab(image).reshape(-1, 3)[at], np.concatenate([sky_c, ground_c]))
    score = float((nearest < len(sky_c)).mean())
    return SkyOnGround(score=score, ground_pixels=int(at.sum()), sky_centers=sky_c, ground_centers=ground_c)


# --------------------------------------------------------------------------- #
# The second measure: sky patches on the ground (colour and brush texture)
# --------------------------------------------------------------------------- #

DEFAULT_SIZE = 160
"""Analysis size: the image and the painting are each resampled so that their longer side has this many pixels
(the same scale for both, as when the painting was the style image at the result's size)."""
DEFAULT_PATCH = 12
"""Side of a square patch at the analysis size, in pixels: a star, a piece of a swirl, a few of the Scream's bands."""
DEFAULT_STRIDE = 4
"""Step between patches, in pixels."""
DEFAULT_NEIGHBOURS = 9
"""k of the k-nearest-neighbour vote."""
MIN_COVER = 0.75
"""A patch belongs to a side (sky or ground) when at least this share of its pixels have that side's classes."""
ORIENTATION_BINS = 8
"""Bins of the gradient-orientation histogram (0..180°, unsigned, linear interpolation between bins)."""
MAX_TRAIN = 4000
"""At most this many training patches per side of the painting (a seeded random subset)."""
DEFAULT_COLOR_WEIGHT = 0.5
"""Weight of the colour features against the texture features, after each group is scaled to unit total
variance: at 0.5 a patch's texture counts twice its mean colour in the distance, so a sky texture painted in a
ground-like colour still reads as sky (the failure the colour score misses)."""

COLOR_FEATURES = ("L*", "a*", "b*")
"""The colour features of a patch: its mean CIELAB colour."""
TEXTURE_FEATURES = (
    "L* std",
    "L* gradient energy",
    *(f"gradient orientation {i * 180 / ORIENTATION_BINS:g}–{(i + 1) * 180 / ORIENTATION_BINS:g}°"
      for i in range(ORIENTATION_BINS)),
    "coherence",
    "bright spot",
    "dark spot",
)
"""The texture features of a patch, all on L* (lightness), where brush strokes, stars and bands show: the standard
deviation; the mean gradient magnitude; the magnitude-weighted histogram of gradient orientations (sums to 1);
the coherence of the structure tensor (0 = no preferred direction, 1 = parallel strokes); the brightest pixel
minus the mean (a star, a moon) and the mean minus the darkest pixel."""


def _integral(maps: np.ndarray) -> np.ndarray:
    h, w, c = maps.shape
    ii = np.zeros((h + 1, w + 1, c), np.float64)
    ii[1:, 1:] = maps.astype(np.float64).cumsum(0).cumsum(1)
    return ii


def _box_means(ii: np.ndarray, ys: np.ndarray, xs: np.ndarray, patch: int) -> np.ndarray:
    """Mean of each map over each patch: [len(ys), len(xs), C] from an integral image [H+1, W+1, C]."""
    y0, y1, x0, x1 = ys[:, None], ys[:, None] + patch, xs[None, :], xs[None, :] + patch
    return (ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]) / float(patch * patch)


def _patch_grid(shape: tuple[int, int], patch: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(0, shape[0] - patch + 1, stride), np.arange(0, shape[1] - patch + 1, stride)


def patch_features(rgb, patch: int = DEFAULT_PATCH, stride: int = DEFAULT_STRIDE) -> np.ndarray:
    """The features of every ``patch``-px patch (top-left corners every ``stride`` px) of an RGB image.

    Returns float64 ``[ny, nx, 3 + 13]``: :data:`COLOR_FEATURES` then :data:`TEXTURE_FEATURES`.

    Texture is measured on L* only. The a*/b* spread and gradient were tried and left out: plain and
    semantic Gatys results both carry pixel-level colour noise everywhere, which those features saw
    as "unlike any part of the painting", so they measured the optimiser, not the sky.
    """
    lab = srgb_to_lab(rgb).astype(np.float64)
    h, w = lab.shape[:2]
    L = lab[..., 0]
    gy, gx = np.gradient(L)
    mag = np.hypot(gx, gy)
    pos = np.mod(np.arctan2(gy, gx), np.pi) / np.pi * ORIENTATION_BINS  # bin centres at 0.5, 1.5, …
    bins = []
    for b in range(ORIENTATION_BINS):
        dist = np.abs(pos - (b + 0.5))
        dist = np.minimum(dist, ORIENTATION_BINS - dist)  # orientation is circular
        bins.append(mag * np.maximum(0.0, 1.0 - dist))
    maps = np.stack([*np.moveaxis(lab, -1, 0), L * L, mag, *bins, gx * gx, gy * gy, gx * gy], axis=-1)
    ys, xs = _patch_grid((h, w), patch, stride)
    m = _box_means(_integral(maps), ys, xs, patch)
    mean = m[..., 0:3]
    std = np.sqrt(np.maximum(m[..., 3] - mean[..., 0] ** 2, 0.0))
    energy = m[..., 4]
    hist = m[..., 5 : 5 + ORIENTATION_BINS] / (energy[..., None] + 1e-6)
    jxx, jyy, jxy = (m[..., 5 + ORIENTATION_BINS + i] for i in range(3))
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy + 1e-6)
    win = np.lib.stride_tricks.sliding_window_view(L, (patch, patch))[ys][:, xs]
    bright = win.max(axis=(-1, -2)) - mean[..., 0]
    dark = mean[..., 0] - win.min(axis=(-1, -2))
    return np.concatenate(
        [mean, std[..., None], energy[..., None], hist, coherence[..., None], bright[..., None], dark[..., None]],
        axis=-1,
    )


def _cover(mask: np.ndarray, patch: int, stride: int) -> np.ndarray:
    """Share of each patch's pixels that are set in ``mask`` [H, W]: [ny, nx]."""
    ys, xs = _patch_grid(mask.shape, patch, stride)
    return _box_means(_integral(mask[..., None].astype(np.float64)), ys, xs, patch)[..., 0]


def _knn_sky_votes(train: np.ndarray, is_sky: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """Class-balanced k-NN: the sky share of each query's k nearest training patches, each neighbour
    counting 1 / (its side's number of training patches), so a painting with more ground than sky is no
    more likely to call a patch ground. Euclidean distance; ties broken by training order."""
    n_sky, n_ground = int(is_sky.sum()), int((~is_sky).sum())
    k = min(k, len(train))
    t2 = (train**2).sum(1)
    out = np.empty(len(query))
    for start in range(0, len(query), 2048):
        q = query[start : start + 2048]
        d = (q**2).sum(1)[:, None] - 2 * q @ train.T + t2[None]
        nb = np.argsort(d, axis=1, kind="stable")[:, :k]
        sky_votes = is_sky[nb].sum(1) / n_sky
        ground_votes = (~is_sky[nb]).sum(1) / n_ground
        out[start : start + len(q)] = sky_votes / (sky_votes + ground_votes)
    return out


@dataclass(frozen=True)
class SkyPatchesOnGround:
    """The sky-patches-on-the-ground score of one image (:func:`sky_on_ground_patch_score`).

    score: share (0..1) of the image's ground patches that a k-NN classifier, fitted on the painting's sky
      and ground patches by colour and brush texture, calls sky.
    ground_patches: ground patches of the image that were classified.
    sky_vote: mean class-balanced sky vote over those patches (0..1), a softer form of ``score``.
    training_patches: (sky, ground) patches of the painting the classifier was fitted on.
    shape: (height, width) of the image at the analysis size.
    patch, stride, neighbours, color_weight: the settings used.
    """

    score: float
    ground_patches: int
    sky_vote: float
    training_patches: tuple[int, int]
    shape: tuple[int, int]
    patch: int
    stride: int
    neighbours: int
    color_weight: float

    def as_dict(self) -> dict:
        return {
            "score": self.score,
            "ground_patches": self.ground_patches,
            "sky_vote": round(self.sky_vote, 4),
            "training_patches": {"sky": self.training_patches[0], "ground": self.training_patches[1]},
            "analysis_shape": list(self.shape),
            "method": (
                f"{self.patch}x{self.patch} px patches every {self.stride} px at {max(self.shape)} px; "
                "mean CIELAB + L* texture (std, gradient energy, orientation histogram, coherence, bright/dark "
                f"spots), colour weight {self.color_weight:g}; class-balanced {self.neighbours}-NN fitted on the "
                "painting's sky vs ground patches; score = share of ground patches called sky"
            ),
        }


def _analysis_image(x: np.ndarray, size: int | None) -> np.ndarray:
    from ..io.images import fit_longest_side, resize_image

    if size is not None:
        x = resize_image(x, fit_longest_side(x.shape[:2], size))
    return np.clip(x, 0.0, 1.0)


def _check_int(value, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise NstjaxError(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


def sky_on_ground_patch_score(
    image,
    labels,
    painting,
    painting_labels,
    *,
    palette: Palette | str = "landscape",
    size: int | None = DEFAULT_SIZE,
    patch: int = DEFAULT_PATCH,
    stride: int = DEFAULT_STRIDE,
    neighbours: int = DEFAULT_NEIGHBOURS,
    color_weight: float = DEFAULT_COLOR_WEIGHT,
    seed: int = 0,
) -> SkyPatchesOnGround:
    """The share of ``image``'s ground patches that look like ``painting``'s sky in colour *and* brush texture.

    The companion of :func:`sky_on_ground_score`, called with the same arguments. That score compares
    single pixels' colours, so it cannot see a moon, a swirl or a band of the sky painted on a ground of
    much the same colour (The Starry Night's sky and ground are both dark blue). This one:

    1. resamples the image and the painting so their longer side is ``size`` px (``None``: as given);
    2. describes every ``patch``-px square (every ``stride`` px) by :data:`COLOR_FEATURES` and
       :data:`TEXTURE_FEATURES` (:func:`patch_features`);
    3. takes the painting's patches that are at least :data:`MIN_COVER` sky (``SKY_CLASSES``) or ground
       (``GROUND_CLASSES``), standardises every feature by their mean and spread, scales the colour and
       the texture group each to unit total variance and then the colour group by ``color_weight``
       (default 0.5: texture counts twice as much as the mean colour);
    4. classifies every patch of the image that is at least :data:`MIN_COVER` ground (by ``labels``) with a
       class-balanced ``neighbours``-NN vote over those painting patches;
    5. score = the share of those patches whose sky vote is over one half.

    Pure NumPy and deterministic (``seed`` only picks the training subset when a side has more than
    :data:`MAX_TRAIN` patches).

    Args:
      image: float [H, W, 3] RGB in [0, 1], a result.
      labels: int [h, w] class ids of ``image`` (the sketch); resized to [H, W] by nearest neighbour.
      painting: float [Hp, Wp, 3] RGB in [0, 1].
      painting_labels: int [hp, wp] class ids of the painting; resized likewise.
      palette: the palette of both label maps.
      size: the analysis size (longer side, px), or ``None`` to keep both images' sizes.
      patch, stride: patch side and step, px at the analysis size.
      neighbours: k of the k-NN vote.
      color_weight: weight of the colour group against the texture group (0 = texture only).
      seed: seeds the training subset (see above).

    Raises:
      NstjaxError: an image is not [H, W, 3] or not finite; a label map is not [H, W]; a setting is out of
        range; an image is smaller than a patch; the painting has no sky or no ground patch; the image has
        no ground patch.
    """
    pal = load_palette(palette)
    image = _as_image(image, "image")
    painting = _as_image(painting, "painting")
    if size is not None:
        size = _check_int(size, "size", 8)
    patch = _check_int(patch, "patch", 3)
    stride = _check_int(stride, "stride", 1)
    neighbours = _check_int(neighbours, "neighbours", 1)
    if isinstance(color_weight, bool) or not isinstance(color_weight, (int, float, np.number)) or not (
        0 <= color_weight < float("inf")
    ):
        raise NstjaxError(f"color_weight must be a finite number >= 0, got {color_weight!r}")
    for what, x in (("image", image), ("painting", painting)):
        if not np.isfinite(x).all():
            raise NstjaxError(f"the {what} holds NaN or infinite values")
    labels = _fit(labels, image.shape[:2], "labels")
    painting_labels = _fit(painting_labels, painting.shape[:2], "painting labels")
    image = _analysis_image(image, size)
    painting = _analysis_image(painting, size)
    for what, x in (("image", image), ("painting", painting)):
        if min(x.shape[:2]) < patch:
            raise NstjaxError(
                f"the {what} is {x.shape[1]}x{x.shape[0]} px at the analysis size, smaller than a {patch} px patch"
            )
    labels = resize_labels(labels, image.shape[:2])
    painting_labels = resize_labels(painting_labels, painting.shape[:2])
    sky, ground = class_ids(SKY_CLASSES, pal), class_ids(GROUND_CLASSES, pal)

    p_feat = patch_features(painting, patch, stride)
    p_sky = _cover(np.isin(painting_labels, sky), patch, stride) >= MIN_COVER
    p_ground = _cover(np.isin(painting_labels, ground), patch, stride) >= MIN_COVER
    if not p_sky.any() or not p_ground.any():
        missing = "sky" if not p_sky.any() else "ground"
        raise NstjaxError(
            f"the painting has no {patch}x{patch} px patch that is at least {MIN_COVER:.0%} {missing} at the "
            f"analysis size ({missing} classes: {', '.join(SKY_CLASSES if missing == 'sky' else GROUND_CLASSES)}); "
            "the score needs both"
        )
    at = _cover(np.isin(labels, ground), patch, stride) >= MIN_COVER
    if not at.any():
        raise NstjaxError(f"the image has no {patch}x{patch} px patch that is at least {MIN_COVER:.0%} ground to score")
    query = patch_features(image, patch, stride)[at]

    rng = np.random.default_rng(seed)
    sides = []
    for feats in (p_feat[p_sky], p_feat[p_ground]):
        if len(feats) > MAX_TRAIN:
            feats = feats[np.sort(rng.choice(len(feats), MAX_TRAIN, replace=False))]
        sides.append(feats)
    train = np.concatenate(sides)
    is_sky = np.arange(len(train)) < len(sides[0])
    mu = train.mean(0)
    sd = train.std(0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    n_col, n_tex = len(COLOR_FEATURES), len(TEXTURE_FEATURES)
    weight = np.concatenate([np.full(n_col, color_weight / np.sqrt(n_col)), np.full(n_tex, 1 / np.sqrt(n_tex))])
    votes = _knn_sky_votes((train - mu) / sd * weight, is_sky, (query - mu) / sd * weight, neighbours)
    return SkyPatchesOnGround(
        score=float((votes > 0.5).mean()),
        ground_patches=int(len(query)),
        sky_vote=float(votes.mean()),
        training_patches=(len(sides[0]), len(sides[1])),
        shape=(int(image.shape[0]), int(image.shape[1])),
        patch=patch,
        stride=stride,
        neighbours=neighbours,
        color_weight=float(color_weight),
    )
