"""How the package computes a convolution: the algorithms, their gradients, and one planner.

A cross-correlation of ``x`` [B, H, W, Cin] (NHWC) with ``kernel`` [k, k, Cin, Cout]
(HWIO) is computed as

* ``"xla"``: XLA's convolution (:func:`conv2d`, which every XLA convolution of the
  package goes through), on CPU with the kernel gradient of large layers as per-tap
  matrix products (:func:`tap_kernel_gradient`), and of layers with few input or
  output channels as one product over those channels' planes (:func:`plane_kernel_gradient`,
  also for the products below);
* ``"gemm"``: one matrix product over the input's k x k windows (im2col,
  :func:`gemm_conv_forward`), or ``"shift"``: the input times all taps' kernels, then a
  shifted sum, for stride-1 layers with fewer output than input channels and more output
  pixels than output channels;
* ``"winograd"``: Winograd's F(2x2, 3x3) (:func:`winograd_conv3x3`), stride-1 3x3 only.

The products accumulate in float32 whatever the operands' dtype (bfloat16 included).
:func:`plan` picks the algorithm, from :data:`THRESHOLDS`, for both callers:

* the GAN layers (:mod:`nstjax.models.layers`, ``use="gan"``) through :func:`convolve`,
  trained: forward, input and kernel gradients;
* VGG (:mod:`nstjax.models.vgg`, ``use="vgg"``) through :func:`conv3x3`: fixed kernels,
  forward and image gradient, with the kernel's transposed and Winograd forms
  computed once per run, and bfloat16 GEMMs on CPUs with fast bfloat16.

The trained layers' hand-written gradients live in :mod:`nstjax.models._gradients`; the planner
here decides their kernel gradient's route. The measurements behind every threshold:
docs/benchmarks.md, "Convolution planner thresholds".
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterable
from typing import Any, Literal

import jax
import jax.numpy as jnp

from .. import native, runtime
from ._gemm import gemm_conv_forward, plane_kernel_gradient, tap_kernel_gradient
from ._gradients import gemm_conv, shift_conv, winograd_conv, xla_conv, xla_conv_products
from ._tuning import Candidate, ChoiceCache, class_shape, fastest, shape_class, time_candidates, vgg_layer_call
from ._winograd import split_winograd_kernel, transposed_kernel, winograd_conv3x3, winograd_kernel
from .vgg_layers import CONV_IMPLS  # declared where configs read it without importing JAX

__all__ = [
    "CONV_IMPLS",
    "THRESHOLDS",
    "USES",
    "ConvImpl",
    "ConvPlan",
    "ConvThresholds",
    "conv2d",
    "conv3x3",
    "convolve",
    "explicit_padding",
    "gemm_conv_forward",
    "measured_vgg_choice",
    "vgg_candidates",
    "vgg_onednn",
    "vgg_winograd_dtype",
    "plan",
    "plane_kernel_gradient",
    "split_winograd_kernel",
    "tap_kernel_gradient",
    "transposed_kernel",
    "tuning_enabled",
    "winograd_conv3x3",
    "winograd_kernel",
    "winograd_possible",
]

ConvImpl = Literal["auto", "xla", "gemm", "winograd", "onednn"]
USES = ("gan", "vgg")


# --------------------------------------------------------------------------- the planner


@dataclasses.dataclass(frozen=True)
class ConvThresholds:
    """Where ``impl="auto"`` leaves XLA's convolution on CPU (accelerators always keep it).

    Units: MACs are multiply-adds per image (output pixels x k x k x Cin x Cout);
    pixels are output pixels per image (Ho x Wo); rows are batch x output pixels;
    channels are counted on the side named. Each value comes from per-layer
    timings on a 2-core AVX2 EPYC (the bfloat16 GEMM's from GEMM timings on a Xeon
    with AMX), jax 0.10; the numbers: docs/benchmarks.md, "Convolution planner thresholds".

    Two uses have rows of their own, because they time different work with
    different algorithms: the GAN layers train (forward, input and kernel
    gradients) and may use float32 products; VGG runs a fixed network (forward and
    image gradient, kernel forms precomputed), where float32 products never beat XLA
    or Winograd, but bfloat16 GEMMs do on CPUs with AMX / AVX512-BF16. Hence the two
    floors in MACs, 20 M for the GAN layers' products and 100 M for VGG's bfloat16 GEMMs.
    """

    # Both uses.
    winograd_min_channels: int = 64
    """Channels, input and output alike (the input gradient swaps them): narrower layers keep XLA's."""
    winograd_min_macs: int = 250_000_000
    """MACs: below this, Winograd's 16 products cost more compile time than they save."""
    tap_gradient_min_channels: int = 32
    """Channels, input and output alike: on CPU the kernel gradient of such layers (with the next two floors)
    is computed as per-tap products (:func:`tap_kernel_gradient`); with 3 input channels they were 2x slower."""
    tap_gradient_min_rows: int = 1024
    """Rows (batch x output pixels) the per-tap products contract over; below, one im2col product was faster."""
    tap_gradient_min_macs: int = 20_000_000
    """MACs: smaller layers keep XLA's kernel gradient."""
    plane_gradient_max_channels: int = 24
    """Channels, on the thinner side: on CPU the kernel gradient of layers this thin on one side (the RGB
    stems and heads, the discriminators' first and last layers, the label maps' one-hot inputs of pix2pix and
    SPADE), with :attr:`plane_gradient_min_macs`, is one product over the planes of that side
    (:func:`plane_kernel_gradient`); at 16-20 channels the per-tap products were slower, the im2col product
    too. Stride 1 where the output side is the thin one."""
    plane_gradient_min_macs: int = 2_000_000
    """MACs: smaller layers (test-sized networks) keep their method's kernel gradient."""

    # use="gan": trained layers (CycleGAN, pix2pix, SPADE).
    trained_winograd_min_pixels: int = 1024
    """Pixels (output): a trained layer's kernel is Winograd-transformed at every step, forward and again for the
    input gradient (16 x Cin x Cout values each, from a strided read of the kernel), which only outputs this
    large amortize: 3x3 layers of 512-1024 channels at 4x4-16x16 px (pix2pix's and SPADE's inner layers at
    128 px) spent more time transforming kernels than multiplying. VGG's kernels are transformed once a run."""
    products_min_macs: int = 20_000_000
    """MACs: smaller layers (test-sized networks) stay XLA convolutions, which compile faster."""
    tiny_output_pixels: int = 16
    """Pixels: outputs this small, and stride-1 outputs of one channel, take the products at any size (XLA:CPU
    runs them on a generic, slow path)."""
    xla_min_pixels: int = 2048
    """Pixels: stride-1 layers with outputs this large keep XLA's convolution when 3x3 with
    :attr:`xla_min_in_channels` input channels or narrowing the channels with a kernel of 3 or more (2x2
    layers, pix2pix's transposed-convolution phases, are faster as products); the products' forward pass
    is XLA's there too (kernels of 3 or more: their k·k-fold im2col copy costs more than it saves)."""
    xla_min_in_channels: int = 64
    """Channels (input): see :attr:`xla_min_pixels`."""

    # use="vgg": bfloat16 GEMMs on CPUs with fast bfloat16 (runtime.fast_bfloat16).
    bf16_gemm_min_channels: int = 64
    """Channels (input): narrower GEMMs (conv1_1's 3 channels) are too thin to gain."""
    bf16_gemm_min_macs: int = 100_000_000
    """MACs: smaller layers take milliseconds either way; the im2col costs ~0.4 s more compile time per layer."""
    bf16_gemm_max_pixels: int = 64 * 64
    """Pixels: the GEMM's 9x copy of the input grows with the image; larger layers do not use (or try) it."""
    tuning_min_macs: int = 250_000_000
    """MACs: bfloat16 VGG layers this large (on CPUs with fast bfloat16) take the measured choice
    (:func:`measured_vgg_choice`); smaller ones take milliseconds either way and follow the fixed rule."""


THRESHOLDS = ConvThresholds()
"""The thresholds :func:`plan` and :func:`conv2d` use (docs/benchmarks.md, "Convolution planner thresholds").
Read at each call (at trace time under ``jit``): to try other values, replace it with
``dataclasses.replace(THRESHOLDS, ...)`` before tracing."""


@dataclasses.dataclass(frozen=True)
class ConvPlan:
    """How one convolution is computed.

    ``method``: ``"xla"``, ``"gemm"``, ``"shift"``, ``"winograd"`` or ``"onednn"`` (VGG only). ``compute_dtype``:
    the convolution's operands are cast to it and its result back (for ``use="gan"``
    always the layer's dtype). ``xla_forward``: a ``"gemm"`` layer computes its forward
    pass as XLA's convolution (its gradients stay products).
    """

    method: str
    compute_dtype: Any
    xla_forward: bool = False


def _winograd_pays(pixels: int, in_channels: int, out_channels: int, t: ConvThresholds) -> bool:
    # Stride-1 3x3 layers only (the caller checks).
    return (min(in_channels, out_channels) >= t.winograd_min_channels
            and pixels * 9 * in_channels * out_channels >= t.winograd_min_macs)  # fmt: skip


def plan(height: int, width: int, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1, *,
         dtype: Any = jnp.float32, impl: ConvImpl = "auto", use: str = "gan", platform: str | None = None,
         cpu_flags: Iterable[str] | None = None, thresholds: ConvThresholds | None = None,
         onednn: bool | None = None, measure: bool = True) -> ConvPlan:
    """How a ``kernel`` x ``kernel`` convolution to a [*, height, width, out_channels] output is computed.

    ``height``, ``width``: the output's. ``impl``: ``"xla"``, ``"gemm"`` (the products:
    ``"shift"`` for GAN layers of stride 1 with fewer output than input channels and more
    output pixels than output channels, ``"gemm"`` else), ``"winograd"`` (stride-1 3x3 layers;
    XLA's elsewhere) or ``"onednn"`` (VGG only: :func:`nstjax.native.onednn_conv2d`, which says so
    where it cannot run) for every layer, in ``dtype``; 1x1 kernels are always XLA's but for
    ``"winograd"``. ``"auto"``: XLA's on GPU/TPU; on CPU (``t`` = ``thresholds``, default
    :data:`THRESHOLDS` as it is at the call; MACs per image, pixels of the output):

    ``use="gan"`` (dtype and ``cpu_flags`` play no part):

    1. outputs of at most ``t.tiny_output_pixels`` and stride-1 outputs of one channel:
       the products;
    2. under ``t.products_min_macs``: XLA's;
    3. stride-1 3x3 layers with ``t.winograd_min_channels`` on both sides,
       ``t.winograd_min_macs`` and ``t.trained_winograd_min_pixels``: Winograd;
    4. stride-1 outputs of ``t.xla_min_pixels`` or more, 3x3 with
       ``t.xla_min_in_channels`` input channels or narrowing the channels with a
       kernel of 3 or more: XLA's;
    5. the products elsewhere (strided layers, the 7x7 stems, 4x4 discriminator layers,
       few input channels, small images), with XLA's forward pass for kernels of 3 or
       more at ``t.xla_min_pixels`` or more.

    ``use="vgg"`` (3x3, stride 1; ``onednn``: whether oneDNN's convolution may be used, default
    where ``cpu_flags`` is not given and :func:`nstjax.native.onednn_available`, asked only for
    bfloat16 on a CPU with fast bfloat16):

    1. as measured on this machine (:func:`measured_vgg_choice`; off with
       ``NSTJAX_CONV_TUNING=0``, and when ``cpu_flags`` or ``thresholds`` are given: they
       describe another machine; with ``measure=False`` only a choice measured before, else
       rule 2, e.g. for estimates made before the run): bfloat16 on a CPU with fast bfloat16 (``amx_bf16`` or
       ``avx512_bf16``, :func:`nstjax.runtime.fast_bfloat16`), layers of ``t.tuning_min_macs``
       and ``t.winograd_min_channels`` on both sides: the fastest of oneDNN's (with
       ``onednn``), XLA's (float32), Winograd and (up to ``t.bf16_gemm_max_pixels``) the
       GEMM with bfloat16 products (float32 is not measured: its fixed rule below, from
       per-layer timings, was right on the AVX2 EPYC; on the AVX-512 Xeon XLA's was faster
       for some 64-128-channel layers, but measuring them cost a first run at 256 px 8 s for
       2 %: docs/benchmarks.md);
    2. otherwise bfloat16 with fast bfloat16 (``cpu_flags``, default this CPU's): oneDNN's
       with ``onednn`` (its bfloat16 kernels; no XLA formulation comes near them, and the
       small layers here take milliseconds either way); else Winograd with bfloat16
       products where rule 3 above says Winograd, else a bfloat16 GEMM with
       ``t.bf16_gemm_min_channels`` input channels, ``t.bf16_gemm_min_macs`` and at most
       ``t.bf16_gemm_max_pixels``;
    3. Winograd as rule 3 above, else XLA's, both computed in float32 (XLA:CPU has no
       faster bfloat16 convolution; without fast bfloat16 its arithmetic is emulated).

    Every product accumulates in float32.
    """
    if impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {impl!r}")
    if use not in USES:
        raise ValueError(f"use must be one of {USES}, got {use!r}")
    dtype = jnp.dtype(dtype)
    if impl == "onednn":
        if use != "vgg":
            raise ValueError("conv_impl 'onednn' is for VGG's convolutions (the GAN layers train their kernels)")
        return ConvPlan("onednn", dtype)
    pixels = height * width
    # Of the two product forms, the shifted sum copies the kernel transposed (k·k·Cin·Cout values), im2col the
    # input k·k times (k·k·Cin·pixels): the shifted sum only where the output is larger than Cout pixels.
    shift = use == "gan" and stride == 1 and out_channels < in_channels and pixels > out_channels
    products = "shift" if shift else "gemm"
    if impl == "winograd":
        return ConvPlan("winograd" if kernel == 3 and stride == 1 else "xla", dtype)
    if impl == "xla" or kernel == 1:
        return ConvPlan("xla", dtype)
    if impl == "gemm":
        return ConvPlan(products, dtype)
    if (jax.default_backend() if platform is None else platform) != "cpu":
        return ConvPlan("xla", dtype)
    t = THRESHOLDS if thresholds is None else thresholds
    macs = pixels * kernel * kernel * in_channels * out_channels
    winograd = kernel == 3 and stride == 1 and _winograd_pays(pixels, in_channels, out_channels, t)
    if use == "vgg":
        fast_bf16 = dtype == jnp.bfloat16 and runtime.fast_bfloat16(cpu_flags)
        here = cpu_flags is None and thresholds is None and tuning_enabled()
        if fast_bf16 and onednn is None:
            onednn = vgg_onednn(dtype, platform="cpu", cpu_flags=cpu_flags)
        if (here and fast_bf16 and macs >= t.tuning_min_macs
                and min(in_channels, out_channels) >= t.winograd_min_channels):  # fmt: skip
            choice = measured_vgg_choice(height, width, in_channels, out_channels, dtype, onednn=bool(onednn),
                                         measure=measure)  # fmt: skip
            if choice is not None:
                return ConvPlan(choice[0], jnp.dtype(choice[1]))
        if fast_bf16 and onednn:
            return ConvPlan("onednn", dtype)
        if fast_bf16 and winograd:
            return ConvPlan("winograd", dtype)
        if (fast_bf16 and in_channels >= t.bf16_gemm_min_channels and macs >= t.bf16_gemm_min_macs
                and pixels <= t.bf16_gemm_max_pixels):  # fmt: skip
            return ConvPlan("gemm", dtype)
        return ConvPlan("winograd" if winograd else "xla", jnp.dtype(jnp.float32))
    generic_path = pixels <= t.tiny_output_pixels or (out_channels == 1 and stride == 1)
    if not generic_path:
        if macs < t.products_min_macs:
            return ConvPlan("xla", dtype)
        if winograd and pixels >= t.trained_winograd_min_pixels:
            return ConvPlan("winograd", dtype)
        if stride == 1 and pixels >= t.xla_min_pixels and kernel >= 3 and (
            (kernel == 3 and in_channels >= t.xla_min_in_channels) or out_channels < in_channels
        ):
            return ConvPlan("xla", dtype)
    return ConvPlan(products, dtype, xla_forward=products == "gemm" and kernel >= 3 and pixels >= t.xla_min_pixels)


def vgg_onednn(dtype: Any, impl: str = "auto", *, platform: str | None = None,
               cpu_flags: Iterable[str] | None = None) -> bool:  # fmt: skip
    """Whether :func:`plan` (``use="vgg"``, ``impl``) computes ``dtype`` layers by oneDNN's convolution here.

    Always for ``impl="onednn"``; for ``"auto"``, bfloat16 on this machine's CPU (``cpu_flags`` not given)
    with fast bfloat16 where :func:`nstjax.native.onednn_available` (the first ask builds the bridge).
    There, layers of ``t.tuning_min_macs`` may still measure Winograd faster (:func:`measured_vgg_choice`);
    all others take it.
    """
    if impl == "onednn":
        return True
    platform = jax.default_backend() if platform is None else platform
    return (impl == "auto" and platform == "cpu" and jnp.dtype(dtype) == jnp.bfloat16 and cpu_flags is None
            and runtime.fast_bfloat16() and native.onednn_available())  # fmt: skip


def vgg_winograd_dtype(dtype: Any, impl: str = "auto", *, platform: str | None = None,
                       cpu_flags: Iterable[str] | None = None) -> jnp.dtype:  # fmt: skip
    """The dtype in which :func:`plan` (``use="vgg"``) multiplies a ``dtype`` layer's Winograd products.

    ``dtype`` itself for ``impl="winograd"``; for ``"auto"``, bfloat16 where ``dtype`` is bfloat16 on a CPU
    with fast bfloat16 (``cpu_flags``, default this one's), else float32 (so also where no layer takes
    Winograd). The Winograd forms of VGG's kernels are stored in it
    (:func:`nstjax.models.vgg.with_winograd_kernels`): cast inside the program, they cost a conversion of
    every form at every evaluation (with the slicing that :func:`split_winograd_kernel` saves, a tenth of a
    bfloat16 evaluation at 256 px on a 2-core Xeon).
    """
    dtype = jnp.dtype(dtype)
    if impl == "winograd":
        return dtype
    platform = jax.default_backend() if platform is None else platform
    fast = impl == "auto" and platform == "cpu" and dtype == jnp.bfloat16 and runtime.fast_bfloat16(cpu_flags)
    return dtype if fast else jnp.dtype(jnp.float32)


def winograd_possible(in_channels: int, out_channels: int, impl: str = "auto", *, platform: str | None = None,
                      thresholds: ConvThresholds | None = None) -> bool:
    """Whether :func:`plan` may compute a 3x3 stride-1 layer of these channels by Winograd at some image size.

    True for ``impl="winograd"``, and for ``"auto"`` on CPU with at least
    ``winograd_min_channels`` (of ``thresholds``, default :data:`THRESHOLDS`) on both sides.
    """
    if impl == "winograd":
        return True
    if impl != "auto":
        return False
    t = THRESHOLDS if thresholds is None else thresholds
    platform = jax.default_backend() if platform is None else platform
    return platform == "cpu" and min(in_channels, out_channels) >= t.winograd_min_channels


# --------------------------------------------------------------------------- choices measured on this machine

_CHOICES: ChoiceCache | None = None


def tuning_enabled() -> bool:
    """Whether :func:`plan` may measure (``NSTJAX_CONV_TUNING=0`` turns it off: the fixed rules apply)."""
    return os.environ.get("NSTJAX_CONV_TUNING", "1") != "0"


def vgg_candidates(height: int, width: int, dtype: Any = jnp.bfloat16,
                   thresholds: ConvThresholds | None = None, *, onednn: bool = False) -> tuple[Candidate, ...]:  # fmt: skip
    """What :func:`measured_vgg_choice` times for a ``dtype`` VGG layer with a ``height`` x ``width`` output,
    in order of preference on a tie (the first compiles fastest).

    float32: XLA's and Winograd. bfloat16 (fast): with ``onednn``, oneDNN's convolution and bfloat16
    Winograd (which wins for 256-512 channels at 16-32 px on the Xeon with AMX of docs/benchmarks.md,
    where XLA's float32 convolution and the bfloat16 GEMM lost every class to oneDNN's by 2-7x);
    without, XLA's (float32), bfloat16 Winograd and, up to ``bf16_gemm_max_pixels``, the bfloat16
    GEMM. Never float32 Winograd: on that Xeon it lost to bfloat16 Winograd in all 15 VGG shape classes
    from 16 to 512 px (by 1.3-2.5x), and each candidate costs about a second of compilation on first use."""
    if jnp.dtype(dtype) == jnp.float32:
        return (("xla", "float32"), ("winograd", "float32"))
    if onednn:
        return (("onednn", "bfloat16"), ("winograd", "bfloat16"))
    t = THRESHOLDS if thresholds is None else thresholds
    candidates: list[Candidate] = [("xla", "float32"), ("winograd", "bfloat16")]
    if height * width <= t.bf16_gemm_max_pixels:
        candidates.append(("gemm", "bfloat16"))
    return tuple(candidates)


def measured_vgg_choice(height: int, width: int, in_channels: int, out_channels: int, dtype: Any = jnp.bfloat16,
                        *, onednn: bool = False, measure: bool = True, cache: ChoiceCache | None = None,
                        timer: Any = None) -> Candidate | None:  # fmt: skip
    """The fastest way to compute a ``dtype`` VGG layer (``(method, compute dtype)``) on this machine.

    Looked up by :func:`~nstjax.models._tuning.shape_class` (and ``onednn``: whether oneDNN's
    convolution is a candidate, so that installing it measures afresh) in ``cache`` (default: the
    process's, ``<nstjax cache>/conv_choices.json``); on a miss, each of
    :func:`vgg_candidates` is timed on random data of the class's shape, forward and
    input gradient as :func:`conv3x3` computes them in VGG (about a second per candidate,
    mostly compilation, once per machine and class), and the fastest kept; with ``measure=False``
    a miss is None. ``timer(candidates) -> {candidate: seconds}`` replaces the measurement (tests).
    """
    global _CHOICES
    if cache is None:
        _CHOICES = _CHOICES if _CHOICES is not None else ChoiceCache()
        cache = _CHOICES
    name = jnp.dtype(dtype).name
    key = f"{name}{'+onednn' if onednn else ''}:{shape_class(height, width, in_channels, out_channels)}"
    choice = cache.get(key)
    if choice is None and measure:
        h, w, c_in, c_out = class_shape(key.partition(":")[2])
        candidates = vgg_candidates(h, w, name, onednn=onednn)
        if timer is None:
            layer = functools.partial(vgg_layer_call, conv3x3, (h, w, c_in, c_out), name)
            seconds = time_candidates(layer, candidates)
        else:
            seconds = timer(candidates)
        choice = fastest(seconds, candidates)
        cache.put(key, choice, seconds)
    return choice


# --------------------------------------------------------------------------- XLA's convolution


def explicit_padding(padding: Any, k: int, stride: int, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((top, bottom), (left, right))`` zeros for ``padding`` of a [*, h, w, *] input and a k x k kernel.

    ``padding``: ``"VALID"``, ``"SAME"`` (TensorFlow's split: the extra pixel at the
    end), an int (zeros on each side) or the pairs themselves.
    """
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    if padding == "VALID":
        return ((0, 0), (0, 0))
    if padding == "SAME":
        out = []
        for size in (h, w):
            total = max((-(-size // stride) - 1) * stride + k - size, 0)
            out.append((total // 2, total - total // 2))
        return tuple(out)  # type: ignore[return-value]
    (t, b), (l, r) = padding
    return ((int(t), int(b)), (int(l), int(r)))


def conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1, padding: Any = "VALID") -> jax.Array:
    """XLA's cross-correlation of ``x`` [B, H, W, Cin] with ``kernel`` [kh, kw, Cin, Cout] (HWIO), NHWC out.

    ``padding``: ``"VALID"``, ``"SAME"`` (TensorFlow's split) or ``((top, bottom), (left, right))`` zeros.
    Every XLA convolution of the package goes through here.

    On CPU a side without padding gets ``stride`` zeros before it and the extra first
    output row (column) is dropped: XLA:CPU runs convolutions with no padding on a
    side 3-5x slower than padded ones of the same size, and the reflection-padded
    layers of the generators, the AdaIN encoder and decoder and the feed-forward
    networks are all unpadded convolutions. On CPU, 1x1 layers and large layers (the
    ``tap_gradient_*`` thresholds of :data:`THRESHOLDS`) take their kernel gradient as
    per-tap matrix products (:func:`tap_kernel_gradient`; one for a 1x1 kernel), and layers with a thin side (the
    ``plane_gradient_*`` ones, e.g. the 7x7 RGB heads) as one product over that side's
    planes (:func:`plane_kernel_gradient`); the value and the input gradient stay
    XLA's. Those layers have a custom VJP, so they support reverse-mode
    differentiation only. Measurements: docs/benchmarks.md, "Convolution planner thresholds".
    """
    k_h, k_w = kernel.shape[0], kernel.shape[1]
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(x.shape[1:3], (k_h, k_w), (stride, stride), padding)
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    route = _kernel_gradient_route(x.shape, kernel.shape, stride, pads) if jax.default_backend() == "cpu" else None
    if route is not None:
        return xla_conv_products(x, kernel, stride, pads, route)
    return xla_conv(x, kernel, stride, pads)


def _kernel_gradient_route(x_shape, kernel_shape, stride: int, pads) -> str | None:
    """How a layer's kernel gradient is computed as matrix products on CPU: ``"planes"``
    (:func:`plane_kernel_gradient`), ``"taps"`` (:func:`tap_kernel_gradient`), or None (the method's own)."""
    t = THRESHOLDS
    k_h, k_w, c_in, c_out = kernel_shape
    ho = (x_shape[1] + sum(pads[0]) - k_h) // stride + 1
    wo = (x_shape[2] + sum(pads[1]) - k_w) // stride + 1
    macs = ho * wo * k_h * k_w * c_in * c_out
    if k_h * k_w == 1:
        # One product. XLA:CPU ran a 1x1 layer's kernel gradient as a generic convolution: 0.34 s for SPADE's
        # 128->64 shortcut at 128 px, a fifth of the step (docs/benchmarks.md).
        return "taps"
    if (min(c_in, c_out) <= t.plane_gradient_max_channels and macs >= t.plane_gradient_min_macs
            and (c_in <= c_out or stride == 1)):  # fmt: skip
        return "planes"
    if (min(c_in, c_out) >= t.tap_gradient_min_channels and x_shape[0] * ho * wo >= t.tap_gradient_min_rows
            and macs >= t.tap_gradient_min_macs):  # fmt: skip
        return "taps"
    return None


# --------------------------------------------------------------------------- the GAN layers' convolution


def convolve(x: jax.Array, kernel: jax.Array, stride: int = 1, padding: Any = "VALID",
             impl: ConvImpl = "auto") -> jax.Array:
    """The cross-correlation of :func:`conv2d`, computed as :func:`plan` (``use="gan"``) says.

    ``x`` [B, H, W, Cin], ``kernel`` [k, k, Cin, Cout] in ``x``'s dtype; ``padding`` as
    :func:`explicit_padding` takes it. Same function whatever the method (tested),
    with hand-written gradients for the products and Winograd; float32 accumulation.
    """
    k = kernel.shape[0]
    pads = explicit_padding(padding, k, stride, x.shape[1], x.shape[2])
    ho = (x.shape[1] + sum(pads[0]) - k) // stride + 1
    wo = (x.shape[2] + sum(pads[1]) - k) // stride + 1
    how = plan(ho, wo, kernel.shape[2], kernel.shape[3], k, stride, dtype=x.dtype, impl=impl, use="gan")
    route = _kernel_gradient_route(x.shape, kernel.shape, stride, pads)
    if how.method == "winograd" and _winograd_applies(kernel.shape, stride, pads):
        return winograd_conv(x, kernel, pads, route)
    if how.method == "shift":
        return shift_conv(x, kernel, pads, route)
    if how.method == "gemm":
        return gemm_conv(x, kernel, stride, pads, how.xla_forward, route)
    return conv2d(x, kernel, stride, pads)


def _winograd_applies(kernel_shape, stride: int, pads) -> bool:
    # 3x3, stride 1, and padding the input gradient can mirror (2 - p on each side).
    return kernel_shape[:2] == (3, 3) and stride == 1 and all(0 <= p <= 2 for side in pads for p in side)


# --------------------------------------------------------------------------- 3x3 convolutions with fixed kernels (VGG)

_METHODS = ("xla", "gemm", "winograd", "onednn")


def conv3x3(
    x: jax.Array,
    kernel: jax.Array,
    padding: tuple[tuple[int, int], ...],
    kernel_t: jax.Array | None = None,
    method: str = "xla",
    kernel_w: jax.Array | None = None,
    kernel_t_w: jax.Array | None = None,
) -> jax.Array:
    """3x3 stride-1 convolution, ``x`` [B, H, W, Cin], ``kernel`` [3, 3, Cin, Cout] (HWIO).

    The same function as ``lax.conv_general_dilated``, with a hand-written VJP:
    the gradient with respect to ``x`` is a plain HWIO convolution with
    ``kernel_t`` (:func:`transposed_kernel`, computed here when not given).
    JAX's own transpose rule expresses the same thing through the convolution's
    dimension numbers (kernel read as OIHW, reversed), which XLA:CPU runs on a
    slow generic path inside a ``while_loop``: optimiser steps were 2-3x slower
    than a lone gradient (docs/benchmarks.md). The kernel gradient is exact too
    (through the GEMM for ``"gemm"``, :func:`conv2d`'s otherwise), and XLA drops
    it when nothing uses it, as in style transfer. Reverse mode only (no ``jvp``).

    ``method``: ``"xla"`` (:func:`conv2d`), ``"gemm"`` (:func:`gemm_conv_forward`), ``"onednn"``
    (:func:`nstjax.native.onednn_conv2d`, where available) or
    ``"winograd"`` (:func:`winograd_conv3x3` with ``kernel_w`` and, for the input
    gradient, ``kernel_t_w``: the Winograd forms of ``kernel`` and ``kernel_t``,
    computed here when not given), for the forward pass and the input gradient
    alike. ``padding``: zeros, 0 to 2 on each side.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if kernel_t is None:
        kernel_t = transposed_kernel(kernel)
    if method != "winograd":
        kernel_w = kernel_t_w = None  # unused: not carried into the backward pass
    return _conv3x3(x, kernel, kernel_t, kernel_w, kernel_t_w, padding, method)


def _forward(x, kernel, kernel_w, padding, method):
    if method == "winograd":
        return winograd_conv3x3(x, winograd_kernel(kernel) if kernel_w is None else kernel_w, padding)
    if method == "gemm":
        return gemm_conv_forward(x, kernel, 1, padding)
    if method == "onednn":
        return native.onednn_conv2d(x, kernel, 1, padding)
    return conv2d(x, kernel, 1, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _conv3x3(x, kernel, kernel_t, kernel_w, kernel_t_w, padding, method):
    return _forward(x, kernel, kernel_w, padding, method)


def _conv3x3_fwd(x, kernel, kernel_t, kernel_w, kernel_t_w, padding, method):
    return _forward(x, kernel, kernel_w, padding, method), (x, kernel, kernel_t, kernel_w, kernel_t_w)


def _conv3x3_bwd(padding, method, residuals, g):
    x, kernel, kernel_t, kernel_w, kernel_t_w = residuals
    # Stride 1, 3x3: the input gradient is a "full" convolution of g; a side
    # padded by p forward is padded by 2 - p backward.
    dx = _forward(g, kernel_t, kernel_t_w, tuple((2 - lo, 2 - hi) for lo, hi in padding), method)
    # The kernel gradient (unused in style transfer, where XLA drops it): the GEMM's own for
    # "gemm" (bfloat16 products), conv2d's otherwise (per-tap products for large layers on CPU).
    kernel_method = "gemm" if method == "gemm" else "xla"
    _, kernel_vjp = jax.vjp(lambda k: _forward(x, k, None, padding, kernel_method), kernel)
    (dkernel,) = kernel_vjp(g)
    zeros = functools.partial(jax.tree.map, jnp.zeros_like)
    return dx, dkernel, jnp.zeros_like(kernel_t), zeros(kernel_w), zeros(kernel_t_w)


_conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)
