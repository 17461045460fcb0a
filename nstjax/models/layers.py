"""Layers the GAN networks share (CycleGAN, pix2pix, SPADE), in Flax Linen, and how convolutions are computed.

* :class:`Conv`: a square convolution with N(0, 0.02) weights (:data:`CONV_INIT`),
  float32 parameters and arithmetic in ``dtype``; :class:`Upsample2x`: x2
  upsampling by a transposed convolution (:func:`conv_transpose_stride2`, as a
  sub-pixel convolution) or by resizing then convolving;
* :func:`instance_norm` (no affine parameters, statistics in float32) and
  :func:`reflect_pad`;
* :func:`convolve` / :func:`conv_method`: one cross-correlation computed as XLA's
  convolution or as matrix products (im2col, or a shifted sum for thin outputs),
  with hand-written gradients; :func:`gemm_conv_forward` is the im2col product
  that :func:`nstjax.models.vgg.gemm_conv` uses too; :func:`tap_kernel_gradient`
  is the kernel gradient both paths use on CPU for large layers.

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
    "winograd_conv3x3",
    "winograd_kernel",
]

UpsampleName = Literal["transpose", "resize"]

CONV_INIT = nn.initializers.normal(stddev=0.02)
"""N(0, 0.02) kernel initialiser of the CycleGAN and pix2pix networks (biases start at 0)."""


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Instance normalisation without affine parameters: each sample's channels to zero mean, unit variance.

    ``x`` [B, H, W, C]; statistics over H and W in float32 (biased variance, as
    PyTorch's ``InstanceNorm2d``); the result in ``x``'s dtype.
    """
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=(1, 2), keepdims=True)
    centred = x32 - mean
    var = jnp.mean(jnp.square(centred), axis=(1, 2), keepdims=True)
    return (centred * jax.lax.rsqrt(var + eps)).astype(x.dtype)


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
    """Reflection padding of ``pad`` pixels on each side of H and W (``x`` [B, H, W, C])."""
    if pad == 0:
        return x
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1, padding: Any = "VALID") -> jax.Array:
    """XLA's cross-correlation of ``x`` [B, H, W, Cin] with ``kernel`` [kh, kw, Cin, Cout] (HWIO), NHWC out.

    ``padding``: ``"VALID"``, ``"SAME"`` (TensorFlow's split) or ``((top, bottom), (left, right))`` zeros.
    Every XLA convolution of the package goes through here.

    On CPU a side without padding gets ``stride`` zeros before it and the extra first
    output row (column) is dropped: XLA:CPU runs convolutions with no padding on a
    side 3-5x slower than padded ones of the same size (a 128x128 px 256->256 3x3
    layer: 708 ms unpadded, 156 ms with one row and column more; 2-core AVX2 EPYC,
    jax 0.10), and the reflection-padded layers of the generators, the AdaIN
    encoder and decoder and the feed-forward networks are all unpadded convolutions.
    On CPU, large layers with :data:`TAP_GRADIENT_MIN_CHANNELS` or more channels on both
    sides take their kernel gradient as per-tap matrix products
    (:func:`tap_kernel_gradient`); the value and the input gradient stay XLA's. Those
    layers have a custom VJP, so they support reverse-mode differentiation only.
    """
    k_h, k_w = kernel.shape[0], kernel.shape[1]
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(x.shape[1:3], (k_h, k_w), (stride, stride), padding)
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    if jax.default_backend() == "cpu" and _tap_gradient_pays(x.shape, kernel.shape, stride, pads):
        return _conv_tap_gradient(x, kernel, stride, pads)
    return _xla_conv(x, kernel, stride, pads)


TAP_GRADIENT_MIN_CHANNELS = 32
"""On CPU the kernel gradient of layers with at least this many input and output channels, at least
:data:`TAP_GRADIENT_MIN_ROWS` output pixels in the batch and :data:`GEMM_MIN_MACS` multiply-adds per image is
computed as per-tap matrix products (:func:`tap_kernel_gradient`), in :func:`conv2d` and in :func:`convolve`'s
products alike. XLA:CPU's own kernel-gradient convolution ran at a third to a fifth of its forward speed
(2-core AVX2 EPYC, jax 0.10, 3x3, stride 1; batch 1: 256 px 64->64 482 against 172 ms, 64 px 256->256 90
against 64 ms; batch 8: 128 px 64->256 3435 against 473 ms, 256 px 64->64 6719 against 2179 ms), and the
products beat one product over the im2col windows by 1.1-3.4x. With 3 input channels (the stems) the
products were 2x slower."""

TAP_GRADIENT_MIN_ROWS = 1024
"""Per-tap products contract over batch x output pixels; below this the single im2col product was faster
(16x16 px 512->512, batch 1: 13.6 against 11.3 ms)."""


def _xla_conv(x: jax.Array, kernel: jax.Array, stride: int, pads: tuple[tuple[int, int], ...]) -> jax.Array:
    pads_used = [tuple(p) for p in pads]
    crop = [False, False]
    if jax.default_backend() == "cpu":
        for axis, (lo, hi) in enumerate(pads_used):
            if lo == 0 and hi == 0:
                pads_used[axis], crop[axis] = (stride, 0), True
    y = jax.lax.conv_general_dilated(x, kernel, (stride, stride), pads_used, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y[:, int(crop[0]) :, int(crop[1]) :]


def _tap_gradient_pays(x_shape, kernel_shape, stride: int, pads) -> bool:
    k_h, k_w, c_in, c_out = kernel_shape
    ho = (x_shape[1] + sum(pads[0]) - k_h) // stride + 1
    wo = (x_shape[2] + sum(pads[1]) - k_w) // stride + 1
    return (k_h * k_w > 1 and min(c_in, c_out) >= TAP_GRADIENT_MIN_CHANNELS
            and x_shape[0] * ho * wo >= TAP_GRADIENT_MIN_ROWS
            and ho * wo * k_h * k_w * c_in * c_out >= GEMM_MIN_MACS)  # fmt: skip


def tap_kernel_gradient(x: jax.Array, g: jax.Array, kernel_shape: tuple[int, ...], stride: int, pads) -> jax.Array:
    """The gradient of :func:`conv2d` with respect to its kernel, as one matrix product per kernel tap.

    ``x`` [B, H, W, Cin] the convolution's input, ``g`` [B, Ho, Wo, Cout] the
    gradient of its output, ``pads`` ``((top, bottom), (left, right))`` zeros.
    Tap (i, j) of the kernel gradient is ``g`` (as [B·Ho·Wo, Cout]) transposed times
    the input window that tap reads (as [B·Ho·Wo, Cin]), accumulated in float32;
    returned [kh, kw, Cin, Cout] in ``x``'s dtype. The output gradient is the left
    operand so XLA:CPU copies only the windows, not their transposes.
    """
    k_h, k_w, c_in, c_out = kernel_shape
    # Materialised once: XLA:CPU otherwise fuses x's producers (normalisation, activation,
    # reflection padding) into every one of the k*k window copies, 10x their cost.
    xp = jax.lax.optimization_barrier(_pad4(x, pads))
    ho, wo = g.shape[1], g.shape[2]
    span_h, span_w = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    taps = [
        jnp.einsum("bhwo,bhwc->oc", g, xp[:, i : i + span_h : stride, j : j + span_w : stride],
                   preferred_element_type=jnp.float32)  # fmt: skip
        for i in range(k_h)
        for j in range(k_w)
    ]
    return jnp.stack(taps).reshape(k_h, k_w, c_out, c_in).transpose(0, 1, 3, 2).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_tap_gradient(x, kernel, stride, pads):
    return _xla_conv(x, kernel, stride, pads)


def _conv_tap_gradient_fwd(x, kernel, stride, pads):
    return _xla_conv(x, kernel, stride, pads), (x, kernel)


def _conv_tap_gradient_bwd(stride, pads, residuals, g):
    x, kernel = residuals
    (dx,) = jax.vjp(lambda v: _xla_conv(v, kernel, stride, pads), x)[1](g)
    return dx, tap_kernel_gradient(x, g.astype(x.dtype), kernel.shape, stride, pads).astype(kernel.dtype)


_conv_tap_gradient.defvjp(_conv_tap_gradient_fwd, _conv_tap_gradient_bwd)


# --------------------------------------------------------------------------- Winograd F(2x2, 3x3)

# Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016): a 3x3
# stride-1 cross-correlation computes each 2x2 output tile from a 4x4 input tile as
# Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A. Summed over input channels, the element-wise product
# becomes 16 matrix products [tiles, Cin] x [Cin, Cout]: 16 multiply-adds per 4 outputs
# instead of 36, 2.25x fewer, at the cost of input and output transforms (additions).
# G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]], Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0],
# [0, -1, 1, 0], [0, 1, 0, -1]], Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]], written out below.

WINOGRAD_MIN_CHANNELS = 64
"""On CPU, "auto" computes stride-1 3x3 convolutions with at least this many input and output channels
(and enough multiply-adds to matter) by :func:`winograd_conv3x3`. Measured on a 2-core AVX2 EPYC (jax
0.10), one image, forward / input gradient in ms, XLA's convolution against Winograd: 16x16 px 512->512
11.6 / 10.9 against 6.2 / 6.0; 32x32 px 256->256 10.4 / 15.5 against 6.2 / 6.0; 128x128 px 64->128 29.3 /
21.9 against 14.7 / 14.8; 128x128 px 256->256 156 / 158 against 99 / 100; 256x256 px 64->64 47.3 / 49.1
against 39.4 / 40.0; 512x512 px 64->64 168 / 158 against 156 / 154. At 8x8 px 512->512 the two are level
with the im2col product (3.3-3.7 ms against 2.9-3.4)."""


WINOGRAD_MIN_MACS = 250_000_000
"""On CPU, "auto" uses Winograd only for layers of at least this many multiply-adds per image (a 128 px
image's VGG layers but conv5_1; none at 64 px): its 16 products and transforms take XLA:CPU several times
longer to compile than one convolution (a VGG evaluation: 7.0 against 1.6 s at 64 px, 15.3 against 2.3 s at
128 px, 2-core EPYC), which small images do not win back."""


def _winograd_rows(t0, t1, t2):
    """The rows of G·g for the three rows (or columns) ``t0, t1, t2`` of a 3x3 kernel."""
    return [t0, (t0 + t1 + t2) * 0.5, (t0 - t1 + t2) * 0.5, t2]


def winograd_kernel(kernel: Any) -> Any:
    """A 3x3 kernel in Winograd F(2x2, 3x3) form: ``G g Gᵀ`` per channel pair.

    ``[3, 3, Cin, Cout]`` (HWIO) -> ``[4, 4, Cin, Cout]``, the ``kernel_w`` of
    :func:`winograd_conv3x3`. NumPy in, NumPy out (computed once, off the device);
    JAX in, JAX out (traced: a few element-wise passes over the kernel).
    """
    stack = np.stack if isinstance(kernel, np.ndarray) else jnp.stack
    rows = _winograd_rows(kernel[0], kernel[1], kernel[2])  # 4 x [3, Cin, Cout]
    return stack([stack(_winograd_rows(r[0], r[1], r[2])) for r in rows])


def _winograd_input(t0, t1, t2, t3):
    """Bᵀ applied along one axis of a 4-row (or 4-column) input tile (lax: traced often)."""
    add, sub = jax.lax.add, jax.lax.sub
    return [sub(t0, t2), add(t1, t2), sub(t2, t1), sub(t1, t3)]


def winograd_conv3x3(x: jax.Array, kernel_w: jax.Array, padding) -> jax.Array:
    """3x3 stride-1 cross-correlation by Winograd's F(2x2, 3x3), with float32 products.

    Args:
      x: [B, H, W, Cin], any float dtype.
      kernel_w: :func:`winograd_kernel` of a [3, 3, Cin, Cout] HWIO kernel, [4, 4, Cin, Cout].
      padding: ``((top, bottom), (left, right))`` zeros, each 0 or more.

    Returns:
      [B, H + top + bottom - 2, W + left + right - 2, Cout] in ``x``'s dtype: the
      values of :func:`conv2d` up to float rounding (about 1e-6 relative in float32:
      the transforms add and halve, no large factors). Odd output sizes are computed
      on one more row/column of zeros and cropped. Differentiable by JAX (its
      transforms are linear), but :func:`convolve` and VGG give it hand-written rules.
    """
    (pt, pb), (pl, pr) = padding
    if min(pt, pb, pl, pr) < 0:
        raise ValueError(f"winograd_conv3x3 takes non-negative padding, got {padding}")
    b, h, w, c_in = x.shape
    c_out = kernel_w.shape[-1]
    ho, wo = h + pt + pb - 2, w + pl + pr - 2
    th, tw = -(-ho // 2), -(-wo // 2)  # 2x2 output tiles per column and row
    # 4x4 input tiles overlap by 2: the tile grid needs 2·tiles + 2 rows and columns.
    xp = _pad4(x, ((pt, 2 * th + 2 - h - pt), (pl, 2 * tw + 2 - w - pl)))
    kernel_w = kernel_w.astype(x.dtype)
    lax = jax.lax  # lax primitives: this runs 57 times per traced VGG evaluation, jnp's indexing costs ~3x more
    # Bᵀ along rows on the four row phases, then along columns: 16 arrays [B, th, tw, Cin],
    # the input tiles' transformed entries (slices and additions XLA fuses into each product's operand).
    rows = _winograd_input(*(lax.slice(xp, (0, u, 0, 0), (b, u + 2 * th - 1, 2 * tw + 2, c_in), (1, 2, 1, 1))
                             for u in range(4)))  # fmt: skip
    products = []
    for a, row in enumerate(rows):
        tiles = _winograd_input(*(lax.slice(row, (0, 0, v, 0), (b, th, v + 2 * tw - 1, c_in), (1, 1, 2, 1))
                                  for v in range(4)))  # fmt: skip
        products.append([
            lax.dot_general(d, lax.index_in_dim(lax.index_in_dim(kernel_w, a, 0, False), j, 0, False),
                            (((3,), (0,)), ((), ())), preferred_element_type=jnp.float32)
            for j, d in enumerate(tiles)
        ])  # fmt: skip
    # Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]] along both axes of each tile: its 2x2 outputs.
    m, add, sub = products, lax.add, lax.sub
    half = ([add(add(m[0][j], m[1][j]), m[2][j]) for j in range(4)],
            [sub(sub(m[1][j], m[2][j]), m[3][j]) for j in range(4)])  # fmt: skip
    out = [[add(add(r[0], r[1]), r[2]), sub(sub(r[1], r[2]), r[3])] for r in half]  # out[p][q]: [B, th, tw, Cout]
    # Interleave: [B, th, 2, tw, 2, Cout] -> [B, 2·th, 2·tw, Cout].
    y = lax.concatenate([lax.expand_dims(lax.concatenate([lax.expand_dims(o, (3,)) for o in pair], 3), (2,))
                         for pair in out], 2)  # fmt: skip
    y = y.reshape(b, 2 * th, 2 * tw, c_out)
    return lax.slice(y, (0, 0, 0, 0), (b, ho, wo, c_out)).astype(x.dtype)


def transposed_kernel(kernel: Any) -> Any:
    """The kernel of a 3x3 convolution's input gradient: flipped in space, in/out swapped.

    ``[3, 3, Cin, Cout]`` (HWIO) -> ``[3, 3, Cout, Cin]``, still HWIO. NumPy in,
    NumPy out (no device work); JAX in, JAX out.
    """
    if isinstance(kernel, np.ndarray):
        return np.ascontiguousarray(np.flip(kernel, (0, 1)).swapaxes(2, 3))
    return jnp.flip(kernel, (0, 1)).swapaxes(2, 3)


def _winograd_applies(kernel_shape, stride: int, pads) -> bool:
    # 3x3, stride 1, and padding the input gradient can mirror (2 - p on each side).
    return kernel_shape[:2] == (3, 3) and stride == 1 and all(0 <= p <= 2 for side in pads for p in side)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _winograd_conv(x, kernel, pads):
    return winograd_conv3x3(x, winograd_kernel(kernel), pads)


def _winograd_conv_fwd(x, kernel, pads):
    return _winograd_conv(x, kernel, pads), (x, kernel)


def _winograd_conv_bwd(pads, residuals, g):
    x, kernel = residuals
    # The input gradient is the "full" correlation of g with the flipped, transposed kernel.
    flipped = transposed_kernel(kernel)
    dx = winograd_conv3x3(g.astype(x.dtype), winograd_kernel(flipped), tuple((2 - lo, 2 - hi) for lo, hi in pads))
    if _tap_gradient_pays(x.shape, kernel.shape, 1, pads):
        dkernel = tap_kernel_gradient(x, g.astype(x.dtype), kernel.shape, 1, pads)
    else:
        (dkernel,) = jax.vjp(lambda k: _xla_conv(x, k, 1, pads), kernel)[1](g.astype(x.dtype))
    return dx, dkernel.astype(kernel.dtype)


_winograd_conv.defvjp(_winograd_conv_fwd, _winograd_conv_bwd)


# --------------------------------------------------------------------------- convolutions as matrix products

ConvImpl = Literal["auto", "xla", "gemm", "winograd"]
CONV_IMPLS = ("auto", "xla", "gemm", "winograd")

GEMM_MIN_MACS = 20_000_000
"""On CPU, "auto" computes convolutions of at least this many multiply-adds per image as matrix products;
smaller ones (test-sized networks) stay XLA convolutions, which compile faster."""

TINY_OUTPUT_PIXELS = 16
"""On CPU, "auto" computes convolutions with outputs of at most this many pixels (the U-Net's innermost
layers) and stride-1 convolutions to one channel (PatchGAN logits) as matrix products at any size: XLA:CPU
runs them, and their gradients, on a generic path (pix2pix at 64 px: 30 and 13 ms for the 1x1 -> 2x2
layer's two convolutions, a third of the step; a 512->1 4x4 layer with its gradients: 34 against 1.3 ms
as products at 33x33 px, 122 against 14 ms at 63x63 px)."""

XLA_FORWARD_MIN_PIXELS = 2048
"""Matrix-product convolutions with outputs of at least this many pixels (and kernels of 3 or more) run
their forward pass as XLA's convolution: its 9x (or 49x) im2col copy made the product's forward 2x slower
at 64x64 px, while the products' backward stays the faster one."""


def _explicit_padding(padding: Any, k: int, stride: int, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
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


def _matmul(a: jax.Array, b: jax.Array, spec: str) -> jax.Array:
    # Products accumulate in float32 whatever the inputs (bfloat16 included).
    return jnp.einsum(spec, a, b.astype(a.dtype), preferred_element_type=jnp.float32).astype(a.dtype)


def _taps(k: int) -> list[tuple[int, int]]:
    return [(dy, dx) for dy in range(k) for dx in range(k)]


def _im2col(xp: jax.Array, k: int, stride: int, ho: int, wo: int) -> jax.Array:
    """[B, ho, wo, k*k*C]: the k x k windows of the padded input, taps in (dy, dx) order."""
    span_h, span_w = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    return jnp.concatenate(
        [xp[:, dy : dy + span_h : stride, dx : dx + span_w : stride] for dy, dx in _taps(k)], axis=-1
    )


def _pad4(x: jax.Array, padding) -> jax.Array:
    (t, b), (l, r) = padding
    return jnp.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _gemm_conv(x, kernel, stride, padding, xla_forward):
    return _gemm_conv_fwd(x, kernel, stride, padding, xla_forward)[0]


def gemm_conv_forward(x: jax.Array, kernel: jax.Array, stride: int, padding) -> jax.Array:
    """The cross-correlation of :func:`conv2d` as one matrix product over the input's k x k windows (im2col).

    ``x`` [B, H, W, Cin], ``kernel`` [k, k, Cin, Cout], ``padding`` ``((top, bottom),
    (left, right))`` zeros. The windows are laid side by side ([B, Ho, Wo, k·k·Cin])
    and multiplied with the kernel as a [k·k·Cin, Cout] matrix, accumulated in
    float32, returned in ``x``'s dtype. Forward only (for gradients use :func:`convolve`).
    It costs a k·k-fold copy of the input, which pays on CPU for small images with
    many channels, and for bfloat16 where the CPU multiplies bfloat16 matrices natively.
    """
    k, c_in, c_out = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    xp = _pad4(x, padding)
    b, ho, wo = x.shape[0], (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
    # One 2-D product [B·Ho·Wo, k·k·Cin] x [k·k·Cin, Cout]: the form XLA:CPU hands to its GEMM kernels.
    y = jax.lax.dot_general(
        _im2col(xp, k, stride, ho, wo).reshape(b * ho * wo, k * k * c_in),
        kernel.reshape(k * k * c_in, c_out).astype(x.dtype),
        (((1,), (0,)), ((), ())),
        preferred_element_type=jnp.float32,
    )
    return y.reshape(b, ho, wo, c_out).astype(x.dtype)


def _gemm_conv_fwd(x, kernel, stride, padding, xla_forward):
    if xla_forward:
        return conv2d(x, kernel, stride, padding), (x, kernel)
    return gemm_conv_forward(x, kernel, stride, padding), (x, kernel)


def _gemm_conv_bwd(stride, padding, xla_forward, residuals, g):
    # Keeps x, not its k*k-fold copy, for the backward pass (the copy is rebuilt here): memory as XLA's.
    x, kernel = residuals
    k, c_in = kernel.shape[0], kernel.shape[2]
    xp = _pad4(x, padding)
    ho, wo = g.shape[1], g.shape[2]
    g = g.astype(x.dtype)
    if _tap_gradient_pays(x.shape, kernel.shape, stride, padding):
        dkernel = tap_kernel_gradient(x, g, kernel.shape, stride, padding)
    else:
        dkernel = _matmul(_im2col(xp, k, stride, ho, wo), g, "bhwk,bhwo->ko").reshape(kernel.shape)
    dcols = _matmul(g, kernel.reshape(k * k * c_in, -1), "bhwo,ko->bhwk")
    dxp = jnp.zeros(xp.shape, jnp.float32)
    zero = jnp.zeros((), dcols.dtype)
    for i, (dy, dx) in enumerate(_taps(k)):
        tap = dcols[..., i * c_in : (i + 1) * c_in]
        # Tap (dy, dx) of output pixel (i, j) read input pixel (stride i + dy, stride j + dx).
        config = ((0, 0, 0), (dy, xp.shape[1] - dy - stride * (ho - 1) - 1, stride - 1),
                  (dx, xp.shape[2] - dx - stride * (wo - 1) - 1, stride - 1), (0, 0, 0))  # fmt: skip
        dxp = dxp + jax.lax.pad(tap, zero, config).astype(jnp.float32)
    (t, _), (l, _) = padding
    return dxp[:, t : t + x.shape[1], l : l + x.shape[2]].astype(x.dtype), dkernel.astype(kernel.dtype)


_gemm_conv.defvjp(_gemm_conv_fwd, _gemm_conv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _shift_conv(x, kernel, padding):
    return _shift_conv_fwd(x, kernel, padding)[0]


def _shift_kernel(kernel: jax.Array) -> jax.Array:
    k, c_in, c_out = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    return kernel.transpose(2, 0, 1, 3).reshape(c_in, k * k * c_out)  # [Cin, (dy, dx, Cout)]


def _shift_conv_fwd(x, kernel, padding):
    k, c_out = kernel.shape[0], kernel.shape[3]
    xp = _pad4(x, padding)
    ho, wo = xp.shape[1] - k + 1, xp.shape[2] - k + 1
    z = _matmul(xp, _shift_kernel(kernel), "bhwc,ck->bhwk")
    y = sum(
        z[:, dy : dy + ho, dx : dx + wo, i * c_out : (i + 1) * c_out].astype(jnp.float32)
        for i, (dy, dx) in enumerate(_taps(k))
    )
    return y.astype(x.dtype), (x, kernel)


def _shift_conv_bwd(padding, residuals, g):
    x, kernel = residuals
    k = kernel.shape[0]
    xp = _pad4(x, padding)
    hp, wp = xp.shape[1], xp.shape[2]
    gp = jnp.pad(g.astype(x.dtype), ((0, 0), (k - 1, k - 1), (k - 1, k - 1), (0, 0)))
    # dz[p, (d, o)] = g[p - d, o]: the windows of the zero-padded output gradient.
    dz = jnp.concatenate([gp[:, k - 1 - dy : k - 1 - dy + hp, k - 1 - dx : k - 1 - dx + wp] for dy, dx in _taps(k)],
                         axis=-1)  # fmt: skip
    shifted = _shift_kernel(kernel)
    dxp = _matmul(dz, shifted, "bhwk,ck->bhwc")
    dshifted = _matmul(xp, dz, "bhwc,bhwk->ck")
    c_in, c_out = kernel.shape[2], kernel.shape[3]
    dkernel = dshifted.reshape(c_in, k, k, c_out).transpose(1, 2, 0, 3)
    (t, _), (l, _) = padding
    return dxp[:, t : t + x.shape[1], l : l + x.shape[2]], dkernel.astype(kernel.dtype)


_shift_conv.defvjp(_shift_conv_fwd, _shift_conv_bwd)


def conv_method(height: int, width: int, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                impl: ConvImpl = "auto", platform: str | None = None) -> str:
    """How :func:`convolve` computes a convolution: ``"xla"``, ``"gemm"``, ``"shift"`` or ``"winograd"``.

    ``impl="xla"``: XLA's convolution. ``"winograd"``: :func:`winograd_conv3x3` for
    stride-1 3x3 layers (padding up to 2 on a side), XLA's elsewhere; its input
    gradient is Winograd too, its kernel gradient the per-tap products. ``"gemm"``: a matrix product, either over the
    input's k x k windows (im2col, ``"gemm"``) or, for stride-1 layers with fewer output
    than input channels (the generators' RGB heads), of the input with all taps' kernels
    at once followed by a shifted sum of the k x k partial outputs (``"shift"``): the
    smaller of the two intermediates. ``"auto"``: on GPU/TPU XLA's convolution; on CPU
    XLA's for small layers (under :data:`GEMM_MIN_MACS` multiply-adds: they compile
    faster) except tiny and one-channel outputs (:data:`TINY_OUTPUT_PIXELS`); Winograd
    for the other stride-1 3x3 layers with :data:`WINOGRAD_MIN_CHANNELS` or more
    channels on both sides and :data:`WINOGRAD_MIN_MACS` (the residual blocks: a CycleGAN step at 256 px 16.2 against
    17.6 s, level at 128 px); for the rest, XLA's for large outputs (:data:`XLA_FORWARD_MIN_PIXELS`) of stride-1 3x3 layers with 64 or
    more input channels and of stride-1 layers narrowing the channels (heads); the
    matrix products elsewhere (strided convolutions, the 7x7 stems, 4x4
    discriminator layers, few input channels, 32x32 px residual blocks), where large
    outputs keep XLA's convolution for the forward pass. Measured per layer, forward
    and both gradients, at CycleGAN's and SPADE's 128 and 256 px shapes on a 2-core
    AVX2 EPYC: with :func:`conv2d`'s padding, XLA's stride-1 3x3 convolutions train
    1.3-1.5x faster than the products at 64x64 px and more (256->256: 165 against 212
    ms), the products 1.2-1.3x faster at 32x32 px; the products stay ahead for the
    stem and the strided layers (1.1-1.4x). ``height``, ``width``: the output's.
    """
    if impl not in CONV_IMPLS:
        raise ValueError(f"conv impl must be one of {CONV_IMPLS}, got {impl!r}")
    if impl == "winograd":
        return "winograd" if kernel == 3 and stride == 1 else "xla"
    if impl == "xla" or kernel == 1:
        return "xla"
    if impl == "auto":
        platform = jax.default_backend() if platform is None else platform
        if platform != "cpu":
            return "xla"
        # Outputs XLA:CPU convolves on its generic (slow) path take the products at any size.
        generic_path = height * width <= TINY_OUTPUT_PIXELS or (out_channels == 1 and stride == 1)
        if not generic_path:
            if height * width * kernel * kernel * in_channels * out_channels < GEMM_MIN_MACS:
                return "xla"
            if (kernel == 3 and stride == 1 and min(in_channels, out_channels) >= WINOGRAD_MIN_CHANNELS
                    and height * width * 9 * in_channels * out_channels >= WINOGRAD_MIN_MACS):  # fmt: skip
                return "winograd"
            if stride == 1 and height * width >= XLA_FORWARD_MIN_PIXELS and (
                (kernel == 3 and in_channels >= 64) or out_channels < in_channels
            ):
                return "xla"
    return "shift" if stride == 1 and out_channels < in_channels else "gemm"


def convolve(x: jax.Array, kernel: jax.Array, stride: int = 1, padding: Any = "VALID", impl: ConvImpl = "auto") -> jax.Array:
    """The cross-correlation of :func:`conv2d`, computed as :func:`conv_method` says.

    Same function whatever the method (tested); float32 accumulation.
    """
    k = kernel.shape[0]
    pads = _explicit_padding(padding, k, stride, x.shape[1], x.shape[2])
    ho = (x.shape[1] + sum(pads[0]) - k) // stride + 1
    wo = (x.shape[2] + sum(pads[1]) - k) // stride + 1
    method = conv_method(ho, wo, kernel.shape[2], kernel.shape[3], k, stride, impl)
    if method == "winograd":
        if _winograd_applies(kernel.shape, stride, pads):
            return _winograd_conv(x, kernel, pads)
        method = "xla"
    if method == "xla":
        return conv2d(x, kernel, stride, pads)
    if method == "shift":
        return _shift_conv(x, kernel, pads)
    xla_forward = impl == "auto" and k >= 3 and ho * wo >= XLA_FORWARD_MIN_PIXELS
    return _gemm_conv(x, kernel, stride, pads, xla_forward)


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
    ``x``; one stride-1 convolution (:func:`convolve` with ``impl``) computes all four
    as ``4 Cout`` channels.
    """
    k = kernel.shape[0]
    if k + output_padding - 2 * padding != 2:
        raise ValueError(f"kernel {k}, padding {padding}, output_padding {output_padding} does not double the size")
    # Phase a of output row o = 2m + a takes kernel tap t from input row m + d, d = (a + padding - t) / 2.
    taps = {a: [(t, (a + padding - t) // 2) for t in range(k) if (a + padding - t) % 2 == 0] for a in (0, 1)}
    offsets = [d for a in (0, 1) for _, d in taps[a]]
    lo, hi = min(offsets), max(offsets)
    size = hi - lo + 1
    c_in, c_out = kernel.shape[2], kernel.shape[3]
    phases = []
    for a in (0, 1):
        for b in (0, 1):
            sub = jnp.zeros((size, size, c_in, c_out), kernel.dtype)
            for t, dy in taps[a]:
                for u, dx in taps[b]:
                    sub = sub.at[dy - lo, dx - lo].set(kernel[t, u])
            phases.append(sub)
    combined = jnp.concatenate(phases, axis=-1)  # channels ordered (a, b, cout)
    xp = jnp.pad(x, ((0, 0), (-lo, hi), (-lo, hi), (0, 0)))
    y = convolve(xp, combined, impl=impl)
    n, h, w, _ = y.shape
    y = y.reshape(n, h, w, 2, 2, c_out).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(n, 2 * h, 2 * w, c_out)


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
            x = jnp.repeat(jnp.repeat(x.astype(self.dtype), 2, axis=1), 2, axis=2)
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
