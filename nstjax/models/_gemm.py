"""Convolutions as matrix products: im2col, the shifted sum for thin outputs, per-tap kernel gradients.

Pure forward and backward functions of a cross-correlation ``x`` [B, H, W, Cin] with
``kernel`` [k, k, Cin, Cout] (HWIO), zero ``padding`` ``((top, bottom), (left, right))``.
Every product accumulates in float32 whatever the operands' dtype (bfloat16 included)
and returns in the operands' dtype. :mod:`nstjax.models.conv` ties them into custom VJPs
and decides when each pays.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "gemm_conv_forward",
    "gemm_input_gradient",
    "gemm_kernel_gradient",
    "pad4",
    "plane_kernel_gradient",
    "shift_conv_backward",
    "shift_conv_forward",
    "tap_kernel_gradient",
]


def pad4(x: jax.Array, padding) -> jax.Array:
    """``x`` [B, H, W, C] with ``padding`` ``((top, bottom), (left, right))`` zeros around H and W."""
    (t, b), (l, r) = padding
    return jnp.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))


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


def gemm_conv_forward(x: jax.Array, kernel: jax.Array, stride: int, padding) -> jax.Array:
    """The cross-correlation of :func:`~nstjax.models.conv.conv2d` as one matrix product over the input's
    k x k windows (im2col).

    ``x`` [B, H, W, Cin], ``kernel`` [k, k, Cin, Cout], ``padding`` ``((top, bottom),
    (left, right))`` zeros. The windows are laid side by side ([B, Ho, Wo, k·k·Cin])
    and multiplied with the kernel as a [k·k·Cin, Cout] matrix, accumulated in
    float32, returned in ``x``'s dtype. Forward only (for gradients use
    :func:`~nstjax.models.conv.convolve`). It costs a k·k-fold copy of the input, which
    pays on CPU for small images with many channels, and for bfloat16 where the CPU
    multiplies bfloat16 matrices natively.
    """
    k, c_in, c_out = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    xp = pad4(x, padding)
    b, ho, wo = x.shape[0], (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
    # One 2-D product [B·Ho·Wo, k·k·Cin] x [k·k·Cin, Cout]: the form XLA:CPU hands to its GEMM kernels.
    y = jax.lax.dot_general(
        _im2col(xp, k, stride, ho, wo).reshape(b * ho * wo, k * k * c_in),
        kernel.reshape(k * k * c_in, c_out).astype(x.dtype),
        (((1,), (0,)), ((), ())),
        preferred_element_type=jnp.float32,
    )
    return y.reshape(b, ho, wo, c_out).astype(x.dtype)


def gemm_kernel_gradient(x: jax.Array, g: jax.Array, kernel_shape: tuple[int, ...], stride: int, padding):
    """The kernel gradient as one product of the im2col windows with the output gradient ``g`` [B, Ho, Wo, Cout]."""
    k = kernel_shape[0]
    cols = _im2col(pad4(x, padding), k, stride, g.shape[1], g.shape[2])
    return _matmul(cols, g, "bhwk,bhwo->ko").reshape(kernel_shape)


def gemm_input_gradient(x_shape: tuple[int, ...], g: jax.Array, kernel: jax.Array, stride: int, padding):
    """The input gradient [B, H, W, Cin] (in ``g``'s dtype): ``g`` times the kernel matrix, windows added back."""
    k, c_in = kernel.shape[0], kernel.shape[2]
    (t, b), (l, r) = padding
    hp, wp = x_shape[1] + t + b, x_shape[2] + l + r
    ho, wo = g.shape[1], g.shape[2]
    dcols = _matmul(g, kernel.reshape(k * k * c_in, -1), "bhwo,ko->bhwk")
    dxp = jnp.zeros((x_shape[0], hp, wp, c_in), jnp.float32)
    zero = jnp.zeros((), dcols.dtype)
    for i, (dy, dx) in enumerate(_taps(k)):
        tap = dcols[..., i * c_in : (i + 1) * c_in]
        # Tap (dy, dx) of output pixel (i, j) read input pixel (stride i + dy, stride j + dx).
        config = ((0, 0, 0), (dy, hp - dy - stride * (ho - 1) - 1, stride - 1),
                  (dx, wp - dx - stride * (wo - 1) - 1, stride - 1), (0, 0, 0))  # fmt: skip
        dxp = dxp + jax.lax.pad(tap, zero, config).astype(jnp.float32)
    return dxp[:, t : t + x_shape[1], l : l + x_shape[2]].astype(g.dtype)


def tap_kernel_gradient(x: jax.Array, g: jax.Array, kernel_shape: tuple[int, ...], stride: int, pads) -> jax.Array:
    """The gradient of :func:`~nstjax.models.conv.conv2d` with respect to its kernel, as one matrix product per
    kernel tap.

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
    xp = jax.lax.optimization_barrier(pad4(x, pads))
    ho, wo = g.shape[1], g.shape[2]
    span_h, span_w = stride * (ho - 1) + 1, stride * (wo - 1) + 1
    taps = [
        jnp.einsum("bhwo,bhwc->oc", g, xp[:, i : i + span_h : stride, j : j + span_w : stride],
                   preferred_element_type=jnp.float32)  # fmt: skip
        for i in range(k_h)
        for j in range(k_w)
    ]
    return jnp.stack(taps).reshape(k_h, k_w, c_out, c_in).transpose(0, 1, 3, 2).astype(x.dtype)


def plane_kernel_gradient(x: jax.Array, g: jax.Array, kernel_shape: tuple[int, ...], stride: int, pads) -> jax.Array:
    """The kernel gradient of a layer with few input or few output channels, as one matrix product over the
    channel planes of its thin side.

    ``x`` [B, H, W, Cin] the convolution's input, ``g`` [B, Ho, Wo, Cout] the gradient of its output,
    ``pads`` ``((top, bottom), (left, right))`` zeros; returns [kh, kw, Cin, Cout] in ``x``'s dtype,
    accumulated in float32. With fewer input than output channels, the rows are the input's planes as each
    tap reads them (kh·kw·Cin rows of B·Ho·Wo positions, any stride), times ``g`` as [B·Ho·Wo, Cout];
    otherwise (stride 1 only) the rows are ``g``'s planes moved to the input positions each tap reads
    (kh·kw·Cout rows of B·Hp·Wp), times the padded input. Either way the product contracts over the rows'
    minor axis, the form XLA:CPU hands to its fast GEMM, and the planes are copied from a few channels only:
    XLA:CPU's own kernel-gradient convolution of the 7x7 RGB heads and stems ran 2x slower, and its
    transposed contractions (the per-tap products, the im2col product) slower still (docs/benchmarks.md).
    """
    k_h, k_w, c_in, c_out = kernel_shape
    xp = pad4(x, pads)
    b, hp, wp, _ = xp.shape
    ho, wo = g.shape[1], g.shape[2]
    if c_in <= c_out:
        planes = jnp.transpose(xp, (3, 0, 1, 2))  # [Cin, B, Hp, Wp]: a transpose of a few channels
        span_h, span_w = stride * (ho - 1) + 1, stride * (wo - 1) + 1
        rows = jnp.stack([planes[:, :, dy : dy + span_h : stride, dx : dx + span_w : stride]
                          for dy in range(k_h) for dx in range(k_w)])  # fmt: skip
        columns = g.reshape(b * ho * wo, c_out).astype(x.dtype)
        product = jax.lax.dot(rows.reshape(k_h * k_w * c_in, b * ho * wo), columns, preferred_element_type=jnp.float32)
        return product.reshape(k_h, k_w, c_in, c_out).astype(x.dtype)
    if stride != 1:
        raise ValueError(f"plane_kernel_gradient takes stride 1 where Cout < Cin, got stride {stride}")
    planes = jnp.transpose(g.astype(x.dtype), (3, 0, 1, 2))  # [Cout, B, Ho, Wo]
    # Tap (dy, dx) of output pixel (i, j) read input pixel (i + dy, j + dx): g's plane shifted by (dy, dx).
    rows = jnp.stack([jnp.pad(planes, ((0, 0), (0, 0), (dy, hp - ho - dy), (dx, wp - wo - dx)))
                      for dy in range(k_h) for dx in range(k_w)])  # fmt: skip
    product = jax.lax.dot(rows.reshape(k_h * k_w * c_out, b * hp * wp), xp.reshape(b * hp * wp, c_in),
                          preferred_element_type=jnp.float32)  # fmt: skip
    return product.reshape(k_h, k_w, c_out, c_in).transpose(0, 1, 3, 2).astype(x.dtype)


# The shifted sum: for stride-1 layers with fewer output than input channels (the RGB heads), the input times
# all taps' kernels at once ([B, Hp, Wp, Cin] x [Cin, k·k·Cout]) is smaller than im2col's k·k-fold copy
# unless the output has fewer pixels than channels (its transposed kernel is then the larger copy).


def _shift_kernel(kernel: jax.Array) -> jax.Array:
    k, c_in, c_out = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    return kernel.transpose(2, 0, 1, 3).reshape(c_in, k * k * c_out)  # [Cin, (dy, dx, Cout)]


def shift_conv_forward(x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
    """A stride-1 cross-correlation as one product with all taps' kernels, then a shifted sum of the k x k partial
    outputs (float32), in ``x``'s dtype."""
    k, c_out = kernel.shape[0], kernel.shape[3]
    xp = pad4(x, padding)
    ho, wo = xp.shape[1] - k + 1, xp.shape[2] - k + 1
    z = _matmul(xp, _shift_kernel(kernel), "bhwc,ck->bhwk")
    y = sum(
        z[:, dy : dy + ho, dx : dx + wo, i * c_out : (i + 1) * c_out].astype(jnp.float32)
        for i, (dy, dx) in enumerate(_taps(k))
    )
    return y.astype(x.dtype)


def shift_conv_backward(x: jax.Array, kernel: jax.Array, g: jax.Array, padding) -> tuple[jax.Array, jax.Array]:
    """(input gradient in ``x``'s dtype, kernel gradient in the kernel's) of :func:`shift_conv_forward`."""
    k = kernel.shape[0]
    xp = pad4(x, padding)
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
