"""Training a CycleGAN on two image folders: its :class:`~nstjax.train.TrainSystem` and :func:`train`.

:func:`train_system` describes the run (data, state, step, samples, export);
:func:`nstjax.train.run` does the rest, as for every trained model.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ..train import (
    Augment,
    BatchLoader,
    FolderDataset,
    TrainProgress,
    TrainResult,
    TrainSystem,
    image_grid,
    run,
    to_host,
    unit_to_image,
    unpaired,
)
from ._config import CycleGANConfig, DtypeName, ModelConfig, make_generator
from ._state import CycleGANState, init_state
from ._step import generator_passes, train_step_fn

__all__ = [
    "EXPORT_FORMAT", "MAY_CHANGE_ON_RESUME", "export_params", "sample_grid", "sample_images", "train", "train_system",
]  # fmt: skip

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

    def translate_both(g_params, a, b):
        out = generator_passes(gen, g_params, a, b, identity=False)
        return out["fake_b"], out["rec_a"], out["fake_a"], out["rec_b"]

    return jax.jit(translate_both)


def sample_grid(state: CycleGANState, samples: dict[str, np.ndarray], model: ModelConfig,
                dtype: DtypeName = "float32") -> np.ndarray:
    """uint8 [H, W, 3] grid: a row per sample image, columns input / translated / reconstructed
    (A images first: A, G_AB(A), G_BA(G_AB(A)); then B images: B, G_BA(B), G_AB(G_BA(B))); each row is
    labelled with its direction on the left, ``A->B`` or ``B->A``."""
    fake_b, rec_a, fake_a, rec_b = to_host(_translate_both(model, dtype)(state.g.params, samples["a"], samples["b"]))
    rows = [[unit_to_image(x) for x in row] for row in zip(samples["a"], fake_b, rec_a)]
    rows += [[unit_to_image(x) for x in row] for row in zip(samples["b"], fake_a, rec_b)]
    row_labels = ["A->B"] * len(samples["a"]) + ["B->A"] * len(samples["b"])
    return image_grid(rows, labels=["input", "translated", "reconstructed"], row_labels=row_labels)


def export_params(state: CycleGANState, config: CycleGANConfig) -> tuple[dict, dict[str, Any]]:
    """What inference needs: the two generators' parameters and the model settings."""
    return (
        {"g_ab": state.g.params["g_ab"], "g_ba": state.g.params["g_ba"]},
        {"system": "cyclegan", "format": EXPORT_FORMAT, "model": dataclasses.asdict(config.model),
         "dtype": config.dtype},
    )  # fmt: skip


def train_system(dir_a: str | os.PathLike, dir_b: str | os.PathLike,
                 config: CycleGANConfig = CycleGANConfig()) -> TrainSystem:
    """The CycleGAN run on ``dir_a`` (domain A) and ``dir_b`` (domain B), for :func:`nstjax.train.run`.

    Raises:
      NstjaxError: a missing or empty folder.
    """
    dataset = unpaired(dir_a, dir_b)
    settings = config.train

    def make_sampler(mesh, loader: BatchLoader):
        samples = sample_images(dataset, config.model, seed=settings.seed)
        return functools.partial(sample_grid, samples=samples, model=config.model, dtype=config.dtype)

    return TrainSystem(
        name="cyclegan",
        config=config,
        run_config={**config.to_json(), "data": {"a": str(Path(dir_a).resolve()), "b": str(Path(dir_b).resolve())}},
        settings=settings,
        may_change_on_resume=MAY_CHANGE_ON_RESUME,
        dataset=dataset,
        augment=Augment(load_size=config.model.load_size, crop_size=config.model.size),
        init_state=functools.partial(init_state, config),
        schedule_fields=("total_steps", "decay_steps"),
        make_step=lambda mesh: train_step_fn(config.model, config.loss, config.optim, config.dtype),
        make_sampler=make_sampler,
        export=functools.partial(export_params, config=config),
    )


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
) -> TrainResult:
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
      resume, progress, stop, mesh, threads, distributed: see :func:`nstjax.train.run`.

    Returns:
      A :class:`nstjax.train.TrainResult` whose ``state`` is the final
      :class:`CycleGANState` (and which reads like it: ``result.g.params``).

    Raises:
      NstjaxError: missing or empty folders, a batch size that does not split over
        the devices, a run directory that does not fit (see :meth:`RunDir.open`).
      TrainingInterrupted, TrainingDiverged: see :func:`nstjax.train.fit`.
    """
    return run(train_system(dir_a, dir_b, config), run_dir, resume=resume, progress=progress, stop=stop, mesh=mesh,
               threads=threads, distributed=distributed)  # fmt: skip
