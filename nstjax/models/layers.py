"""Layers the GAN networks share (CycleGAN, pix2pix, SPADE), in Flax Linen.

* :class:`Conv`: a square convolution with N(0, 0.02) weights (:data:`CONV_INIT`),
  float32 parameters and arithmetic in ``dtype``; :class:`Upsample2x`: x2
  upsampling by a transposed convolution (:func:`conv_transpose_stride2`, as a
  sub-pixel convolution) or by resizing then convolving;
* :func:`instance_norm` (statistics in float32, optional affine parameters),
  :func:`reflect_pad` and :func:`upsample_nearest`, which the feed-forward networks
  (:mod:`nstjax.models.johnson`) use too.

How each convolution is computed (XLA's, matrix products, Winograd) is
:mod:`nstjax.models.conv`'s: :func:`~nstjax.models.conv.convolve`, as
:func:`~nstjax.models.conv.plan` says for ``use="gan"`` (:func:`conv_method`). Its
names that this module used to define are re-exported here.

Conventions: NHWC activations; HWIO kernels ``[k, k, Cin, Cout]``; products
accumulate in float32 whatever the operands' dtype.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .conv import (
    CONV_IMPLS,
    THRESHOLDS,
    ConvImpl,
    conv2d,
    convolve,
    gemm_conv_forward,
    plan,
    tap_kernel_gradient,
    transposed_kernel,
    winograd_conv3x3,
    winograd_kernel,
)

__all__ = [
    "CONV_IMPLS",
    "CONV_INIT",
    "GEMM_MIN_MACS",
    "TAP_GRADIENT_MIN_CHANNELS",
    "TAP_GRADIENT_MIN_ROWS",
    "TINY_OUTPUT_PIXELS",
    "WINOGRAD_MIN_CHANNELS",
    "WINOGRAD_MIN_MACS",
    "XLA_FORWARD_MIN_PIXELS",
    "Conv",
    "ConvImpl",
    "Upsample2x",
    "UpsampleName",
    "conv2d",
    "conv_method",
    "conv_transpose_stride2",
    "convolve",
    "gemm_conv_forward",
    "instance_norm",
    "reflect_pad",
    "tap_kernel_gradient",
    "transposed_kernel",
    "upsample_nearest",
    "winograd_conv3x3",
    "winograd_kernel",
]

# The planner's thresholds under the names this module gave them (units and measurements:
# nstjax.models.conv.ConvThresholds).
GEMM_MIN_MACS = THRESHOLDS.products_min_macs
TAP_GRADIENT_MIN_CHANNELS = THRESHOLDS.tap_gradient_min_channels
TAP_GRADIENT_MIN_ROWS = THRESHOLDS.tap_gradient_min_rows
TINY_OUTPUT_PIXELS = THRESHOLDS.tiny_output_pixels
WINOGRAD_MIN_CHANNELS = THRESHOLDS.winograd_min_channels
WINOGRAD_MIN_MACS = THRESHOLDS.winograd_min_macs
XLA_FORWARD_MIN_PIXELS = THRESHOLDS.xla_min_pixels

UpsampleName = Literal["transpose", "resize"]

CONV_INIT = nn.initializers.normal(stddev=0.02)
"""N(0, 0.02) kernel initialiser of the CycleGAN and pix2pix networks (biases start at 0)."""


def instance_norm(x: jax.Array, eps: float = 1e-5, scale: jax.Array | None = None, bias: jax.Array | None = None,
                  dtype: Any = None) -> jax.Array:
    """Instance normalisation: each sample's channels to zero mean, unit variance, then ``* scale + bias``.

    ``x`` [B, H, W, C]; statistics over H and W in float32 (biased variance, as
    PyTorch's ``InstanceNorm2d``), ``scale`` and ``bias`` [C] (none: no affine
    parameters) applied in float32 too; the result in ``dtype`` (default ``x``'s).
    """
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=(1, 2), keepdims=True)
    centred = x32 - mean
    var = jnp.mean(jnp.square(centred), axis=(1, 2), keepdims=True)
    y = centred * jax.lax.rsqrt(var + eps)
    if scale is not None:
        y = y * scale
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype if dtype is None else dtype)


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
    """Reflection padding of ``pad`` pixels on each side of H and W (``x`` [B, H, W, C]; ``ReflectionPad2d``)."""
    if pad == 0:
        return x
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
    """Nearest-neighbour upsampling of [B, H, W, C] by an integer factor: each pixel becomes a block."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def conv_method(height: int, width: int, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                impl: ConvImpl = "auto", platform: str | None = None) -> str:
    """How :func:`~nstjax.models.conv.convolve` computes a GAN layer's convolution: ``"xla"``, ``"gemm"``,
    ``"shift"`` or ``"winograd"`` (:func:`~nstjax.models.conv.plan` with ``use="gan"``, whose docstring
    states the rule). ``height``, ``width``: the output's. CPU flags and dtype play no part.
    """
    return plan(height, width, in_channels, out_channels, kernel, stride, impl=impl, use="gan",
                platform=platform).method


class Conv(nn.Module):
    """A square convolution with N(0, 0.02) weights: float32 parameters, arithmetic in ``dtype``.

    ``padding``: ``"VALID"``, ``"SAME"`` (TensorFlow's split: the extra pixel at
    the end) or an int (zeros on each side). ``impl``: see :func:`conv_method`.
    """

    features: int
    kernel: int
    stride: int = 1
    padding: Any = "VALID"
    use_bias: bool = True
    dtype: Any = jnp.float32
    impl: ConvImpl = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", CONV_INIT, (self.kernel, self.kernel, x.shape[-1], self.features), jnp.float32)
        y = convolve(x.astype(self.dtype), kernel.astype(self.dtype), self.stride, self.padding, self.impl)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32).astype(y.dtype)
        return y


def conv_transpose_stride2(x: jax.Array, kernel: jax.Array, padding: int, output_padding: int,
                           impl: ConvImpl = "auto") -> jax.Array:
    """PyTorch's ``conv_transpose2d(x, w, stride=2, padding, output_padding)``, as a sub-pixel convolution.

    Args:
      x: [B, H, W, Cin].
      kernel: [k, k, Cin, Cout], PyTorch's ``ConvTranspose2d`` weight ``[Cin, Cout, k, k]``
        permuted to ``(2, 3, 0, 1)`` (not flipped): output pixel ``o = 2 i - padding + t``
        receives ``x[i] * kernel[t]``.
      padding, output_padding: as PyTorch's; ``k + output_padding - 2 padding`` must be 2,
        so the output is exactly [B, 2H, 2W, Cout] (the generators' x2 upsamplings).

    Each output phase ``(a, b)`` (row and column parity) is a small correlation of
    ``x``. For even ``k`` each phase takes (k/2)^2 of the taps and is its own
    stride-1 convolution (:func:`convolve` with ``impl``); for odd ``k`` the phases'
    kernels differ in shape, and one convolution computes all four as ``4 Cout``
    channels, the taps a phase does not use being zeros.
    """
    k = kernel.shape[0]
    if k + output_padding - 2 * padding != 2:
        raise ValueError(f"kernel {k}, padding {padding}, output_padding {output_padding} does not double the size")
    if k % 2 == 0:
        return _phase_convolutions(x, kernel, padding, impl)
    # Phase a of output row o = 2m + a takes kernel tap t from input row m + d, d = (a + padding - t) / 2.
    taps = {a: [(t, (a + padding - t) // 2) for t in range(k) if (a + padding - t) % 2 == 0] for a in (0, 1)}
    offsets = [d for a in (0, 1) for _, d in taps[a]]
    lo, hi = min(offsets), max(offsets)
    size = hi - lo + 1
    c_in, c_out = kernel.shape[2], kernel.shape[3]
    # The four phases' kernels side by side, channels ordered (a, b, cout), as one product with a constant 0/1
    # selection (exact: each entry is one tap or zero). Its gradient is the transposed product; built from
    # per-tap slices instead, the kernel gradient was 16 zero-padded copies of the kernel added up.
    select = np.zeros((size, size, 2, 2, k, k), np.float32)  # [dy, dx, a, b, t, u]
    for a in (0, 1):
        for b in (0, 1):
            for t, dy in taps[a]:
                for u, dx in taps[b]:
                    select[dy - lo, dx - lo, a, b, t, u] = 1.0
    combined = jnp.einsum("deabtu,tuio->deiabo", jnp.asarray(select, kernel.dtype), kernel,
                          precision=jax.lax.Precision.HIGHEST).reshape(size, size, c_in, 4 * c_out)  # fmt: skip
    xp = jnp.pad(x, ((0, 0), (-lo, hi), (-lo, hi), (0, 0)))
    y = convolve(xp, combined, impl=impl)
    n, h, w, _ = y.shape
    y = y.reshape(n, h, w, 2, 2, c_out).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(n, 2 * h, 2 * w, c_out)


def _phase_convolutions(x: jax.Array, kernel: jax.Array, padding: int, impl: ConvImpl) -> jax.Array:
    # Even k (so output_padding 0, padding (k - 2) / 2). With the kernel flipped, r = k - 1 - t, output row
    # o = 2m + a takes flipped tap r = 2i + s(a) from input row m + d(a) + i (_flipped_parity, _phase_offset;
    # from o = 2(m + d) - padding + t): each phase is a (k/2)^2 correlation whose kernel is a strided slice of
    # the flipped one. Four of them do the 16/36 of the MACs that the one 3x3 x 4 Cout convolution did for
    # k = 4, and no product builds their kernels (that and its gradient were half of pix2pix's step at 64 px:
    # docs/benchmarks.md).
    half = kernel.shape[0] // 2
    n, h, w, _ = x.shape
    kernels = _phase_kernels(kernel, padding)
    rows = []
    for a in (0, 1):
        d_a = _phase_offset(a, padding)
        phases = []
        for b in (0, 1):
            d_b = _phase_offset(b, padding)
            pads = ((-d_a, d_a + half - 1), (-d_b, d_b + half - 1))
            phases.append(convolve(x, kernels[2 * a + b], padding=pads, impl=impl))  # [n, h, w, Cout]
        rows.append(jnp.stack(phases, axis=3))  # [n, h, w, b, Cout]
    return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, kernel.shape[3])  # [n, h, a, w, b, Cout]


def _flipped_parity(a: int, padding: int) -> int:
    """s(a): the parity of the flipped taps that output phase ``a`` (row or column parity) takes."""
    return (a + padding + 1) % 2


def _phase_offset(a: int, padding: int) -> int:
    """d(a): the input row (column) offset of phase ``a``'s first tap."""
    return (_flipped_parity(a, padding) + a - padding - 1) // 2


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _phase_kernels(kernel: jax.Array, padding: int) -> tuple[jax.Array, ...]:
    """The four phases' [k/2, k/2, Cin, Cout] kernels of an even [k, k, Cin, Cout] kernel, phase (a, b) at 2a + b."""
    half = kernel.shape[0] // 2
    flipped = kernel[::-1, ::-1].reshape(half, 2, half, 2, *kernel.shape[2:])  # [i, s, j, s', Cin, Cout]
    return tuple(flipped[:, _flipped_parity(a, padding), :, _flipped_parity(b, padding)]
                 for a in (0, 1) for b in (0, 1))  # fmt: skip


def _phase_kernels_fwd(kernel, padding):
    return _phase_kernels(kernel, padding), None


def _phase_kernels_bwd(padding, _, grads):
    # The phases partition the taps: the kernel's gradient is theirs put back in place, one copy. (Autodiff
    # would pad each phase's gradient to the whole kernel and add the four.)
    half, _, c_in, c_out = grads[0].shape
    by_parity = {(_flipped_parity(a, padding), _flipped_parity(b, padding)): grads[2 * a + b]
                 for a in (0, 1) for b in (0, 1)}  # fmt: skip
    flipped = jnp.stack([jnp.stack([by_parity[s, t] for t in (0, 1)], axis=2) for s in (0, 1)], axis=1)
    return (flipped.reshape(2 * half, 2 * half, c_in, c_out)[::-1, ::-1],)


_phase_kernels.defvjp(_phase_kernels_fwd, _phase_kernels_bwd)


class Upsample2x(nn.Module):
    """x2 upsampling to ``features`` channels.

    mode ``"transpose"``: a transposed convolution (PyTorch ``ConvTranspose2d`` with
    ``kernel``, stride 2, ``padding``, ``output_padding``), kernel parameter
    ``[k, k, Cin, Cout]`` as in :func:`conv_transpose_stride2`.
    mode ``"resize"``: nearest-neighbour x2, then a ``kernel`` convolution padded
    as ``resize_padding`` says (``"reflect"``: reflection, ``(k - 1) // 2`` per
    side, for odd k; ``"SAME"``: TensorFlow-style zeros, as Keras ``padding='same'``).
    """

    features: int
    mode: UpsampleName = "transpose"
    kernel: int = 3
    padding: int = 1
    output_padding: int = 1
    resize_padding: str = "reflect"
    use_bias: bool = False
    dtype: Any = jnp.float32
    conv_impl: ConvImpl = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.mode == "transpose":
            c_in = x.shape[-1]
            kernel = self.param("kernel", CONV_INIT, (self.kernel, self.kernel, c_in, self.features), jnp.float32)
            y = conv_transpose_stride2(x.astype(self.dtype), kernel.astype(self.dtype), self.padding,
                                       self.output_padding, self.conv_impl)
        elif self.mode == "resize":
            x = upsample_nearest(x.astype(self.dtype), 2)
            if self.resize_padding == "reflect":
                x = reflect_pad(x, (self.kernel - 1) // 2)
                padding = "VALID"
            else:
                padding = self.resize_padding
            kernel = self.param("kernel", CONV_INIT, (self.kernel, self.kernel, x.shape[-1], self.features),
                                jnp.float32)
            y = convolve(x, kernel.astype(self.dtype), 1, padding, self.conv_impl)
        else:
            raise ValueError(f"unknown upsampling {self.mode!r} (transpose or resize)")
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32).astype(y.dtype)
        return y
