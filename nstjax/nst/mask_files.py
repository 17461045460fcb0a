"""Mask files: colour-coded segmentations and grayscale masks, read at the size of the image they describe.

Two forms of guidance for spatially controlled style transfer (see :mod:`nstjax.nst.masks`):

* a **colour-coded segmentation** (:func:`load_segmentation`): equal colours
  mean the same region (sky, grass, ...); uint8 ``[H, W, 3]`` RGB;
* a **grayscale mask** (:func:`load_gray_mask`): one mask per style over the
  content image (white = "this style here"); float32 ``[H, W]`` in [0, 1].

Every problem with a file is an :class:`~nstjax.errors.NstjaxError` whose one
line names the file; a file of another size than the one wanted is resized with
a :class:`MaskWarning`.
"""

from __future__ import annotations

import os
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps

from ..errors import NstjaxError, NstjaxWarning

__all__ = ["MaskWarning", "load_gray_mask", "load_segmentation"]


class MaskWarning(NstjaxWarning):
    """A mask was resized, a region was dropped, or a region vanished at a layer."""


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
