"""How long a long run will take: this machine's speed, a run's work in phases, and a cost-weighted ETA.

Shared by every long command (stylize and stylize-batch, recreate, the four trainers), each of which
describes its work as :class:`Phase` s: a scale of a Gatys run, a stage of a recreation, a training run.
A phase is ``units`` steps of a predicted ``unit_seconds`` each, after a one-off compilation of
``compile_seconds`` (0 when its program is already compiled).

* :func:`measured_flops_per_second`: the device's convolution speed, measured once per machine (about a
  second) and cached in ``<cache>/calibration.json``; predictions are FLOPs divided by it.
* :func:`remembered` / :func:`remember`: values measured by earlier runs on this machine (how long a
  system's step took to compile), kept in the same file.
* :func:`step_flops`: the FLOPs of one call of a jitted function, from XLA's cost analysis of its lowered
  program (no compilation).
* :class:`WorkEta`: the remaining time of a run in progress. It weights the remaining work by its
  predicted cost (a scale with 4x the pixels costs 4x per step), and scales the prediction by how fast the
  work done so far actually went (measured after each phase's compilation). So the ETA of a coarse-to-fine
  run is right long before its costly last scale starts, where a count of steps would be far too low.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..hub import cache_dir
from ..io.atomic import atomic_path
from ..models import vgg

__all__ = [
    "Phase",
    "WorkEta",
    "describe_device",
    "measured_flops_per_second",
    "remember",
    "remembered",
    "step_flops",
    "total_seconds",
]

_CALIBRATION_FILE = "calibration.json"
_CALIBRATION_VERSION = 1


# --------------------------------------------------------------------------- the machine


def _machine_key() -> str:
    import jax

    device = jax.devices()[0]
    return f"{jax.__version__}|{device.platform}|{device.device_kind}|{os.cpu_count()}"


def describe_device() -> str:
    """The default JAX device in words: ``"cpu (2 cores)"``, ``"gpu NVIDIA H200"``."""
    import jax

    device = jax.devices()[0]
    if device.platform == "cpu":
        return f"cpu ({os.cpu_count()} cores)"
    return f"{device.platform} {device.device_kind}"


def _read_entries() -> dict[str, Any]:
    try:
        data = json.loads((cache_dir() / _CALIBRATION_FILE).read_text(encoding="utf-8"))
        if data.get("version") == _CALIBRATION_VERSION:
            return dict(data.get("entries", {}))
    except (OSError, ValueError, AttributeError):
        pass
    return {}


def _write_entry(key: str, value: float) -> None:
    entries = _read_entries()
    entries[key] = value
    path = cache_dir() / _CALIBRATION_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"version": _CALIBRATION_VERSION, "entries": entries}, indent=1))
    except OSError:
        pass  # an unwritable cache only means measuring again next time


def _measure() -> float:
    """FLOP/s of a jitted value-and-gradient through two 3x3 convolutions, 128 channels, 64x64."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((1, 64, 64, 128), np.float32))
    k1 = jnp.asarray(rng.standard_normal((3, 3, 128, 128), np.float32) * 0.03)
    k2 = jnp.asarray(rng.standard_normal((3, 3, 128, 128), np.float32) * 0.03)

    def loss(image):
        y = jax.nn.relu(vgg.conv3x3(image, k1, ((1, 1), (1, 1))))
        y = vgg.conv3x3(y, k2, ((1, 1), (1, 1)))
        return jnp.mean(jnp.square(y))

    grad = jax.jit(jax.grad(loss))
    grad(x).block_until_ready()  # compile
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        grad(x).block_until_ready()
        best = min(best, time.perf_counter() - start)
    flops = 2 * (2.0 * 9 * 128 * 128 * 64 * 64) * 2  # two convolutions, forward and input gradient
    return flops / best


def measured_flops_per_second(*, refresh: bool = False) -> float:
    """This machine's convolution FLOP/s on JAX's default device, measured once and cached.

    The cache entry is keyed by the JAX version, platform, device kind and CPU count; ``refresh``
    measures again.
    """
    key = _machine_key()
    value = _read_entries().get(key)
    if not refresh and isinstance(value, int | float) and value > 0:
        return float(value)
    rate = _measure()
    _write_entry(key, rate)
    return rate


def remembered(name: str, default: float) -> float:
    """A value an earlier run measured on this machine (e.g. ``"compile:fast"`` seconds), else ``default``."""
    value = _read_entries().get(f"{_machine_key()}|{name}")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) and value >= 0 else default


def remember(name: str, value: float) -> None:
    """Keep ``value`` for :func:`remembered` on this machine (atomically; an unwritable cache is ignored)."""
    if math.isfinite(value) and value >= 0:
        _write_entry(f"{_machine_key()}|{name}", float(f"{value:.4g}"))


def step_flops(fn: Any, *args: Any) -> float | None:
    """FLOPs of one call ``fn(*args)`` of a jitted function, from XLA's cost analysis of the lowered
    program (traced, not compiled); None when ``fn`` cannot be lowered or the backend gives no count."""
    try:
        cost = fn.lower(*args).cost_analysis()
    except Exception:  # noqa: BLE001 - an estimate must never stop a run
        return None
    if isinstance(cost, list | tuple):  # older JAX: one dict per device program
        cost = cost[0] if cost else None
    flops = None if not isinstance(cost, dict) else cost.get("flops")
    return float(flops) if isinstance(flops, int | float) and flops > 0 else None


# --------------------------------------------------------------------------- the run


@dataclasses.dataclass(frozen=True)
class Phase:
    """A stretch of uniform work: ``units`` steps of ``unit_seconds`` each (predicted), after a
    compilation of ``compile_seconds`` (0 when the program is compiled already). ``name`` is for people."""

    name: str
    units: int
    unit_seconds: float
    compile_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        """Predicted seconds of the whole phase, its compilation included."""
        return self.compile_seconds + self.units * self.unit_seconds


def total_seconds(phases: Sequence[Phase]) -> tuple[float, float]:
    """(predicted work seconds, predicted compilation seconds) of ``phases``."""
    return sum(p.units * p.unit_seconds for p in phases), sum(p.compile_seconds for p in phases)


class WorkEta:
    """The remaining seconds of a run of ``phases``, from the progress reported so far.

    Call :meth:`start` when a phase begins (its compilation starts) and :meth:`update` after each chunk
    of its steps. The first update of a phase marks the end of its compilation (the first chunk pays for
    it); the steps timed between later updates give each phase's measured seconds per step.

    The remaining time is the current phase's remaining steps at its own measured rate, plus every later
    phase's steps at ``a + b * unit_seconds`` (:meth:`step_model`: fitted to the phases measured so far,
    so a fixed cost per step, which dominates small scales, is not multiplied up by the 16x pixels of a
    later scale), plus the compilations still to come (as measured so far, else as predicted). Before
    anything is measured the prediction stands.

    ``overhead``: a prior for ``a`` (seconds per step, e.g. fitted by an earlier run on this machine),
    used while only one cost is measured. ``clock`` (seconds) is injectable for tests.
    """

    def __init__(self, phases: Sequence[Phase], clock: Callable[[], float] = time.perf_counter,
                 overhead: float = 0.0):  # fmt: skip
        self.phases = tuple(phases)
        self.clock = clock
        self.overhead = overhead
        self._started: dict[int, float] = {}
        self._first: dict[int, tuple[float, float]] = {}  # phase -> (units done, time) at its first update
        self._last: dict[int, tuple[float, float]] = {}
        self._current = 0

    def start(self, phase: int) -> None:
        """Phase ``phase`` (0-based) begins now."""
        self._current = phase
        self._started[phase] = self.clock()

    def update(self, phase: int, done: float) -> float:
        """``done`` units of phase ``phase`` are finished now; returns the remaining seconds."""
        now = self.clock()
        if phase not in self._started:  # not announced: it began when the previous phase last reported
            self._started[phase] = self._last[phase - 1][1] if phase - 1 in self._last else now
        self._current = phase
        self._first.setdefault(phase, (done, now))
        self._last[phase] = (done, now)
        return self.remaining()

    def rates(self) -> dict[int, tuple[float, float]]:
        """Phase -> (measured seconds per step, steps measured), for phases with steps after compilation."""
        rates = {}
        for i, (d0, t0) in self._first.items():
            d1, t1 = self._last[i]
            if d1 > d0:
                rates[i] = ((t1 - t0) / (d1 - d0), d1 - d0)
        return rates

    @property
    def measured(self) -> bool:
        """Whether any steps were timed after their phase's compilation."""
        return bool(self.rates())

    def step_model(self) -> tuple[float, float]:
        """``(a, b)``: a step of predicted cost ``u`` takes ``a + b * u`` seconds.

        Fitted (least squares, weighted by steps measured) to the measured phases when they differ in
        cost; one measured cost gives ``b`` with ``a`` the ``overhead`` prior (at most the measured
        rate); nothing measured gives the prediction (``(0, 1)``).
        """
        points = [(self.phases[i].unit_seconds, m, w) for i, (m, w) in self.rates().items()]
        if not points:
            return 0.0, 1.0
        total = sum(w for _, _, w in points)
        mu = sum(u * w for u, _, w in points) / total
        mm = sum(m * w for _, m, w in points) / total
        var = sum(w * (u - mu) ** 2 for u, _, w in points)
        if var <= 1e-12 * max(mu * mu, 1e-30) * total:  # one cost: the prior overhead, the rest proportional
            a = min(self.overhead, 0.9 * mm)
            return a, ((mm - a) / mu if mu > 0 else 1.0)
        b = sum(w * (u - mu) * (m - mm) for u, m, w in points) / var
        a = mm - b * mu
        if b <= 0:  # time does not grow with cost here: a flat rate
            return mm, 0.0
        if a < 0:  # no negative overhead: proportional through the measured mean
            return 0.0, mm / mu if mu > 0 else b
        return a, b

    @property
    def speed(self) -> float:
        """Measured seconds per predicted second of the work so far (1.0 until measured)."""
        rates = self.rates()
        predicted = sum(self.phases[i].unit_seconds * w for i, (_, w) in rates.items())
        measured = sum(m * w for m, w in rates.values())
        return measured / predicted if predicted > 0 and measured > 0 else 1.0

    def _step_seconds(self, i: int, model: tuple[float, float], rates: dict) -> float:
        return rates[i][0] if i in rates else model[0] + model[1] * self.phases[i].unit_seconds

    def compile_measured(self) -> list[float]:
        """Measured compilations so far (seconds): the time to each phase's first update less its steps."""
        model, rates = self.step_model(), self.rates()
        return [
            max(0.0, t0 - self._started[i] - d0 * self._step_seconds(i, model, rates))
            for i, (d0, t0) in self._first.items()
            if self.phases[i].compile_seconds > 0 and i in self._started
        ]

    def remaining(self) -> float:
        """Seconds left: the current phase's remaining steps and every later phase, compilations included."""
        i = self._current
        if i >= len(self.phases):
            return 0.0
        model, rates = self.step_model(), self.rates()
        measured = self.compile_measured()
        current = self.phases[i]
        done = self._last.get(i, (0.0, 0.0))[0]
        seconds = max(0.0, current.units - done) * self._step_seconds(i, model, rates)
        if i not in self._first and current.compile_seconds > 0:  # still compiling
            planned = sum(measured) / len(measured) if measured else current.compile_seconds
            seconds += max(0.0, planned - (self.clock() - self._started.get(i, self.clock())))
        for j in range(i + 1, len(self.phases)):
            p = self.phases[j]
            seconds += p.units * self._step_seconds(j, model, rates)
            if p.compile_seconds > 0:
                seconds += sum(measured) / len(measured) if measured else p.compile_seconds
        return seconds
