"""The one door to the trained models of other systems: CycleGAN and SPADE/pix2pix.

Through the functions those systems export for in-memory use:

* ``nstjax.cyclegan.translate_images(run_dir, images, direction="a2b") -> list[np.ndarray]``
  (images float32 [H, W, 3] in [0, 1]);
* ``nstjax.sketch2photo.render_labels(run_dir, labels, *, style_image=None, seed=0) -> np.ndarray``
  (labels int32 [H, W] -> float32 [H, W, 3] in [0, 1]).

A missing run directory, or a model that returns something other than an image, is a one-line NstjaxError.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import cyclegan, sketch2photo
from ..errors import NstjaxError
from ..io.images import resize_image

__all__ = ["render_photo", "translate_painting"]


def _check_run_dir(run_dir: str | os.PathLike, what: str) -> Path:
    path = Path(run_dir)
    if not path.is_dir():
        raise NstjaxError(f"no {what} run directory here", path)
    return path


def _checked_image(image, shape: tuple[int, int] | None, what: str) -> np.ndarray:
    x = np.asarray(image, np.float32)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise NstjaxError(f"{what} returned an array of shape {x.shape}, not an [H, W, 3] image")
    if not np.all(np.isfinite(x)):
        raise NstjaxError(f"{what} returned NaN or infinite values")
    if shape is not None and x.shape[:2] != tuple(shape):
        x = resize_image(x, shape)
    return np.clip(x, 0.0, 1.0)


def render_photo(run_dir, labels: np.ndarray, *, style_image=None, seed: int = 0) -> np.ndarray:
    """Stage 1 with a trained SPADE/pix2pix run: labels int32 [H, W] -> photo float32 [H, W, 3] in [0, 1]."""
    path = _check_run_dir(run_dir, "SPADE/pix2pix")
    out = sketch2photo.render_labels(path, np.asarray(labels, np.int32), style_image=style_image, seed=seed)
    return _checked_image(out, labels.shape, "nstjax.sketch2photo.render_labels")


def translate_painting(run_dir, image: np.ndarray, *, direction: str = "a2b") -> np.ndarray:
    """Stage 2 with a trained CycleGAN run: photo float32 [H, W, 3] in [0, 1] -> painting, same shape."""
    path = _check_run_dir(run_dir, "CycleGAN")
    out = cyclegan.translate_images(path, [np.asarray(image, np.float32)], direction=direction)
    if len(out) != 1:
        raise NstjaxError(f"nstjax.cyclegan.translate_images returned {len(out)} images for 1")
    return _checked_image(out[0], image.shape[:2], "nstjax.cyclegan.translate_images")
