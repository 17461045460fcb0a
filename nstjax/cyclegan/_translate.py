"""Translating images with a trained CycleGAN's export: any size, files or folders, atomic outputs."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import jax
import numpy as np

from ..errors import NstjaxError
from ..io.images import SUPPORTED_SUFFIXES, check_output_path, fit_longest_side, load_image, resize_image, save_image
from ..io.media import output_targets
from ..runtime import enable_compilation_cache
from ..train import image_files, image_to_unit, load_export, unit_to_image
from ._config import DtypeName, ModelConfig, make_generator

__all__ = ["DIRECTIONS", "Direction", "TranslateProgress", "Translator", "translate", "translate_images"]

Direction = Literal["a2b", "b2a"]
DIRECTIONS = ("a2b", "b2a")


@dataclasses.dataclass(frozen=True)
class TranslateProgress:
    """One image done: ``done`` of ``total``; ``source`` was written to ``output``."""

    done: int
    total: int
    source: Path
    output: Path


@functools.lru_cache(maxsize=8)
def _apply(model: ModelConfig, dtype: DtypeName):
    return jax.jit(make_generator(model, dtype).apply)


class Translator:
    """One generator of a trained CycleGAN, for images of any size.

    ``Translator.load(run_dir, "a2b")`` reads the run's export. Calling it on a float
    [H, W, 3] RGB image in [0, 1] returns the translation, same size and range: the
    image is reflection-padded to a multiple of the generator's stride
    (``model.multiple``: 4 for resnet, ``2**depth`` for unet), translated and cropped
    back (the networks are fully convolutional). One compile per distinct padded size.
    """

    def __init__(self, params: dict, model: ModelConfig, dtype: DtypeName = "float32"):
        self.params = jax.device_put(params)
        self.model = model
        self.dtype = dtype

    @classmethod
    def load(cls, run_dir: str | os.PathLike, direction: Direction = "a2b", dtype: DtypeName = "float32") -> Translator:
        """The ``direction`` generator of the export in ``run_dir`` (the run directory or its ``export/``).

        Raises:
          NstjaxError: no export there, not a CycleGAN's, or an unknown direction.
        """
        if direction not in DIRECTIONS:
            raise NstjaxError(f"unknown direction {direction!r} (a2b or b2a)")
        params, config = load_export(run_dir)
        if config.get("system") != "cyclegan":
            raise NstjaxError(f"the export is a {config.get('system', 'unknown')!r} model, not a CycleGAN", run_dir)
        try:
            model = ModelConfig(**config["model"])
        except (KeyError, TypeError) as exc:
            raise NstjaxError(f"the export's config does not describe a CycleGAN model ({exc})", run_dir) from None
        name = "g_ab" if direction == "a2b" else "g_ba"
        if name not in params:
            raise NstjaxError(f"the export has no {name} generator", run_dir)
        return cls(params[name], model, dtype)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image, np.float32)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
        h, w = image.shape[:2]
        m = self.model.multiple
        ph, pw = -h % m, -w % m
        # Reflection keeps the borders' statistics (zeros would skew instance norm); numpy reflects
        # repeatedly when the padding exceeds the image.
        x = np.pad(image_to_unit(image), ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="reflect")
        y = np.asarray(jax.device_get(_apply(self.model, self.dtype)({"params": self.params}, x[None])))[0]
        return unit_to_image(y[ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w])


def translate_images(
    run_dir: str | os.PathLike,
    images: Sequence[np.ndarray],
    direction: Direction = "a2b",
    dtype: DtypeName = "float32",
) -> list[np.ndarray]:
    """In memory: float32 RGB images [H, W, 3] in [0, 1] -> their translations (same sizes and range).

    Loads the run's export once for all ``images`` (used by ``nstjax recreate --painter cyclegan:RUN``).

    Raises:
      NstjaxError: no CycleGAN export in ``run_dir`` or an unknown direction.
    """
    translator = Translator.load(run_dir, direction, dtype)
    return [translator(image) for image in images]


def _inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += image_files(path)
        elif path.is_file():
            files.append(path)
        else:
            raise NstjaxError("no such file or folder", path)
    if not files:
        raise NstjaxError("no input images given")
    return files


def translate(
    run_dir: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    direction: Direction = "a2b",
    size: int | None = None,
    suffix: str = ".png",
    dtype: DtypeName = "float32",
    progress: Callable[[TranslateProgress], None] | None = None,
) -> list[Path]:
    """Translate image files and the images of folders with a trained CycleGAN; return the outputs.

    Args:
      run_dir: a training run directory with an export (or the ``export/`` folder).
      inputs: image files and/or folders (their images, not recursively).
      out_dir: ``-o``: for one input file, an image path with an extension is the output itself;
        otherwise a folder (created if needed) where ``<stem><suffix>`` is written for each input
        (:func:`nstjax.io.media.output_targets`). Each file is written atomically.
      direction: ``"a2b"`` (G_AB) or ``"b2a"`` (G_BA).
      size: resize each image so its longest side is this many pixels first (default:
        keep its size; any size works).
      suffix: output format by extension (``.png``, ``.jpg``, …).
      dtype: compute dtype.
      progress: called after each image with :class:`TranslateProgress`.

    Raises:
      NstjaxError: no export in ``run_dir``; a missing input, an empty folder, an
        unreadable image; two inputs with the same file stem; an unknown direction or
        suffix; a size below 1.
    """
    if suffix.lower() not in SUPPORTED_SUFFIXES:
        raise NstjaxError(f"unsupported output format {suffix!r} (one of {', '.join(sorted(SUPPORTED_SUFFIXES))})")
    if size is not None and size < 1:
        raise NstjaxError(f"size must be a positive number of pixels, got {size}")
    translator = Translator.load(run_dir, direction, dtype)
    files = _inputs(inputs)
    targets = output_targets(inputs, files, out_dir, suffix)
    if len(targets) == 1 and targets[0] == Path(out_dir):
        check_output_path(out_dir)  # one input to the image file -o names
    outputs = dict(zip(targets, files, strict=True))
    enable_compilation_cache()
    written = []
    for done, (target, source) in enumerate(outputs.items(), 1):
        image = load_image(source)
        if size is not None:
            image = resize_image(image, fit_longest_side(image.shape[:2], size))
        written.append(save_image(target, translator(image)))
        if progress is not None:
            progress(TranslateProgress(done=done, total=len(outputs), source=source, output=target))
    return written
