"""The pix2pix U-Net generator (Isola et al. 2017), in Flax Linen, with its depth free.

Why not :class:`nstjax.models.unet.UnetGenerator`: that is GDL_code's U-Net
(ReLU after each encoder convolution, nearest-resize decoder, instance norm
everywhere, no dropout). pix2pix's ``UnetSkipConnectionBlock`` orders its layers
differently, and the differences are the point of the paper's generator:

* encoder ``i`` (outermost first): LeakyReLU(0.2) *before* its stride-2 4x4
  convolution (none before the outermost), batch norm after it except on the
  outermost and the innermost (a 1x1 bottleneck at 256 px);
* decoder: ReLU, a stride-2 4x4 transposed convolution, batch norm (none on the
  outermost, which has a bias and ends in tanh); the skip connection concatenates
  each encoder input with its decoder output;
* **dropout 0.5** after the decoder of the ``dropout_blocks`` blocks next to the
  innermost (the paper's ``num_downs - 5`` = 3 at 256 px with 8 downsamplings).
  It is pix2pix's only noise source and stays on at test time (the paper applies
  dropout, and batch statistics, at inference too): pass a ``"dropout"`` RNG.

Widths: block ``i`` has ``ngf * min(2**i, 8)`` channels (64, 128, 256, 512, 512, …);
``depth`` stride-2 steps (8 at 256 px, 5 for 32 px tests), so H and W must be
multiples of ``2 ** depth``.

Batch norm: affine (``scale``, ``bias``), always with the statistics of the batch
at hand (pix2pix trains with batch size 1 and tests in train mode; under a
sharded ``jax.jit`` that is the global batch). Convolutions followed by a batch
norm have no bias, as in the authors' code with ``norm='batch'``.

Conventions: NHWC inputs of any channel count (one-hot labels or an RGB image in
[-1, 1]); float32 parameters; arithmetic in ``dtype``; output float32 in (-1, 1).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from .layers import Conv, Upsample2x

__all__ = ["Pix2PixUnet", "batch_norm", "pix2pix_dropout_blocks", "pix2pix_multiple"]


def pix2pix_multiple(depth: int) -> int:
    """Height and width of :class:`Pix2PixUnet` inputs must be multiples of this (``2 ** depth``)."""
    return 2**depth


def pix2pix_dropout_blocks(depth: int) -> int:
    """The paper's number of decoder blocks with dropout: ``depth - 5`` (3 for ``unet_256``), at least 0."""
    return max(0, depth - 5)


def batch_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Batch norm with the batch's statistics over B, H, W (biased variance), then ``* scale + bias``."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=(0, 1, 2))
    var = jnp.mean(jnp.square(x32 - mean), axis=(0, 1, 2))
    return ((x32 - mean) * jax.lax.rsqrt(var + eps) * scale + bias).astype(x.dtype)


class _BatchNorm(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones_init(), (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (c,), jnp.float32)
        return batch_norm(x, scale, bias)


class Pix2PixUnet(nn.Module):
    """pix2pix's ``UnetGenerator``: [B, H, W, C] -> [B, H, W, out_channels] in (-1, 1), float32.

    Parameters: ``down0`` … ``down{depth-1}`` (convolutions), ``down_norm1`` …
    ``down_norm{depth-2}``; ``up0`` … ``up{depth-1}`` (transposed convolutions;
    ``up0`` is the outermost, with a bias), ``up_norm1`` … ``up_norm{depth-1}``.
    ``dropout_blocks=None`` takes the paper's :func:`pix2pix_dropout_blocks`.
    ``deterministic=True`` turns dropout off (not the paper's inference).
    """

    ngf: int = 64
    depth: int = 8
    dropout_blocks: int | None = None
    out_channels: int = 3
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = False) -> jax.Array:
        d, dt = self.depth, self.dtype
        if d < 2:
            raise ValueError(f"depth must be at least 2, got {d}")
        drops = pix2pix_dropout_blocks(d) if self.dropout_blocks is None else self.dropout_blocks
        if not 0 <= drops <= d - 2:
            raise ValueError(f"dropout_blocks must be 0-{d - 2} for depth {d}, got {drops}")
        widths = [self.ngf * min(2**i, 8) for i in range(d)]
        x = x.astype(dt)
        skips = []
        for i in range(d):
            skips.append(x)
            if i > 0:
                x = nn.leaky_relu(x, 0.2)
            x = Conv(widths[i], 4, stride=2, padding=1, use_bias=False, dtype=dt, name=f"down{i}")(x)
            if 0 < i < d - 1:
                x = _BatchNorm(name=f"down_norm{i}")(x)
        for i in reversed(range(d)):
            x = nn.relu(x)
            out = self.out_channels if i == 0 else widths[i - 1]
            x = Upsample2x(out, mode="transpose", kernel=4, padding=1, output_padding=0, use_bias=i == 0, dtype=dt,
                           name=f"up{i}")(x)  # fmt: skip
            if i == 0:
                break
            x = _BatchNorm(name=f"up_norm{i}")(x)
            if d - 1 - drops <= i <= d - 2:  # the dropout blocks sit right outside the innermost
                x = nn.Dropout(0.5, deterministic=deterministic)(x)
            x = jnp.concatenate([skips[i], x], axis=-1)
        return jnp.tanh(x.astype(jnp.float32))
