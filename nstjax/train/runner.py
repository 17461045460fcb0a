"""One training run of any system: run directory, batches, resume, schedule, loop, export.

Every system's ``train`` describes its model as a :class:`~nstjax.train.system.TrainSystem`
and calls :func:`run`, which does the same for all of them:

1. starts ``jax.distributed`` when asked and JAX's persistent compilation cache;
2. checks that the batch splits over the mesh, then opens the run directory
   (:meth:`RunDir.open`: a new run, or ``resume`` with the same settings except the
   system's ``may_change_on_resume``);
3. builds the seeded :class:`~nstjax.train.data.BatchLoader`, the run's length in steps
   (``steps``, or ``epochs`` passes over the data) and the decay's (``decay_fraction`` of it);
4. starts from a fresh state, or from the latest checkpoint with this run's schedule: a
   resumed run may be longer, and its decay then spreads over the whole new length;
5. trains with :func:`~nstjax.train.fit` (logs, samples, checkpoints, export, Ctrl-C);
6. returns a :class:`~nstjax.train.system.TrainResult`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax

from ..runtime import enable_compilation_cache, init_distributed
from .checkpoint import RunDir
from .data import BatchLoader
from .hosts import to_host
from .loop import TrainProgress, fit
from .state import check_batch_splits, data_mesh, replicate
from .system import TrainResult, TrainSystem

__all__ = ["run"]


def run(
    system: TrainSystem,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: Callable[[TrainProgress], None] | None = None,
    stop: Callable[[], bool] | None = None,
    mesh: Any = None,
    threads: int | None = None,
    distributed: bool | None = None,
) -> TrainResult:
    """Train ``system`` in ``run_dir`` (or, with ``resume``, continue the run there).

    Args:
      system: the model, its data and settings.
      run_dir: the run directory (see :class:`~nstjax.train.RunDir`).
      resume: continue from the run's latest checkpoint, replaying exactly the batches an
        uninterrupted run would have seen (a run stopped before its first checkpoint
        starts again from step 0).
      progress: receives :class:`~nstjax.train.TrainProgress` events; those of a resumed
        run say the step it resumed from (``resumed_from``).
      stop: polled after each step; True stops like Ctrl-C (checkpoint, then
        :class:`~nstjax.train.TrainingInterrupted`).
      mesh: the data-parallel mesh (default: every device of every process).
      threads: image-decoding threads (default: up to 8).
      distributed: start ``jax.distributed`` first (None: when the environment names a
        cluster; see :func:`nstjax.runtime.init_distributed`). Every process then runs
        this same call.

    Raises:
      NstjaxError: a batch size that does not split over the devices, a run directory
        that does not fit (see :meth:`RunDir.open`), a checkpoint that does not fit.
      TrainingInterrupted, TrainingDiverged: see :func:`~nstjax.train.fit`.
    """
    init_distributed(distributed)  # before anything touches a device
    enable_compilation_cache()
    mesh = data_mesh() if mesh is None else mesh
    settings = system.settings
    check_batch_splits(settings.batch_size, mesh)  # before the run directory exists: the mistake costs nothing
    directory = RunDir.open(run_dir, system.run_config, resume=resume, may_change=system.may_change_on_resume,
                            keep=settings.keep)  # fmt: skip
    loader = BatchLoader(
        system.dataset, settings.batch_size, system.augment, seed=settings.seed, decoders=system.decoders,
        process_index=jax.process_index(), process_count=jax.process_count(), threads=threads,
    )  # fmt: skip
    try:
        total = settings.total_steps(loader.steps_per_epoch)
        state, resumed_from = _first_state(system, directory, mesh, total, resume)
        if progress is not None and resumed_from is not None:
            report = progress
            progress = lambda event: report(dataclasses.replace(event, resumed_from=resumed_from))  # noqa: E731
        sample_fn = None
        if system.make_sampler is not None and settings.sample_every:
            sample_fn = system.make_sampler(mesh, loader)
        state = fit(
            state, system.make_step(mesh), loader, directory, mesh=mesh, total_steps=total,
            log_every=settings.log_every, sample_every=settings.sample_every,
            checkpoint_every=settings.checkpoint_every, sample_fn=sample_fn, export_fn=system.export,
            progress=progress, stop=stop, system=system.name,
        )  # fmt: skip
        params, _ = system.export(state)
        return TrainResult(
            state=state, run_dir=directory.path, step=int(to_host(state.step)), total_steps=total,
            metrics=directory.last_metrics(), params=to_host(params), config=system.config,
            vgg_source=system.vgg_source, resumed_from=resumed_from,
        )  # fmt: skip
    finally:
        directory.close()
        loader.close()


def _first_state(system: TrainSystem, directory: RunDir, mesh: Any, total: int, resume: bool) -> tuple[Any, int | None]:
    """(the state to train from, placed on ``mesh``; the checkpoint step it was restored from, or None).

    A function of its own so the fresh state is freed before training when a checkpoint replaces it.
    """
    fresh = replicate(system.init_state(total, system.settings.decay_steps(total)), mesh)
    if not resume:
        return fresh, None
    if directory.latest_step() is None:  # stopped before its first checkpoint: start again
        directory.drop_metrics_after(0)
        return fresh, None
    state = directory.resume(fresh)
    # This run's schedule, not the checkpoint's: a longer run spreads its decay over the new length.
    state = state.replace(**{name: getattr(fresh, name) for name in system.schedule_fields})
    return state, int(to_host(state.step))
