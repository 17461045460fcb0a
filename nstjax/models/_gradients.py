"""The trained layers' convolutions with hand-written gradients, for :mod:`nstjax.models.conv`.

Each takes ``route``, how its kernel gradient is computed on CPU, as the planner in
:mod:`nstjax.models.conv` decided it from the layer's shape: ``"planes"``
(:func:`~nstjax.models._gemm.plane_kernel_gradient`), ``"taps"``
(:func:`~nstjax.models._gemm.tap_kernel_gradient`) or None (the method's own). Shapes:
``x`` [B, H, W, Cin], ``kernel`` [k, k, Cin, Cout] (HWIO), ``pads`` ``((top, bottom),
(left, right))`` zeros; products accumulate in float32. Reverse mode only (no ``jvp``).
"""

from __future__ import annotations

import functools

import jax

from ._gemm import (
    gemm_conv_forward,
    gemm_input_gradient,
    gemm_kernel_gradient,
    plane_kernel_gradient,
    shift_conv_backward,
    shift_conv_forward,
    tap_kernel_gradient,
)
from ._winograd import split_winograd_kernel, winograd_conv3x3, winograd_kernel

__all__ = ["gemm_conv", "product_kernel_gradient", "shift_conv", "winograd_conv", "xla_conv", "xla_conv_products"]


def xla_conv(x: jax.Array, kernel: jax.Array, stride: int, pads: tuple[tuple[int, int], ...]) -> jax.Array:
    """``lax.conv_general_dilated`` (NHWC, HWIO), JAX's gradients. On CPU a side without padding gets
    ``stride`` zeros before it and the extra first output row (column) is dropped: XLA:CPU runs unpadded
    convolutions 3-5x slower than padded ones of the same size."""
    pads_used = [tuple(p) for p in pads]
    crop = [False, False]
    if jax.default_backend() == "cpu":
        for axis, (lo, hi) in enumerate(pads_used):
            if lo == 0 and hi == 0:
                pads_used[axis], crop[axis] = (stride, 0), True
    y = jax.lax.conv_general_dilated(x, kernel, (stride, stride), pads_used, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y[:, int(crop[0]) :, int(crop[1]) :]


def product_kernel_gradient(route: str, x, g, kernel_shape, stride: int, pads):
    """The kernel gradient [k, k, Cin, Cout] in ``x``'s dtype, by ``"planes"`` or ``"taps"``."""
    gradient = plane_kernel_gradient if route == "planes" else tap_kernel_gradient
    return gradient(x, g.astype(x.dtype), kernel_shape, stride, pads)


# XLA's convolution, its kernel gradient as products (route "planes" or "taps").
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def xla_conv_products(x, kernel, stride, pads, route):
    return xla_conv(x, kernel, stride, pads)


def _xla_conv_products_fwd(x, kernel, stride, pads, route):
    return xla_conv(x, kernel, stride, pads), (x, kernel)


def _xla_conv_products_bwd(stride, pads, route, residuals, g):
    x, kernel = residuals
    (dx,) = jax.vjp(lambda v: xla_conv(v, kernel, stride, pads), x)[1](g)
    return dx, product_kernel_gradient(route, x, g, kernel.shape, stride, pads).astype(kernel.dtype)


xla_conv_products.defvjp(_xla_conv_products_fwd, _xla_conv_products_bwd)


# Winograd for trained kernels: the forms are computed per call, and the kernel gradient is taken directly
# (as ``route`` says on CPU) rather than through conv3x3's, which is built for fixed kernels.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def winograd_conv(x, kernel, pads, route):
    return _winograd_conv_fwd(x, kernel, pads, route)[0]


def _winograd_conv_fwd(x, kernel, pads, route):
    forms = split_winograd_kernel(winograd_kernel(kernel))
    return winograd_conv3x3(x, forms, pads), (x, kernel, forms)


# The flipped kernel's form: G J = P G, with J the 3x3 flip and P swapping rows 0 and 3 of Winograd's G, so
# the form of the flipped, transposed kernel is P U P per channel pair: the forward's 16 matrices reordered
# and transposed. Transforming the transposed kernel instead read it in strided loops: 87 ms a pass for
# SPADE's 1024->512 layer (docs/benchmarks.md).
_FLIPPED = (3, 1, 2, 0)


def _winograd_conv_bwd(pads, route, residuals, g):
    x, kernel, forms = residuals
    g = g.astype(x.dtype)
    # The input gradient is the "full" correlation of g with the flipped, transposed kernel.
    flipped = tuple(forms[4 * _FLIPPED[a] + _FLIPPED[j]].T for a in range(4) for j in range(4))
    dx = winograd_conv3x3(g, flipped, tuple((2 - lo, 2 - hi) for lo, hi in pads))
    if route is not None:
        dkernel = product_kernel_gradient(route, x, g, kernel.shape, 1, pads)
    else:
        (dkernel,) = jax.vjp(lambda k: xla_conv(x, k, 1, pads), kernel)[1](g)
    return dx, dkernel.astype(kernel.dtype)


winograd_conv.defvjp(_winograd_conv_fwd, _winograd_conv_bwd)


# The products (im2col); ``xla_forward``: the value by XLA's convolution instead.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def gemm_conv(x, kernel, stride, padding, xla_forward, route):
    return _gemm_conv_fwd(x, kernel, stride, padding, xla_forward, route)[0]


def _gemm_conv_fwd(x, kernel, stride, padding, xla_forward, route):
    if xla_forward:
        return xla_conv(x, kernel, stride, padding), (x, kernel)
    return gemm_conv_forward(x, kernel, stride, padding), (x, kernel)


def _gemm_conv_bwd(stride, padding, xla_forward, route, residuals, g):
    # Keeps x, not its k*k-fold copy, for the backward pass (the copy is rebuilt here): memory as XLA's.
    x, kernel = residuals
    g = g.astype(x.dtype)
    if route is not None:
        dkernel = product_kernel_gradient(route, x, g, kernel.shape, stride, padding)
    else:
        dkernel = gemm_kernel_gradient(x, g, kernel.shape, stride, padding)
    return gemm_input_gradient(x.shape, g, kernel, stride, padding), dkernel.astype(kernel.dtype)


gemm_conv.defvjp(_gemm_conv_fwd, _gemm_conv_bwd)


# The shifted sum (stride 1, fewer output than input channels).
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def shift_conv(x, kernel, padding, route):
    return shift_conv_forward(x, kernel, padding)


def _shift_conv_fwd(x, kernel, padding, route):
    return shift_conv_forward(x, kernel, padding), (x, kernel)


def _shift_conv_bwd(padding, route, residuals, g):
    x, kernel = residuals
    dx, dkernel = shift_conv_backward(x, kernel, g, padding)
    if route == "planes":
        # Its own kernel gradient (the padded input transposed against the shifted output gradients) is dead
        # code then, which XLA drops.
        dkernel = plane_kernel_gradient(x, g.astype(x.dtype), kernel.shape, 1, padding).astype(kernel.dtype)
    return dx, dkernel


shift_conv.defvjp(_shift_conv_fwd, _shift_conv_bwd)
