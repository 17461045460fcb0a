"""Stage 1 without a trained model: exemplar-guided synthesis of a photo from a sketch with the NST engine.

Given (label map, photo) pairs — the layout ``nstjax data synth`` writes,
``DIR/labels/<stem>.png`` + ``DIR/photos/<stem>.png`` — each region of the
sketch is optimised to have the VGG feature statistics of the *same class* in
the exemplar photos: semantic style transfer (guided Gram matrices, Gatys et al.
2017) with the exemplar photos as style images, their label maps as the style
segmentations and the sketch as the content segmentation. The content is a flat
image of each class's mean exemplar colour under a weak content weight, the
start is seeded noise, and the run goes coarse to fine.

:func:`choose_exemplars` picks the few pairs whose classes cover the sketch
best; a class of the sketch in no exemplar borrows the statistics of its nearest
class that is there (:data:`~nstjax.recreate.classes.FALLBACKS`), or stops with an error.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NstjaxError
from ..io import images
from ..labels import Palette, colorize, read_label_map, resize_labels
from .classes import Fallback, resolve_fallbacks
from .events import RecreateWarning

__all__ = [
    "DEFAULT_MAX_EXEMPLARS",
    "MAX_SCAN",
    "ExemplarPair",
    "PhotoGuidance",
    "choose_exemplars",
    "class_mean_image",
    "fit_labels",
    "load_exemplars",
    "photo_guidance",
    "remap_labels",
    "scan_exemplars",
]

DEFAULT_MAX_EXEMPLARS = 3
MAX_SCAN = 2000
"""At most this many pairs of an exemplar folder are read (in stem order) when choosing."""

MIN_CLASS_FRACTION = 0.002
"""A class covers an exemplar when it has at least this share of its pixels (and 4 pixels)."""

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class ExemplarPair:
    """One (label map, photo) pair of an exemplar folder."""

    stem: str
    labels_path: Path
    photo_path: Path


def scan_exemplars(directory: str | os.PathLike, *, max_scan: int = MAX_SCAN) -> list[ExemplarPair]:
    """The pairs of ``directory``: ``labels/<stem>.png`` matched with ``photos/<stem>.<image suffix>``.

    Label maps without a photo are skipped with a :class:`RecreateWarning`; pairs are in stem order,
    at most ``max_scan`` of them.

    Raises:
      NstjaxError: the folder or its ``labels``/``photos`` subfolders are missing, or no pair matches.
    """
    root = Path(directory)
    if not root.is_dir():
        raise NstjaxError("no such exemplar folder", root)
    for sub in ("labels", "photos"):
        if not (root / sub).is_dir():
            raise NstjaxError(
                f"exemplar folder has no {sub}/ subfolder (expected labels/<stem>.png + photos/<stem>.png, "
                "as `nstjax data synth` writes)",
                root,
            )
    photos = {}
    for p in sorted((root / "photos").iterdir()):
        if p.suffix.lower() in _IMAGE_SUFFIXES:
            photos.setdefault(p.stem, p)
    pairs, orphans = [], []
    for p in sorted((root / "labels").iterdir()):
        if p.suffix.lower() not in _IMAGE_SUFFIXES:
            continue
        if p.stem in photos:
            pairs.append(ExemplarPair(p.stem, p, photos[p.stem]))
        else:
            orphans.append(p.name)
        if len(pairs) >= max_scan:
            break
    if orphans:
        shown = ", ".join(orphans[:3]) + (f" and {len(orphans) - 3} more" if len(orphans) > 3 else "")
        warnings.warn(f"{root}: label maps without a photo skipped: {shown}", RecreateWarning, stacklevel=2)
    if not pairs:
        raise NstjaxError("no (labels/<stem>, photos/<stem>) pairs found", root)
    return pairs


def _presence(labels: np.ndarray, k: int) -> np.ndarray:
    counts = np.bincount(labels.ravel(), minlength=k)[:k]
    return counts >= max(4, MIN_CLASS_FRACTION * labels.size)


def choose_exemplars(
    sketch: np.ndarray, candidates: Sequence[np.ndarray], num_classes: int, count: int = DEFAULT_MAX_EXEMPLARS
) -> list[int]:
    """Indices of the ``count`` candidates that best cover the sketch's classes, best first.

    Greedy cover: each pick adds the most sketch area (fraction of sketch pixels) in classes no earlier
    pick has; ties, and picks once everything is covered, go to the candidate whose class areas are
    most like the sketch's (histogram intersection), then to the earlier one. So with ``count`` pairs
    every class that any candidate has is covered when ``count`` allows, and the rest of the picks
    add more statistics of the same kind of scene.

    Args:
      sketch: int [H, W] class ids; candidates: int [h, w] class ids of each pair (any sizes).
    """
    if count < 1:
        raise NstjaxError(f"the number of exemplars must be at least 1, got {count}")
    k = num_classes
    area = np.bincount(sketch.ravel(), minlength=k)[:k] / sketch.size
    present = np.stack([_presence(c, k) for c in candidates])  # [N, K]
    hist = np.stack([np.bincount(c.ravel(), minlength=k)[:k] / c.size for c in candidates])
    similarity = np.minimum(hist, area[None]).sum(1)  # [N]
    chosen: list[int] = []
    covered = np.zeros(k, bool)
    for _ in range(min(count, len(candidates))):
        gain = (present & ~covered[None] & (area > 0)[None]) @ area  # [N]
        gain[chosen] = -1.0
        best = max(
            (i for i in range(len(candidates)) if i not in chosen),
            key=lambda i: (round(float(gain[i]), 9), round(float(similarity[i]), 9), -i),
        )
        chosen.append(best)
        covered |= present[best]
    return chosen


def remap_labels(labels: np.ndarray, fallbacks: dict[int, Fallback], whole: int | None = None) -> np.ndarray:
    """``labels`` with each class replaced by the class it takes its style from.

    A class without a stand-in (``source is None``) becomes ``whole`` (a pseudo-class id for "the whole
    painting"); with ``whole=None`` it must not occur.
    """
    out = labels.copy()
    for cls, fb in fallbacks.items():
        if fb.exact:
            continue
        target = fb.source if fb.source is not None else whole
        if target is None:
            raise ValueError(f"class {cls} has no stand-in")
        out[labels == cls] = target
    return out


def load_exemplars(
    pairs: Sequence[ExemplarPair], palette: Palette
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Read the label maps (int32 [H, W]) and photos (float32 [H, W, 3] in [0, 1]) of ``pairs``.

    A label map whose size differs from its photo's is resized to it by nearest neighbour, with a
    :class:`RecreateWarning`.
    """
    label_maps, photos = [], []
    for pair in pairs:
        labels = read_label_map(pair.labels_path, palette)
        photo = images.load_image(pair.photo_path)
        label_maps.append(fit_labels(labels, photo.shape[:2], pair.labels_path, "its photo"))
        photos.append(photo)
    return label_maps, photos


def fit_labels(labels: np.ndarray, shape: tuple[int, int], path, what: str) -> np.ndarray:
    """``labels`` at ``shape``: resized by nearest neighbour, with a one-line warning, when they differ."""
    if labels.shape == tuple(shape):
        return labels
    warnings.warn(
        f"{os.fspath(path)}: label map is {labels.shape[1]}x{labels.shape[0]} (WxH), {what} is "
        f"{shape[1]}x{shape[0]}; resized with nearest neighbour",
        RecreateWarning,
        stacklevel=2,
    )
    return resize_labels(labels, shape)


def class_mean_image(
    labels: np.ndarray, photos: Sequence[np.ndarray], photo_labels: Sequence[np.ndarray]
) -> np.ndarray:
    """A flat image: each pixel of ``labels`` [H, W] painted in its class's mean colour in ``photos``.

    Classes in no photo are painted mid grey. Returns float32 [H, W, 3] in [0, 1].
    """
    k = int(max(labels.max(), *(int(p.max()) for p in photo_labels))) + 1
    sums = np.zeros((k, 3), np.float64)
    counts = np.zeros(k, np.float64)
    for photo, pl in zip(photos, photo_labels):
        flat = pl.ravel()
        counts += np.bincount(flat, minlength=k)[:k]
        for c in range(3):
            sums[:, c] += np.bincount(flat, weights=photo[..., c].ravel(), minlength=k)[:k]
    means = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], 0.5)
    return means[labels].astype(np.float32)


@dataclass(frozen=True)
class PhotoGuidance:
    """What the exemplar stage hands the NST engine: content, styles and the segmentations.

    content: float32 [H, W, 3], the flat per-class mean colour image. styles: the chosen exemplar
    photos. content_mask: uint8 [H, W, 3] sketch colours (after fallbacks); style_masks: uint8
    [h, w, 3] per photo. fallbacks: per sketch class.
    """

    content: np.ndarray
    styles: list[np.ndarray]
    content_mask: np.ndarray
    style_masks: list[np.ndarray]
    fallbacks: dict[int, Fallback]


def photo_guidance(
    sketch: np.ndarray,
    photos: Sequence[np.ndarray],
    photo_labels: Sequence[np.ndarray],
    palette: Palette,
    *,
    warn: Callable[[str], None] | None = None,
) -> PhotoGuidance:
    """The inputs of exemplar-guided synthesis for ``sketch`` [H, W] from the chosen pairs.

    A sketch class present in no exemplar takes the statistics of its nearest class that is
    (:func:`~nstjax.recreate.classes.resolve_fallbacks`), with a :class:`RecreateWarning`.

    Raises:
      NstjaxError: a sketch class is in no exemplar and none of its stand-ins is either.
    """
    k = len(palette)
    available = set(np.flatnonzero(np.any([_presence(pl, k) for pl in photo_labels], axis=0)).tolist())
    fallbacks = resolve_fallbacks(np.unique(sketch).tolist(), available, palette)
    lost = [palette.names[c] for c, fb in fallbacks.items() if fb.source is None]
    if lost:
        raise NstjaxError(
            f"sketch class{'es' if len(lost) > 1 else ''} {', '.join(lost)} {'are' if len(lost) > 1 else 'is'} in "
            f"no chosen exemplar and no stand-in class is either (exemplars have: "
            f"{', '.join(palette.names[c] for c in sorted(available))}); add exemplars with "
            f"{'them' if len(lost) > 1 else 'it'} or raise the number of exemplars"
        )
    borrowed = [fb.describe(palette) for fb in fallbacks.values() if not fb.exact]
    if borrowed:
        message = f"sketch classes in no chosen exemplar take a stand-in's statistics: {', '.join(borrowed)}"
        (warn or (lambda m: warnings.warn(m, RecreateWarning, stacklevel=3)))(message)
    mapped = remap_labels(sketch, fallbacks)
    return PhotoGuidance(
        content=class_mean_image(mapped, photos, photo_labels),
        styles=list(photos),
        content_mask=colorize(mapped, palette),
        style_masks=[colorize(pl, palette) for pl in photo_labels],
        fallbacks=fallbacks,
    )
