"""Memory estimate of one stylisation, and the choice of rematerialisation.

The estimate counts the bytes alive at the peak of the jitted optimiser chunk:

* **parameters**: all 16 convolutions in float32 (they are passed in whole) with
  the transposed kernels of :func:`nstjax.models.vgg.with_transposed_kernels`, plus a
  compute-dtype copy of the used ones for bfloat16;
* **images held by the optimiser**, per image: iterate, Adam average, best image
  and the new carry (4), plus ``2·m + 4`` for L-BFGS (m curvature pairs, the
  line search's gradient and state) or 2 moments for Adam;
* **activations**: ``a·ΣA + b·ΣW`` bytes, where ``ΣA`` counts the elements of
  every conv output up to the deepest layer and ``ΣW`` those of the layers
  that carry a loss (their Gram/content gradients are extra buffers). ``a`` and
  ``b`` were fitted to XLA's own buffer assignment of the compiled chunk
  (``compiled.memory_analysis()``) on XLA:CPU over five layer sets and two
  sizes (384–640 px), float32, with the reshape pooling of
  :func:`nstjax.models.vgg.pool2x2`: within −8 %…+8 % of XLA's figure for either pooling;
  average pooling a = 5.4, b = 6.6; max pooling a = 5.2, b = 10.3 (its backward
  compares each window with its maximum, which costs loss-layer-sized buffers).
  XLA:CPU has no bfloat16 convolution and computes in float32, but keeps some
  buffers in bfloat16: 0.8 of the float32 bytes there (measured); with oneDNN's
  convolution (:func:`nstjax.models.vgg.vgg_onednn`) the buffers stay bfloat16: 0.5
  (measured 0.50-0.55 against XLA's buffer assignment, four layer sets and sizes); on
  GPU/TPU the activation bytes are halved for bfloat16 (model, not measured here);
* a fixed 64 MiB of small buffers.

Rematerialisation: XLA:CPU schedules the recomputation next to the forward pass,
so ``jax.checkpoint`` saves no memory there (jax-ml/jax#19822, reproduced here:
the same temp size for every mode). On GPU/TPU the activation term is scaled by
the share of elements each mode keeps: ``"conv"`` keeps conv outputs but not ReLU
outputs (½), ``"block"`` keeps block inputs and requested features and recomputes
one block at a time. Those two ratios are the model, not a measurement.

``tests/test_memory.py`` checks the estimate against ``memory_analysis()``;
``scripts/bench_memory.py`` measures it against the peak RSS of real runs (the
allocator and transparent huge pages decide that). On CPU the resident memory grows
more than XLA's buffer assignment (by 17–24 % for the Gatys layers at 512 px),
so the CPU estimate adds 40 % to the activations (``buffers_only=True`` leaves
that out). On GPU, XLA reserves what its buffer assignment says, which is what
the estimate models.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from ..models import vgg
from . import engine
from .config import StylizeConfig
from ..errors import NstjaxError

REMAT_ORDER = ("none", "conv", "block")
# Bytes per element of (all conv outputs, loss-layer outputs), float32, by pooling (fit on XLA:CPU).
_ACTIVATION_BYTES = {"avg": (5.4, 6.6), "max": (5.2, 10.3)}
_SLACK = 64 << 20
# XLA:CPU computes bfloat16 convolutions in float32 but keeps some buffers in bfloat16: 0.8 of
# float32's activation bytes (measured 0.79-0.83 at 640x512).
_CPU_BFLOAT16 = 0.8
# With oneDNN's bfloat16 convolution nothing is converted to float32: half of float32's bytes (with it, the
# estimate was within -0.3 % .. +20 % of XLA's buffer assignment for 4 and 6 loss layers at 384-640 px, Adam and
# L-BFGS, on a 2-core Xeon with AMX; the deep-layer sets' excess is their parameters' Winograd forms).
_CPU_BFLOAT16_ONEDNN = 0.5
# A CPU process's resident memory grows more than XLA's buffer assignment (allocator slack, the
# separate targets/evaluation programs): by 17 % (Adam) and 24 % (one L-BFGS step) at 512 px with
# the Gatys layers (scripts/bench_memory.py, docs/scale.md). The margin covers both.
_CPU_RESIDENT = 1.4


def _deepest(layers: Sequence[str]) -> int:
    return max(vgg.LAYERS.index(n) for n in layers)


def activation_elements(height: int, width: int, layers: Sequence[str], network: str = "vgg19") -> dict[str, int]:
    """Elements (per image) of every conv output of ``network`` up to the deepest of ``layers``."""
    deepest = _deepest(layers)
    out = {}
    for name in vgg.conv_layers(network):
        if vgg.LAYERS.index(name) > deepest:
            break
        h, w = vgg.layer_shape(name, height, width)
        out[name] = h * w * vgg.layer_channels(name)
    return out


def loss_layer_elements(height: int, width: int, layers: Sequence[str]) -> int:
    """Elements (per image) of the distinct layers in ``layers``."""
    total = 0
    for name in set(layers):
        h, w = vgg.layer_shape(name, height, width)
        total += h * w * vgg.layer_channels(name)
    return total


def remat_keep_ratio(shape: tuple[int, int], layers: Sequence[str], remat: str, network: str = "vgg19") -> float:
    """Share of the no-remat activation memory that ``remat`` keeps (accelerator model).

    Without remat every conv keeps its (fused conv + ReLU) output. ``"conv"``
    keeps conv outputs and recomputes ReLUs: modelled as half. ``"block"`` keeps
    block inputs and the loss layers' outputs and recomputes one block at a time.
    """
    h, w = shape
    acts = activation_elements(h, w, layers, network)
    total = 2 * sum(acts.values())
    if remat == "none":
        return 1.0
    if remat == "conv":
        return 0.5
    if remat != "block":
        raise ValueError(f"remat must be one of {REMAT_ORDER}, got {remat!r}")
    blocks: dict[int, int] = {}
    for name, n in acts.items():
        blocks[vgg.layer_block(name)] = blocks.get(vgg.layer_block(name), 0) + n
    # A block's input is the previous block's pooled output: its channels at this block's size.
    inputs = sum(
        (acts[f"conv{b}_1"] // vgg.layer_channels(f"conv{b}_1")) * vgg.CONV_CHANNELS[f"conv{b}_1"][0]
        for b in blocks
    )
    wanted = loss_layer_elements(h, w, layers)
    return min(1.0, (wanted + inputs + max(blocks.values())) / total)


def estimate_bytes(
    shape: tuple[int, int],
    *,
    layers: Sequence[str],
    dtype: str = "float32",
    remat: str = "none",
    pooling: str = "max",
    optimizer: str = "lbfgs",
    lbfgs_memory: int = 10,
    batch: int = 1,
    platform: str | None = None,
    buffers_only: bool = False,
    conv_impl: str = "auto",
    network: str = "vgg19",
) -> int:
    """Estimated peak bytes of stylising ``batch`` images of ``shape`` (h, w) on ``platform``.

    Args:
      layers: every layer the losses read (content and style).
      dtype: compute dtype, ``"float32"`` or ``"bfloat16"``.
      remat: ``"none"``, ``"conv"`` or ``"block"``.
      platform: ``"cpu"``, ``"gpu"``, ``"tpu"``; default the default backend's.
      buffers_only: XLA's buffer assignment alone, without the margin for the
        resident memory of an XLA:CPU process (``_CPU_RESIDENT``).
      conv_impl: the VGG convolutions' ``conv_impl``: layers that may run by
        Winograd carry their kernels' Winograd forms too (16/9 of the kernel, twice).
    """
    h, w = shape
    platform = platform or jax.default_backend()
    acts = activation_elements(h, w, layers, network)
    deepest = _deepest(layers)
    channels = vgg.conv_channels(network)
    # kernel, kernel_t (its transposed copy) and bias of each convolution
    used = sum(2 * 9 * ci * co + co for n, (ci, co) in channels.items() if vgg.LAYERS.index(n) <= deepest)
    every = sum(2 * 9 * ci * co + co for ci, co in channels.values())
    winograd = sum(
        2 * 16 * ci * co
        for n, (ci, co) in channels.items()
        if vgg.LAYERS.index(n) <= deepest and vgg.winograd_possible(ci, co, conv_impl, platform=platform)
    )
    param_bytes = (every + winograd) * 4 + (used * 2 if dtype == "bfloat16" else 0)

    keep = 1.0 if platform == "cpu" else remat_keep_ratio(shape, layers, remat, network)
    if dtype == "bfloat16" and platform == "cpu":
        keep *= _CPU_BFLOAT16_ONEDNN if vgg.vgg_onednn(dtype, conv_impl, platform=platform) else _CPU_BFLOAT16
    elif dtype == "bfloat16":
        keep *= 0.5
    if platform == "cpu" and not buffers_only:
        keep *= _CPU_RESIDENT
    per_all, per_loss = _ACTIVATION_BYTES[pooling]
    activation_bytes = (per_all * sum(acts.values()) + per_loss * loss_layer_elements(h, w, layers)) * keep
    copies = 4 + (2 * lbfgs_memory + 4 if optimizer == "lbfgs" else 2)
    image_bytes = copies * h * w * 3 * 4
    # XLA's buffer assignment holds the Winograd products within the fitted activation bytes, but the
    # process's resident memory grew by about one more set of the largest layer's (measured at 512 px:
    # 1106 MiB against 999 MiB estimated without it): freed product buffers stay mapped.
    workspace = 0 if buffers_only else _winograd_workspace(h, w, deepest, dtype, conv_impl, platform, network)
    return int(param_bytes + _SLACK + batch * (activation_bytes + image_bytes + workspace))


def _winograd_workspace(h: int, w: int, deepest: int, dtype: str, conv_impl: str, platform: str,
                        network: str = "vgg19") -> int:  # fmt: skip
    """Bytes of the largest Winograd layer's 16 products (float32, 4x its output; the input gradient's
    output has the input's channels)."""
    sizes = [
        4 * oh * ow * max(ci, co) * 4
        for n, (ci, co) in vgg.conv_channels(network).items()
        if vgg.LAYERS.index(n) <= deepest
        for oh, ow in [vgg.layer_shape(n, h, w)]
        # Without measuring: an estimate made before the run must not wait for the planner's timings (16 s at
        # 256 px in bfloat16 on a 2-core Xeon); a layer not measured yet counts by the fixed rule.
        if vgg.conv_plan(oh, ow, ci, co, dtype, conv_impl, platform=platform, measure=False).method == "winograd"
    ]
    return max(sizes, default=0)


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
    available: int | None = None,
    platform: str | None = None,
    network: str = "vgg19",
) -> str:
    """The remat mode to use: ``config.remat``, or for ``"auto"`` the least that fits.

    Args:
      available: bytes free on the device (default: asked from the device).
      platform: default the default backend's.
      network: ``"vgg19"`` or ``"vgg16"`` (the weights').

    Raises NstjaxError with the estimate and a suggestion when nothing fits.
    """
    platform = platform or jax.default_backend()
    layers = [n for n, _ in config.content_layers] + [n for n, _ in config.style_layers]
    available = device_memory_bytes() if available is None else available
    if config.remat != "auto":
        modes = (config.remat,)
    elif platform == "cpu":
        modes = ("none",)  # remat saves nothing on XLA:CPU (see module docstring)
    else:
        modes = REMAT_ORDER

    def estimate(mode):
        return estimate_bytes(
            shape,
            layers=layers,
            dtype=config.dtype,
            remat=mode,
            pooling=config.pooling,
            optimizer=config.optimizer,
            lbfgs_memory=config.lbfgs_memory,
            batch=batch,
            platform=platform,
            conv_impl=config.conv_impl,
            network=network,
        )

    if available is None:
        return "none" if config.remat == "auto" else config.remat
    for mode in modes:
        if estimate(mode) <= available:
            return mode
    need = estimate(modes[-1])
    hints = []
    if config.remat not in ("auto", "block") and platform != "cpu":
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


def compiled_memory(config: StylizeConfig, shape: tuple[int, int], weights) -> dict[str, int]:
    """XLA's buffer assignment of the compiled optimiser chunk for one ``shape`` image (compile only).

    What the estimate is checked against: ``temp``, ``arguments``, ``outputs`` and
    ``aliased`` bytes from ``compiled.memory_analysis()``, and ``total`` = their
    peak (temporaries + arguments + outputs − aliased). Compiles, runs nothing.
    """
    remat = "none" if config.remat == "auto" else config.remat
    spec = engine.make_spec(config, weights.preprocessing, guided=False, remat=remat)
    image = jax.ShapeDtypeStruct((1, *shape, 3), jnp.float32)
    params = jax.eval_shape(lambda p: engine.device_params(p, spec=spec), weights.params)  # what run_stylize passes

    targets = jax.eval_shape(lambda img: engine.plain_targets(weights.params, img, img, spec), image)
    carry = jax.eval_shape(lambda img: engine.init_carry(img, spec), image)
    loss_weights, stop = engine.traced_settings(config)
    lowered = engine.run_chunk.lower(carry, params, targets, loss_weights, jnp.int32(1), stop, spec)
    m = lowered.compile().memory_analysis()
    sizes = {
        "temp": m.temp_size_in_bytes,
        "arguments": m.argument_size_in_bytes,
        "outputs": m.output_size_in_bytes,
        "aliased": m.alias_size_in_bytes,
    }
    sizes["total"] = sizes["temp"] + sizes["arguments"] + sizes["outputs"] - sizes["aliased"]
    return sizes
