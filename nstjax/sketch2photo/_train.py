"""Training SPADE or pix2pix on a folder of (label map, photo) pairs with the shared loop (:func:`nstjax.train.fit`)."""

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
from ..runtime import enable_compilation_cache, init_distributed
from ..train import (
    Augment,
    BatchLoader,
    FolderDataset,
    RunDir,
    TrainProgress,
    check_batch_splits,
    data_mesh,
    fit,
    image_grid,
    paired,
    replicate,
    to_host,
    unit_to_image,
)
from ._config import Sketch2PhotoConfig, make_networks
from ._state import Sketch2PhotoState, init_state
from ._steps import generate, generator_input, train_step_fn

__all__ = [
    "EXPORT_FORMAT",
    "MAY_CHANGE_ON_RESUME",
    "dataset",
    "export_params",
    "generate_samples",
    "sample_batch",
    "sample_grid",
    "train",
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

    def run(g_params, g_stats, batch, key):
        x = generator_input(config, num_classes, batch)
        if config.model == "spade":
            eps = jnp.zeros((x.shape[0], config.spade.z_dim), jnp.float32)  # z = mu: the real photo's look
            return generate(config, num_classes, g_params, g_stats, x, batch["image"], eps, train=False)[0]
        return nets["generator"].apply({"params": g_params["generator"]}, x, rngs={"dropout": key})

    return jax.jit(run)


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
) -> Sketch2PhotoState:
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
        ``"random"``, a file, or loaded weights); unused by pix2pix or with lambda_vgg 0.
      progress: receives :class:`nstjax.train.TrainProgress` events.
      stop: polled after each step; True stops like Ctrl-C (checkpoint, then
        :class:`nstjax.train.TrainingInterrupted`).
      mesh: the data-parallel mesh (default: every device); threads: decoding threads.
      distributed: start ``jax.distributed`` first (None: when the environment names a
        cluster; see :func:`nstjax.runtime.init_distributed`). Every process then runs
        this same call.

    Returns:
      The final train state.

    Raises:
      NstjaxError: missing or empty folders, no pairs, an unknown palette, a batch
        size that does not split over the devices, a run directory that does not fit.
      TrainingInterrupted, TrainingDiverged: see :func:`nstjax.train.fit`.
    """
    init_distributed(distributed)
    enable_compilation_cache()
    data, decoders = dataset(labels_dir, photos_dir, config)
    num_classes = len(load_palette(config.palette))
    mesh = data_mesh() if mesh is None else mesh
    settings = config.train
    check_batch_splits(settings.batch_size, mesh)
    vgg_params, vgg_info = None, None
    if config.model == "spade" and config.spade.lambda_vgg > 0:
        from ..weights import resolve_weights

        vgg = resolve_weights(weights, settings.seed)
        vgg_params = replicate(jax.tree.map(jnp.asarray, vgg.params), mesh)
        vgg_info = {"source": vgg.source, "preprocessing": vgg.preprocessing}
    run_config = {**config.to_json(), "vgg": vgg_info,
                  "data": {"labels": str(Path(labels_dir).resolve()), "photos": str(Path(photos_dir).resolve())}}
    run = RunDir.open(run_dir, run_config, resume=resume, may_change=MAY_CHANGE_ON_RESUME, keep=settings.keep)
    augment = Augment(load_size=config.load_size, crop_size=config.size)
    loader = BatchLoader(data, settings.batch_size, augment, seed=settings.seed, decoders=decoders,
                         process_index=jax.process_index(), process_count=jax.process_count(), threads=threads)
    try:
        total = settings.total_steps(loader.steps_per_epoch)
        decay = settings.decay_steps(total)
        state = replicate(init_state(config, num_classes, total, decay), mesh)
        if resume:
            # A resumed run may be longer: the schedule follows the new length.
            state = run.resume(state).replace(total_steps=replicate(np.int32(total), mesh),
                                              decay_steps=replicate(np.int32(decay), mesh))  # fmt: skip
        samples = sample_batch(data, decoders, config, seed=settings.seed)
        preprocessing = vgg_info["preprocessing"] if vgg_info else "torch"
        step = functools.partial(train_step_fn(config, num_classes, preprocessing), vgg_params=vgg_params)
        return fit(
            state,
            step,
            loader,
            run,
            mesh=mesh,
            total_steps=total,
            log_every=settings.log_every,
            sample_every=settings.sample_every,
            checkpoint_every=settings.checkpoint_every,
            sample_fn=functools.partial(sample_grid, batch=samples, config=config, num_classes=num_classes),
            export_fn=functools.partial(export_params, config=config),
            progress=progress,
            stop=stop,
        )
    finally:
        run.close()
        loader.close()
