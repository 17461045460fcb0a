"""The failure the lost-painting article hit, as a number: how much of the ground wears the sky's colours.

:func:`sky_on_ground_score` takes a result image with the label map it was made
from (the sketch) and the painting with its label map. It clusters the
painting's sky pixels and its ground pixels separately (k-means in CIELAB,
:data:`~nstjax.recreate.classes.SKY_CLASSES` vs
:data:`~nstjax.recreate.classes.GROUND_CLASSES`), then gives each ground pixel of
the result the side of its nearest cluster centre (Euclidean CIELAB, ΔE*ab). The
score is the share of ground pixels whose nearest centre is a sky one: 0 = every
ground pixel looks like the painting's ground, 1 = all of it looks like its sky.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import NstjaxError
from ..labels import Palette, load_palette, resize_labels
from .classes import GROUND_CLASSES, SKY_CLASSES
from .colorspace import kmeans, nearest_center, srgb_to_lab

__all__ = ["SkyOnGround", "class_ids", "sky_on_ground_score"]

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
