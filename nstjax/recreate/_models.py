"""The one door to the trained models of other systems: CycleGAN and SPADE/pix2pix.

Both are imported lazily, when a recreation asks for them, through the
functions those systems export for in-memory use:

* ``nstjax.cyclegan.translate_images(run_dir, images, direction="a2b") -> list[np.ndarray]``
  (images float32 [H, W, 3] in [0, 1]);
* ``nstjax.sketch2photo.render_labels(run_dir, labels, *, style_image=None, seed=0) -> np.ndarray``
  (labels int32 [H, W] -> float32 [H, W, 3] in [0, 1]).

A system (or function) that is not there yet is a one-line NstjaxError, never an ImportError.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np

from ..errors import NstjaxError

__all__ = ["load_system", "render_photo", "translate_painting"]


def load_system(module: str, function: str, needs: str):
    """``module.function``, imported now; a clear NstjaxError when either is missing."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        if e.name != module:
            raise  # the system is there but one of *its* imports failed: show that as it is
        raise NstjaxError(f"{needs}; {module} is not available") from None
    fn = getattr(mod, function, None)
    if fn is None:
        raise NstjaxError(f"{needs}; {module} has no {function}() yet") from None
    return fn


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
        from ..io.images import resize_image

        x = resize_image(x, shape)
    return np.clip(x, 0.0, 1.0)


def render_photo(run_dir, labels: np.ndarray, *, style_image=None, seed: int = 0) -> np.ndarray:
    """Stage 1 with a trained SPADE/pix2pix run: labels int32 [H, W] -> photo float32 [H, W, 3] in [0, 1]."""
    fn = load_system("nstjax.sketch2photo", "render_labels", "--photo-model needs a trained SPADE/pix2pix run")
    path = _check_run_dir(run_dir, "SPADE/pix2pix")
    out = fn(path, np.asarray(labels, np.int32), style_image=style_image, seed=seed)
    return _checked_image(out, labels.shape, "nstjax.sketch2photo.render_labels")


def translate_painting(run_dir, image: np.ndarray, *, direction: str = "a2b") -> np.ndarray:
    """Stage 2 with a trained CycleGAN run: photo float32 [H, W, 3] in [0, 1] -> painting, same shape."""
    fn = load_system("nstjax.cyclegan", "translate_images", "--painter cyclegan needs a trained CycleGAN run")
    path = _check_run_dir(run_dir, "CycleGAN")
    out = fn(path, [np.asarray(image, np.float32)], direction=direction)
    if len(out) != 1:
        raise NstjaxError(f"nstjax.cyclegan.translate_images returned {len(out)} images for 1")
    return _checked_image(out[0], image.shape[:2], "nstjax.cyclegan.translate_images")
