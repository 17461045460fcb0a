"""Image loading, saving and resizing: bad inputs, every Pillow mode, EXIF, atomic writes."""

from __future__ import annotations

import os
import stat
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, JpegImagePlugin

from nstjax.errors import NstjaxError
from nstjax.io.images import (
    SUPPORTED_SUFFIXES,
    check_output_path,
    fit_longest_side,
    load_image,
    resize_image,
    save_image,
)


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


def _u8_noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png(width: int, height: int, bit_depth: int, color_type: int, rows: np.ndarray) -> bytes:
    """A minimal PNG written byte by byte (Pillow cannot write 16-bit RGB itself)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(height))  # filter type 0 per row
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


class _Stored:
    """What Pillow itself sees in a file (read with the file closed again)."""

    def __init__(self, path: Path) -> None:
        with Image.open(path) as im:
            self.mode = im.mode
            self.info = dict(im.info)
            self.sampling = JpegImagePlugin.get_sampling(im) if im.format == "JPEG" else None
            self.pixels = np.asarray(im)


def _assert_error(exc: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    assert str(path) in message
    for word in words:
        assert word in message.lower(), message


# --------------------------------------------------------------------------- #
# Bad inputs
# --------------------------------------------------------------------------- #


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(NstjaxError) as exc:
        load_image(path)
    _assert_error(exc, path, "not found")


def test_directory(tmp_path: Path) -> None:
    path = tmp_path / "folder.png"
    path.mkdir()
    with pytest.raises(NstjaxError) as exc:
        load_image(path)
    _assert_error(exc, path, "directory")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a JPEG\n")
    with pytest.raises(NstjaxError) as exc:
        load_image(path)
    _assert_error(exc, path, "not an image")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(NstjaxError) as exc:
        load_image(path)
    _assert_error(exc, path, "not an image")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(path)
    path.chmod(0)
    try:
        with pytest.raises(NstjaxError) as exc:
            load_image(path)
        _assert_error(exc, path, "permission denied")
    finally:
        path.chmod(0o644)


def test_permission_error_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Runs even as root (where chmod 0 does not stop reads): Pillow's open() raising
    # PermissionError is reported as such.
    path = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(path)

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(NstjaxError) as exc:
        load_image(path)
    _assert_error(exc, path, "permission denied")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_image(tmp_path: Path, suffix: str) -> None:
    whole = tmp_path / f"whole{suffix}"
    Image.fromarray(_u8_noise(64, 64)).save(whole)
    assert load_image(whole).shape == (64, 64, 3)  # the intact file is fine
    cut = tmp_path / f"cut{suffix}"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(NstjaxError) as exc:
        load_image(cut)
    _assert_error(exc, cut, "truncated")


@pytest.mark.parametrize("max_pixels", [300, 100])  # Pillow's warning path, then its error path
def test_decompression_bomb(tmp_path: Path, max_pixels: int) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (20, 20)).save(path)  # 400 pixels
    before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning may leak
        with pytest.raises(NstjaxError) as exc:
            load_image(path, max_pixels=max_pixels)
    _assert_error(exc, path, "too large", "400 pixels", f"limit of {max_pixels} pixels")
    assert Image.MAX_IMAGE_PIXELS == before  # global state restored
    assert load_image(path, max_pixels=400).shape == (20, 20, 3)  # at the limit is fine
    assert load_image(path, max_pixels=None).shape == (20, 20, 3)
    assert Image.MAX_IMAGE_PIXELS == before


# --------------------------------------------------------------------------- #
# Mode conversion
# --------------------------------------------------------------------------- #


def test_rgb_values_exact(tmp_path: Path) -> None:
    pixels = _u8_noise(5, 7)
    path = tmp_path / "rgb.png"
    Image.fromarray(pixels).save(path)
    img = load_image(path)
    assert img.dtype == np.float32 and img.shape == (5, 7, 3) and img.flags.c_contiguous
    np.testing.assert_array_equal(img, pixels.astype(np.float32) / 255)


def test_grey_l(tmp_path: Path) -> None:
    path = tmp_path / "l.png"
    Image.fromarray(np.array([[0, 128, 255]], dtype=np.uint8)).save(path)
    img = load_image(path)
    np.testing.assert_allclose(img[0, :, 0], [0, 128 / 255, 1], atol=1e-7)
    assert np.all(img[..., 0] == img[..., 1]) and np.all(img[..., 1] == img[..., 2])


def test_one_bit(tmp_path: Path) -> None:
    path = tmp_path / "bits.png"
    im = Image.new("1", (2, 1))
    im.putpixel((1, 0), 1)
    im.save(path)
    assert _Stored(path).mode == "1"
    np.testing.assert_array_equal(load_image(path)[0], [[0, 0, 0], [1, 1, 1]])


def test_palette_with_transparency(tmp_path: Path) -> None:
    path = tmp_path / "pal.png"
    im = Image.new("P", (3, 1))
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (3 * 253))
    im.putdata([0, 1, 2])
    im.info["transparency"] = 2  # index 2 (blue) is fully transparent
    im.save(path, transparency=2)
    assert _Stored(path).mode == "P"
    np.testing.assert_array_equal(load_image(path)[0], [[1, 0, 0], [0, 1, 0], [1, 1, 1]])


def test_palette_opaque(tmp_path: Path) -> None:
    path = tmp_path / "pal.gif"
    im = Image.new("P", (2, 1))
    im.putpalette([10, 20, 30, 200, 100, 50] + [0] * (3 * 254))
    im.putdata([1, 0])
    im.save(path)
    np.testing.assert_allclose(
        load_image(path)[0] * 255, [[200, 100, 50], [10, 20, 30]], atol=1e-4
    )


def test_rgba_composited_over_white(tmp_path: Path) -> None:
    path = tmp_path / "rgba.png"
    rgba = np.array([[[255, 0, 0, 0], [255, 0, 0, 255], [0, 0, 255, 128]]], dtype=np.uint8)
    Image.fromarray(rgba).save(path)
    a = 128 / 255
    expected = [[1, 1, 1], [1, 0, 0], [1 - a, 1 - a, 1]]  # colour * a + white * (1 - a)
    np.testing.assert_allclose(load_image(path)[0], expected, atol=1e-6)


def test_la_composited_over_white(tmp_path: Path) -> None:
    path = tmp_path / "la.png"
    la = np.array([[[0, 128], [64, 255]]], dtype=np.uint8)
    Image.fromarray(la, "LA").save(path)
    assert _Stored(path).mode == "LA"
    a = 128 / 255
    np.testing.assert_allclose(load_image(path)[0], [[1 - a] * 3, [64 / 255] * 3], atol=1e-6)


def test_cmyk_tiff_exact(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.tif"
    im = Image.new("CMYK", (3, 1))
    im.putdata([(255, 0, 0, 0), (0, 0, 0, 128), (0, 255, 255, 0)])  # cyan, 50% black, red
    im.save(path)
    assert _Stored(path).mode == "CMYK"
    np.testing.assert_allclose(
        load_image(path)[0], [[0, 1, 1], [127 / 255] * 3, [1, 0, 0]], atol=1e-6
    )


def test_cmyk_jpeg(tmp_path: Path) -> None:
    # Pillow writes Adobe-style inverted CMYK JPEGs and un-inverts them on read.
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=100)
    assert _Stored(path).mode == "CMYK"
    np.testing.assert_allclose(load_image(path), np.broadcast_to([1, 0, 0], (16, 16, 3)), atol=0.02)


def test_lab_tiff(tmp_path: Path) -> None:
    path = tmp_path / "lab.tif"
    # Raw "LAB" bytes (as in a CIELab TIFF): L* * 255/100, then a*, b* as signed bytes.
    # White, black, mid grey (all a* = b* = 0), and sRGB red (L*a*b* = 53.2, 80.1, 67.2).
    raw = bytes([255, 0, 0, 0, 0, 0, 137, 0, 0, 136, 80, 67])
    Image.frombytes("LAB", (4, 1), raw).save(path)
    with Image.open(path) as im:
        assert im.mode == "LAB"
        assert im.getpixel((2, 0)) == (137, 128, 128)  # Pillow's in-memory form: a*, b* + 128
    img = load_image(path)
    np.testing.assert_allclose(img[0, :2], [[1, 1, 1], [0, 0, 0]], atol=2 / 255)
    # L* = 137 / 2.55 = 53.7 is sRGB grey 128, and it stays neutral (Pillow's own
    # convert("RGB") would merely relabel the L, a, b bytes as R, G, B).
    np.testing.assert_allclose(img[0, 2], [128 / 255] * 3, atol=3 / 255)
    np.testing.assert_allclose(img[0, 3], [1, 0, 0], atol=0.1)


def test_16bit_grey_png_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "g16.png"
    values = np.array([[0, 255, 256, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(path)
    assert _Stored(path).mode == "I;16"
    img = load_image(path)
    # 255 and 256 stay dark (an 8-bit conversion would clip both to white).
    np.testing.assert_allclose(img[0, :, 0], values[0] / 65535, atol=1e-7)
    np.testing.assert_allclose(img[0, 3], [0.5] * 3, atol=1e-4)


@pytest.mark.parametrize("mode", ["I;16B", "I"])
def test_16bit_big_endian_and_int32_tiff(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"{mode.replace(';', '_')}.tif"
    im = Image.new(mode, (3, 1))
    for x, v in enumerate([0, 32768, 65535]):
        im.putpixel((x, 0), v)
    im.save(path)
    assert _Stored(path).mode == mode
    np.testing.assert_allclose(load_image(path)[0, :, 1], [0, 32768 / 65535, 1], atol=1e-7)


def test_float_tiff(tmp_path: Path) -> None:
    path = tmp_path / "f.tif"
    Image.fromarray(np.array([[0.25, 2.0, -1.0]], dtype=np.float32)).save(path)
    assert _Stored(path).mode == "F"
    np.testing.assert_allclose(load_image(path)[0, :, 2], [0.25, 1.0, 0.0])


def test_16bit_rgb_png(tmp_path: Path) -> None:
    path = tmp_path / "rgb16.png"
    rows = np.zeros((2, 3, 3), dtype=">u2")
    rows[..., 0], rows[..., 1], rows[..., 2] = 65535, 32768, 1000
    path.write_bytes(_png(3, 2, 16, 2, rows))
    img = load_image(path)
    assert img.shape == (2, 3, 3) and img.dtype == np.float32
    # Pillow keeps the most significant byte of each 16-bit sample.
    np.testing.assert_allclose(img[1, 2], [1.0, 128 / 255, 3 / 255], atol=1e-6)
    np.testing.assert_allclose(img[1, 2], [1.0, 32768 / 65535, 1000 / 65535], atol=1 / 255)


def test_16bit_grey_alpha_png(tmp_path: Path) -> None:
    path = tmp_path / "la16.png"
    rows = np.zeros((1, 2, 2), dtype=">u2")
    rows[0, 0] = (0, 0)  # black, transparent -> white
    rows[0, 1] = (65535, 65535)  # white, opaque
    path.write_bytes(_png(2, 1, 16, 4, rows))
    np.testing.assert_allclose(load_image(path)[0], np.ones((2, 3)), atol=1e-6)


def test_embedded_srgb_icc_profile_is_near_identity(tmp_path: Path) -> None:
    pixels = _u8_noise(8, 8)
    path = tmp_path / "icc.png"
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(pixels).save(path, icc_profile=profile)
    assert _Stored(path).info.get("icc_profile")
    np.testing.assert_allclose(load_image(path), pixels / 255, atol=3 / 255)


@pytest.mark.parametrize(
    ("orientation", "marked"),
    [
        (6, (slice(0, 8), slice(-8, None))),  # rotate 90 cw: stored top-left -> top-right
        (8, (slice(-8, None), slice(0, 8))),  # rotate 90 ccw: stored top-left -> bottom-left
    ],
)
def test_exif_orientation(tmp_path: Path, orientation: int, marked: tuple[slice, slice]) -> None:
    stored = np.zeros((16, 32, 3), dtype=np.uint8)  # landscape as stored: H=16, W=32
    stored[:8, :8] = (255, 0, 0)  # red block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"rot{orientation}.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=100, subsampling=0)
    img = load_image(path)
    assert img.shape == (32, 16, 3)  # portrait as displayed
    np.testing.assert_allclose(img[marked], np.broadcast_to([1, 0, 0], (8, 8, 3)), atol=0.1)
    # Nothing red anywhere else.
    rest = np.ones(img.shape[:2], bool)
    rest[marked] = False
    assert img[rest][:, 0].max() < 0.2


# --------------------------------------------------------------------------- #
# Saving
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff", ".bmp", ".PNG"])
def test_lossless_round_trip(tmp_path: Path, suffix: str) -> None:
    img = _noise(9, 13)
    path = tmp_path / f"out{suffix}"
    assert save_image(path, img) == path
    np.testing.assert_array_equal(load_image(path), np.rint(img * 255) / 255)


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".webp"])
def test_lossy_round_trip(tmp_path: Path, suffix: str) -> None:
    yy, xx = np.mgrid[0:32, 0:48] / np.float32(48)
    img = np.stack([yy, xx, 0.5 * (yy + xx)], axis=-1).astype(np.float32)  # smooth
    path = save_image(tmp_path / f"out{suffix}", img)
    back = load_image(path)
    assert back.shape == img.shape
    assert np.abs(back - img).mean() < 0.01


def test_jpeg_quality_changes_size_and_subsampling(tmp_path: Path) -> None:
    img = _noise(64, 64)
    low = save_image(tmp_path / "low.jpg", img, quality=20)
    high = save_image(tmp_path / "high.jpg", img, quality=95)
    assert low.stat().st_size < high.stat().st_size / 2
    assert _Stored(high).sampling == 0  # 4:4:4 at quality >= 90
    assert _Stored(low).sampling == 2  # Pillow default 4:2:0


def test_save_clips_and_rounds(tmp_path: Path) -> None:
    img = np.array([[[-0.5, 0.5, 1.5], [0.002, 0.998, 1.0]]], dtype=np.float32)
    path = save_image(tmp_path / "clip.png", img)
    np.testing.assert_array_equal(
        _Stored(path).pixels, [[[0, 128, 255], [1, 254, 255]]]
    )


def test_save_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "out.png"
    path.write_bytes(b"old")
    save_image(path, _noise(4, 4))
    assert load_image(path).shape == (4, 4, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_saved_files_follow_the_umask(tmp_path: Path, umask: int, expected: int) -> None:
    # A temp file from mkstemp is 0600; the saved image must get what open() would give it.
    old = os.umask(umask)
    try:
        path = save_image(tmp_path / "out.png", _noise(4, 4))
        replaced = save_image(path, _noise(4, 4, seed=1))  # replacing an existing file: same rule
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == expected
    assert stat.S_IMODE(replaced.stat().st_mode) == expected
    assert new_file_mode_under(umask) == expected


def new_file_mode_under(umask: int) -> int:
    from nstjax.io.atomic import new_file_mode

    old = os.umask(umask)
    try:
        return new_file_mode()
    finally:
        os.umask(old)


def test_atomic_write_fsyncs_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nstjax.io import atomic

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    save_image(tmp_path / "out.png", _noise(4, 4))
    assert events[:2] == ["fsync", "replace"]


def test_missing_output_directory(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir" / "out.png"
    for call in (lambda: check_output_path(path), lambda: save_image(path, _noise(4, 4))):
        with pytest.raises(NstjaxError) as exc:
            call()
        _assert_error(exc, path, "output directory does not exist")


@pytest.mark.parametrize("name", ["out.gif", "out.xyz", "out"])
def test_unknown_extension(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    for call in (lambda: check_output_path(path), lambda: save_image(path, _noise(4, 4))):
        with pytest.raises(NstjaxError) as exc:
            call()
        _assert_error(exc, path, "supported")
        for suffix in SUPPORTED_SUFFIXES:
            assert suffix in str(exc.value)
    assert not path.exists()


def test_output_path_is_directory(tmp_path: Path) -> None:
    path = tmp_path / "dir.png"
    path.mkdir()
    with pytest.raises(NstjaxError) as exc:
        check_output_path(path)
    _assert_error(exc, path, "directory")


def test_check_output_path_ok(tmp_path: Path) -> None:
    path = tmp_path / "fine.JPG"
    assert check_output_path(path) == path
    assert check_output_path(str(path)) == path
    assert not path.exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_not_saved(tmp_path: Path, bad: float) -> None:
    img = _noise(4, 4)
    img[1, 2, 0] = bad
    path = tmp_path / "nan.png"
    with pytest.raises(NstjaxError) as exc:
        save_image(path, img)
    _assert_error(exc, path, "nan")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("quality", [0, 101, 95.5, True])
def test_bad_quality(tmp_path: Path, quality: object) -> None:
    with pytest.raises(NstjaxError, match="quality"):
        save_image(tmp_path / "q.jpg", _noise(4, 4), quality=quality)  # type: ignore[arg-type]


def test_wrong_shape_or_dtype_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        save_image(tmp_path / "a.png", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="float"):
        save_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), RuntimeError("boom")])
def test_failed_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    dest = tmp_path / "out.png"
    dest.write_bytes(b"previous result")

    def partial_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        with open(fp, "wb") as f:  # type: ignore[arg-type]
            f.write(b"\x89PNG\r\n\x1a\n half")  # a few bytes, then the "disk" fails
        raise error

    monkeypatch.setattr(Image.Image, "save", partial_save)
    expected = NstjaxError if isinstance(error, OSError) else RuntimeError
    with pytest.raises(expected) as exc:
        save_image(dest, _noise(8, 8))
    if expected is NstjaxError:
        _assert_error(exc, dest, "no space left")  # ENOSPC: "PATH: no space left on device; nothing was written"
    assert dest.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temp file left


# --------------------------------------------------------------------------- #
# Resizing
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("hw", "size", "expected"),
    [
        ((600, 800), 512, (384, 512)),
        ((800, 600), 512, (512, 384)),
        ((100, 50), 400, (400, 200)),  # upscaling
        ((10, 10), 5, (5, 5)),
        ((1, 1000), 10, (1, 10)),  # never below 1
        ((3, 7), 7, (3, 7)),  # unchanged
        ((2, 3), 2, (1, 2)),  # 4/3 rounds to 1
        ((1, 2), 3, (2, 3)),  # 1.5 rounds up
    ],
)
def test_fit_longest_side(hw: tuple[int, int], size: int, expected: tuple[int, int]) -> None:
    assert fit_longest_side(hw, size) == expected


def test_fit_longest_side_rejects_bad_size() -> None:
    with pytest.raises(NstjaxError):
        fit_longest_side((10, 10), 0)
    with pytest.raises(ValueError):
        fit_longest_side((0, 10), 5)


def test_resize_constant_and_dtype() -> None:
    img = np.full((20, 30, 3), (0.2, 0.5, 0.9), dtype=np.float32)
    for shape in [(7, 11), (45, 60)]:
        out = resize_image(img, shape)
        assert out.shape == (*shape, 3) and out.dtype == np.float32
        np.testing.assert_allclose(out, np.broadcast_to((0.2, 0.5, 0.9), out.shape), atol=1e-5)


def test_resize_downscale_is_antialiased_and_in_range() -> None:
    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)
    img = np.repeat(checker[..., None], 3, axis=-1)
    out = resize_image(img, (8, 8))
    # A 1-pixel checkerboard averages to grey, not to an aliased pattern.
    np.testing.assert_allclose(out, 0.5, atol=0.02)
    up = resize_image(_noise(8, 8), (40, 40))  # Lanczos rings; clipped to the input range
    assert up.min() >= 0.0 and up.max() <= 1.0


def test_resize_keeps_float_precision_and_gradients() -> None:
    ramp = np.linspace(0, 1, 101, dtype=np.float32)
    img = np.broadcast_to(ramp[None, :, None], (4, 101, 3)).copy()
    out = resize_image(img, (4, 201))
    # Pixel centres: output column j samples input column (j + 0.5) * 101/201 - 0.5,
    # whose ramp value is that / 100. Lanczos-3 follows a linear ramp away from the edges
    # to within a few percent of one input step (0.01).
    expected = ((np.arange(201) + 0.5) * 101 / 201 - 0.5) / 100
    np.testing.assert_allclose(out[2, 4:-4, 0], expected[4:-4], atol=1e-3)
    assert len(np.unique(out[2, :, 0])) > 190  # no 8-bit quantisation


def test_resize_same_shape_is_a_copy() -> None:
    img = _noise(5, 6)
    out = resize_image(img, (5, 6))
    np.testing.assert_array_equal(out, img)
    assert out is not img
