"""The CycleGAN ResNet generator (Zhu et al. 2017, after Johnson et al. 2016), in Flax Linen.

``c7s1-64, d128, d256, R256 x blocks, u128, u64, c7s1-3``, tanh output: a
7x7 convolution on a reflection-padded image, two stride-2 3x3 convolutions
(zero padding 1), ``blocks`` residual blocks (reflection padding, two 3x3
convolutions), two x2 upsamplings and a 7x7 convolution back to RGB. Every
convolution but the last is followed by instance normalisation without affine
parameters (the authors' ``InstanceNorm2d`` default) and a ReLU; weights are
drawn from N(0, 0.02), as in the authors' ``init_weights('normal')``.

Its layers (:class:`~nstjax.models.layers.Conv`, :class:`~nstjax.models.layers.Upsample2x`,
:func:`~nstjax.models.layers.instance_norm`, …) are shared with the other GAN networks
in :mod:`nstjax.models.layers`.

Conventions: images NHWC float in [-1, 1] (any channel count in, ``out_channels``
out); parameters float32; the arithmetic runs in ``dtype`` (float32 or
bfloat16), instance normalisation's statistics in float32; outputs float32.

Two choices that differ from the authors' code without changing the function:

* No bias before an instance norm: without affine parameters the norm subtracts
  each channel's mean, which cancels any bias exactly. (The authors' models carry
  those biases; their gradient is rounding noise, which Adam's first steps blow up
  to +-lr moves of a parameter that does nothing.)
* The x2 transposed convolution runs as one stride-1 convolution producing the
  four output phases as channels, then a depth-to-space shuffle (sub-pixel
  convolution). It is the same linear map as PyTorch's ``ConvTranspose2d(3,
  stride=2, padding=1, output_padding=1)`` with the same kernel (tested), at 4/9
  of the multiply-adds of a convolution over the zero-dilated input, with plain
  convolutions for both gradients.

``upsample="resize"`` replaces each transposed convolution by nearest-neighbour
x2 resizing then a reflection-padded 3x3 convolution, which avoids the
checkerboard artefacts of strided transposed convolutions (Odena et al. 2016).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from .layers import Conv, ConvImpl, Upsample2x, UpsampleName, instance_norm, reflect_pad

__all__ = ["ResnetBlock", "ResnetGenerator", "resnet_multiple"]


def resnet_multiple() -> int:
    """Height and width of :class:`ResnetGenerator` inputs must be multiples of this (two stride-2 steps)."""
    return 4


class ResnetBlock(nn.Module):
    """``x + IN(conv(pad(ReLU(IN(conv(pad(x)))))))`` with reflection padding and 3x3 convolutions."""

    features: int
    dtype: Any = jnp.float32
    conv_impl: ConvImpl = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(Conv, self.features, 3, use_bias=False, dtype=self.dtype, impl=self.conv_impl)
        y = nn.relu(instance_norm(conv(name="conv1")(reflect_pad(x, 1))))
        y = conv(name="conv2")(reflect_pad(y, 1))
        return x + instance_norm(y)


class ResnetGenerator(nn.Module):
    """The CycleGAN generator: images [B, H, W, C] in [-1, 1] -> [B, H, W, out_channels] in (-1, 1), float32.

    H and W must be multiples of 4 (:func:`resnet_multiple`); pad other sizes
    (reflection) and crop back. ``conv_impl``: how convolutions are computed
    (:func:`~nstjax.models.layers.conv_method`; the function is the same). ``blocks``: 9 for 256 px training, 6 for 128 px
    (the paper's choices). ``ngf``: channels of the first layer (64).
    Parameter names: ``stem``, ``down1``, ``down2``, ``block0…``, ``up1``, ``up2``, ``head``.
    """

    ngf: int = 64
    blocks: int = 9
    upsample: UpsampleName = "transpose"
    out_channels: int = 3
    dtype: Any = jnp.float32
    conv_impl: ConvImpl = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dt, ngf, impl = self.dtype, self.ngf, self.conv_impl
        x = x.astype(dt)
        x = Conv(ngf, 7, use_bias=False, dtype=dt, impl=impl, name="stem")(reflect_pad(x, 3))
        x = nn.relu(instance_norm(x))
        for i, mult in enumerate((2, 4), 1):
            x = Conv(ngf * mult, 3, stride=2, padding=1, use_bias=False, dtype=dt, impl=impl, name=f"down{i}")(x)
            x = nn.relu(instance_norm(x))
        for i in range(self.blocks):
            x = ResnetBlock(ngf * 4, dtype=dt, conv_impl=impl, name=f"block{i}")(x)
        for i, mult in enumerate((2, 1), 1):
            x = Upsample2x(ngf * mult, mode=self.upsample, dtype=dt, conv_impl=impl, name=f"up{i}")(x)
            x = nn.relu(instance_norm(x))
        x = Conv(self.out_channels, 7, use_bias=True, dtype=dt, impl=impl, name="head")(reflect_pad(x, 3))
        return jnp.tanh(x.astype(jnp.float32))
