"""Image I/O, resizing and colour transforms for style transfer.

Conventions used throughout ``nstjax``:

* An image in memory is a float32 array of shape ``[H, W, 3]``: rows, columns,
  channels in **RGB** order, values in **[0, 1]** (sRGB-encoded, i.e. the
  ordinary gamma-encoded values a PNG stores, divided by 255).
* Colour functions take any ``[..., 3]`` array, so batches ``[N, H, W, 3]`` and
  flat pixel lists ``[P, 3]`` work as well.

This module is pure NumPy + Pillow. The per-pixel colour transforms
(:func:`rgb_to_yiq`, :func:`yiq_to_rgb`, :func:`luminance`,
:func:`luminance_image`, :func:`combine_luminance`) are written as a matrix
product with a NumPy constant, so they also accept ``jax.numpy`` arrays (and
work under ``jit``) and return the same kind of array they were given.
The statistics functions (:func:`match_luminance`, :func:`match_color`) are
preprocessing steps: they accept jax arrays too but compute in float64 NumPy and
return NumPy.

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
from typing import Any, Literal, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from nstjax._atomic import atomic_path
from nstjax.errors import NstjaxError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_SUFFIXES",
    "load_image",
    "save_image",
    "check_output_path",
    "resize_image",
    "fit_longest_side",
    "RGB_TO_YIQ",
    "YIQ_TO_RGB",
    "rgb_to_yiq",
    "yiq_to_rgb",
    "luminance",
    "luminance_image",
    "combine_luminance",
    "match_luminance",
    "match_color",
]

ArrayT = TypeVar("ArrayT")

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
# Colour: YIQ and luminance (Gatys et al. 2016, "Preserving Color in Neural
# Artistic Style Transfer", section 3 "Luminance-only transfer")
# --------------------------------------------------------------------------- #

#: NTSC (FCC 1953) RGB -> YIQ matrix, rows Y, I, Q; ``yiq = M @ rgb``.
#: The Y row sums to 1 (white -> Y = 1, grey g -> Y = g); the I and Q rows sum
#: to 0 (greys have no chroma).
RGB_TO_YIQ: np.ndarray = np.array(
    [
        [0.299, 0.587, 0.114],
        [0.5959, -0.2746, -0.3213],
        [0.2115, -0.5227, 0.3112],
    ],
    dtype=np.float64,
)
#: Exact inverse of :data:`RGB_TO_YIQ`, computed in float64 (not the rounded
#: textbook inverse), so ``yiq_to_rgb(rgb_to_yiq(x))`` reproduces ``x`` to
#: float rounding (~1e-7 in float32).
YIQ_TO_RGB: np.ndarray = np.linalg.inv(RGB_TO_YIQ)

# Projections onto the luminance / chroma parts of RGB space, built in YIQ:
# P_Y = M^-1 diag(1,0,0) M and P_C = M^-1 diag(0,1,1) M = I - P_Y.
_PROJ_Y: np.ndarray = YIQ_TO_RGB[:, :1] @ RGB_TO_YIQ[:1, :]
_PROJ_C: np.ndarray = YIQ_TO_RGB[:, 1:] @ RGB_TO_YIQ[1:, :]
_Y_ROW: np.ndarray = RGB_TO_YIQ[:1, :]


def _apply_matrix(image: Any, matrix: np.ndarray) -> Any:
    """``image @ matrix.T`` over the last axis, for NumPy or jax arrays.

    The NumPy constant is cast to float64 only for float64 input and to float32
    otherwise, so float32 NumPy stays float32 and jax arrays (which implement
    ``@`` with a NumPy operand) stay jax arrays of their own precision.
    """
    if not hasattr(image, "dtype") or not hasattr(image, "__matmul__"):
        image = np.asarray(image, dtype=np.float32)
    if image.shape[-1] != 3:
        raise ValueError(f"expected [..., 3] RGB/YIQ values, got shape {tuple(image.shape)}")
    dtype = np.float64 if image.dtype == np.float64 else np.float32
    return image @ matrix.T.astype(dtype)


def rgb_to_yiq(image: ArrayT) -> ArrayT:
    """RGB ``[..., 3]`` -> YIQ ``[..., 3]`` (channels Y, I, Q).

    ``Y = 0.299 R + 0.587 G + 0.114 B`` is the luminance; I and Q are the two
    chroma axes (see :data:`RGB_TO_YIQ`). For RGB in [0, 1]: Y in [0, 1],
    I in about [-0.596, 0.596], Q in about [-0.523, 0.523].
    Accepts NumPy or jax arrays; returns the same kind.
    """
    return _apply_matrix(image, RGB_TO_YIQ)


def yiq_to_rgb(image: ArrayT) -> ArrayT:
    """YIQ ``[..., 3]`` -> RGB ``[..., 3]``; the exact inverse of :func:`rgb_to_yiq`.

    Not clipped: a YIQ triple need not correspond to an in-gamut RGB colour.
    Accepts NumPy or jax arrays; returns the same kind.
    """
    return _apply_matrix(image, YIQ_TO_RGB)


def luminance(image: ArrayT) -> ArrayT:
    """The Y (luminance) channel of an RGB ``[..., 3]`` image, shape ``[..., 1]``.

    ``Y = 0.299 R + 0.587 G + 0.114 B``; white -> 1, grey ``g`` -> ``g``.
    Accepts NumPy or jax arrays; returns the same kind.
    """
    return _apply_matrix(image, _Y_ROW)


def luminance_image(image: ArrayT) -> ArrayT:
    """The grey image ``[..., 3]`` with every channel equal to Y of ``image``.

    This is what the network sees in luminance-only transfer: VGG expects
    three channels, and R = G = B = Y has luminance Y and zero chroma.
    Accepts NumPy or jax arrays; returns the same kind.
    """
    y = luminance(image)
    return y * np.ones(3, dtype=np.float64 if y.dtype == np.float64 else np.float32)


def combine_luminance(luma: ArrayT, chroma_source: Any) -> ArrayT:
    """RGB with the luminance of ``luma`` and the chroma of ``chroma_source``.

    Both are RGB ``[..., 3]`` arrays of the same (or broadcastable) shape. In
    YIQ terms the result is ``(Y(luma), I(chroma_source), Q(chroma_source))``
    converted back to RGB; it is computed directly in RGB as
    ``P_Y luma + P_C chroma_source`` with the projections
    ``P_Y = M^-1 diag(1, 0, 0) M`` and ``P_C = M^-1 diag(0, 1, 1) M``.

    Typical use (Gatys et al. 2016): ``luma`` is the stylised output of a
    luminance-only run, ``chroma_source`` the content image, so the result
    has the style's texture in the content's colours.

    The result is **not clipped**: a bright Y combined with strong chroma can
    leave [0, 1]. Clip (or let :func:`save_image` clip) for display.
    Accepts NumPy or jax arrays; returns the kind of ``luma``.
    """
    return _apply_matrix(luma, _PROJ_Y) + _apply_matrix(chroma_source, _PROJ_C)


def match_luminance(style_y: Any, content_y: Any) -> np.ndarray:
    """Affinely remap the style luminance to the content luminance's mean and std.

    Gatys et al. 2016, section 3: before luminance-only transfer the style
    luminance ``L_s`` is matched to the content luminance ``L_c`` by

        ``L_s' = (sigma_c / sigma_s) * (L_s - mu_s) + mu_c``

    with means and (population, ``ddof=0``) standard deviations over all
    elements, so that differences in overall brightness and contrast between
    the two images do not get transferred as "style".

    Args:
        style_y, content_y: luminance arrays of any shape (e.g. ``[H, W, 1]``
            from :func:`luminance`, or 3-channel :func:`luminance_image` s,
            whose identical channels give the same statistics); they may
            differ in size. NumPy or jax.

    Returns:
        float32 NumPy array shaped like ``style_y``. Not clipped (clipping
        would change the matched statistics). A constant style luminance
        (``sigma_s == 0``) just becomes the content mean.
    """
    s = np.asarray(style_y, dtype=np.float64)
    c = np.asarray(content_y, dtype=np.float64)
    sigma_s = s.std()
    scale = c.std() / sigma_s if sigma_s > 0 else 0.0
    return (scale * (s - s.mean()) + c.mean()).astype(np.float32)


def _color_affine(
    source: Any,
    target: Any,
    method: Literal["cholesky", "eigen"],
    eps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A, mu_s, mu_t)`` of the colour transfer ``x' = A (x - mu_s) + mu_t`` (float64)."""
    if method not in ("cholesky", "eigen"):
        raise ValueError(f"method must be 'cholesky' or 'eigen', got {method!r}")
    xs = np.asarray(source, dtype=np.float64)
    xt = np.asarray(target, dtype=np.float64)
    for name, x in (("source", xs), ("target", xt)):
        if x.shape[-1] != 3:
            raise ValueError(f"{name} must be [..., 3] RGB, got shape {x.shape}")
        if x.size < 6:
            raise ValueError(f"{name} needs at least 2 pixels for a covariance")
    xs, xt = xs.reshape(-1, 3), xt.reshape(-1, 3)
    mu_s, mu_t = xs.mean(axis=0), xt.mean(axis=0)
    # Sample covariances (ddof=1, like np.cov), plus a small ridge so that
    # singular ones (grey or single-colour images) are still invertible.
    ridge = eps * np.eye(3)
    cov_s = np.cov(xs, rowvar=False) + ridge
    cov_t = np.cov(xt, rowvar=False) + ridge
    if method == "cholesky":
        a = np.linalg.cholesky(cov_t) @ np.linalg.inv(np.linalg.cholesky(cov_s))
    else:
        a = _sym_power(cov_t, 0.5) @ _sym_power(cov_s, -0.5)
    return a, mu_s, mu_t


def _sym_power(cov: np.ndarray, power: float) -> np.ndarray:
    """``cov ** power`` for a symmetric positive-definite 3x3 matrix, via ``eigh``.

    The result is symmetric (``Q diag(w ** power) Q^T``). Eigenvalues are
    floored at a tiny positive value against round-off below zero.
    """
    w, q = np.linalg.eigh(cov)
    w = np.maximum(w, np.finfo(np.float64).tiny)
    return (q * w**power) @ q.T


def match_color(
    source: Any,
    target: Any,
    *,
    method: Literal["cholesky", "eigen"] = "cholesky",
    eps: float = 1e-7,
) -> np.ndarray:
    """Recolour ``source`` so its colour mean and covariance equal ``target``'s.

    Gatys et al. 2016, section 2 ("colour histogram matching"): before
    transfer the *style* image (``source``) is recoloured to the palette of
    the *content* image (``target``) with the affine map, per RGB pixel ``x``,

        ``x' = A (x - mu_s) + mu_t``,   ``A Sigma_s A^T = Sigma_t``,

    where ``mu`` are the per-channel means and ``Sigma`` the 3x3 RGB
    covariances (``ddof=1``, as ``np.cov``). Two choices of ``A``:

    * ``"cholesky"``: ``A = L_t L_s^{-1}``, with ``Sigma = L L^T`` the
      Cholesky factorisations (``A`` lower triangular).
    * ``"eigen"``: ``A = Sigma_t^{1/2} Sigma_s^{-1/2}`` with symmetric
      matrix square roots from the eigendecomposition
      ``Sigma^{1/2} = Q Lambda^{1/2} Q^T`` (the "Image Analogies" colour
      transform). Each root is symmetric; their product ``A`` generally
      is not.

    A ridge ``eps * I`` is added to both covariances so that singular ones
    (a grey or flat-coloured image has rank < 3) can be factorised. For
    full-rank images it perturbs the matched covariance by only about
    ``eps * |A|^2``; a grey source cannot gain colour variance it does not
    have, so then only its mean and in-span statistics are matched.

    The result is **not clipped** to [0, 1]: clipping would change the very
    mean and covariance just matched, and the VGG network takes any real
    input, so out-of-gamut values are harmless until the final save.

    Args:
        source: RGB ``[..., 3]`` (e.g. the style image ``[H, W, 3]``), NumPy or jax.
        target: RGB ``[..., 3]`` (e.g. the content image); any pixel count.
        method: ``"cholesky"`` or ``"eigen"``.
        eps: ridge added to the covariance diagonals.

    Returns:
        float32 NumPy array shaped like ``source``.
    """
    a, mu_s, mu_t = _color_affine(source, target, method, eps)
    xs = np.asarray(source, dtype=np.float64)
    out = (xs - mu_s) @ a.T + mu_t
    return out.astype(np.float32)
