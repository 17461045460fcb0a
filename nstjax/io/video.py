"""Video in and out for the feed-forward stylisers: decode in batches, transform, measure flicker, write.

Needs the optional ``video`` extra (``pip install 'nstjax[video]'``: imageio and
imageio-ffmpeg, which ships its own ffmpeg binary). Without it every function
here raises a one-line :class:`~nstjax.errors.NstjaxError` saying so.

Formats (the output is always of the input's kind):

* ``.mp4``: H.264 (libx264, yuv420p, CRF ``quality``), read and written by ffmpeg;
* ``.webm``: VP9 (libvpx-vp9, constant quality), by ffmpeg;
* ``.gif``: through imageio's Pillow plugin; each frame keeps its own duration and
  the loop count is kept.

The frame rate and the number of frames are kept. Audio is not: a video with an
audio track gives a :class:`VideoWarning` saying it was dropped. Frames are
RGB float32 ``[B, H, W, 3]`` in [0, 1] throughout.

**Flicker** (:class:`FlickerMeter`): a per-frame styliser turns small changes
between frames (noise, compression, lighting) into large changes of texture.
The measure is the mean absolute frame-to-frame change of the output divided by
that of the input (both in [0, 1] pixels, at the processed size): 1 means the
output changes as much as the input does, 3 means three times as much.

**Temporal blending** (:class:`TemporalBlend`) lowers it: each output frame is
blended with the previous *shown* frame, ``shown_t = (1 − w) · out_t + w · shown_{t−1}``,
with a per-pixel weight ``w = strength · max(0, 1 − |Δinput| / motion)`` that falls
to 0 where the input itself changed by ``motion`` or more. Static regions are
smoothed; moving ones keep their own frame. The price is *lag*: the shown frame
deviates from the per-frame stylisation (reported as ``lag``, the mean absolute
difference), visible as ghosting on slow motion.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NstjaxError, NstjaxWarning
from .atomic import atomic_path
from .images import fit_side, resize_image

__all__ = [
    "VIDEO_SUFFIXES",
    "FlickerMeter",
    "TemporalBlend",
    "VideoInfo",
    "VideoProgress",
    "VideoResult",
    "VideoWarning",
    "is_video",
    "probe_video",
    "read_frames",
    "require_video_extra",
    "transform_video",
    "write_video",
]

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif")
"""File extensions (lower case) read and written as video."""

_FFMPEG_CODECS = {
    ".mp4": ("libx264", lambda q: ["-crf", str(q), "-preset", "medium"]),
    ".webm": ("libvpx-vp9", lambda q: ["-crf", str(q + 13), "-b:v", "0", "-row-mt", "1"]),
}


class VideoWarning(NstjaxWarning):
    """Something about a video the user should know (its audio track was dropped)."""


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` has a video extension (:data:`VIDEO_SUFFIXES`); the file is not opened."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def require_video_extra() -> tuple[Any, Any]:
    """``(imageio.v3, imageio_ffmpeg)``, or a one-line NstjaxError naming the missing extra."""
    try:
        import imageio.v3 as iio
        import imageio_ffmpeg
    except ImportError as exc:
        raise NstjaxError(
            f"video files need the optional 'video' extra ({exc.name} is not installed): "
            "pip install 'nstjax[video]'"
        ) from None
    return iio, imageio_ffmpeg


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What a video file holds.

    fps: frames per second (for a GIF, 1000 / the mean frame duration).
    frames: number of frames (counted by decoding).
    shape: (height, width) of a frame.
    has_audio: the file has an audio track (it will be dropped).
    durations: GIF only: each frame's duration in milliseconds; ``loop`` its loop count (0 = forever).
    """

    path: Path
    fps: float
    frames: int
    shape: tuple[int, int]
    has_audio: bool = False
    durations: tuple[float, ...] = ()
    loop: int = 0


@dataclasses.dataclass(frozen=True)
class VideoProgress:
    """``done`` of ``total`` frames of ``path`` are written (a video progress callback's event)."""

    path: Path
    done: int
    total: int


@dataclasses.dataclass(frozen=True)
class VideoResult:
    """A transformed video.

    path: the file written. frames, fps: as the input's.
    input_change, output_change: mean absolute frame-to-frame change in [0, 1] pixels.
    flicker: ``output_change / input_change`` (None for a single frame or a still input).
    lag: mean absolute difference between the written frames and the per-frame outputs
      (0 without temporal blending).
    audio_dropped: the input had an audio track.
    """

    path: Path
    frames: int
    fps: float
    shape: tuple[int, int]
    input_change: float
    output_change: float
    flicker: float | None
    lag: float
    audio_dropped: bool


@contextlib.contextmanager
def _spawning() -> Iterator[None]:
    """Silence JAX's warning about ``os.fork`` while ffmpeg is started.

    ``subprocess`` forks and at once runs the ffmpeg binary; the child never runs
    Python or JAX code, so the deadlock JAX warns about cannot happen.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        yield


def _check_input(path: Path) -> None:
    if not path.exists():
        raise NstjaxError("no such file", path)
    if path.is_dir():
        raise NstjaxError("is a folder, not a video file", path)
    if not is_video(path):
        raise NstjaxError(f"not a video file name (expected {', '.join(VIDEO_SUFFIXES)})", path)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame rate, frame count, frame size and audio of a video file.

    Raises:
      NstjaxError: missing file, unsupported extension, a file ffmpeg or Pillow cannot
        decode, or a video without frames.
    """
    path = Path(path)
    _check_input(path)
    iio, ffmpeg = require_video_extra()
    try:
        if path.suffix.lower() == ".gif":
            props = iio.improps(path, plugin="pillow")
            count = int(props.n_images or 1) if props.is_batch else 1
            durations = []
            loop = 0
            for i in range(count):
                meta = iio.immeta(path, index=i, plugin="pillow")
                durations.append(float(meta.get("duration") or 100.0))
                loop = int(meta.get("loop", 0) or 0)
            shape = tuple(int(v) for v in props.shape[-3:-1])
            fps = 1000.0 * count / max(sum(durations), 1e-6)
            return VideoInfo(path, fps, count, shape, False, tuple(durations), loop)
        with _spawning():
            reader = ffmpeg.read_frames(str(path))
            try:
                meta = next(reader)
            finally:
                reader.close()
            frames, _ = ffmpeg.count_frames_and_secs(str(path))
    except NstjaxError:
        raise
    except Exception as exc:  # noqa: BLE001 - ffmpeg and Pillow report damage in many ways
        raise NstjaxError(f"cannot read the video ({' '.join(str(exc).split())[:200]})", path) from None
    if frames < 1:
        raise NstjaxError("the video has no frames", path)
    w, h = meta["size"]
    return VideoInfo(path, float(meta["fps"]), int(frames), (int(h), int(w)), "audio_codec" in meta)


def read_frames(path: str | os.PathLike, batch_size: int = 8) -> Iterator[np.ndarray]:
    """The frames of a video in batches: float32 ``[b, H, W, 3]`` RGB in [0, 1] (the last may be shorter).

    Frames are decoded as they are needed, so memory holds one batch.
    """
    path = Path(path)
    _check_input(path)
    iio, ffmpeg = require_video_extra()
    if path.suffix.lower() == ".gif":
        frames = iio.imiter(path, plugin="pillow", mode="RGB")
    else:
        frames = _ffmpeg_frames(ffmpeg, path)
    batch: list[np.ndarray] = []
    try:
        for frame in frames:
            batch.append(np.asarray(frame, np.float32) / 255.0)
            if len(batch) == batch_size:
                yield np.stack(batch)
                batch = []
    except NstjaxError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise NstjaxError(f"cannot decode the video ({' '.join(str(exc).split())[:200]})", path) from None
    if batch:
        yield np.stack(batch)


def _ffmpeg_frames(ffmpeg: Any, path: Path) -> Iterator[np.ndarray]:
    reader = ffmpeg.read_frames(str(path))
    try:
        with _spawning():
            meta = next(reader)
        w, h = meta["size"]
        for raw in reader:
            yield np.frombuffer(raw, np.uint8).reshape(h, w, 3)
    finally:
        reader.close()


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(frames)):
        raise NstjaxError("a frame holds NaN or infinite values; not written")
    return np.rint(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_video(
    path: str | os.PathLike,
    batches: Iterator[np.ndarray],
    *,
    fps: float,
    durations: tuple[float, ...] = (),
    loop: int = 0,
    quality: int = 18,
) -> Path:
    """Write frames (batches of float ``[b, H, W, 3]`` in [0, 1]) as the video kind of ``path``'s extension.

    Atomic: the file appears under its name only when complete. For ``.mp4`` and
    ``.webm`` an odd height or width is padded by one repeated row/column (yuv420p
    needs even sizes). ``quality``: CRF for H.264 (lower is better, 18 is visually
    lossless); VP9 uses ``quality + 13``. GIFs use ``durations`` (ms per frame) when
    given, else ``1000 / fps``.

    Raises:
      NstjaxError: unsupported extension, missing or unwritable folder, or a failed encode.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise NstjaxError(f"not a video file name (expected {', '.join(VIDEO_SUFFIXES)})", path)
    if path.is_dir():
        raise NstjaxError("is a folder; give a video file name", path)
    if not path.parent.is_dir():
        raise NstjaxError("output folder does not exist", path)
    iio, ffmpeg = require_video_extra()
    # Only the encoder's failures become "cannot encode"; an error of whoever makes the frames (the
    # styliser) passes through unchanged. Either way the temporary file is removed.
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            frames = [f for batch in batches for f in _to_uint8(batch)]
            if not frames:
                raise NstjaxError("no frames to write", path)
            ms = list(durations) if len(durations) == len(frames) else [1000.0 / fps] * len(frames)
            with _encoding(path):
                iio.imwrite(tmp, np.stack(frames), plugin="pillow", extension=".gif", duration=ms, loop=loop)
        else:
            _write_ffmpeg(ffmpeg, tmp, path, batches, suffix, fps, quality)
    return path


@contextlib.contextmanager
def _encoding(path: Path) -> Iterator[None]:
    """Turn an encoder's failure into a one-line NstjaxError naming the output."""
    try:
        yield
    except NstjaxError:
        raise
    except OSError as exc:
        raise NstjaxError(f"cannot write the video ({exc.strerror or exc})", path) from None
    except Exception as exc:  # noqa: BLE001 - ffmpeg reports failures as RuntimeError/IOError text
        raise NstjaxError(f"cannot encode the video ({' '.join(str(exc).split())[:200]})", path) from None


def _write_ffmpeg(ffmpeg: Any, tmp: Path, path: Path, batches: Iterator[np.ndarray], suffix: str, fps: float,
                  quality: int) -> None:
    codec, params = _FFMPEG_CODECS[suffix]
    writer = None
    try:
        for batch in batches:
            frames = _to_uint8(batch)
            h, w = frames.shape[1:3]
            frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            with _encoding(path):
                if writer is None:
                    writer = ffmpeg.write_frames(
                        str(tmp), (frames.shape[2], frames.shape[1]), fps=Fraction(fps).limit_denominator(100000),
                        codec=codec, quality=None, macro_block_size=1, ffmpeg_log_level="error",
                        output_params=params(int(quality)),
                    )
                    with _spawning():
                        writer.send(None)
                for frame in frames:
                    writer.send(np.ascontiguousarray(frame))
        if writer is None:
            raise NstjaxError("no frames to write", path)
    finally:
        if writer is not None:
            with _encoding(path):
                writer.close()


# --------------------------------------------------------------------------- flicker


class FlickerMeter:
    """Streams pairs of (input, output) frames and measures their frame-to-frame change.

    :attr:`input_change` / :attr:`output_change`: mean absolute difference between
    consecutive frames, over all pixels and channels ([0, 1] units).
    :attr:`flicker`: their ratio (None until two frames, or for a still input).
    """

    def __init__(self):
        self._prev_in: np.ndarray | None = None
        self._prev_out: np.ndarray | None = None
        self._sum_in = 0.0
        self._sum_out = 0.0
        self.pairs = 0

    def update(self, inputs: np.ndarray, outputs: np.ndarray) -> None:
        """Add a batch of consecutive frames, inputs and outputs ``[b, H, W, 3]`` of the same shape."""
        for x, y in zip(inputs, outputs):
            if self._prev_in is not None:
                self._sum_in += float(np.mean(np.abs(x - self._prev_in)))
                self._sum_out += float(np.mean(np.abs(y - self._prev_out)))
                self.pairs += 1
            self._prev_in, self._prev_out = x, y

    @property
    def input_change(self) -> float:
        return self._sum_in / self.pairs if self.pairs else 0.0

    @property
    def output_change(self) -> float:
        return self._sum_out / self.pairs if self.pairs else 0.0

    @property
    def flicker(self) -> float | None:
        if not self.pairs or self.input_change <= 1e-6:
            return None
        return self.output_change / self.input_change


class TemporalBlend:
    """Motion-aware blending of consecutive outputs (see the module docstring).

    Args:
      strength: weight of the previous shown frame where the input is still, in [0, 1)
        (0 = off). 0.5–0.8 is typical.
      motion: input change (mean over channels, [0, 1] units) at which blending
        stops; larger values blend moving regions too (more ghosting).
    """

    def __init__(self, strength: float, motion: float = 0.1):
        if not 0.0 <= strength < 1.0:
            raise NstjaxError(f"temporal blend strength must be in [0, 1), got {strength}")
        if motion <= 0:
            raise NstjaxError(f"motion threshold must be positive, got {motion}")
        self.strength = float(strength)
        self.motion = float(motion)
        self._prev_in: np.ndarray | None = None
        self._prev_shown: np.ndarray | None = None
        self._lag = 0.0
        self.frames = 0

    def __call__(self, inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        """The frames to show for a batch of consecutive ``inputs`` and their per-frame ``outputs``."""
        shown = np.empty_like(outputs)
        for i, (x, y) in enumerate(zip(inputs, outputs)):
            if self._prev_shown is None or self.strength == 0.0:
                s = y
            else:
                change = np.mean(np.abs(x - self._prev_in), axis=-1, keepdims=True)
                w = self.strength * np.clip(1.0 - change / self.motion, 0.0, 1.0)
                s = (1.0 - w) * y + w * self._prev_shown
            self._lag += float(np.mean(np.abs(s - y)))
            self.frames += 1
            shown[i] = s
            self._prev_in, self._prev_shown = x, s
        return shown

    @property
    def lag(self) -> float:
        """Mean absolute difference between shown frames and per-frame outputs so far."""
        return self._lag / self.frames if self.frames else 0.0


# --------------------------------------------------------------------------- the pipeline


def transform_video(
    source: str | os.PathLike,
    dest: str | os.PathLike,
    fn: Callable[[np.ndarray], np.ndarray],
    *,
    size: int | None = None,
    side: str = "longest",
    batch_size: int = 4,
    blend: float = 0.0,
    motion: float = 0.1,
    quality: int = 18,
    progress: Callable[[VideoProgress], None] | None = None,
) -> VideoResult:
    """Decode ``source`` in batches, apply ``fn`` to each, write ``dest`` (same kind), measure flicker.

    Args:
      fn: frames float32 ``[b, h, w, 3]`` in [0, 1] -> stylised frames of the same shape.
      size: the side of the frames (the longest, or with ``side="shortest"`` the shortest) they are resized
        to before ``fn`` (None: as decoded).
      batch_size: frames decoded and transformed at a time.
      blend, motion: :class:`TemporalBlend` settings (``blend=0``: off).
      progress: receives :class:`VideoProgress` after each batch.

    Raises:
      NstjaxError: unreadable input, an output of another kind than the input, or a failed encode.
    """
    source, dest = Path(source), Path(dest)
    info = probe_video(source)
    if dest.suffix.lower() != source.suffix.lower():
        raise NstjaxError(f"the output must be a {source.suffix.lower()} file like its input", dest)
    if dest.resolve() == source.resolve():
        raise NstjaxError("the output would overwrite the input video", dest)
    if info.has_audio:
        warnings.warn(
            VideoWarning(f"{source}: the audio track is dropped (the output has video only)"), stacklevel=2
        )
    shape = info.shape if size is None else fit_side(info.shape, size, side)
    meter = FlickerMeter()
    blender = TemporalBlend(blend, motion)
    done = 0

    def stylised() -> Iterator[np.ndarray]:
        nonlocal done
        for frames in read_frames(source, batch_size):
            if frames.shape[1:3] != shape:
                frames = np.stack([resize_image(f, shape) for f in frames])
            out = np.asarray(fn(frames), np.float32)
            if out.shape != frames.shape:
                raise NstjaxError(f"the styliser returned frames of shape {out.shape[1:]}, expected {frames.shape[1:]}")
            out = blender(frames, np.clip(out, 0.0, 1.0))
            meter.update(frames, out)
            done += len(frames)
            yield out
            if progress is not None:
                progress(VideoProgress(dest, done, info.frames))

    write_video(dest, stylised(), fps=info.fps, durations=info.durations, loop=info.loop, quality=quality)
    return VideoResult(
        path=dest, frames=done, fps=info.fps, shape=shape, input_change=meter.input_change,
        output_change=meter.output_change, flicker=meter.flicker, lag=blender.lag, audio_dropped=info.has_audio,
    )  # fmt: skip
