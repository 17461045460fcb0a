"""VGG-19 and VGG-16 feature extractors, written from scratch in Flax.

The 16 convolutions of Simonyan & Zisserman's configuration E (VGG-19) or the 13
of configuration D (VGG-16), named as in the style-transfer literature
(``conv1_1 … conv5_4``, ``relu*_*``, ``pool1 … pool5``; VGG-16's blocks 3–5 end at
``conv*_3``). The network follows from the parameters (:func:`network_of`), so the
same pure :func:`features` serves both. The classifier head is not part of the
network: style transfer only needs features.

Conventions
-----------
* Images are NHWC, RGB, float in [0, 1]. The preprocessing of the weights'
  source (``"caffe"``: BGR, 0–255, mean-subtracted; ``"torch"``: RGB, ImageNet
  mean/std) is applied inside, so callers never deal with it.
* Parameters are float32, ``{"conv1_1": {"kernel": [3, 3, Cin, Cout], "bias": [Cout]}, …}``
  (HWIO), with input channels in the order of the source (BGR for caffe weights).
  :func:`with_transposed_kernels` adds each kernel's input-gradient form once per
  run, which makes image gradients cheaper; :func:`with_winograd_kernels` adds the
  Winograd forms of both for the layers that use them.
* Activations come back in the compute ``dtype`` (float32 or bfloat16).
* How each convolution is computed (``conv_impl``): ``"xla"`` (XLA's
  convolution), ``"gemm"`` (im2col: one matrix product per layer, accumulated
  in float32), ``"winograd"`` (Winograd's F(2x2, 3x3): 16 matrix products
  with 2.25x fewer multiply-adds) or ``"auto"`` (:func:`conv_plan`: per layer, from the platform,
  the CPU's instruction set, the layer's size and the dtype). The function is
  the same either way; only speed and rounding differ. The algorithms, their
  hand-written gradients (:func:`conv3x3`) and the planner are :mod:`nstjax.models.conv`'s,
  shared with the GAN layers.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import flax.linen as nn
import jax
from jax.ad_checkpoint import checkpoint_name
import jax.numpy as jnp
import numpy as np

from .conv import (
    THRESHOLDS,
    ConvPlan,
    conv3x3,
    gemm_conv_forward,
    plan,
    split_winograd_kernel,
    transposed_kernel,
    vgg_onednn,
    vgg_winograd_dtype,
    winograd_kernel,
    winograd_possible,
)

# The planner's thresholds for VGG's bfloat16 GEMMs under the names this module gave them
# (units and measurements: nstjax.models.conv.ConvThresholds).
BF16_GEMM_MAX_PIXELS = THRESHOLDS.bf16_gemm_max_pixels
GEMM_MIN_CHANNELS = THRESHOLDS.bf16_gemm_min_channels
GEMM_MIN_MACS = THRESHOLDS.bf16_gemm_min_macs

from .vgg_layers import (  # the names, without JAX; re-exported here
    CONV_IMPLS,
    BLOCKS,
    CAFFE_MEAN_BGR,
    CONV_CHANNELS,
    CONV_LAYERS,
    LAYERS,
    NETWORKS,
    NETWORK_TITLES,
    PADDINGS,
    POOLINGS,
    PREPROCESSINGS,
    REMATS,
    TORCH_MEAN,
    TORCH_STD,
    conv_channels,
    conv_layers,
    layer_block,
    layer_channels,
    layer_halvings,
    layer_shape,
    min_input_size,
    network_blocks,
    network_layers,
    network_of,
    validate_layers,
)

def preprocess(images: jax.Array, preprocessing: str) -> jax.Array:
    """Map RGB images in [0, 1] to what weights of the given convention expect.

    ``"caffe"``: BGR, 0–255, minus the ImageNet mean (original VGG / Keras weights).
    ``"torch"``: RGB, ``(x - mean) / std`` (torchvision weights).
    """
    if preprocessing == "caffe":
        return images[..., ::-1] * 255.0 - jnp.asarray(CAFFE_MEAN_BGR, images.dtype)
    if preprocessing == "torch":
        return (images - jnp.asarray(TORCH_MEAN, images.dtype)) / jnp.asarray(TORCH_STD, images.dtype)
    raise ValueError(f"preprocessing must be one of {PREPROCESSINGS}, got {preprocessing!r}")


def with_transposed_kernels(params: Any) -> Any:
    """``params`` with each convolution's :func:`transposed_kernel` added as ``"kernel_t"``.

    Gradients with respect to the image then read ``kernel_t`` instead of
    transposing every kernel on every evaluation (about a tenth of an
    evaluation's time at 128 px on CPU). Do it once per run, outside the
    optimiser. The features are unchanged; ``kernel_t`` must stay in step with
    ``kernel`` (the convolution trusts it) and receives no gradient.
    """
    return {
        name: {**layer, "kernel_t": transposed_kernel(layer["kernel"])}
        if "kernel" in layer and "kernel_t" not in layer else layer
        for name, layer in params.items()
    }


def gemm_conv(x: jax.Array, kernel: jax.Array, padding: tuple[tuple[int, int], ...]) -> jax.Array:
    """3x3 stride-1 convolution as one matrix product (im2col), accumulated in float32.

    ``x`` [B, H, W, Cin], ``kernel`` [3, 3, Cin, Cout] (HWIO), ``padding`` as for
    ``lax.conv_general_dilated``; returns [B, H + pads - 2, W + pads - 2, Cout]
    in ``x.dtype`` (:func:`nstjax.models.conv.gemm_conv_forward`). XLA:CPU runs
    it as a GEMM, which beats its convolution kernels where those are weak (small
    images with many channels; bfloat16 on CPUs with AMX / AVX512-BF16, where the
    bfloat16 GEMM with float32 accumulation is several times faster than any
    convolution). It costs a 9x copy of the (padded) input, so it is for the deep layers.
    """
    return gemm_conv_forward(x, kernel.astype(x.dtype), 1, padding)


def with_winograd_kernels(params: Any, layers: Iterable[str], conv_impl: str = "auto", *,
                          dtype: Any = jnp.float32, platform: str | None = None) -> Any:
    """``params`` with ``"kernel_w"`` / ``"kernel_t_w"`` (:func:`nstjax.models.conv.winograd_kernel`
    of ``kernel`` and of its :func:`transposed_kernel`) for the convolutions up to the deepest of ``layers``
    that :func:`conv_plan` may compute by Winograd (:func:`winograd_possible`), for ``dtype`` activations:
    each form is stored as its 16 product matrices (:func:`nstjax.models.conv.split_winograd_kernel`), in
    the dtype the products take (:func:`nstjax.models.conv.vgg_winograd_dtype`: bfloat16 for bfloat16
    activations on a CPU with fast bfloat16, float32 otherwise), rounded from float32 forms.

    Without them those layers transform their kernels on every evaluation (about
    4 ms per 512->512 layer on a 2-core CPU). Once per run, like
    :func:`with_transposed_kernels`; the forms must stay in step with ``kernel``.
    They are computed in one jitted program and come back as arrays on the
    default device (NumPy took 1 s for the Gatys layers on a 2-core CPU).
    """
    names = tuple(layers)
    deepest = max((LAYERS.index(n) for n in validate_layers(names)), default=-1)
    todo = {
        name: (params[name]["kernel"], params[name].get("kernel_t"))
        for name, (c_in, c_out) in CONV_CHANNELS.items()
        if name in params and "kernel_w" not in params[name] and LAYERS.index(name) <= deepest
        and winograd_possible(c_in, c_out, conv_impl, platform=platform)
    }  # fmt: skip
    if not todo:
        return params
    forms = _winograd_forms(todo, vgg_winograd_dtype(dtype, conv_impl, platform=platform).name)
    return {name: {**layer, "kernel_w": forms[name][0], "kernel_t_w": forms[name][1]} if name in forms else layer
            for name, layer in params.items()}  # fmt: skip


def with_bfloat16_kernels(params: Any, layers: Iterable[str]) -> Any:
    """``params`` with ``"kernel_bf16"`` / ``"kernel_t_bf16"``: ``kernel`` and its :func:`transposed_kernel`
    rounded to bfloat16, for the convolutions up to the deepest of ``layers``.

    oneDNN's bfloat16 convolution reads them (:func:`vgg_onednn`); cast inside the program, the two
    casts of a 512->512 layer's kernels took ~2 ms of its 7.6 ms (forward and input gradient), and a
    bfloat16 evaluation at 256 px went 104 -> 98 ms without them on a 2-core Xeon (docs/benchmarks.md).
    Once per run; they must stay in step with ``kernel``.
    """
    names = tuple(layers)
    deepest = max((LAYERS.index(n) for n in validate_layers(names)), default=-1)
    # kernel_t when given (prepared_params always gives it): a transposed copy is only made where missing.
    return {
        name: {**layer, "kernel_bf16": jnp.asarray(layer["kernel"], jnp.bfloat16),
               "kernel_t_bf16": jnp.asarray(layer["kernel_t"] if "kernel_t" in layer
                                            else transposed_kernel(layer["kernel"]), jnp.bfloat16)}
        if name in CONV_CHANNELS and LAYERS.index(name) <= deepest and "kernel_bf16" not in layer else layer
        for name, layer in params.items()
    }  # fmt: skip


def prepared_params(params: Any, layers: Iterable[str] = (), conv_impl: str = "auto", *,
                    dtype: Any = jnp.float32) -> Any:
    """``params`` as a fixed network reads them step after step: with :func:`with_transposed_kernels`'
    input-gradient kernels, :func:`with_winograd_kernels`' forms for the convolutions up to the deepest
    of ``layers`` (none: no forms) computed in ``dtype`` and, where oneDNN computes ``dtype`` layers
    (:func:`vgg_onednn`), :func:`with_bfloat16_kernels`' copies.

    For the loss networks of the trainers and the optimiser of ``stylize``: once per run, outside the
    jitted step (inside, a SPADE step at 128 px re-derived the forms of every layer it ran, forward and
    backward, ~0.4 s of CPU time; docs/benchmarks.md). The features are unchanged; the added arrays
    receive no gradient, so the kernels must not be trained.
    """
    params = with_winograd_kernels(with_transposed_kernels(params), layers, conv_impl, dtype=dtype)
    return with_bfloat16_kernels(params, layers) if vgg_onednn(dtype, conv_impl) else params


@functools.partial(jax.jit, static_argnums=1)
def _winograd_forms(kernels: dict[str, tuple[Any, Any]], dtype: str) -> dict[str, tuple[jax.Array, jax.Array]]:
    # kernel_t when given (with_transposed_kernels made it in NumPy): XLA:CPU's transpose of the
    # channel axes costs more than the Winograd transforms themselves. Transformed in float32, then rounded.
    def form(k):
        return split_winograd_kernel(winograd_kernel(jnp.asarray(k, jnp.float32)).astype(dtype))

    return {name: (form(k), form(transposed_kernel(k) if kt is None else kt)) for name, (k, kt) in kernels.items()}


def conv_plan(
    height: int,
    width: int,
    in_channels: int,
    out_channels: int,
    dtype: Any,
    conv_impl: str = "auto",
    *,
    platform: str | None = None,
    cpu_flags: Iterable[str] | None = None,
    measure: bool = True,
) -> ConvPlan:
    """How VGG computes a 3x3 convolution of a [*, height, width, in_channels] input to ``out_channels``.

    :func:`nstjax.models.conv.plan` with ``use="vgg"``, whose docstring states the rule:
    ``conv_impl="xla"``, ``"gemm"`` or ``"winograd"`` for every layer, in ``dtype``;
    ``"auto"``: XLA's convolution in ``dtype`` on GPU/TPU; on CPU, in float32, Winograd
    for large layers with 64 or more channels on both sides, XLA's elsewhere; in
    bfloat16 where the CPU multiplies bfloat16 natively, the large layers as measured
    fastest on this machine (Winograd or a GEMM with bfloat16 products, or float32),
    float32 elsewhere. ``platform`` defaults to JAX's default backend and ``cpu_flags`` to
    :func:`nstjax.runtime.cpu_flags`: pass them to ask about another machine (no measuring then).
    ``measure=False``: what is known without measuring (a choice measured before, else the fixed rule).
    """
    return plan(height, width, in_channels, out_channels, 3, 1, dtype=dtype, impl=conv_impl, use="vgg",
                platform=platform, cpu_flags=cpu_flags, measure=measure)


class Conv3x3(nn.Module):
    """A 3x3, stride-1 convolution with bias; output has the input's spatial size.

    Parameters are float32; activations are ``dtype`` and the convolution runs
    as :func:`conv_plan` says for ``conv_impl``. Optional ``kernel_t``,
    ``kernel_w``, ``kernel_t_w``, ``kernel_bf16`` and ``kernel_t_bf16`` parameters
    (:func:`with_transposed_kernels`, :func:`with_winograd_kernels`, :func:`with_bfloat16_kernels`)
    save transforming or casting the kernel on every call.
    """

    features: int
    padding: str = "zero"
    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel", nn.initializers.he_normal(), (3, 3, x.shape[-1], self.features), jnp.float32
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        if self.padding == "zero":
            pad = ((1, 1), (1, 1))
        else:
            # Reflect/replicate padding avoids the dark borders that zero padding draws.
            mode = {"reflect": "reflect", "replicate": "edge"}[self.padding]
            x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=mode)
            pad = ((0, 0), (0, 0))
        given = {name: self.get_variable("params", name) if self.has_variable("params", name) else None
                 for name in ("kernel_t", "kernel_w", "kernel_t_w", "kernel_bf16", "kernel_t_bf16")}  # fmt: skip
        _, h, w, c = x.shape
        plan = conv_plan(h, w, c, self.features, self.dtype, self.conv_impl)
        compute = plan.compute_dtype
        if compute == jnp.bfloat16 and given["kernel_bf16"] is not None:
            kernel, given["kernel_t"] = given["kernel_bf16"], given["kernel_t_bf16"]
        given = {name: None if v is None else jax.tree.map(lambda a: a.astype(compute), v)
                 for name, v in given.items()}  # fmt: skip
        y = conv3x3(x.astype(compute), kernel.astype(compute), pad, given["kernel_t"], plan.method,
                    given["kernel_w"], given["kernel_t_w"])
        return (y + bias.astype(compute)).astype(self.dtype)


class VGG19(nn.Module):
    """VGG-19 (or VGG-16) features up to the deepest requested layer.

    Attributes:
      network: ``"vgg19"`` (configuration E) or ``"vgg16"`` (configuration D).
      pooling: ``"max"`` (as trained) or ``"avg"`` (Gatys et al. prefer it for
        smoother gradients).
      padding: ``"zero"`` (as trained), ``"reflect"`` or ``"replicate"``.
      preprocessing: the weights' input convention, ``"caffe"`` or ``"torch"``.
      dtype: compute dtype, float32 or bfloat16; parameters stay float32.
      remat: rematerialisation for large images: ``"none"``; ``"conv"`` keeps
        only convolution outputs for the backward pass (ReLUs are recomputed);
        ``"block"`` keeps only each block's input and recomputes the block.
      conv_impl: ``"auto"``, ``"xla"`` or ``"gemm"``: how the convolutions are
        computed (:func:`conv_plan`).
    """

    pooling: str = "max"
    padding: str = "zero"
    preprocessing: str = "caffe"
    dtype: Any = jnp.float32
    remat: str = "none"
    conv_impl: str = "auto"
    network: str = "vgg19"

    def setup(self):
        for name, (_, c_out) in conv_channels(self.network).items():
            setattr(self, name, Conv3x3(c_out, self.padding, self.dtype, self.conv_impl, name=name))

    def __call__(self, images: jax.Array, layers: Sequence[str]) -> dict[str, jax.Array]:
        """Activations of ``layers`` for ``images``.

        Args:
          images: float [B, H, W, 3], RGB in [0, 1].
          layers: names from :data:`LAYERS` (static).

        Returns:
          ``{name: [B, h, w, C]}`` in the compute dtype. Nothing past the deepest
          requested layer is computed.
        """
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.remat not in REMATS:
            raise ValueError(f"remat must be one of {REMATS}, got {self.remat!r}")
        if self.conv_impl not in CONV_IMPLS:
            raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {self.conv_impl!r}")
        wanted = frozenset(validate_layers(layers, network=self.network))
        deepest = max(LAYERS.index(n) for n in wanted) if wanted else -1

        run_block = _run_block
        if self.remat == "block":
            run_block = nn.remat(_run_block, static_argnums=(2, 3, 4))
        elif self.remat == "conv":
            policy = jax.checkpoint_policies.save_only_these_names("conv_out")
            run_block = nn.remat(_run_block, static_argnums=(2, 3, 4), policy=policy)

        x = preprocess(images.astype(jnp.float32), self.preprocessing).astype(self.dtype)
        out: dict[str, jax.Array] = {}
        for b in range(1, len(BLOCKS) + 1):
            block_layers = tuple(n for n in network_layers(self.network) if layer_block(n) == b)
            if LAYERS.index(block_layers[0]) > deepest:
                break
            last = [n for n in block_layers if LAYERS.index(n) <= deepest][-1]
            x, found = run_block(self, x, b, tuple(n for n in block_layers if n in wanted), last)
            out.update(found)
        return out


def pool2x2(x: jax.Array, pooling: str) -> jax.Array:
    """2x2, stride-2 max or average pooling of ``x`` [B, H, W, C]; odd rows/columns are dropped.

    Written as a reshape and a reduction rather than ``lax.reduce_window``: XLA
    fuses it into a plain loop, where XLA:CPU ran the windowed form ~10x slower
    than memory speed. For max pooling, JAX's gradient splits ties equally
    among the tied inputs (``reduce_window`` gives it all to one); after a ReLU
    the only ties are zeros, whose gradient the ReLU stops either way.
    """
    b, h, w, c = x.shape
    windows = x[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c)
    if pooling == "max":
        return windows.max(axis=(2, 4))
    return windows.mean(axis=(2, 4))


def _run_block(vgg: VGG19, x: jax.Array, block: int, wanted: tuple[str, ...], last: str):
    """Run block ``block`` of ``vgg`` on ``x`` up to layer ``last``.

    Returns (output of ``last``, requested activations).
    """
    found = {}
    count = network_blocks(vgg.network)[block - 1][1]
    for n in range(1, count + 1):
        x = getattr(vgg, f"conv{block}_{n}")(x)
        x = checkpoint_name(x, "conv_out")
        if f"conv{block}_{n}" in wanted:
            found[f"conv{block}_{n}"] = x
        if last == f"conv{block}_{n}":
            return x, found
        x = nn.relu(x)
        if f"relu{block}_{n}" in wanted:
            found[f"relu{block}_{n}"] = x
        if last == f"relu{block}_{n}":
            return x, found
    x = pool2x2(x, vgg.pooling)
    if f"pool{block}" in wanted:
        found[f"pool{block}"] = x
    return x, found


def features(
    params: Any,
    images: jax.Array,
    layers: Sequence[str],
    *,
    pooling: str = "max",
    padding: str = "zero",
    preprocessing: str = "caffe",
    dtype: Any = jnp.float32,
    remat: str = "none",
    conv_impl: str = "auto",
    network: str | None = None,
) -> dict[str, jax.Array]:
    """Pure-function form of :class:`VGG19`: ``{layer: activation}`` for ``images``.

    Args:
      params: ``{"conv1_1": {"kernel", "bias"}, …}`` (arrays, passed as data):
        13 convolutions for VGG-16, 16 for VGG-19.
      images: float [B, H, W, 3], RGB in [0, 1].
      layers: layer names (static under jit).
      conv_impl: ``"auto"``, ``"xla"``, ``"gemm"`` or ``"winograd"`` (:func:`conv_plan`).
      network: ``"vgg19"``/``"vgg16"``; None: :func:`network_of` ``params``.
    """
    model = VGG19(
        pooling=pooling, padding=padding, preprocessing=preprocessing, dtype=dtype, remat=remat, conv_impl=conv_impl,
        network=network_of(params) if network is None else network,
    )
    return model.apply({"params": params}, images, tuple(layers))


def init_params(seed: int = 0, network: str = "vgg19") -> dict[str, dict[str, np.ndarray]]:
    """Seeded random VGG-19 (or VGG-16) parameters, float32 NumPy, in the layout of :class:`VGG19`.

    Kernels are Gaussian with std ``sqrt(2 / fan_in)`` (He et al.), biases zero, so
    activations keep their scale through the ReLUs. Random features are no
    substitute for ImageNet weights, but they give deterministic, offline weights
    for tests and smoke runs. NumPy's generator makes them identical on every
    backend and costs no compilation.
    """
    rng = np.random.default_rng(seed)
    params = {}
    for name, (c_in, c_out) in conv_channels(network).items():
        std = np.sqrt(2.0 / (9 * c_in))
        kernel = (rng.standard_normal((3, 3, c_in, c_out)) * std).astype(np.float32)
        params[name] = {"kernel": kernel, "bias": np.zeros((c_out,), np.float32)}
    return params
