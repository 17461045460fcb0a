"""How long a stylisation will take, before it starts.

The model: one evaluation (value and image gradient of the loss) costs about
twice the VGG-19 forward pass up to the deepest layer the losses read (the
input gradient of each convolution costs as much as the convolution; there are
no weight gradients). The forward pass is ``Σ 2·9·C_in·C_out·h·w`` FLOPs over
the convolutions. An L-BFGS step takes :data:`LBFGS_EVALS_PER_STEP`
evaluations on average (its line search), an Adam step one.

The machine's speed is measured, not assumed:
:func:`~nstjax.train.estimate.measured_flops_per_second` (shared with the
trainers' estimates) times a value-and-gradient through two 3x3 convolutions of
VGG's middle width once per machine (about a second) and caches the result in
``<cache>/calibration.json``. On the 2-core CPU of docs/benchmarks.md the whole
network runs at :data:`NETWORK_EFFICIENCY` of that micro-benchmark's speed.
Each scale compiles its own programs (:func:`compile_seconds`); a run's
:meth:`RunEstimate.phases` feed the cost-weighted ETA of
:class:`~nstjax.train.estimate.WorkEta`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..models import vgg
from ..train.estimate import Phase, WorkEta, measured_flops_per_second, remember, remembered
from .config import StylizeConfig

__all__ = [
    "COMPILE_SECONDS",
    "LBFGS_EVALS_PER_STEP",
    "RunEstimate",
    "compile_seconds",
    "estimate_run",
    "nst_eta",
    "remember_speed",
    "evaluation_flops",
    "forward_flops",
    "measured_flops_per_second",
]

LBFGS_EVALS_PER_STEP = 1.15
"""Mean evaluations per L-BFGS step with optax's zoom line search (measured: 1.0–1.3)."""

NETWORK_EFFICIENCY = 0.85
"""Whole-network speed relative to the calibration kernel (deep layers have small spatial sizes)."""

COMPILE_SECONDS = {"cpu": 12.0, "gpu": 8.0, "tpu": 8.0}
"""Compilation of one scale's programs (optimiser loop, loss, targets) when no run on this machine measured
it yet (see :func:`compile_seconds`); measured 11-22 s per scale on a 2-core Xeon (AVX-512) shared with
other jobs; the GPU/TPU values are guesses until a run there remembers its own."""


def compile_seconds(platform: str | None = None) -> float:
    """Expected compilation of one scale: as the last run on this machine measured it, else
    :data:`COMPILE_SECONDS` for the platform (JAX's default device's when ``None``)."""
    if platform is None:
        import jax

        platform = jax.devices()[0].platform
    return remembered("compile:nst", COMPILE_SECONDS.get(platform, COMPILE_SECONDS["gpu"]))


def forward_flops(shape: tuple[int, int], layers: Sequence[str], network: str = "vgg19") -> float:
    """FLOPs of the convolutions of ``network`` up to the deepest of ``layers`` for one image of ``shape`` (h, w)."""
    deepest = max(vgg.LAYERS.index(n) for n in layers)
    total = 0.0
    for name, (c_in, c_out) in vgg.conv_channels(network).items():
        if vgg.LAYERS.index(name) > deepest:
            break
        h, w = vgg.layer_shape(name, *shape)
        total += 2.0 * 9 * c_in * c_out * h * w
    return total


def evaluation_flops(shape: tuple[int, int], layers: Sequence[str], network: str = "vgg19") -> float:
    """FLOPs of one value-and-image-gradient: twice the forward pass (see the module docstring)."""
    return 2.0 * forward_flops(shape, layers, network)


@dataclasses.dataclass(frozen=True)
class RunEstimate:
    """What a stylisation will do and roughly how long it will take.

    shapes: (h, w) of the optimised image at each scale, coarse to fine.
    steps: optimiser steps at each scale.
    evaluations: expected loss evaluations in all.
    seconds: expected optimisation time, not counting compilation.
    flops_per_second: the measured device speed the estimate used.
    step_seconds: expected seconds of one step at each scale (a scale's cost grows with its pixels).
    compile_seconds: expected compilation of each scale's programs (each new shape compiles anew).
    """

    shapes: tuple[tuple[int, int], ...]
    steps: tuple[int, ...]
    evaluations: float
    seconds: float
    flops_per_second: float
    step_seconds: tuple[float, ...] = ()
    compile_seconds: float = 0.0

    @property
    def compile_total(self) -> float:
        """Expected compilation of the whole run, in seconds (one per scale)."""
        return self.compile_seconds * len(self.shapes)

    def phases(self, name: str = "scale") -> tuple[Phase, ...]:
        """One :class:`~nstjax.train.estimate.Phase` per scale, for :class:`~nstjax.train.estimate.WorkEta`."""
        return tuple(
            Phase(f"{name} {i + 1}", n, t, self.compile_seconds)
            for i, (n, t) in enumerate(zip(self.steps, self.step_seconds))
        )


def estimate_run(
    config: StylizeConfig,
    shapes: Sequence[tuple[int, int]],
    *,
    images: int = 1,
    flops_per_second: float | None = None,
    network: str = "vgg19",
    compile_seconds_per_scale: float | None = None,
) -> RunEstimate:
    """Estimate a run of ``config`` whose schedule optimises images of ``shapes`` (one per scale).

    Args:
      images: how many images are optimised (a batch costs that many times one).
      flops_per_second: the device speed; default :func:`measured_flops_per_second`.
      network: ``"vgg19"`` or ``"vgg16"`` (the weights').
      compile_seconds_per_scale: default :func:`compile_seconds` (this machine's last measurement).
    """
    rate = flops_per_second or measured_flops_per_second()
    layers = [n for n, _ in config.content_layers] + [n for n, _ in config.style_layers]
    per_step = LBFGS_EVALS_PER_STEP if config.optimizer == "lbfgs" else 1.0
    steps = tuple(s for _, s in config.schedule)
    step_seconds = tuple(
        images * per_step * evaluation_flops(shape, layers, network) / (rate * NETWORK_EFFICIENCY) for shape in shapes
    )
    evaluations = images * per_step * sum(steps)
    seconds = sum(n * t for n, t in zip(steps, step_seconds))
    compile_s = compile_seconds() if compile_seconds_per_scale is None else compile_seconds_per_scale
    return RunEstimate(tuple(tuple(s) for s in shapes), steps, evaluations, seconds, rate, step_seconds, compile_s)


def nst_eta(phases: Sequence[Phase]) -> WorkEta:
    """A :class:`~nstjax.train.estimate.WorkEta` over Gatys phases, with the fixed cost per step an
    earlier run on this machine fitted (:func:`remember_speed`) as its prior."""
    return WorkEta(phases, overhead=remembered("overhead:nst", 0.0))


def remember_speed(eta: WorkEta) -> None:
    """Keep what ``eta`` measured for the next estimates on this machine: the mean compilation of a
    scale, and the fixed cost per step when scales of different cost were timed."""
    compiled = eta.compile_measured()
    if compiled:
        # A program loaded from the persistent compilation cache "compiles" in a fraction of a second: that
        # must not teach the estimate that the next new shape compiles as fast (not below half the default).
        import jax

        floor = 0.5 * COMPILE_SECONDS.get(jax.default_backend(), COMPILE_SECONDS["gpu"])
        remember("compile:nst", max(sum(compiled) / len(compiled), floor))
    costs = {eta.phases[i].unit_seconds for i in eta.rates()}
    if len(costs) >= 2:
        remember("overhead:nst", eta.step_model()[0])
