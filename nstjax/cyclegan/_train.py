"""Training a CycleGAN on two image folders with the shared loop (:func:`nstjax.train.fit`)."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

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
    replicate,
    to_host,
    unit_to_image,
    unpaired,
)
from ._config import CycleGANConfig, DtypeName, ModelConfig, make_generator
from ._state import CycleGANState, init_state
from ._step import generator_passes, train_step_fn

__all__ = ["EXPORT_FORMAT", "MAY_CHANGE_ON_RESUME", "export_params", "sample_grid", "sample_images", "train"]

MAY_CHANGE_ON_RESUME = (
    "train.steps", "train.epochs", "train.log_every", "train.sample_every", "train.checkpoint_every", "train.keep",
    "data.a", "data.b",
)  # fmt: skip
"""Settings a resumed run may change (a longer run re-spreads the learning-rate decay over the new length)."""

EXPORT_FORMAT = 1
"""Version of the inference export's layout (params ``{"g_ab", "g_ba"}`` + config)."""


def sample_images(dataset: FolderDataset, model: ModelConfig, *, count: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """``{"a", "b"}``: ``count`` fixed images of each domain, float32 [count, S, S, 3] in [-1, 1] (centred
    crops of the short side resized to ``model.size``: the same images at every sample step)."""
    loader = BatchLoader(dataset, count, Augment(load_size=model.size, crop_size=model.size, flip=False), seed=seed,
                         threads=1, prefetch=1)  # fmt: skip
    try:
        return loader.batch(0)
    finally:
        loader.close()


@functools.lru_cache(maxsize=8)
def _translate_both(model: ModelConfig, dtype: DtypeName):
    gen = make_generator(model, dtype)

    def run(g_params, a, b):
        out = generator_passes(gen, g_params, a, b, identity=False)
        return out["fake_b"], out["rec_a"], out["fake_a"], out["rec_b"]

    return jax.jit(run)


def sample_grid(state: CycleGANState, samples: dict[str, np.ndarray], model: ModelConfig,
                dtype: DtypeName = "float32") -> np.ndarray:
    """uint8 [H, W, 3] grid: a row per sample image, columns input / translated / reconstructed
    (A images first: A, G_AB(A), G_BA(G_AB(A)); then B images: B, G_BA(B), G_AB(G_BA(B)))."""
    fake_b, rec_a, fake_a, rec_b = to_host(_translate_both(model, dtype)(state.g.params, samples["a"], samples["b"]))
    rows = [[unit_to_image(x) for x in row] for row in zip(samples["a"], fake_b, rec_a)]
    rows += [[unit_to_image(x) for x in row] for row in zip(samples["b"], fake_a, rec_b)]
    return image_grid(rows, labels=["input", "translated", "reconstructed"])


def export_params(state: CycleGANState, config: CycleGANConfig) -> tuple[dict, dict[str, Any]]:
    """What inference needs: the two generators' parameters and the model settings."""
    return (
        {"g_ab": state.g.params["g_ab"], "g_ba": state.g.params["g_ba"]},
        {"system": "cyclegan", "format": EXPORT_FORMAT, "model": dataclasses.asdict(config.model),
         "dtype": config.dtype},
    )  # fmt: skip


def train(
    dir_a: str | os.PathLike,
    dir_b: str | os.PathLike,
    run_dir: str | os.PathLike,
    config: CycleGANConfig = CycleGANConfig(),
    *,
    resume: bool = False,
    progress: Callable[[TrainProgress], None] | None = None,
    stop: Callable[[], bool] | None = None,
    mesh: Any = None,
    threads: int | None = None,
    distributed: bool | None = None,
) -> CycleGANState:
    """Train a CycleGAN translating the images of ``dir_a`` (domain A) and ``dir_b`` (domain B).

    Writes ``run_dir`` (see :class:`nstjax.train.RunDir`): config, checkpoints (the
    whole state, pools and key included), metrics, loss curve, sample grids and the
    inference export (the two generators) at every checkpoint. ``resume`` continues
    the run there from its last checkpoint, replaying exactly the batches and pool
    draws an uninterrupted run would have used.

    Args:
      dir_a, dir_b: image folders (any sizes; resized so the short side is
        ``config.model.load_size``, then randomly cropped to ``size`` and flipped).
      config: networks, losses, optimiser, length, batch, seed, intervals, dtype.
      progress: receives :class:`nstjax.train.TrainProgress` events.
      stop: polled after each step; True stops like Ctrl-C (checkpoint, then
        :class:`nstjax.train.TrainingInterrupted`).
      mesh: the data-parallel mesh (default: every device).
      threads: image-decoding threads.
      distributed: start ``jax.distributed`` first (None: when the environment names a
        cluster; see :func:`nstjax.runtime.init_distributed`). Every process then runs
        this same call.

    Returns:
      The final train state.

    Raises:
      NstjaxError: missing or empty folders, a batch size that does not split over
        the devices, a run directory that does not fit (see :meth:`RunDir.open`).
      TrainingInterrupted, TrainingDiverged: see :func:`nstjax.train.fit`.
    """
    init_distributed(distributed)
    enable_compilation_cache()
    dataset = unpaired(dir_a, dir_b)
    mesh = data_mesh() if mesh is None else mesh
    settings = config.train
    check_batch_splits(settings.batch_size, mesh)
    run_config = {**config.to_json(), "data": {"a": str(Path(dir_a).resolve()), "b": str(Path(dir_b).resolve())}}
    run = RunDir.open(run_dir, run_config, resume=resume, may_change=MAY_CHANGE_ON_RESUME, keep=settings.keep)
    loader = BatchLoader(
        dataset, settings.batch_size, Augment(load_size=config.model.load_size, crop_size=config.model.size),
        seed=settings.seed, process_index=jax.process_index(), process_count=jax.process_count(), threads=threads,
    )  # fmt: skip
    try:
        total = settings.total_steps(loader.steps_per_epoch)
        decay = settings.decay_steps(total)
        state = replicate(init_state(config, total, decay), mesh)
        if resume:
            # A resumed run may be longer: the schedule follows the new length.
            state = run.resume(state).replace(total_steps=replicate(np.int32(total), mesh),
                                              decay_steps=replicate(np.int32(decay), mesh))  # fmt: skip
        samples = sample_images(dataset, config.model, seed=settings.seed)
        return fit(
            state,
            train_step_fn(config.model, config.loss, config.optim, config.dtype),
            loader,
            run,
            mesh=mesh,
            total_steps=total,
            log_every=settings.log_every,
            sample_every=settings.sample_every,
            checkpoint_every=settings.checkpoint_every,
            sample_fn=functools.partial(sample_grid, samples=samples, model=config.model, dtype=config.dtype),
            export_fn=functools.partial(export_params, config=config),
            progress=progress,
            stop=stop,
        )
    finally:
        run.close()
        loader.close()
