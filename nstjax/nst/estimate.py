"""How long a stylisation will take, before it starts.

The model: one evaluation (value and image gradient of the loss) costs about
twice the VGG-19 forward pass up to the deepest layer the losses read (the
input gradient of each convolution costs as much as the convolution; there are
no weight gradients). The forward pass is ``Σ 2·9·C_in·C_out·h·w`` FLOPs over
the convolutions. An L-BFGS step takes :data:`LBFGS_EVALS_PER_STEP`
evaluations on average (its line search), an Adam step one.

The machine's speed is measured, not assumed: :func:`measured_flops_per_second`
times a value-and-gradient through two 3x3 convolutions of VGG's middle width
once per machine (about a second) and caches the result in
``<cache>/calibration.json``. On the 2-core CPU of docs/benchmarks.md the whole
network runs at :data:`NETWORK_EFFICIENCY` of that micro-benchmark's speed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence

from ..hub import cache_dir
from ..io.atomic import atomic_path
from ..models import vgg
from .config import StylizeConfig

__all__ = [
    "LBFGS_EVALS_PER_STEP",
    "RunEstimate",
    "estimate_run",
    "evaluation_flops",
    "forward_flops",
    "measured_flops_per_second",
]

LBFGS_EVALS_PER_STEP = 1.15
"""Mean evaluations per L-BFGS step with optax's zoom line search (measured: 1.0–1.3)."""

NETWORK_EFFICIENCY = 0.85
"""Whole-network speed relative to the calibration kernel (deep layers have small spatial sizes)."""

_CALIBRATION_FILE = "calibration.json"
_CALIBRATION_VERSION = 1


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


def _calibration_key() -> str:
    import jax

    device = jax.devices()[0]
    return f"{jax.__version__}|{device.platform}|{device.device_kind}|{os.cpu_count()}"


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

    The cache entry is keyed by the JAX version, platform, device kind and CPU
    count; ``refresh`` measures again.
    """
    key = _calibration_key()
    path = cache_dir() / _CALIBRATION_FILE
    entries: dict = {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") == _CALIBRATION_VERSION:
            entries = dict(data.get("entries", {}))
    except (OSError, ValueError, AttributeError):
        pass
    if not refresh and isinstance(entries.get(key), int | float) and entries[key] > 0:
        return float(entries[key])
    rate = _measure()
    entries[key] = rate
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"version": _CALIBRATION_VERSION, "entries": entries}, indent=1))
    except OSError:
        pass  # an unwritable cache only means measuring again next time
    return rate


@dataclasses.dataclass(frozen=True)
class RunEstimate:
    """What a stylisation will do and roughly how long it will take.

    shapes: (h, w) of the optimised image at each scale, coarse to fine.
    steps: optimiser steps at each scale.
    evaluations: expected loss evaluations in all.
    seconds: expected optimisation time, not counting compilation.
    flops_per_second: the measured device speed the estimate used.
    """

    shapes: tuple[tuple[int, int], ...]
    steps: tuple[int, ...]
    evaluations: float
    seconds: float
    flops_per_second: float


def estimate_run(
    config: StylizeConfig,
    shapes: Sequence[tuple[int, int]],
    *,
    images: int = 1,
    flops_per_second: float | None = None,
    network: str = "vgg19",
) -> RunEstimate:
    """Estimate a run of ``config`` whose schedule optimises images of ``shapes`` (one per scale).

    Args:
      images: how many images are optimised (a batch costs that many times one).
      flops_per_second: the device speed; default :func:`measured_flops_per_second`.
      network: ``"vgg19"`` or ``"vgg16"`` (the weights').
    """
    rate = flops_per_second or measured_flops_per_second()
    layers = [n for n, _ in config.content_layers] + [n for n, _ in config.style_layers]
    per_step = LBFGS_EVALS_PER_STEP if config.optimizer == "lbfgs" else 1.0
    steps = tuple(s for _, s in config.schedule)
    evaluations = 0.0
    flops = 0.0
    for shape, n in zip(shapes, steps):
        evaluations += n * per_step
        flops += n * per_step * evaluation_flops(shape, layers, network)
    seconds = images * flops / (rate * NETWORK_EFFICIENCY)
    return RunEstimate(tuple(tuple(s) for s in shapes), steps, images * evaluations, seconds, rate)
