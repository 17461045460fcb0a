"""Rendering label maps (sketches) into photos with a trained SPADE or pix2pix run's export."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import NstjaxError
from ..io.images import check_output_path, image_array, resize_image, save_image
from ..io.media import output_targets
from ..labels import Palette, colorize, load_palette, one_hot, read_label_map, resize_labels
from ..runtime import enable_compilation_cache
from ..train import image_files, load_export, unit_to_image
from ._config import Sketch2PhotoConfig, make_networks
from ._steps import generate

__all__ = ["RenderProgress", "Renderer", "render", "render_labels"]


@dataclasses.dataclass(frozen=True)
class RenderProgress:
    """One sketch done: ``done`` of ``total``; ``source`` was written to ``output``."""

    done: int
    total: int
    source: Path
    output: Path


@functools.lru_cache(maxsize=8)
def _spade_fn(config: Sketch2PhotoConfig, num_classes: int):
    def run(variables, seg, style, eps):
        params = {k: v["params"] for k, v in variables.items()}
        stats = {k: v.get("batch_stats", {}) for k, v in variables.items()}
        return generate(config, num_classes, params, stats, seg, style, eps, train=False)[0]

    return jax.jit(run)


@functools.lru_cache(maxsize=8)
def _pix2pix_fn(config: Sketch2PhotoConfig, num_classes: int):
    gen = make_networks(config, num_classes)["generator"]

    def run(variables, x, key):
        # The paper's inference: dropout on, batch statistics of the batch at hand.
        return gen.apply({"params": variables["generator"]["params"]}, x, rngs={"dropout": key})

    return jax.jit(run)


class Renderer:
    """A trained generator (and encoder) for label maps of any size.

    ``Renderer.load(run_dir)`` reads the run's export. :meth:`labels` renders an int
    label map [H, W] into a float32 [H, W, 3] photo in [0, 1]: the map is resized
    (nearest, pixel centres) to the nearest multiple of the generator's stride
    (SPADE with the VAE: to the training size, which its ``fc`` layer fixes), the
    image generated there and resized back (Lanczos) when the sizes differ. One
    compile per distinct size.
    """

    def __init__(self, variables: dict, config: Sketch2PhotoConfig, palette: Palette, source: Path | None = None):
        self.variables = jax.device_put(variables)
        self.config = config
        self.palette = palette
        self.source = source

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> Renderer:
        """The export in ``run_dir`` (the run directory or its ``export/``); a one-line NstjaxError if there is none."""
        return _load(*_export_key(run_dir))

    @property
    def num_classes(self) -> int:
        return len(self.palette)

    def _size(self, h: int, w: int) -> tuple[int, int]:
        c = self.config
        if c.model == "spade" and c.spade.use_vae:
            return c.size, c.size
        m = c.multiple
        return max(m, int(round(h / m)) * m), max(m, int(round(w / m)) * m)

    def check_labels(self, labels: Any, what: str = "labels") -> np.ndarray:
        """``labels`` as int32 [H, W] with ids in the palette's range, or a one-line NstjaxError."""
        ids = np.asarray(labels)
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise NstjaxError(f"{what} must be an integer label map [H, W], got {ids.dtype} {ids.shape}")
        k = self.num_classes
        if ids.size and (ids.min() < 0 or ids.max() >= k):
            bad = np.unique(ids[(ids < 0) | (ids >= k)])
            raise NstjaxError(f"{what} hold class ids out of range for the {self.palette.name!r} palette "
                              f"({k} classes, ids 0-{k - 1}): {', '.join(map(str, bad[:8]))}")  # fmt: skip
        return ids.astype(np.int32)

    def labels(self, labels: Any, *, style_image: Any = None, seed: int = 0) -> np.ndarray:
        """int label map [H, W] -> float32 photo [H, W, 3] in [0, 1].

        style_image: SPADE with the VAE only: a photo (path or float [h, w, 3] in [0, 1])
          whose encoding sets the look (GauGAN's style filter); without one, z is drawn
          from N(0, 1).
        seed: the latent's noise (SPADE with the VAE) or pix2pix's dropout.
        """
        ids = self.check_labels(labels)
        h, w = ids.shape
        th, tw = self._size(h, w)
        small = resize_labels(ids, (th, tw)) if (th, tw) != (h, w) else ids
        c = self.config
        if c.input_kind == "labels":
            x = one_hot(small[None], self.num_classes)
        else:
            x = colorize(small, self.palette)[None].astype(np.float32) / 127.5 - 1.0
        out = self._generate(x, style_image, seed)
        image = unit_to_image(out[0])
        return resize_image(image, (h, w)) if (th, tw) != (h, w) else image

    def image(self, image: Any, *, seed: int = 0) -> np.ndarray:
        """pix2pix with RGB input: a float [H, W, 3] image in [0, 1] (or a path) -> float32 photo [H, W, 3] in [0, 1]."""
        if self.config.input_kind != "image":
            raise NstjaxError("this run renders label maps, not RGB images")
        x = image_array(image, "input image")
        h, w = x.shape[:2]
        th, tw = self._size(h, w)
        small = resize_image(x, (th, tw)) if (th, tw) != (h, w) else x
        out = unit_to_image(self._generate(small[None] * 2.0 - 1.0, None, seed)[0])
        return resize_image(out, (h, w)) if (th, tw) != (h, w) else out

    def _generate(self, x: np.ndarray, style_image: Any, seed: int) -> np.ndarray:
        c = self.config
        key = jax.random.PRNGKey(int(seed))
        x = jnp.asarray(x, jnp.float32)
        if c.model == "pix2pix":
            if style_image is not None:
                raise NstjaxError("a style image needs a SPADE run trained with the encoder (--vae); this is pix2pix")
            return np.asarray(_pix2pix_fn(c, self.num_classes)(self.variables, x, key))
        style = None
        if style_image is not None:
            if not c.spade.use_vae:
                raise NstjaxError("a style image needs a SPADE run trained with the encoder (--vae); this run has none")
            style = jnp.asarray(image_array(style_image, "style image")[None] * 2.0 - 1.0, jnp.float32)
        eps = jax.random.normal(key, (1, c.spade.z_dim), jnp.float32)
        return np.asarray(_spade_fn(c, self.num_classes)(self.variables, x, style, eps))


def _export_key(run_dir: str | os.PathLike) -> tuple[Path, float]:
    path = Path(run_dir).expanduser().resolve()
    if (path / "export").is_dir():
        path = path / "export"
    config = path / "config.json"
    return path, config.stat().st_mtime if config.exists() else -1.0


@functools.lru_cache(maxsize=4)
def _load(path: Path, mtime: float) -> Renderer:
    del mtime  # part of the cache key: a newer export is read again
    variables, data = load_export(path)
    if data.get("system") != "sketch2photo":
        raise NstjaxError(f"not a sketch2photo run (its export is for {data.get('system')!r})", path)
    if data.get("format") != 1:
        raise NstjaxError(f"export format {data.get('format')!r} is not one this nstjax reads (1)", path)
    model = {k: v for k, v in data.items() if k not in ("format", "palette_classes", "seed")}
    config = Sketch2PhotoConfig.from_json(model)
    palette = load_palette(config.palette)
    if data.get("palette_classes") and list(palette.names) != list(data["palette_classes"]):
        raise NstjaxError(f"the palette {config.palette!r} here has other classes than the run was trained with "
                          f"({', '.join(data['palette_classes'])})", path)  # fmt: skip
    return Renderer(variables, config, palette, path)


def render_labels(run_dir: str | os.PathLike, labels: Any, *, style_image: Any = None, seed: int = 0) -> np.ndarray:
    """A trained run's photo of ``labels``: int32 [H, W] class ids -> float32 [H, W, 3] RGB in [0, 1].

    The in-memory entry point (the lost-painting pipeline calls it). See
    :meth:`Renderer.labels` for ``style_image`` and ``seed``.

    Raises:
      NstjaxError: no export in ``run_dir``; ids outside the palette; a style image for
        a run without the encoder.
    """
    enable_compilation_cache()
    return Renderer.load(run_dir).labels(labels, style_image=style_image, seed=seed)


def _inputs(sketches: Sequence[str | os.PathLike] | str | os.PathLike) -> list[Path]:
    items = [sketches] if isinstance(sketches, (str, os.PathLike)) else list(sketches)
    if not items:
        raise NstjaxError("no sketches given")
    files: list[Path] = []
    for item in items:
        p = Path(item)
        files.extend(image_files(p) if p.is_dir() else [p])
    return files


def render(
    run_dir: str | os.PathLike,
    sketches: Sequence[str | os.PathLike] | str | os.PathLike,
    out: str | os.PathLike,
    *,
    style_image: Any = None,
    seed: int = 0,
    progress: Callable[[RenderProgress], None] | None = None,
) -> list[Path]:
    """Render sketch files (and folders of them) into ``out/<stem>.png``; return the written paths.

    ``out`` follows the one ``-o`` rule (:func:`nstjax.io.media.output_targets`): one sketch file and a path
    with an image extension writes that file; otherwise ``out`` is a folder.

    Each sketch is read with :func:`nstjax.labels.read_label_map` in the run's palette
    (a colour sketch or an index PNG) and rendered at its own size; with pix2pix's RGB
    input it is read as an image. Every sketch is read and checked before anything is
    rendered, so a bad one (unknown colours, not an image, ids out of range) stops the
    call with its one-line error and nothing written.
    """
    enable_compilation_cache()
    renderer = Renderer.load(run_dir)
    files = _inputs(sketches)
    if renderer.config.input_kind == "labels":
        inputs = [read_label_map(f, renderer.palette) for f in files]
    else:
        inputs = [image_array(f, "sketch") for f in files]
    targets = output_targets(sketches if not isinstance(sketches, str | os.PathLike) else [sketches], files, out,
                             ".png")  # fmt: skip
    if len(targets) == 1 and targets[0] == Path(out):
        check_output_path(out)  # one sketch to the image file -o names
    written = []
    for i, (source, x) in enumerate(zip(files, inputs)):
        if renderer.config.input_kind == "labels":
            photo = renderer.labels(x, style_image=style_image, seed=seed)
        else:
            photo = renderer.image(x, seed=seed)
        target = save_image(targets[i], photo)
        written.append(target)
        if progress is not None:
            progress(RenderProgress(i + 1, len(files), source, target))
    return written
