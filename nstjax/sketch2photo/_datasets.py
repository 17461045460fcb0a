"""Training pairs from published datasets: ADE20K outdoor landscapes (SPADE) and CMP Facades (pix2pix).

Both write the layout :func:`nstjax.sketch2photo.train` reads: ``OUT/labels/<stem>.png``
and ``OUT/photos/<stem>.<ext>``, matched by stem. Every file is written atomically.

* :func:`convert_ade20k`: an extracted ``ADEChallengeData2016`` tree
  (``images/<split>/*.jpg``, ``annotations/<split>/*.png`` holding ADE ids, 0 =
  other, 1-150 = classes) -> landscape-palette label maps. The ADE id -> landscape
  class table is ``nstjax/sketch2photo/ade20k_landscape.json``
  (:func:`ade20k_mapping`). Images whose mapped area is below ``min_fraction`` are
  skipped (indoor and city scenes); the unmapped pixels of the others take the
  class of the nearest mapped pixel. Photos are copied byte for byte.
* :func:`split_facades`: pix2pix's ``facades/<split>/*.jpg`` (each a photograph on
  the left and its colour label picture on the right, 512x256) -> the two halves.
  The label pictures are JPEG-compressed colours of CMP's 12 classes, not a palette
  nstjax knows, so pix2pix trains on them as RGB images (``Pix2PixConfig.input="image"``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import NstjaxError
from ..io.atomic import atomic_path
from ..labels import load_palette, save_label_map

__all__ = [
    "ADE20K_MAPPING_FILE",
    "ConvertProgress",
    "ConvertReport",
    "ade20k_lookup",
    "ade20k_mapping",
    "convert_ade20k",
    "fill_unmapped",
    "split_facades",
]

ADE20K_MAPPING_FILE = "ade20k_landscape.json"
"""The ADE id -> landscape class table, package data of :mod:`nstjax.sketch2photo`."""

ADE20K_CLASSES = 150


@dataclasses.dataclass(frozen=True)
class ConvertProgress:
    """After each image: ``done`` of ``total``; ``kept`` so far; ``stem`` of the image just handled."""

    done: int
    total: int
    kept: int
    stem: str


@dataclasses.dataclass(frozen=True)
class ConvertReport:
    """What a conversion wrote: ``kept`` stems, ``skipped`` ``{stem: reason}``, the output folders."""

    labels_dir: Path
    photos_dir: Path
    kept: tuple[str, ...]
    skipped: dict[str, str]


def ade20k_mapping() -> dict:
    """The shipped table: ``{"palette", "min_fraction", "classes": [{"ade_id", "ade_name", "landscape"}, …]}``."""
    text = resources.files(__package__).joinpath(ADE20K_MAPPING_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def ade20k_lookup(mapping: dict | None = None) -> np.ndarray:
    """int32 [151]: landscape class index of each ADE id (0 … 150), -1 where unmapped."""
    mapping = ade20k_mapping() if mapping is None else mapping
    pal = load_palette(mapping["palette"])
    table = np.full(ADE20K_CLASSES + 1, -1, np.int32)
    for row in mapping["classes"]:
        table[int(row["ade_id"])] = pal.index(row["landscape"])
    return table


def fill_unmapped(labels: np.ndarray) -> np.ndarray:
    """``labels`` int [H, W] with every -1 pixel given the class of a nearest (chessboard distance) labelled pixel.

    Grows the labelled area one pixel a round; ties go to the first of the 8
    neighbours in the order up, down, left, right, then diagonals.
    """
    out = labels.copy()
    if (out >= 0).sum() == 0:
        raise ValueError("no labelled pixel to fill from")
    shifts = [(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]
    h, w = out.shape
    while (out < 0).any():
        padded = np.pad(out, 1, constant_values=-1)
        grown = out.copy()
        for dy, dx in reversed(shifts):  # the first shift in the list wins: it is written last
            neighbour = padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
            take = (out < 0) & (neighbour >= 0)
            grown[take] = neighbour[take]
        out = grown
    return out


def _read_ids(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16"):
                raise NstjaxError(f"not an ADE20K annotation (mode {im.mode}; expected 8-bit class ids)", path)
            return np.asarray(im).astype(np.int64)
    except (UnidentifiedImageError, OSError) as exc:
        raise NstjaxError(f"unreadable annotation ({exc})", path) from None


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def convert_ade20k(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: Literal["training", "validation"] = "training",
    min_fraction: float | None = None,
    limit: int | None = None,
    progress: Callable[[ConvertProgress], None] | None = None,
) -> ConvertReport:
    """Turn an extracted ``ADEChallengeData2016`` tree into landscape (labels, photos) folders.

    Args:
      root: the folder holding ``images/`` and ``annotations/`` (what
        ``nstjax data fetch ade20k`` extracts), or its parent.
      out: writes ``out/labels/<stem>.png`` (colour PNG in the landscape palette) and
        ``out/photos/<stem>.jpg`` (the original JPEG, copied).
      split: ``"training"`` (20,210 images) or ``"validation"`` (2,000).
      min_fraction: keep an image only when at least this share of its pixels has a
        landscape class (default: the table's, 0.85).
      limit: stop after this many images have been looked at (a quick trial).
      progress: called with a :class:`ConvertProgress` after each image.

    Raises:
      NstjaxError: no ``images/<split>`` / ``annotations/<split>`` under ``root``, a
        photo without an annotation (or the reverse is just skipped), an unreadable
        annotation, an id above 150.
    """
    root = Path(root)
    if not (root / "images").is_dir() and (root / "ADEChallengeData2016" / "images").is_dir():
        root = root / "ADEChallengeData2016"
    images, annotations = root / "images" / split, root / "annotations" / split
    for folder in (images, annotations):
        if not folder.is_dir():
            raise NstjaxError(f"not an ADEChallengeData2016 tree: no folder {folder.relative_to(root)}", root)
    mapping = ade20k_mapping()
    min_fraction = float(mapping["min_fraction"] if min_fraction is None else min_fraction)
    if not 0.0 <= min_fraction <= 1.0:
        raise NstjaxError(f"min_fraction must be in [0, 1], got {min_fraction}")
    table = ade20k_lookup(mapping)
    pal = load_palette(mapping["palette"])
    photos = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg") and not p.name.startswith("."))
    if limit is not None:
        photos = photos[: max(0, int(limit))]
    out = Path(out)
    labels_dir, photos_dir = out / "labels", out / "photos"
    try:
        labels_dir.mkdir(parents=True, exist_ok=True)
        photos_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NstjaxError(f"cannot create the output folders ({exc.strerror or exc})", out) from None
    kept: list[str] = []
    skipped: dict[str, str] = {}
    for i, photo in enumerate(photos):
        stem = photo.stem
        annotation = annotations / f"{stem}.png"
        if not annotation.exists():
            skipped[stem] = "no annotation"
        else:
            ids = _read_ids(annotation)
            if ids.size and ids.max() > ADE20K_CLASSES:
                raise NstjaxError(f"ADE20K ids are 0-{ADE20K_CLASSES}, found {int(ids.max())}", annotation)
            labels = table[ids]
            fraction = float((labels >= 0).mean()) if labels.size else 0.0
            if fraction < min_fraction or fraction == 0.0:
                skipped[stem] = f"{fraction:.0%} of the pixels have a landscape class (below {min_fraction:.0%})"
            else:
                save_label_map(labels_dir / f"{stem}.png", fill_unmapped(labels), pal, kind="color")
                _copy(photo, photos_dir / photo.name)
                kept.append(stem)
        if progress is not None:
            progress(ConvertProgress(done=i + 1, total=len(photos), kept=len(kept), stem=stem))
    return ConvertReport(labels_dir, photos_dir, tuple(kept), skipped)


def split_facades(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: Literal["train", "val", "test"] = "train",
    direction: Literal["BtoA", "AtoB"] = "BtoA",
    progress: Callable[[ConvertProgress], None] | None = None,
) -> ConvertReport:
    """Cut pix2pix's side-by-side facades images into ``out/labels/<stem>.png`` and ``out/photos/<stem>.png``.

    Args:
      root: the extracted ``facades`` folder (holding ``train/``, ``val/``, ``test/``),
        or one of those split folders itself.
      direction: ``"BtoA"`` (pix2pix's facades setting: the right half, the label
        picture, is the input; the left half, the photograph, the target) or ``"AtoB"``.

    Raises:
      NstjaxError: no images there, or an image whose width is odd (not two halves).
    """
    root = Path(root)
    folder = root / split if (root / split).is_dir() else root
    if not folder.is_dir():
        raise NstjaxError("no such folder", folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png") and not p.name.startswith("."))
    if not files:
        raise NstjaxError("no side-by-side images (A|B .jpg) here", folder)
    out = Path(out)
    labels_dir, photos_dir = out / "labels", out / "photos"
    labels_dir.mkdir(parents=True, exist_ok=True)
    photos_dir.mkdir(parents=True, exist_ok=True)
    kept = []
    for i, path in enumerate(files):
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise NstjaxError(f"unreadable image ({exc})", path) from None
        w = rgb.shape[1]
        if w % 2:
            raise NstjaxError(f"width {w} is odd: not an A|B pair of equal halves", path)
        a, b = rgb[:, : w // 2], rgb[:, w // 2 :]
        source, target = (b, a) if direction == "BtoA" else (a, b)
        for array, dst in ((source, labels_dir / f"{path.stem}.png"), (target, photos_dir / f"{path.stem}.png")):
            with atomic_path(dst) as tmp:
                Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
        kept.append(path.stem)
        if progress is not None:
            progress(ConvertProgress(done=i + 1, total=len(files), kept=len(kept), stem=path.stem))
    return ConvertReport(labels_dir, photos_dir, tuple(kept), {})
