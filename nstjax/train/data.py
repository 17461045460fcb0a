"""Image-folder datasets for training: unpaired, paired by file stem, or plain; seeded batches.

Every batch is a pure function of ``(seed, step)``: which files go into it and
how each is cropped and flipped. Resuming at step ``s`` therefore replays
exactly the batches an uninterrupted run would have seen, with no iterator
state in the checkpoint, on any number of devices or hosts.

Sampling: an *epoch* is ``len(dataset)`` samples (for unpaired data, the larger
folder's size, as in the CycleGAN paper's code). Within epoch ``e`` the
samples come in the order of a permutation seeded by ``(seed, e)``; the second
folder of an unpaired set is sampled independently. Each sample's augmentation
(crop offset, flip) comes from a generator seeded by ``(seed, step, position)``.

Augmentation (:class:`Augment`), by default the authors' ``resize_and_crop``
(junyanz/pytorch-CycleGAN-and-pix2pix, NVlabs/SPADE): the image is squashed to
``load_size x load_size`` (bicubic for photos, nearest neighbour for label maps),
then a random ``crop_size`` square is cut and flipped left-right with probability
½. ``resize="short_side"`` keeps the aspect ratio instead, ``crop="center"`` cuts
the middle, ``flip=False`` never mirrors. Fields of one paired sample share the
crop and the flip.

Decoding runs in a thread pool a few batches ahead (Pillow releases the GIL
while decoding). A file that cannot be read is skipped — the next file of the
folder takes its place — and counted in :attr:`BatchLoader.skipped`.

Arrays: images float32 ``[B, S, S, 3]``, RGB in [-1, 1] (the GANs' range);
label maps int32 ``[B, S, S]`` class indices.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import NstjaxError
from ..io.images import load_image

__all__ = [
    "IMAGE_SUFFIXES",
    "Augment",
    "BatchLoader",
    "FolderDataset",
    "image_files",
    "image_to_unit",
    "paired",
    "plain",
    "unit_to_image",
    "unpaired",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
"""File extensions (lower case) taken as images in a dataset folder."""

Decoder = Callable[[Path], np.ndarray]
"""Reads one file: an image as float32 [H, W, 3] in [0, 1], or a label map as int32 [H, W]."""


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name (hidden files skipped).

    Raises:
      NstjaxError: the folder is missing, not a folder, or holds no images.
    """
    folder = Path(folder)
    if not folder.exists():
        raise NstjaxError("no such folder", folder)
    if not folder.is_dir():
        raise NstjaxError("not a folder", folder)
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise NstjaxError(f"no images in the folder (looked for {', '.join(sorted(IMAGE_SUFFIXES))})", folder)
    return files


def image_to_unit(image: np.ndarray) -> np.ndarray:
    """[0, 1] pixels to the [-1, 1] range the generators work in."""
    return np.asarray(image, np.float32) * 2.0 - 1.0


def unit_to_image(x) -> np.ndarray:
    """[-1, 1] generator output back to float32 [0, 1] pixels (clipped)."""
    return np.clip((np.asarray(x, np.float32) + 1.0) * 0.5, 0.0, 1.0)


RESIZES = ("squash", "short_side")
FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
           "lanczos": Image.Resampling.LANCZOS}  # fmt: skip
CROPS = ("random", "center")


@dataclasses.dataclass(frozen=True)
class Augment:
    """Resize, crop and flip, per sample.

    The defaults keep the aspect ratio (short side to ``load_size``, Lanczos), as nstjax always did; junyanz's
    and NVlabs' ``resize_and_crop`` is ``resize="squash", filter="bicubic"``. It is not the GAN trainers'
    default yet: with it, the four-device CycleGAN test's first-step Adam moments differed from one
    device's by 24 % of their largest value (not rounding: not yet understood), so it stays an option.

    load_size: side after resizing (``crop_size`` or more): of the square for ``"squash"``,
      of the short side for ``"short_side"``.
    crop_size: side of the square crop.
    flip: mirror left-right with probability ½.
    resize: ``"squash"`` to ``load_size x load_size`` (aspect not kept; junyanz, NVlabs'
      ``resize_and_crop``, AdaIN's ``Resize((512, 512))``) or ``"short_side"`` (aspect kept;
      torchvision's ``Resize(load_size)``).
    filter: photos' resampling filter: ``"bicubic"`` (junyanz, NVlabs), ``"bilinear"``
      (torchvision's default) or ``"lanczos"``. Label maps always use nearest neighbour.
    crop: ``"random"`` or ``"center"`` (the middle square, torchvision's ``CenterCrop``).
    """

    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    resize: str = "short_side"
    filter: str = "lanczos"
    crop: str = "random"

    def __post_init__(self):
        if self.crop_size < 1 or self.load_size < self.crop_size:
            raise NstjaxError(
                f"load size {self.load_size} must be at least the crop size {self.crop_size} (both positive)"
            )
        for name, value, choices in (("resize", self.resize, RESIZES), ("filter", self.filter, tuple(FILTERS)),
                                     ("crop", self.crop, CROPS)):  # fmt: skip
            if value not in choices:
                raise NstjaxError(f"augment {name} must be one of {', '.join(choices)}, got {value!r}")

    def shape(self, hw: tuple[int, int]) -> tuple[int, int]:
        """``(height, width)`` an image of shape ``hw`` is resized to before the crop."""
        if self.resize == "squash":
            return self.load_size, self.load_size
        h, w = hw
        scale = self.load_size / min(h, w)
        return max(self.load_size, round(h * scale)), max(self.load_size, round(w * scale))


@dataclasses.dataclass(frozen=True)
class FolderDataset:
    """Samples as ``{field: file}`` dicts plus how each field is decoded.

    fields: field name -> ``"image"`` (photo, resized with the augment's filter, [-1, 1]) or ``"labels"``
      (class indices, nearest-neighbour resize).
    samples: one list per *stream*. A paired or plain dataset has one stream of
      ``{field: path}`` dicts; an unpaired one has two, each with one field,
      sampled independently.
    """

    fields: Mapping[str, str]
    streams: tuple[tuple[dict[str, Path], ...], ...]

    def __len__(self) -> int:
        return max(len(s) for s in self.streams)


def plain(folder: str | os.PathLike, field: str = "image") -> FolderDataset:
    """Every image of one folder (e.g. content photos for a feed-forward style network)."""
    return FolderDataset({field: "image"}, (tuple({field: p} for p in image_files(folder)),))


def unpaired(folder_a: str | os.PathLike, folder_b: str | os.PathLike) -> FolderDataset:
    """Two folders sampled independently (CycleGAN): fields ``"a"`` and ``"b"``."""
    a = tuple({"a": p} for p in image_files(folder_a))
    b = tuple({"b": p} for p in image_files(folder_b))
    return FolderDataset({"a": "image", "b": "image"}, (a, b))


def paired(
    folder_a: str | os.PathLike,
    folder_b: str | os.PathLike,
    *,
    fields: tuple[str, str] = ("a", "b"),
    kinds: tuple[str, str] = ("image", "image"),
) -> FolderDataset:
    """Two folders whose files are matched by stem (``x.png`` with ``x.jpg``): pix2pix, SPADE.

    Files without a partner are left out; no pair at all is an error naming both folders.
    """
    a = {p.stem: p for p in image_files(folder_a)}
    b = {p.stem: p for p in image_files(folder_b)}
    stems = sorted(a.keys() & b.keys())
    if not stems:
        raise NstjaxError(f"no file in {folder_a} has a partner with the same name (stem) in {folder_b}")
    samples = tuple({fields[0]: a[s], fields[1]: b[s]} for s in stems)
    return FolderDataset(dict(zip(fields, kinds)), (samples,))


def _resize(array: np.ndarray, hw: tuple[int, int], filter_: str | None) -> np.ndarray:
    """Photo float32 [H, W, C] in [0, 1] (``filter_`` a :data:`FILTERS` name, result clipped to [0, 1]) or
    label map int [H, W] (``filter_`` None: nearest neighbour) to ``hw``."""
    size = (hw[1], hw[0])  # PIL: (width, height)
    if array.shape[:2] == tuple(hw):
        return array
    if filter_ is None:
        return np.asarray(Image.fromarray(array.astype(np.int32), mode="I").resize(size, Image.Resampling.NEAREST))
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(array[..., c])).resize(size, FILTERS[filter_]))
        for c in range(array.shape[2])
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


class BatchLoader:
    """Batches of a :class:`FolderDataset` by step number, decoded ahead in threads.

    Args:
      dataset: what to load.
      batch_size: the global batch size (over all hosts).
      augment: resize, crop and flip.
      seed: makes sampling and augmentation reproducible.
      decoders: ``{"labels": fn}`` for label-map fields (the image decoder is built in).
      process_index, process_count: this host's share of each global batch (its
        contiguous slice of ``batch_size // process_count`` samples).
      threads: decoding threads; ``prefetch``: batches decoded ahead.
    """

    def __init__(
        self,
        dataset: FolderDataset,
        batch_size: int,
        augment: Augment,
        *,
        seed: int = 0,
        decoders: Mapping[str, Decoder] | None = None,
        process_index: int = 0,
        process_count: int = 1,
        threads: int | None = None,
        prefetch: int = 2,
    ):
        if batch_size < 1:
            raise NstjaxError(f"batch size must be a positive integer, got {batch_size}")
        if batch_size % process_count:
            raise NstjaxError(f"batch size {batch_size} is not a multiple of the {process_count} processes")
        self.dataset = dataset
        self.batch_size = batch_size
        self.augment = augment
        self.seed = int(seed)
        self.decoders = {"image": _decode_image, **(decoders or {})}
        for kind in set(dataset.fields.values()):
            if kind not in self.decoders:
                raise NstjaxError(f"no decoder for {kind!r} fields")
        self.local = batch_size // process_count
        self.offset = process_index * self.local
        self.prefetch = max(1, prefetch)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads or min(8, os.cpu_count() or 2))
        self._lock = threading.Lock()
        self._bad: dict[Path, str] = {}

    @property
    def steps_per_epoch(self) -> int:
        """Steps that show every sample of the (larger) stream once: ``ceil(len / batch_size)``."""
        return -(-len(self.dataset) // self.batch_size)

    @property
    def skipped(self) -> dict[Path, str]:
        """Files that could not be read so far, with the reason (each is counted once)."""
        with self._lock:
            return dict(self._bad)

    def _index(self, stream: int, position: int) -> int:
        """Sample index of global sample ``position`` (step * batch + slot) in ``stream``."""
        n = len(self.dataset.streams[stream])
        if stream == 0:
            epoch, within = divmod(position, len(self.dataset))
            order = np.random.default_rng([self.seed, epoch, 0]).permutation(len(self.dataset))
            return int(order[within]) % n
        # Further streams (the second folder of unpaired data) are drawn independently.
        return int(np.random.default_rng([self.seed, position, stream]).integers(n))

    def _sample(self, step: int, slot: int) -> dict[str, np.ndarray]:
        position = step * self.batch_size + slot
        rng = np.random.default_rng([self.seed, step, slot, 1])
        out: dict[str, np.ndarray] = {}
        for s, stream in enumerate(self.dataset.streams):
            index = self._index(s, position)
            fields = self._decode(stream, index)
            out.update(self._augment(fields, rng))
        return out

    def _decode(self, stream: Sequence[dict[str, Path]], index: int) -> dict[str, np.ndarray]:
        # A bad file gives way to the next sample of its stream: deterministic, since which files
        # are bad does not depend on the order they were found in.
        for attempt in range(len(stream)):
            sample = stream[(index + attempt) % len(stream)]
            with self._lock:
                if any(p in self._bad for p in sample.values()):
                    continue
            try:
                return {f: self._decode_file(f, p) for f, p in sample.items()}
            except NstjaxError:
                continue
        folder = next(iter(stream[0].values())).parent
        raise NstjaxError("no file of the dataset could be read", folder)

    def _decode_file(self, field: str, path: Path) -> np.ndarray:
        try:
            return self.decoders[self.dataset.fields[field]](path)
        except NstjaxError as exc:
            with self._lock:
                self._bad.setdefault(path, exc.problem)
            raise

    def _augment(self, fields: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        a = self.augment
        shape = a.shape(next(iter(fields.values())).shape[:2])
        resized = {
            f: _resize(x, shape, a.filter if self.dataset.fields[f] == "image" else None) for f, x in fields.items()
        }
        h, w = shape
        # Draws are made in the same order whatever the options, so a sample's other choices stay put.
        top = int(rng.integers(h - a.crop_size + 1))
        left = int(rng.integers(w - a.crop_size + 1))
        flip = a.flip and bool(rng.integers(2))
        if a.crop == "center":  # torchvision's CenterCrop: rounds the offsets to the nearest pixel
            top, left = int(round((h - a.crop_size) / 2.0)), int(round((w - a.crop_size) / 2.0))
        out = {}
        for f, x in resized.items():
            x = x[top : top + a.crop_size, left : left + a.crop_size]
            if flip:
                x = x[:, ::-1]
            out[f] = image_to_unit(x) if self.dataset.fields[f] == "image" else np.ascontiguousarray(x, np.int32)
        return out

    def _batch(self, step: int) -> dict[str, np.ndarray]:
        samples = list(self._pool.map(lambda slot: self._sample(step, slot), range(self.offset, self.offset + self.local)))
        return {f: np.stack([s[f] for s in samples]) for f in samples[0]}

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This host's part of global batch ``step`` (no prefetching)."""
        return self._batch(step)

    def iterate(self, start: int, stop: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """``(step, batch)`` for steps ``start … stop - 1``, decoding ``prefetch`` batches ahead."""
        pending: dict[int, concurrent.futures.Future] = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ahead:
            for step in range(start, stop):
                for s in range(step, min(stop, step + self.prefetch + 1)):
                    if s not in pending:
                        pending[s] = ahead.submit(self._batch, s)
                yield step, pending.pop(step).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _decode_image(path: Path) -> np.ndarray:
    return load_image(path)
