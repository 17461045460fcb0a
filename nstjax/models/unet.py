"""The U-Net generator of David Foster's GDL_code CycleGAN (Keras), in Flax Linen, with depth and width free.

Structure (default ``depth=4``): ``depth`` encoder blocks, each a stride-2 4x4
convolution (TensorFlow ``'same'`` padding) + instance norm (no affine) + ReLU,
with ``ngf * 2^i`` channels (capped at ``ngf * max_mult``); then ``depth - 1``
decoder blocks, each a x2 upsampling + 4x4 convolution + instance norm + ReLU
whose output is concatenated with the encoder output of the same resolution;
then a last x2 upsampling and a 4x4 convolution to ``out_channels`` with tanh.

``upsample="resize"`` is GDL_code's: nearest-neighbour x2 then a stride-1 4x4
convolution (``'same'``: 1 pixel of zeros before, 2 after). ``upsample="transpose"``
uses a transposed 4x4 convolution with stride 2 and padding 1 instead (pix2pix's
up-convolution), computed as a sub-pixel convolution
(:func:`~nstjax.models.layers.conv_transpose_stride2`).

As in the ResNet generator, convolutions followed by an instance norm carry no
bias (it cancels exactly); weights start from N(0, 0.02) (GDL_code's Keras layers
used Glorot there).

For other U-Nets: ``depth``, ``ngf``, ``max_mult`` and ``kernel`` set the
resolutions and widths (``depth=8, ngf=64, max_mult=8`` has the widths and the
1x1 bottleneck of pix2pix's 256-px ``unet_256``). pix2pix's blocks are ordered
differently (LeakyReLU before each encoder convolution, no norm on the outermost
and innermost encoder layers, dropout in the decoder), which this module does not
reproduce.

Conventions: NHWC images in [-1, 1], H and W multiples of ``2 ** depth``
(:func:`unet_multiple`); float32 parameters, arithmetic in ``dtype``, float32 output.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from .layers import Conv, ConvImpl, Upsample2x, UpsampleName, instance_norm

__all__ = ["UnetGenerator", "unet_multiple"]


def unet_multiple(depth: int = 4) -> int:
    """Height and width of :class:`UnetGenerator` inputs must be multiples of this."""
    return 2**depth


class UnetGenerator(nn.Module):
    """GDL_code's CycleGAN U-Net: images [B, H, W, C] in [-1, 1] -> [B, H, W, out_channels] in (-1, 1).

    Parameter names: ``down0…down{depth-1}``, ``up0…up{depth-2}``, ``head``.
    """

    ngf: int = 64
    depth: int = 4
    kernel: int = 4
    max_mult: int = 8
    upsample: UpsampleName = "resize"
    out_channels: int = 3
    dtype: Any = jnp.float32
    conv_impl: ConvImpl = "auto"

    def _up(self, features: int, use_bias: bool, name: str) -> Upsample2x:
        # Transposed: PyTorch's ConvTranspose2d(k, stride 2, padding (k - 2) / 2) doubles the size for even k.
        return Upsample2x(features, mode=self.upsample, kernel=self.kernel, padding=(self.kernel - 2) // 2,
                          output_padding=self.kernel % 2, resize_padding="SAME", use_bias=use_bias,
                          dtype=self.dtype, conv_impl=self.conv_impl, name=name)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.depth < 1:
            raise ValueError(f"depth must be at least 1, got {self.depth}")
        dt = self.dtype
        widths = [self.ngf * min(2**i, self.max_mult) for i in range(self.depth)]
        x = x.astype(dt)
        skips = []
        for i, width in enumerate(widths):
            x = Conv(width, self.kernel, stride=2, padding="SAME", use_bias=False, dtype=dt, impl=self.conv_impl,
                     name=f"down{i}")(x)  # fmt: skip
            x = nn.relu(instance_norm(x))
            skips.append(x)
        for i, (width, skip) in enumerate(zip(reversed(widths[:-1]), reversed(skips[:-1]))):
            x = nn.relu(instance_norm(self._up(width, False, f"up{i}")(x)))
            x = jnp.concatenate([x, skip], axis=-1)
        x = self._up(self.out_channels, True, "head")(x)
        return jnp.tanh(x.astype(jnp.float32))
