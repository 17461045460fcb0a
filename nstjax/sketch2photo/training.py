"""Training SPADE or pix2pix on (label map, photo) pairs: its :class:`~nstjax.train.TrainSystem` and :func:`train`.

:func:`train_system` describes the run (data, state, step, samples, export);
:func:`nstjax.train.run` does the rest, as for every trained model.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..labels import colorize, load_palette, read_label_map
from ..train import (
    Augment,
    BatchLoader,
    FolderDataset,
    TrainProgress,
    TrainResult,
    TrainSystem,
    image_grid,
    paired,
    replicate,
    run,
    to_host,
    unit_to_image,
)
from ._config import Sketch2PhotoConfig, make_networks
from ._state import Sketch2PhotoState, init_state
from ._steps import generate, generator_input, train_step_fn, vgg_loss_params, vgg_scale

__all__ = [
    "EXPORT_FORMAT",
    "MAY_CHANGE_ON_RESUME",
    "dataset",
    "export_params",
    "generate_samples",
    "sample_batch",
    "sample_grid",
    "train",
    "train_system",
]

MAY_CHANGE_ON_RESUME = (
    "train.steps", "train.epochs", "train.log_every", "train.sample_every", "train.checkpoint_every", "train.keep",
    "data.labels", "data.photos",
)  # fmt: skip
"""Settings a resumed run may change (a longer run re-spreads the learning-rate decay over the new length)."""

EXPORT_FORMAT = 1
"""Version of the inference export's layout: params ``{"generator": {"params", "batch_stats"?}, "encoder"?: …}``."""


def dataset(labels_dir: str | os.PathLike, photos_dir: str | os.PathLike, config: Sketch2PhotoConfig) -> tuple[FolderDataset, dict]:
    """(pairs matched by stem, the decoders :class:`~nstjax.train.BatchLoader` needs).

    Label maps are read with :func:`nstjax.labels.read_label_map` in ``config.palette``
    (field ``"labels"``); with pix2pix's ``input="image"`` the first folder holds RGB
    images (field ``"input"``).
    """
    if config.input_kind == "labels":
        palette = load_palette(config.palette)
        data = paired(labels_dir, photos_dir, fields=("labels", "image"), kinds=("labels", "image"))
        return data, {"labels": functools.partial(read_label_map, palette=palette)}
    return paired(labels_dir, photos_dir, fields=("input", "image"), kinds=("image", "image")), {}


def sample_batch(data: FolderDataset, decoders: dict, config: Sketch2PhotoConfig, *, count: int = 2,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """``count`` fixed pairs (centre crops, no flip): the same at every sample step."""
    loader = BatchLoader(data, count, Augment(load_size=config.size, crop_size=config.size, flip=False), seed=seed,
                         decoders=decoders, threads=1, prefetch=1)  # fmt: skip
    try:
        return loader.batch(0)
    finally:
        loader.close()


@functools.lru_cache(maxsize=8)
def _sample_fn(config: Sketch2PhotoConfig, num_classes: int):
    nets = make_networks(config, num_classes)

    def sample(g_params, g_stats, batch, key):
        x = generator_input(config, num_classes, batch)
        if config.model == "spade":
            eps = jnp.zeros((x.shape[0], config.spade.z_dim), jnp.float32)  # z = mu: the real photo's look
            return generate(config, num_classes, g_params, g_stats, x, batch["image"], eps, train=False)[0]
        return nets["generator"].apply({"params": g_params["generator"]}, x, rngs={"dropout": key})

    return jax.jit(sample)


def generate_samples(state: Sketch2PhotoState, batch: dict[str, np.ndarray], config: Sketch2PhotoConfig,
                     num_classes: int) -> np.ndarray:
    """float32 [B, S, S, 3] in [-1, 1]: the generator's images for ``batch`` (inference mode; SPADE's VAE takes
    z = mu of the real photo; pix2pix keeps dropout on, seeded)."""
    batch = {k: v for k, v in batch.items()}
    out = _sample_fn(config, num_classes)(state.g.params, state.g_stats, batch, jax.random.PRNGKey(config.train.seed))
    return to_host(out)


def sample_grid(state: Sketch2PhotoState, batch: dict[str, np.ndarray], config: Sketch2PhotoConfig,
                num_classes: int) -> np.ndarray:
    """uint8 [H, W, 3] grid: a row per sample, columns label map (colorized) | generated | real photo."""
    fakes = generate_samples(state, batch, config, num_classes)
    if config.input_kind == "labels":
        inputs = [colorize(labels, config.palette).astype(np.float32) / 255.0 for labels in batch["labels"]]
    else:
        inputs = [unit_to_image(x) for x in batch["input"]]
    rows = [[inp, unit_to_image(fake), unit_to_image(real)] for inp, fake, real in zip(inputs, fakes, batch["image"])]
    return image_grid(rows, labels=["label map", "generated", "real"])


def export_params(state: Sketch2PhotoState, config: Sketch2PhotoConfig) -> tuple[dict, dict[str, Any]]:
    """What inference needs: the generator's (and encoder's) variables, the model settings and the palette."""
    params = {}
    for name in state.g.params:
        params[name] = {"params": state.g.params[name]}
        if name in state.g_stats:
            params[name]["batch_stats"] = state.g_stats[name]
    palette = load_palette(config.palette)
    model = {k: v for k, v in config.to_json().items() if k != "train"}
    return params, {
        **model,
        "format": EXPORT_FORMAT,
        "palette_classes": list(palette.names),
        "seed": config.train.seed,
    }


def train_system(labels_dir: str | os.PathLike, photos_dir: str | os.PathLike,
                 config: Sketch2PhotoConfig = Sketch2PhotoConfig(), *, weights: Any = None) -> TrainSystem:
    """The SPADE or pix2pix run on ``labels_dir`` and ``photos_dir``, for :func:`nstjax.train.run`.

    ``weights``: VGG-19 weights of SPADE's perceptual loss (loaded here, as NumPy, when
    the loss is on). Raises NstjaxError for missing or empty folders, no pairs, an unknown
    palette or unusable weights.
    """
    data, decoders = dataset(labels_dir, photos_dir, config)
    num_classes = len(load_palette(config.palette))
    settings = config.train
    vgg, vgg_info, scale = None, None, None
    if config.model == "spade" and config.spade.lambda_vgg > 0:
        from ..weights import resolve_weights

        vgg = resolve_weights(weights, settings.seed)
        # NVlabs' scale: Gatys et al.'s published normalised VGG has mean-1 filters, not Caffe's scale.
        nvlabs = config.spade.vgg_input == "nvlabs"
        scale = vgg_scale(vgg.preprocessing, normalised=vgg.is_normalised) if nvlabs else 1.0
        vgg_info = {"source": vgg.source, "preprocessing": vgg.preprocessing, "scale": scale}
    preprocessing = vgg_info["preprocessing"] if vgg_info else "torch"

    def make_step(mesh):
        vgg_params = None if vgg is None else replicate(jax.tree.map(jnp.asarray, vgg_loss_params(vgg.params, config)),
                                                        mesh)  # fmt: skip
        return functools.partial(train_step_fn(config, num_classes, preprocessing, scale), vgg_params=vgg_params)

    def make_sampler(mesh, loader: BatchLoader):
        samples = sample_batch(data, decoders, config, seed=settings.seed)
        return functools.partial(sample_grid, batch=samples, config=config, num_classes=num_classes)

    return TrainSystem(
        name="sketch2photo",
        config=config,
        run_config={**config.to_json(), "vgg": vgg_info,
                    "data": {"labels": str(Path(labels_dir).resolve()), "photos": str(Path(photos_dir).resolve())}},
        settings=settings,
        may_change_on_resume=MAY_CHANGE_ON_RESUME,
        dataset=data,
        decoders=decoders,
        augment=Augment(load_size=config.load_size, crop_size=config.size),
        init_state=functools.partial(init_state, config, num_classes),
        schedule_fields=("total_steps", "decay_steps"),
        make_step=make_step,
        make_sampler=make_sampler,
        export=functools.partial(export_params, config=config),
        vgg_source=None if vgg is None else vgg.source,
    )  # fmt: skip


def train(
    labels_dir: str | os.PathLike,
    photos_dir: str | os.PathLike,
    run_dir: str | os.PathLike,
    config: Sketch2PhotoConfig = Sketch2PhotoConfig(),
    *,
    weights: Any = None,
    resume: bool = False,
    progress: Callable[[TrainProgress], None] | None = None,
    stop: Callable[[], bool] | None = None,
    mesh: Any = None,
    threads: int | None = None,
    distributed: bool | None = None,
) -> TrainResult:
    """Train SPADE or pix2pix (``config.model``) to turn the label maps of ``labels_dir`` into the photos of ``photos_dir``.

    Pairs are matched by file stem. Writes ``run_dir`` (see :class:`nstjax.train.RunDir`):
    config, checkpoints (the whole state), metrics, loss curve, sample grids (label
    map | generated | real) and the inference export (generator, encoder, palette)
    at every checkpoint. ``resume`` continues the run there from its last checkpoint,
    replaying exactly the batches and noise an uninterrupted run would have used.

    Args:
      labels_dir: label maps in ``config.palette`` (colour sketches or index PNGs);
        with pix2pix's ``input="image"``, RGB input images.
      photos_dir: the photos (any sizes; pairs are resized so the short side is
        ``config.load_size``, then cropped to ``size`` and flipped together).
      config: networks, losses, optimisers, length, batch, seed, intervals, dtype.
      weights: VGG-19 weights of SPADE's perceptual loss (a spec such as ``"auto"``,
        ``"random"``, a file, or loaded weights); unused by pix2pix or with lambda_vgg 0. Whatever
        their convention, the term is on NVlabs' scale (``config.spade.vgg_input``,
        :func:`~nstjax.sketch2photo.vgg_loss`).
      resume, progress, stop, mesh, threads, distributed: see :func:`nstjax.train.run`.

    Returns:
      A :class:`nstjax.train.TrainResult` whose ``state`` is the final
      :class:`Sketch2PhotoState` (and which reads like it: ``result.g.params``).

    Raises:
      NstjaxError: missing or empty folders, no pairs, an unknown palette, a batch
        size that does not split over the devices, a run directory that does not fit.
      TrainingInterrupted, TrainingDiverged: see :func:`nstjax.train.fit`.
    """
    system = train_system(labels_dir, photos_dir, config, weights=weights)
    return run(system, run_dir, resume=resume, progress=progress, stop=stop, mesh=mesh, threads=threads,
               distributed=distributed)  # fmt: skip
