"""Image I/O, resizing and colour transforms for style transfer.

Conventions used throughout ``nstjax``:

* An image in memory is a float32 array of shape ``[H, W, 3]``: rows, columns,
  channels in **RGB** order, values in **[0, 1]** (sRGB-encoded, i.e. the
  ordinary gamma-encoded values a PNG stores, divided by 255).

This module is pure NumPy + Pillow; colour transforms are in :mod:`nstjax.io.color`.

Every problem with a file the user named (missing, unreadable, not an image,
truncated, too large, unwritable destination, unknown extension) is reported as
an :class:`~nstjax.errors.NstjaxError` whose one-line message names the file.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from .atomic import atomic_path
from ..errors import NstjaxError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageLike",
    "as_list",
    "image_array",
    "SUPPORTED_SUFFIXES",
    "load_image",
    "probe_image_shape",
    "save_image",
    "check_output_path",
    "output_folder",
    "resize_image",
    "fit_longest_side",
    "fit_shortest_side",
    "fit_side",
]


ImageLike = str | os.PathLike | np.ndarray
"""An image argument: a file path, or a float [H, W, 3] RGB array in [0, 1]."""

# --------------------------------------------------------------------------- #
# Loading
# --------------------------------------------------------------------------- #

#: Largest image (width * height) that :func:`load_image` decodes by default:
#: 16384 x 16384 = 268 megapixels. This admits every real camera/phone photo
#: (200 MP sensors included) while refusing decompression bombs: a tiny file
#: that claims billions of pixels. Pillow's own default (~89 MP) would refuse
#: some genuine 100-200 MP photos.
DEFAULT_MAX_PIXELS: int = 16384 * 16384

# Pillow's bomb guard reads the module global ``Image.MAX_IMAGE_PIXELS`` during
# both ``open()`` and ``load()`` (some decoders re-check tile/frame sizes), so
# honouring a per-call ``max_pixels`` means setting that global for the duration
# of the decode. The lock serialises our own loads so two calls never restore
# each other's value; the original value is always restored afterwards.
_PIL_LIMIT_LOCK = threading.Lock()

_16BIT_GRAY_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


@contextlib.contextmanager
def _pillow_pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Temporarily make Pillow's decompression-bomb guard use ``max_pixels``.

    Inside the block Pillow raises ``DecompressionBombError`` above
    ``2 * max_pixels`` and its ``DecompressionBombWarning`` (above
    ``max_pixels``) is turned into an exception, so nothing is decoded past the
    limit. ``None`` disables the guard. Global state is restored on exit.
    """
    with _PIL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _too_large(pixels: int | None, max_pixels: int | None) -> str:
    count = "the image" if pixels is None else f"{pixels} pixels"
    return (
        f"image too large: {count} exceeds the limit of {max_pixels} pixels "
        "(possible decompression bomb; raise max_pixels only for trusted files)"
    )


def load_image(
    path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Read an image file as a float32 ``[H, W, 3]`` RGB array in [0, 1].

    Conversion rules (every Pillow mode ends up as 8- or 16-bit-accurate RGB):

    * ``RGB``, ``L``, ``1``, ``P``, ``YCbCr``, ``HSV``: converted by Pillow.
      Grey images are replicated to three equal channels. ``LAB`` (CIELAB
      TIFFs) is converted to sRGB with LittleCMS.
    * ``CMYK`` (TIFF, and Adobe-style inverted CMYK JPEGs, which Pillow
      un-inverts): if the file embeds an ICC profile it is converted to sRGB
      with LittleCMS, otherwise with the naive ``R = (1 - C)(1 - K)`` formula.
      RGB images with an embedded ICC profile (Adobe RGB, Display P3, ...) are
      likewise converted to sRGB; if LittleCMS fails the raw values are used.
    * 16-bit greyscale (``I;16``, ``I;16B``, ``I;16L``) and 32-bit integer
      ``I``: divided by 65535 (so 32768 -> 0.50001), then clipped to [0, 1].
      They are *not* squashed through Pillow's 8-bit conversion, which clips
      every value above 255 to white.
    * 16-bit-per-channel RGB(A) PNGs: Pillow decodes these to 8 bits per
      channel (most significant byte); that ~1/510 quantisation is harmless here.
    * ``F`` (32-bit float, e.g. float TIFF): taken to be in [0, 1] already and
      clipped; non-finite values are an error.
    * Transparency (``RGBA``, ``LA``, ``PA``, premultiplied ``RGBa``/``La``, and
      ``P``/``L``/``RGB`` with a ``transparency`` key): **composited over white**,
      ``rgb * alpha + (1 - alpha)``, so transparent regions become white
      rather than whatever colour the invisible pixels happen to hold.
    * The EXIF orientation tag is applied (``ImageOps.exif_transpose``), so a
      portrait phone photo loads upright with shape ``[H, W]`` as displayed.
    * Multi-frame files (GIF, multi-page TIFF): the first frame.

    Args:
        path: the image file.
        max_pixels: refuse images whose width * height exceeds this, before
            decoding any pixel data (decompression-bomb guard). ``None``
            disables the check; use it only for trusted files.

    Returns:
        float32 array ``[H, W, 3]``, RGB, values in [0, 1], C-contiguous.

    Raises:
        NstjaxError: the file is missing, a directory, unreadable, not an
            image, truncated/corrupt, or larger than ``max_pixels``. The message
            is ``"<path>: <problem>"``.
    """
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int or None, got {max_pixels!r}")
    path = Path(path)
    # Checked up front for a precise message; open() below still maps the same
    # errors in case the file changes in between.
    if not path.exists():
        raise NstjaxError("file not found", path)
    if path.is_dir():
        raise NstjaxError("is a directory, not an image file", path)

    try:
        with _pillow_pixel_limit(max_pixels):
            im = Image.open(path)
            try:
                pixels = im.size[0] * im.size[1]
                if max_pixels is not None and pixels > max_pixels:
                    raise NstjaxError(_too_large(pixels, max_pixels), path)
                # load() decodes now, while the pixel limit is in force. A
                # truncated file raises OSError here: ImageFile.LOAD_TRUNCATED_IMAGES
                # is deliberately left False so a half image is never used silently.
                im.load()
            except BaseException:
                im.close()
                raise
    except NstjaxError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's message carries the pixel count: "Image size (N pixels) exceeds ..."
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise NstjaxError(_too_large(int(found[1]) if found else None, max_pixels), path) from exc
    except FileNotFoundError as exc:
        raise NstjaxError("file not found", path) from exc
    except IsADirectoryError as exc:
        raise NstjaxError("is a directory, not an image file", path) from exc
    except PermissionError as exc:
        raise NstjaxError("permission denied: cannot read the file", path) from exc
    except UnidentifiedImageError as exc:
        raise NstjaxError(
            "not an image file (or a format Pillow cannot read, or a damaged header)", path
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        # What Pillow's decoders raise for truncated or corrupt data:
        # "image file is truncated", "broken data stream", "Truncated File Read", ...
        raise NstjaxError(f"corrupt or truncated image ({exc})", path) from exc

    with im:
        try:
            rgb = _to_rgb_float(_exif_upright(im))
        except ValueError as exc:
            raise NstjaxError(str(exc), path) from exc
    return rgb


def probe_image_shape(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image file as :func:`load_image` will return it.

    Reads the header only (and the EXIF orientation, which swaps the sides for
    rotated photos), so bucketing a large job does not decode every image twice.
    """
    path = Path(path)
    if not path.exists():
        raise NstjaxError("no such file", path)
    try:
        with _pillow_pixel_limit(DEFAULT_MAX_PIXELS), Image.open(path) as im:
            w, h = im.size
            try:
                orientation = im.getexif().get(0x0112, 1)
            except Exception:  # noqa: BLE001 - load_image also ignores a broken EXIF block
                orientation = 1
    except UnidentifiedImageError:
        raise NstjaxError("not an image (or a format Pillow cannot read)", path) from None
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise NstjaxError(f"cannot read image: {exc}", path) from None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def _exif_upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a damaged EXIF block only costs a warning."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception as exc:  # noqa: BLE001 - any EXIF parsing failure is non-fatal
        warnings.warn(
            f"{im.filename or 'image'}: ignoring unreadable EXIF orientation ({exc})",
            stacklevel=3,
        )
        return im


def _to_rgb_float(im: Image.Image) -> np.ndarray:
    """Convert a loaded Pillow image of any mode to float32 ``[H, W, 3]`` in [0, 1]."""
    mode = im.mode

    if mode in _16BIT_GRAY_MODES:
        # Pillow's I;16 -> L/RGB conversion clips at 255 (anything brighter
        # than 255/65535 becomes white), so scale the raw values ourselves.
        grey = np.asarray(im).astype(np.float32)
        grey /= 65535.0
        np.clip(grey, 0.0, 1.0, out=grey)
        return _grey_to_rgb(grey)

    if mode == "F":
        grey = np.asarray(im, dtype=np.float32)
        if not np.all(np.isfinite(grey)):
            raise ValueError("float image contains NaN or infinite values")
        return _grey_to_rgb(np.clip(grey, 0.0, 1.0))

    if mode == "LAB":
        # Pillow's plain LAB -> RGB convert() only relabels channels; do a real
        # CIELAB (D50) -> sRGB conversion with LittleCMS.
        im = _lab_to_srgb(im)
        mode = im.mode
    elif mode in ("RGB", "RGBA", "CMYK") and im.info.get("icc_profile"):
        im = _icc_to_srgb(im)
        mode = im.mode

    if mode in _ALPHA_MODES or "transparency" in im.info:
        if mode == "La":  # Pillow has no direct La -> RGBA path
            im = im.convert("LA")
        rgba = np.asarray(im.convert("RGBA")).astype(np.float32)
        rgba /= 255.0
        alpha = rgba[..., 3:]
        # Composite over white: out = colour * alpha + white * (1 - alpha).
        out = rgba[..., :3] * alpha + (1.0 - alpha)
        return np.ascontiguousarray(np.clip(out, 0.0, 1.0, out=out))

    if mode == "1":
        im = im.convert("L")  # 0/255, then to RGB below
    rgb = np.asarray(im.convert("RGB")).astype(np.float32)
    rgb /= 255.0
    return rgb


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1), dtype=np.float32)


def _icc_to_srgb(im: Image.Image) -> Image.Image:
    """Convert an RGB/RGBA/CMYK image with an embedded ICC profile to sRGB.

    Falls back to the unconverted image (and Pillow's naive conversion later)
    if LittleCMS is unavailable or rejects the profile.
    """
    try:
        from PIL import ImageCms

        src = ImageCms.ImageCmsProfile(io.BytesIO(im.info["icc_profile"]))
        dst = ImageCms.createProfile("sRGB")
        out_mode = "RGBA" if im.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(im, src, dst, outputMode=out_mode)
    except Exception as exc:  # noqa: BLE001 - a bad profile must not block loading
        warnings.warn(
            f"{getattr(im, 'filename', '') or 'image'}: ignoring unusable ICC profile ({exc})",
            stacklevel=4,
        )
        return im
    assert converted is not None  # inPlace=False always returns an image
    return converted


def _lab_to_srgb(im: Image.Image) -> Image.Image:
    """CIELAB (Pillow's ``LAB`` mode: a, b offset by 128) -> sRGB via LittleCMS."""
    try:
        from PIL import ImageCms

        lab, srgb = ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB")
        converted = ImageCms.profileToProfile(im, lab, srgb, outputMode="RGB")
    except Exception as exc:  # noqa: BLE001 - reported as a load error
        raise ValueError(f"cannot convert this LAB image to RGB ({exc})") from exc
    assert converted is not None
    return converted


# --------------------------------------------------------------------------- #
# Saving
# --------------------------------------------------------------------------- #

#: File extensions :func:`save_image` writes, and the Pillow format for each.
SUPPORTED_SUFFIXES: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}


def _supported_list() -> str:
    return ", ".join(SUPPORTED_SUFFIXES)


def output_folder(
    path: str | os.PathLike, *, not_a_folder: str = "exists and is not a folder; give an output folder"
) -> Path:
    """Create the output folder ``path`` (and its parents) if needed; return it.

    Raises:
        NstjaxError: ``path`` is an existing file (message ``not_a_folder``), or the
        folder cannot be created (the OS's reason).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NstjaxError(not_a_folder, path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NstjaxError(f"cannot create the output folder ({exc.strerror or exc})", path) from None
    return path


def check_output_path(path: str | os.PathLike) -> Path:
    """Validate an output image path before doing any expensive work.

    Checks that the extension is one :func:`save_image` can write, that the
    path is not an existing directory, and that its directory exists and is
    writable. Nothing is created.

    Returns:
        ``Path(path)``.

    Raises:
        NstjaxError: naming the path and the problem.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        what = f"unsupported image extension {path.suffix!r}" if suffix else "no file extension"
        raise NstjaxError(f"{what}; supported: {_supported_list()}", path)
    if SUPPORTED_SUFFIXES[suffix] == "WEBP" and not features.check("webp"):
        raise NstjaxError("this Pillow build cannot write WebP; choose another format", path)
    if path.is_dir():
        raise NstjaxError("is a directory; give an image file name", path)
    parent = path.parent
    if not parent.exists():
        raise NstjaxError("output directory does not exist", path)
    if not parent.is_dir():
        raise NstjaxError("output directory is not a directory", path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise NstjaxError("output directory is not writable", path)
    return path


def _to_uint8(image: Any, path: Path) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an image of shape [H, W, 3], got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"expected a float image with values in [0, 1], got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        # Usually a diverged optimisation; writing it would give a silently black image.
        raise NstjaxError("image contains NaN or infinite values; not saved", path)
    return np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_image(path: str | os.PathLike, image: Any, *, quality: int = 95) -> Path:
    """Write a float ``[H, W, 3]`` RGB image (values in [0, 1]) to ``path``.

    Values are clipped to [0, 1] and rounded to 8 bits per channel. The format
    comes from the extension (see :data:`SUPPORTED_SUFFIXES`). JPEG and WebP
    use ``quality`` (1-100); JPEG at quality >= 90 also turns off chroma
    subsampling (4:4:4), which otherwise visibly blurs fine coloured brush
    strokes, the very detail style transfer produces.

    The file is written atomically: into a temporary file beside ``path``, then
    renamed over it, so an interrupted or failed save never leaves a truncated
    image or clobbers an existing one.

    Args:
        path: destination file.
        image: float array (NumPy or anything ``np.asarray`` accepts) ``[H, W, 3]``.
        quality: JPEG/WebP quality, 1-100. Ignored by lossless formats.

    Returns:
        ``Path(path)``.

    Raises:
        NstjaxError: bad extension, missing/unwritable directory, NaN/inf
            values, bad quality, or an OS error while writing.
        ValueError: ``image`` is not a float ``[H, W, 3]`` array (a programming error).
    """
    path = check_output_path(path)
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise NstjaxError(f"quality must be an integer from 1 to 100, got {quality!r}", path)
    pixels = _to_uint8(image, path)
    fmt = SUPPORTED_SUFFIXES[path.suffix.lower()]
    options: dict[str, Any] = {}
    if fmt == "JPEG":
        options["quality"] = quality
        if quality >= 90:
            options["subsampling"] = 0
    elif fmt == "WEBP":
        options["quality"] = quality
    pil = Image.fromarray(pixels)  # uint8 [H, W, 3] -> mode "RGB"
    try:
        with atomic_path(path) as tmp:
            pil.save(tmp, format=fmt, **options)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise NstjaxError(f"cannot write image: {reason}", path) from exc
    return path


# --------------------------------------------------------------------------- #
# Resizing
# --------------------------------------------------------------------------- #


def fit_longest_side(hw: tuple[int, int], size: int) -> tuple[int, int]:
    """Scale ``(height, width)`` so the longer side equals ``size``, keeping the aspect ratio.

    The shorter side is rounded to the nearest integer (halves round up) and is
    at least 1. Works for both up- and downscaling.

    Example: ``fit_longest_side((600, 800), 512) == (384, 512)``.
    """
    h, w = (int(v) for v in hw)
    if h < 1 or w < 1:
        raise ValueError(f"image shape must be positive, got {hw}")
    if isinstance(size, bool) or int(size) != size or size < 1:
        raise NstjaxError(f"image size must be a positive number of pixels, got {size!r}")
    size = int(size)
    long_side = max(h, w)

    def scale(v: int) -> int:
        # round(v * size / long_side), halves up, in integers: no float error.
        return max(1, (2 * v * size + long_side) // (2 * long_side))

    return scale(h), scale(w)



def fit_shortest_side(hw: tuple[int, int], size: int) -> tuple[int, int]:
    """Scale ``(height, width)`` so the shorter side equals ``size``, keeping the aspect ratio.

    torchvision's ``Resize(size)`` rule (the AdaIN reference's ``test.py``): the longer side
    is rounded to the nearest integer (halves up). Example: ``fit_shortest_side((600, 800), 512) == (512, 683)``.
    """
    h, w = (int(v) for v in hw)
    if h < 1 or w < 1:
        raise ValueError(f"image shape must be positive, got {hw}")
    if isinstance(size, bool) or int(size) != size or size < 1:
        raise NstjaxError(f"image size must be a positive number of pixels, got {size!r}")
    short = min(h, w)
    return tuple(max(1, (2 * v * int(size) + short) // (2 * short)) for v in (h, w))


def fit_side(hw: tuple[int, int], size: int, side: str) -> tuple[int, int]:
    """:func:`fit_shortest_side` for ``side="shortest"``, else :func:`fit_longest_side`."""
    return fit_shortest_side(hw, size) if side == "shortest" else fit_longest_side(hw, size)

def resize_image(image: Any, shape: tuple[int, int]) -> np.ndarray:
    """Resample a ``[H, W, 3]`` float image to ``shape = (height, width)``.

    Each channel is resampled by Pillow in 32-bit float (``"F"``) mode with a
    Lanczos filter, which low-pass filters when downscaling (no aliasing) and
    keeps full float precision (no 8-bit round trip). Lanczos rings slightly
    at hard edges, so the result is clipped to each input channel's own
    [min, max]: an image in [0, 1] stays in [0, 1], while deliberately
    unclipped inputs (e.g. from :func:`match_color`) keep their range.

    Returns:
        float32 ``[height, width, 3]``, same channel order as the input.
    """
    x = np.asarray(image, dtype=np.float32)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"expected an image of shape [H, W, 3], got {x.shape}")
    h, w = (int(v) for v in shape)
    if h < 1 or w < 1:
        raise ValueError(f"target shape must be positive, got {shape}")
    if (h, w) == x.shape[:2]:
        return x.copy()
    out = np.empty((h, w, 3), dtype=np.float32)
    for c in range(3):
        channel = np.ascontiguousarray(x[..., c])
        resized = Image.fromarray(channel).resize((w, h), Image.Resampling.LANCZOS)
        out[..., c] = np.asarray(resized, dtype=np.float32)
        np.clip(out[..., c], channel.min(), channel.max(), out=out[..., c])
    return out


# --------------------------------------------------------------------------- #
# Arguments that take an image as a path or an array
# --------------------------------------------------------------------------- #


def as_list(value: Any) -> list:
    """``value`` as a list: one path or array becomes ``[value]``; any other iterable is listed.

    For arguments that take "an image or several": a path string, a
    ``PathLike`` and an ``ndarray`` each count as one item.
    """
    if value is None:
        return []
    if isinstance(value, str | os.PathLike | np.ndarray):
        return [value]
    return list(value)


def image_array(value: ImageLike, what: str) -> np.ndarray:
    """A float32 [H, W, 3] RGB image in [0, 1] from a path (:func:`load_image`) or an array.

    Raises:
        NstjaxError: the file cannot be read, or the array is not [H, W, 3] or
            holds NaN/inf; ``what`` (e.g. ``"style image 2"``) names it.
    """
    if isinstance(value, str | os.PathLike):
        return load_image(value)
    array = np.asarray(value, dtype=np.float32)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise NstjaxError(f"{what} must be an [H, W, 3] RGB array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise NstjaxError(f"{what} contains NaN or infinite values")
    return array
