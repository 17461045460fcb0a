"""Winograd's F(2x2, 3x3): the kernel and input transforms, and the convolution they compute.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016): a 3x3
stride-1 cross-correlation computes each 2x2 output tile from a 4x4 input tile as
Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A. Summed over input channels, the element-wise product
becomes 16 matrix products [tiles, Cin] x [Cin, Cout]: 16 multiply-adds per 4 outputs
instead of 36, 2.25x fewer, at the cost of input and output transforms (additions).
G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]], Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0],
[0, -1, 1, 0], [0, 1, 0, -1]], Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]], written out below.

Forward functions only: :mod:`nstjax.models.conv` gives them hand-written gradients.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["split_winograd_kernel", "transposed_kernel", "winograd_conv3x3", "winograd_kernel"]


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


def split_winograd_kernel(kernel_w: Any) -> tuple[Any, ...]:
    """The 16 [Cin, Cout] matrices of a [4, 4, Cin, Cout] :func:`winograd_kernel`, in row-major (row,
    column) order: the right-hand operands of :func:`winograd_conv3x3`'s 16 products, each its own array.

    Stored this way (:func:`nstjax.models.vgg.with_winograd_kernels`), a program multiplies them as they
    are; slicing them out of one array costs a copy of every form at every call (on CPU in bfloat16 also
    two conversions, as XLA:CPU slices bfloat16 in float32).
    """
    return tuple(kernel_w[a, j] for a in range(4) for j in range(4))


def _winograd_input(t0, t1, t2, t3):
    """Bᵀ applied along one axis of a 4-row (or 4-column) input tile (lax: traced often)."""
    add, sub = jax.lax.add, jax.lax.sub
    return [sub(t0, t2), add(t1, t2), sub(t2, t1), sub(t1, t3)]


def winograd_conv3x3(x: jax.Array, kernel_w: Any, padding) -> jax.Array:
    """3x3 stride-1 cross-correlation by Winograd's F(2x2, 3x3), with float32 products.

    Args:
      x: [B, H, W, Cin], any float dtype.
      kernel_w: :func:`winograd_kernel` of a [3, 3, Cin, Cout] HWIO kernel, [4, 4, Cin, Cout], or its
        :func:`split_winograd_kernel` (16 arrays [Cin, Cout]).
      padding: ``((top, bottom), (left, right))`` zeros, each 0 or more.

    Returns:
      [B, H + top + bottom - 2, W + left + right - 2, Cout] in ``x``'s dtype: the
      values of :func:`~nstjax.models.conv.conv2d` up to float rounding (about 1e-6
      relative in float32: the transforms add and halve, no large factors). Odd output
      sizes are computed on one more row/column of zeros and cropped. Differentiable
      by JAX (its transforms are linear), but :func:`~nstjax.models.conv.convolve` and
      :func:`~nstjax.models.conv.conv3x3` give it hand-written rules.
    """
    (pt, pb), (pl, pr) = padding
    if min(pt, pb, pl, pr) < 0:
        raise ValueError(f"winograd_conv3x3 takes non-negative padding, got {padding}")
    b, h, w, c_in = x.shape
    if not isinstance(kernel_w, (tuple, list)):
        kernel_w = split_winograd_kernel(kernel_w)
    c_out = kernel_w[0].shape[-1]
    ho, wo = h + pt + pb - 2, w + pl + pr - 2
    th, tw = -(-ho // 2), -(-wo // 2)  # 2x2 output tiles per column and row
    # 4x4 input tiles overlap by 2: the tile grid needs 2·tiles + 2 rows and columns.
    xp = jnp.pad(x, ((0, 0), (pt, 2 * th + 2 - h - pt), (pl, 2 * tw + 2 - w - pl), (0, 0)))
    # The transforms run in float32 whatever x's dtype, each tile rounded once for its product: XLA:CPU
    # computes bfloat16 element-wise code in float32 anyway and rounded every intermediate it kept (the
    # row-transformed input, the strided slices) back to bfloat16: 13 % of a bfloat16 VGG evaluation at
    # 256 px on a 2-core Xeon, and a second rounding of every tile.
    xp = xp.astype(jnp.float32)
    kernel_w = [w.astype(x.dtype) for w in kernel_w]
    lax = jax.lax  # lax primitives: this runs 57 times per traced VGG evaluation, jnp's indexing costs ~3x more
    # Bᵀ along rows on the four row phases, then along columns: 16 arrays [B, th, tw, Cin], the input
    # tiles' transformed entries (slices and additions XLA fuses into each product's operand, which is
    # rounded to x's dtype).
    rows = _winograd_input(*(lax.slice(xp, (0, u, 0, 0), (b, u + 2 * th - 1, 2 * tw + 2, c_in), (1, 2, 1, 1))
                             for u in range(4)))  # fmt: skip
    products = []
    for a, row in enumerate(rows):
        tiles = _winograd_input(*(lax.slice(row, (0, 0, v, 0), (b, th, v + 2 * tw - 1, c_in), (1, 1, 2, 1))
                                  for v in range(4)))  # fmt: skip
        products.append([
            lax.dot_general(d.astype(x.dtype), kernel_w[4 * a + j], (((3,), (0,)), ((), ())),
                            preferred_element_type=jnp.float32)
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
