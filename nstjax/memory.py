"""Memory estimate of one stylisation, and the choice of rematerialisation.

The model counts bytes of the buffers alive at the peak of one
value-and-gradient evaluation plus the optimiser state:

* parameters up to the deepest layer (float32, plus a compute-dtype copy);
* activations kept for the backward pass: for ``remat="none"`` every conv
  output and ReLU output of each conv up to the deepest layer; for ``"conv"``
  only conv outputs; for ``"block"`` only each block's input and the requested
  features, plus one block's activations recomputed at a time;
* gradient buffers in flight (twice the largest activation, float32);
* images held by the optimiser: iterate, gradient, best, average, and 2·m
  curvature pairs for L-BFGS (m = memory size) or two moments for Adam.

Coefficients were checked against XLA's own buffer assignment
(``compiled.memory_analysis()``) on CPU; see ``tests/test_memory.py``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax

from . import vgg
from .config import StylizeConfig
from .errors import NstjaxError

REMAT_ORDER = ("none", "conv", "block")


def _deepest(layers: Sequence[str]) -> int:
    return max(vgg.LAYERS.index(n) for n in layers)


def activation_elements(height: int, width: int, layers: Sequence[str]) -> dict[str, int]:
    """Elements (per image) of every conv output up to the deepest of ``layers``."""
    deepest = _deepest(layers)
    out = {}
    for name in vgg.CONV_LAYERS:
        if vgg.LAYERS.index(name) > deepest:
            break
        h, w = vgg.layer_shape(name, height, width)
        out[name] = h * w * vgg.layer_channels(name)
    return out


def estimate_bytes(
    shape: tuple[int, int],
    *,
    layers: Sequence[str],
    dtype: str = "float32",
    remat: str = "none",
    optimizer: str = "lbfgs",
    lbfgs_memory: int = 10,
    batch: int = 1,
) -> int:
    """Estimated peak bytes of stylising ``batch`` images of ``shape`` (h, w).

    Args:
      layers: every layer the losses read (content and style).
      dtype: compute dtype, ``"float32"`` or ``"bfloat16"``.
      remat: ``"none"``, ``"conv"`` or ``"block"``.
    """
    h, w = shape
    act_bytes = 2 if dtype == "bfloat16" else 4
    acts = activation_elements(h, w, layers)
    deepest = _deepest(layers)
    params = sum(
        9 * cin * cout + cout
        for name, (cin, cout) in vgg.CONV_CHANNELS.items()
        if vgg.LAYERS.index(name) <= deepest
    )
    param_bytes = params * 4 + (params * 2 if dtype == "bfloat16" else 0)

    wanted = sum(
        vgg.layer_shape(n, h, w)[0] * vgg.layer_shape(n, h, w)[1] * vgg.layer_channels(n) for n in set(layers)
    )
    if remat == "none":
        kept = 2 * sum(acts.values())
    elif remat == "conv":
        kept = sum(acts.values()) + wanted
    elif remat == "block":
        blocks: dict[int, int] = {}
        for name, n in acts.items():
            blocks[vgg.layer_block(name)] = blocks.get(vgg.layer_block(name), 0) + n
        block_inputs = sum(acts[f"conv{b}_1"] // vgg.layer_channels(f"conv{b}_1") * (3 if b == 1 else vgg.BLOCKS[b - 2][0]) for b in blocks)
        kept = wanted + block_inputs + 2 * max(blocks.values())
    else:
        raise ValueError(f"remat must be one of {REMAT_ORDER}, got {remat!r}")
    activation_bytes = kept * act_bytes
    gradient_bytes = 2 * max(acts.values()) * 4

    image = h * w * 3 * 4
    copies = 4 + (2 * lbfgs_memory + 3 if optimizer == "lbfgs" else 2)
    return int(param_bytes + batch * (activation_bytes + gradient_bytes + copies * image))


def device_memory_bytes(device: jax.Device | None = None) -> int | None:
    """Memory available to arrays on ``device``: the accelerator's limit, or free RAM on CPU."""
    device = device or jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        limit = stats.get("bytes_limit")
        return int(limit - stats.get("bytes_in_use", 0)) if limit else None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def choose_remat(
    shape: tuple[int, int],
    config: StylizeConfig,
    *,
    batch: int = 1,
    n_terms: int = 1,
    available: int | None = None,
) -> str:
    """The remat mode to use: ``config.remat``, or for ``"auto"`` the least that fits.

    Raises NstjaxError with the estimate and a suggestion when nothing fits.
    """
    layers = [n for n, _ in config.content_layers] + [n for n, _ in config.style_layers]
    available = device_memory_bytes() if available is None else available
    modes = REMAT_ORDER if config.remat == "auto" else (config.remat,)

    def estimate(mode):
        return estimate_bytes(
            shape,
            layers=layers,
            dtype=config.dtype,
            remat=mode,
            optimizer=config.optimizer,
            lbfgs_memory=config.lbfgs_memory,
            batch=batch,
        )

    if available is None:
        return "none" if config.remat == "auto" else config.remat
    for mode in modes:
        if estimate(mode) <= available:
            return mode
    need = estimate(modes[-1])
    hints = []
    if config.remat not in ("auto", "block"):
        hints.append("--remat block")
    if config.dtype == "float32":
        hints.append("--dtype bfloat16")
    if config.optimizer == "lbfgs":
        hints.append("--optimizer adam")
    hints.append("a smaller --size")
    raise NstjaxError(
        f"a {shape[1]}x{shape[0]} image needs about {_gib(need)} (estimate, remat {modes[-1]}) "
        f"but the device has {_gib(available)} free; try {', '.join(hints)}"
    )
