"""The training loop every trained model shares: steps, logs, samples, checkpoints, Ctrl-C.

:func:`fit` runs a system's jitted train step over the batches of a
:class:`~nstjax.train.data.BatchLoader` from the state's current step to
``total_steps``. It never prints: it writes the run directory
(:class:`~nstjax.train.checkpoint.RunDir`) and reports :class:`TrainProgress`
events to a callback.

The first Ctrl-C asks the loop to stop after the step in flight: it then logs,
checkpoints and raises :class:`TrainingInterrupted`. A second Ctrl-C stops at
once (the last checkpoint stays). A non-finite loss stops training with
:class:`TrainingDiverged`; the checkpoints written before stay.

Several processes (:mod:`~nstjax.train.hosts`): every process runs the loop; they
agree to stop (one's request stops all) at the next log or checkpoint step, so
all checkpoint the same step. Only the primary process writes files and reports
progress.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

from .. import faults
from ..errors import NstjaxError
from .checkpoint import RunDir
from .data import BatchLoader
from .hosts import any_process, multi_process, to_host
from .plots import save_grid, save_loss_curve
from .state import shard_batch

__all__ = ["TrainProgress", "TrainingDiverged", "TrainingInterrupted", "fit"]

TrainStep = Callable[[Any, dict[str, jax.Array]], tuple[Any, dict[str, jax.Array]]]
"""``(state, batch) -> (state, {name: scalar})``: one jitted step; the input state may be donated."""


@dataclasses.dataclass(frozen=True)
class TrainProgress:
    """What a training progress callback sees.

    event: ``"start"``, ``"log"`` (every ``log_every`` steps), ``"sample"`` (a grid was
      written to ``path``), ``"checkpoint"`` (a checkpoint of ``step`` was started; the
      export, when the system has one, is in ``path``) or ``"done"``.
    step: steps finished (the next step to run is ``step``), out of ``total``.
    metrics: mean of each metric over the steps since the previous log.
    steps_per_second: over the last log interval; ``eta`` in seconds (``inf`` until known).
    skipped_files: dataset files that could not be read so far (each was replaced by another).
    resumed_from: the checkpoint's step a resumed run started from (None: a new run; set by
      :func:`nstjax.train.run`).
    """

    event: str
    step: int
    total: int
    metrics: dict[str, float]
    steps_per_second: float
    elapsed: float
    eta: float
    skipped_files: int
    path: Path | None = None
    resumed_from: int | None = None


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fit`: ``step`` was checkpointed (``checkpointed``) and can be resumed."""

    def __init__(self, step: int, checkpointed: bool):
        super().__init__(f"interrupted after step {step}")
        self.step = step
        self.checkpointed = checkpointed


class TrainingDiverged(NstjaxError):
    """A loss became NaN or infinite; ``step`` is where it was seen."""

    def __init__(self, step: int, metrics: dict[str, float], last_checkpoint: int | None):
        bad = ", ".join(f"{k}={v}" for k, v in metrics.items() if not math.isfinite(v))
        where = f"the last checkpoint is step {last_checkpoint}" if last_checkpoint is not None else "no checkpoint yet"
        super().__init__(f"a loss became NaN or infinite by step {step} ({bad}); {where} (try a lower learning rate)")
        self.step = step


class _StopFlag:
    """Turns the first SIGINT into a request to stop after the current step (main thread only)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)

            def handler(signum, frame):
                if self.requested:  # the second Ctrl-C: stop now
                    raise KeyboardInterrupt
                self.requested = True

            signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _mean(metrics: list[dict[str, Any]]) -> dict[str, float]:
    host = to_host(metrics)
    return {k: float(np.mean([float(m[k]) for m in host])) for k in host[0]}


def fit(
    state: Any,
    train_step: TrainStep,
    loader: BatchLoader,
    run: RunDir,
    *,
    mesh: Any,
    total_steps: int,
    log_every: int = 50,
    sample_every: int = 0,
    checkpoint_every: int = 1000,
    sample_fn: Callable[[Any], np.ndarray] | None = None,
    export_fn: Callable[[Any], tuple[Any, dict]] | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Any:
    """Train ``state`` from step ``state.step`` to ``total_steps``; return the final state.

    Args:
      state: the system's train state (a pytree with an int ``step`` field), placed on ``mesh``.
      train_step: the jitted step (see :data:`TrainStep`).
      loader: batches by step number; each host yields its own slice.
      run: where logs, samples, checkpoints and the export go.
      mesh: the data-parallel mesh batches are sharded over.
      log_every, sample_every, checkpoint_every: intervals in steps (0 = never; the
        last step is always logged and checkpointed).
      sample_fn: ``state -> uint8 [H, W, 3]`` grid (inputs, outputs, reconstructions…).
      export_fn: ``state -> (params, config)`` for the inference export, written at
        each checkpoint.
      progress: receives :class:`TrainProgress` events.
      stop: polled after each step; True stops like Ctrl-C (for servers and tests).

    Raises:
      TrainingInterrupted: Ctrl-C or ``stop``; the state after the last finished step was
        checkpointed.
      TrainingDiverged: a non-finite loss.
    """
    start_step = int(to_host(state.step))
    several = multi_process()
    start_time = last_time = time.perf_counter()
    last_logged = start_step
    pending: list[dict[str, Any]] = []
    metrics: dict[str, float] = {}
    rate = 0.0

    def report(event: str, step: int, path: Path | None = None) -> None:
        if progress is None or not run.primary:
            return
        eta = (total_steps - step) / rate if rate > 0 else math.inf
        progress(
            TrainProgress(
                event=event, step=step, total=total_steps, metrics=dict(metrics), steps_per_second=rate,
                elapsed=time.perf_counter() - start_time, eta=eta, skipped_files=len(loader.skipped), path=path,
            )
        )  # fmt: skip

    def log(step: int) -> None:
        nonlocal pending, metrics, rate, last_time, last_logged
        if not pending:
            return
        metrics = _mean(pending)
        now = time.perf_counter()
        rate = (step - last_logged) / max(now - last_time, 1e-9)
        last_time, last_logged, pending = now, step, []
        if not all(math.isfinite(v) for v in metrics.values()):
            raise TrainingDiverged(step, metrics, run.latest_step())
        run.log({"step": step, "time": round(now - start_time, 3), "steps_per_second": round(rate, 4), **metrics})
        report("log", step)

    def checkpoint(step: int, current: Any, wait: bool = False) -> None:
        run.save(step, current, wait=wait)
        path = None
        if export_fn is not None:
            params, config = export_fn(current)
            path = run.export(params, config)
        if run.primary:
            save_loss_curve(run.metrics(), run.path / "loss_curve.png", title=run.path.name)
        report("checkpoint", step, path)

    if start_step >= total_steps:
        return state
    report("start", start_step)
    batches: Iterator = loader.iterate(start_step, total_steps)
    done = start_step
    with _StopFlag() as flag, contextlib.closing(batches):
        for step, local in batches:
            state, step_metrics = train_step(state, shard_batch(local, mesh))
            faults.point("train-step")  # a crash here loses the steps since the last checkpoint
            pending.append(step_metrics)
            done = step + 1
            final = done == total_steps
            if final or (log_every and done % log_every == 0):
                log(done)
            if sample_fn is not None and sample_every and (final or done % sample_every == 0):
                grid = sample_fn(state)  # every process: the generator runs on all devices
                if run.primary:
                    path = save_grid(run.samples_dir / f"step_{done:07d}.png", grid)
                    report("sample", done, path)
            stopping = flag.requested or (stop is not None and stop())
            if several:  # agree at log and checkpoint steps only: a collective every step would stall dispatch
                due = final or any(every and done % every == 0 for every in (log_every, checkpoint_every))
                stopping = bool(due) and any_process(stopping)
            if final or stopping or (checkpoint_every and done % checkpoint_every == 0):
                if stopping:
                    log(done)
                checkpoint(done, state, wait=stopping or final)
            if stopping:
                run.wait()
                raise TrainingInterrupted(done, checkpointed=True)
    run.wait()
    report("done", done)
    return state
