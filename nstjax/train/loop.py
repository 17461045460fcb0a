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
import itertools
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

from .. import faults
from ..errors import NstjaxError
from ..runtime import Interrupts
from .checkpoint import RunDir
from .data import BatchLoader
from .estimate import Phase, WorkEta, describe_device, measured_flops_per_second, remember, remembered, step_flops
from .hosts import any_process, multi_process, to_host
from .plots import save_grid, save_loss_curve
from .state import shard_batch

__all__ = ["TRAIN_EFFICIENCY", "TrainPlan", "TrainProgress", "TrainingDiverged", "TrainingInterrupted", "fit",
           "plan_training"]

TRAIN_EFFICIENCY = 0.25
"""A train step's speed relative to the calibration kernel (:func:`~nstjax.train.estimate.measured_flops_per_second`)
until a run of the system on this machine measured its own (remembered as ``efficiency:<system>``): weight
gradients, normalisation, small channel counts and the optimiser run slower than VGG's wide convolutions.
A first guess, not a measurement: the first run long enough (5 s of steps) replaces it."""

COMPILE_SECONDS = 30.0
"""A train step's compilation until a run of the system on this machine measured it (``compile:<system>``):
a first guess of the order seen on a 2-core CPU (the issue saw 41 s for a tiny SPADE run)."""

TrainStep = Callable[[Any, dict[str, jax.Array]], tuple[Any, dict[str, jax.Array]]]
"""``(state, batch) -> (state, {name: scalar})``: one jitted step; the input state may be donated."""


@dataclasses.dataclass(frozen=True)
class TrainProgress:
    """What a training progress callback sees.

    event: ``"start"`` (the first step compiles now; carries the ``plan``), ``"compiled"``
      (the first step ran), ``"log"`` (every ``log_every`` steps), ``"sample"`` (a grid was
      written to ``path``), ``"checkpoint"`` (a checkpoint of ``step`` was started; the
      export, when the system has one, is in ``path``) or ``"done"``.
    step: steps finished (the next step to run is ``step``), out of ``total``.
    metrics: mean of each metric over the steps since the previous log.
    steps_per_second: over the last log interval (the first step's compilation excluded).
    eta: seconds left: the predicted time until steps were measured, then the measured time per step
      after compilation (:class:`~nstjax.train.estimate.WorkEta`); ``inf`` when neither is known.
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
    plan: TrainPlan | None = None


@dataclasses.dataclass(frozen=True)
class TrainPlan:
    """What a training run is about to do, carried by its ``"start"`` event.

    system: ``"cyclegan"``, ``"fast"``, …; steps: steps to run now (from ``start`` to ``total``).
    batch: the global batch's arrays' shapes, e.g. ``{"a": (4, 256, 256, 3), …}``.
    flops_per_step: XLA's count for one step (image size, batch and network width all in it), or None.
    step_seconds: predicted seconds per step (NaN when not known); compile_seconds: predicted compilation.
    seconds: predicted time of the steps (NaN when not known). device: JAX's default device in words.
    """

    system: str
    start: int
    total: int
    batch: dict[str, tuple[int, ...]]
    flops_per_step: float | None
    step_seconds: float
    compile_seconds: float
    device: str

    @property
    def steps(self) -> int:
        return self.total - self.start

    @property
    def seconds(self) -> float:
        return self.steps * self.step_seconds


def plan_training(system: str, train_step: TrainStep, state: Any, batch: Any, start: int, total: int, *,
                  flops_per_second: float | None = None, device: str | None = None) -> TrainPlan:  # fmt: skip
    """The :class:`TrainPlan` of a run: one step's FLOPs from its lowered program
    (:func:`~nstjax.train.estimate.step_flops`, no compilation) over this machine's measured speed times
    the system's efficiency (remembered from its last run here, else :data:`TRAIN_EFFICIENCY`), and its
    compilation (remembered, else :data:`COMPILE_SECONDS`). ``flops_per_second`` and ``device`` are
    injectable for tests."""
    flops = step_flops(train_step, state, batch)
    if flops is not None:
        rate = flops_per_second or measured_flops_per_second()
        efficiency = remembered(f"efficiency:{system}", TRAIN_EFFICIENCY)
        seconds = flops / (rate * (efficiency if efficiency > 0 else TRAIN_EFFICIENCY))
    else:
        seconds = math.nan
    shapes = {k: tuple(int(n) for n in getattr(v, "shape", ())) for k, v in dict(batch).items()}
    return TrainPlan(system, start, total, shapes, flops, seconds, remembered(f"compile:{system}", COMPILE_SECONDS),
                     device or describe_device())  # fmt: skip


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
    system: str = "train",
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
      system: the system's name, for the plan and what this machine remembers of its speed.

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
    tracker: WorkEta | None = None
    plan: TrainPlan | None = None

    def report(event: str, step: int, path: Path | None = None) -> None:
        if progress is None or not run.primary:
            return
        eta = math.inf
        if tracker is not None and (tracker.measured or math.isfinite(tracker.phases[0].unit_seconds)):
            eta = tracker.remaining()
        progress(
            TrainProgress(
                event=event, step=step, total=total_steps, metrics=dict(metrics), steps_per_second=rate,
                elapsed=time.perf_counter() - start_time, eta=eta, skipped_files=len(loader.skipped), path=path,
                plan=plan if event == "start" else None,
            )
        )  # fmt: skip

    def log(step: int) -> None:
        nonlocal pending, metrics, rate, last_time, last_logged
        if not pending:
            return
        metrics = _mean(pending)  # waits for the steps: the times below are the device's
        now = time.perf_counter()
        rate = (step - last_logged) / max(now - last_time, 1e-9)
        last_time, last_logged, pending = now, step, []
        if tracker is not None:
            tracker.update(0, step - start_step)
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
    batches: Iterator = loader.iterate(start_step, total_steps)
    done = start_step
    with Interrupts(immediate=False) as flag, contextlib.closing(batches):
        first = next(batches, None)
        if first is not None and progress is not None and run.primary:
            plan = plan_training(system, train_step, state, shard_batch(first[1], mesh), start_step, total_steps)
            unit = plan.step_seconds
            tracker = WorkEta([Phase(system, total_steps - start_step, unit, plan.compile_seconds)])
            tracker.start(0)
        report("start", start_step)
        for step, local in itertools.chain([] if first is None else [first], batches):
            state, step_metrics = train_step(state, shard_batch(local, mesh))
            faults.point("train-step")  # a crash here loses the steps since the last checkpoint
            pending.append(step_metrics)
            done = step + 1
            if done == start_step + 1:  # the first call compiled (and dispatched) the step
                last_time, last_logged = time.perf_counter(), done  # steps/s without the compilation
                if tracker is not None:
                    tracker.update(0, 1)
                    report("compiled", done)
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
    if tracker is not None and plan is not None:
        _remember_speed(system, tracker, plan)
    return state


def _remember_speed(system: str, tracker: WorkEta, plan: TrainPlan) -> None:
    """Keep this run's measured compilation and efficiency for the next plan of ``system`` here (runs of
    a few seconds, tests', teach nothing: their steps are all overhead)."""
    if sum(m * w for m, w in tracker.rates().values()) < 5.0:
        return
    compiled = tracker.compile_measured()
    if compiled:
        remember(f"compile:{system}", compiled[0])
    if tracker.measured and plan.flops_per_step and math.isfinite(plan.step_seconds):
        # speed = measured / predicted seconds; the prediction used the remembered (or default) efficiency.
        efficiency = remembered(f"efficiency:{system}", TRAIN_EFFICIENCY) / tracker.speed
        if 1e-6 < efficiency < 10:  # a sane measurement (tiny test steps are all overhead)
            remember(f"efficiency:{system}", efficiency)
