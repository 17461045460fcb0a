"""Inputs and outputs of the feed-forward stylisers: images, folders and videos in, files out.

Shared by ``fast apply`` and ``adain apply``. :func:`plan_jobs` turns the
command's inputs and ``-o`` into (source, destination) pairs and checks them
before any model is loaded; :func:`run_jobs` stylises each with a batch
function, images one by one and videos in batches of frames
(:func:`nstjax.io.video.transform_video`).

Output rules (:func:`output_targets`, the one ``-o`` rule of every command that writes one output per
input: ``fast apply``, ``adain apply``, ``cyclegan translate``, ``sketch2photo render``):

* one input *file* and an ``-o`` with a file extension (and not an existing
  folder): that file. An image gives an image (any extension ``save_image``
  writes), a video a video of the same kind (``.mp4`` -> ``.mp4``);
* otherwise ``-o`` is a folder (created if missing), and each output keeps its
  input's file name. Several inputs with an ``-o`` that names a file (an image
  or video extension, not an existing folder) is an error, not a folder named
  like a file. An output may never overwrite one of the inputs.

Folders are read flat (not recursively): their images and videos, sorted by name.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import NstjaxError
from .images import (
    SUPPORTED_SUFFIXES,
    check_output_path,
    fit_side,
    load_image,
    output_folder,
    resize_image,
    save_image,
)
from .video import VIDEO_SUFFIXES, VideoProgress, VideoResult, is_video, require_video_extra, transform_video

__all__ = [
    "MediaJob",
    "MediaProgress",
    "MediaResult",
    "expand_inputs",
    "output_targets",
    "plan_jobs",
    "run_jobs",
]

Stylizer = Callable[[np.ndarray], np.ndarray]
"""Float32 ``[B, H, W, 3]`` RGB in [0, 1] -> stylised images of the same shape."""


@dataclasses.dataclass(frozen=True)
class MediaJob:
    """One input file and where its stylised version goes; ``kind`` is ``"image"`` or ``"video"``."""

    source: Path
    dest: Path
    kind: str


@dataclasses.dataclass(frozen=True)
class MediaProgress:
    """Progress of :func:`run_jobs`: file ``index`` (from 1) of ``count``; ``done`` of ``total`` frames
    of it (an image is one frame)."""

    source: Path
    dest: Path
    index: int
    count: int
    done: int
    total: int


@dataclasses.dataclass(frozen=True)
class MediaResult:
    """One written output. ``video`` holds frame rate, frame count and flicker for videos;
    ``seconds`` is the wall time of the file (decode, stylise, encode)."""

    job: MediaJob
    shape: tuple[int, int]
    seconds: float
    video: VideoResult | None = None


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in SUPPORTED_SUFFIXES:
        return "image"
    return None


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[tuple[Path, str]]:
    """``(file, kind)`` for each input file and each image/video inside each input folder.

    Raises:
      NstjaxError: a missing input, a file that is neither an image nor a video by
        its extension, a folder with neither, or no inputs at all.
    """
    found: list[tuple[Path, str]] = []
    if not inputs:
        raise NstjaxError("no inputs given")
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise NstjaxError("no such file or folder", path)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and _kind(p))
            if not files:
                looked = ", ".join((*SUPPORTED_SUFFIXES, *VIDEO_SUFFIXES))
                raise NstjaxError(f"no images or videos in the folder (looked for {looked})", path)
            found.extend((p, _kind(p)) for p in files)
            continue
        kind = _kind(path)
        if kind is None:
            raise NstjaxError(
                f"neither an image nor a video by its extension (images: {', '.join(SUPPORTED_SUFFIXES)}; "
                f"videos: {', '.join(VIDEO_SUFFIXES)})",
                path,
            )
        found.append((path, kind))
    return found


def output_targets(
    inputs: Sequence[str | os.PathLike], files: Sequence[Path], output: str | os.PathLike, suffix: str | None = None
) -> list[Path]:
    """Where each of ``files`` (the inputs expanded) is written, by the ``-o`` rule of the module docstring.

    ``suffix`` (e.g. ``".png"``) replaces each input's extension in a folder; None keeps the input's name.
    Nothing is created but the output folder. Raises NstjaxError (one line naming ``output``) for a file
    name where a folder is needed, two outputs of the same name, or an output that is one of the inputs.
    """
    output = Path(output)
    single_file = len(inputs) == 1 and not Path(inputs[0]).is_dir()
    if single_file and output.suffix and not output.is_dir():
        targets = [output]
    else:
        if output.suffix.lower() in (*SUPPORTED_SUFFIXES, *VIDEO_SUFFIXES) and not output.is_dir():
            raise NstjaxError(f"{len(files)} outputs need a folder for -o, but this names a file", output)
        output_folder(output, not_a_folder="several outputs need a folder here, but this is a file")
        targets = [output / (f.name if suffix is None else f"{f.stem}{suffix}") for f in files]
        seen: dict[Path, Path] = {}
        for source, target in zip(files, targets, strict=True):
            if target in seen:
                raise NstjaxError(f"two inputs would both be written to {target.name} in {output}: {seen[target]} and {source}")
            seen[target] = source
    sources = {Path(f).resolve() for f in files}
    for target in targets:
        if target.resolve() in sources:
            raise NstjaxError("the output would overwrite an input; choose another -o", target)
    return targets


def plan_jobs(inputs: Sequence[str | os.PathLike], output: str | os.PathLike) -> list[MediaJob]:
    """The (source, destination) pairs for ``inputs`` and ``-o output`` (see the module docstring).

    Checks everything that can be checked without the model: inputs exist and
    are of a known kind, destinations are writable kinds, nothing overwrites an
    input, no two outputs share a name, and the video extra is installed when a
    video is involved. Creates the output folder when one is needed.
    """
    files = expand_inputs(inputs)
    output = Path(output)
    targets = output_targets(inputs, [f for f, _ in files], output)
    if len(targets) == 1 and targets[0] == output:  # one input file to the file -o names
        (source, kind), = files
        if kind == "video":
            if output.suffix.lower() != source.suffix.lower():
                kind_of = source.suffix.lower()
                raise NstjaxError(f"the output of a {kind_of} video must be a {kind_of} file", output)
            if not output.parent.is_dir():
                raise NstjaxError("output folder does not exist", output)
        else:
            if is_video(output):
                raise NstjaxError("the output of an image must be an image file", output)
            check_output_path(output)
    jobs = [MediaJob(source, target, kind) for (source, kind), target in zip(files, targets, strict=True)]
    if any(job.kind == "video" for job in jobs):
        require_video_extra()
    return jobs


def run_jobs(
    jobs: Sequence[MediaJob],
    stylizer_for: Callable[[MediaJob], Stylizer],
    *,
    size: int | None = None,
    side: str = "longest",
    batch_size: int = 4,
    blend: float = 0.0,
    motion: float = 0.1,
    quality: int = 95,
    video_quality: int = 18,
    progress: Callable[[MediaProgress], None] | None = None,
) -> list[MediaResult]:
    """Stylise every job in turn and write its output (atomically).

    Args:
      stylizer_for: gives the batch function for a file (AdaIN recolours its style
        per file when preserving colour; a fixed network returns the same function).
      size: side images and frames are resized to first (None: as they are).
      side: which side ``size`` is: ``"longest"`` (``fast apply``) or ``"shortest"`` (``adain apply``,
        torchvision's ``Resize(size)`` as in the AdaIN reference).
      batch_size: video frames per batch.
      blend, motion: temporal blending of video frames (:class:`nstjax.io.video.TemporalBlend`).
      quality: JPEG/WebP quality of images; ``video_quality``: CRF of videos.
      progress: receives :class:`MediaProgress` after each image and each batch of frames.
    """
    if side not in ("longest", "shortest"):
        raise NstjaxError(f"side must be 'longest' or 'shortest', got {side!r}")
    results = []
    for index, job in enumerate(jobs, 1):
        start = time.perf_counter()
        fn = stylizer_for(job)
        if job.kind == "video":

            def frames_done(p: VideoProgress, job=job, index=index) -> None:
                if progress is not None:
                    progress(MediaProgress(job.source, job.dest, index, len(jobs), p.done, p.total))

            video = transform_video(job.source, job.dest, fn, size=size, side=side, batch_size=batch_size, blend=blend,
                                    motion=motion, quality=video_quality, progress=frames_done)
            results.append(MediaResult(job, video.shape, time.perf_counter() - start, video))
            continue
        image = load_image(job.source)
        if size is not None:
            image = resize_image(image, fit_side(image.shape[:2], size, side))
        out = np.asarray(fn(image[None]), np.float32)[0]
        save_image(job.dest, out, quality=quality)
        results.append(MediaResult(job, image.shape[:2], time.perf_counter() - start))
        if progress is not None:
            progress(MediaProgress(job.source, job.dest, index, len(jobs), 1, 1))
    return results
