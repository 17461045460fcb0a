"""The PatchGAN discriminator (pix2pix, CycleGAN; SPADE's with spectral norm), in Flax Linen.

The 70x70 PatchGAN of Isola et al. / Zhu et al. (``n_layers=3``): 4x4
convolutions C64 (stride 2, no norm) - C128 - C256 (stride 2) - C512 (stride 1),
each followed by LeakyReLU(0.2), then a stride-1 4x4 convolution to one logit
per patch. Channels are ``ndf * min(2^n, max_mult)``. With ``padding=1`` (the
authors') a 256 px input gives 30x30 logits, each seeing a 70x70 patch.

Options the other image-to-image systems need:

* ``norm``: ``"instance"`` (no affine; the middle convolutions then carry no bias,
  which the norm would cancel) or ``"none"``.
* ``spectral_norm``: spectral normalisation (``flax.linen.SpectralNorm``, one
  power iteration per call) of the middle convolutions, as SPADE's
  ``spectralinstance`` discriminator (its first and last convolutions are plain).
  Its power-iteration state (``u`` and ``sigma`` per kernel) lives in the
  ``"batch_stats"`` collection: pass ``update_stats=True`` and
  ``mutable=["batch_stats"]`` when training and keep the returned collection.
* ``padding``: zeros on each side of every convolution (SPADE: 2). SPADE's
  ``n_layers_D=4`` is this module's ``n_layers=3`` (same strides and widths).
* ``return_features``: also return the activations after each LeakyReLU
  (for pix2pixHD/SPADE feature matching).
* ``conv_impl``: how the convolutions are computed
  (:func:`~nstjax.models.layers.conv_method`); the function is the same.
* Input channels are free: a conditional discriminator takes the label map or
  input image concatenated with the (real or fake) image.

Conventions: NHWC float input; float32 parameters, arithmetic in ``dtype``;
logits (and features) float32.
"""

from __future__ import annotations

from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from .layers import Conv, ConvImpl, instance_norm

__all__ = ["NormName", "PatchGAN", "patch_grid"]

NormName = Literal["instance", "none"]


def patch_grid(size: int, n_layers: int = 3, padding: int = 1) -> int:
    """Side of the logit grid a :class:`PatchGAN` gives for a ``size`` x ``size`` input."""
    for _ in range(n_layers):
        size = (size + 2 * padding - 4) // 2 + 1
    for _ in range(2):
        size = size + 2 * padding - 4 + 1
    return size


class PatchGAN(nn.Module):
    """Images [B, H, W, C] -> logits [B, h, w, 1] (float32); with ``return_features``: (logits, [features]).

    Parameter names: ``conv0`` … ``conv{n_layers}``, ``head`` (spectral-normalised
    layers sit one level deeper: ``SpectralNorm_k/conv{n}``… as Flax names them).
    """

    ndf: int = 64
    n_layers: int = 3
    norm: NormName = "instance"
    spectral_norm: bool = False
    padding: int = 1
    max_mult: int = 8
    return_features: bool = False
    dtype: Any = jnp.float32
    conv_impl: ConvImpl = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, update_stats: bool = False):
        if self.norm not in ("instance", "none"):
            raise ValueError(f"unknown norm {self.norm!r} (instance or none)")
        dt, pad, impl = self.dtype, self.padding, self.conv_impl
        features = []
        x = Conv(self.ndf, 4, stride=2, padding=pad, use_bias=True, dtype=dt, impl=impl, name="conv0")(x.astype(dt))
        x = nn.leaky_relu(x, 0.2)
        features.append(x)
        for n in range(1, self.n_layers + 1):
            width = self.ndf * min(2**n, self.max_mult)
            stride = 2 if n < self.n_layers else 1
            conv = Conv(width, 4, stride=stride, padding=pad, use_bias=self.norm == "none", dtype=dt, impl=impl,
                        name=f"conv{n}")  # fmt: skip
            if self.spectral_norm:
                x = nn.SpectralNorm(conv, collection_name="batch_stats")(x, update_stats=update_stats)
            else:
                x = conv(x)
            if self.norm == "instance":
                x = instance_norm(x)
            x = nn.leaky_relu(x, 0.2)
            features.append(x)
        logits = Conv(1, 4, padding=pad, use_bias=True, dtype=dt, impl=impl, name="head")(x).astype(jnp.float32)
        if self.return_features:
            return logits, [f.astype(jnp.float32) for f in features]
        return logits
