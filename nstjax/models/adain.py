"""Arbitrary style transfer with adaptive instance normalisation (Huang & Belongie, 2017), in Flax Linen.

The model is a frozen VGG-19 *encoder* up to ``relu4_1``, the AdaIN operation,
and a trained *decoder* that mirrors the encoder:

* **Encoder**: nstjax's VGG-19 (:func:`nstjax.models.vgg.features`) with
  reflection padding and max pooling, as the authors' normalised VGG has. Their
  network reads its input convention through a leading 1x1 convolution; nstjax's
  VGG applies the weights' own convention (``caffe`` or ``torch``) inside, so any
  of nstjax's weight files serves. The style loss uses ``relu1_1 … relu4_1``.
* **AdaIN**: ``AdaIN(x, y) = σ(y) · (x − μ(x)) / σ(x) + μ(y)`` per image and
  channel, with ``σ² = var + eps`` over the spatial positions. The variance is the
  *unbiased* one (divided by ``n − 1``) and ``eps = 1e-5``, as in the reference
  implementation (``calc_mean_std``).
* **Decoder** (:class:`Decoder`): 512→256 conv, ×2 nearest upsampling, 3×(256
  conv), 128 conv, ×2, 128 conv, 64 conv, ×2, 64 conv, 3 conv; every
  convolution 3x3 with reflection padding, ReLU after each but the last. Its
  output is an RGB image in [0, 1] (not clipped).

Sizes: ``relu4_1`` is 1/8 of the input, so the decoder gives back the input's
size when height and width are multiples of 8 (:data:`SIZE_MULTIPLE`);
:func:`pad_to_multiple` (``multiple=8``) pads other sizes by reflection, and
callers crop.

Arrays are NHWC; features float32 (or the compute dtype).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from . import vgg
from .johnson import Conv, pad_to_multiple, torch_like_init

__all__ = [
    "ENCODER_LAYER",
    "SIZE_MULTIPLE",
    "STYLE_LAYERS",
    "Decoder",
    "adaptive_instance_normalization",
    "blend_statistics",
    "calc_mean_std",
    "decode",
    "decoder_layers",
    "encode",
    "init_decoder",
    "mix_with_content",
    "pad_to_multiple",
]

ENCODER_LAYER = "relu4_1"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
SIZE_MULTIPLE = 8
EPS = 1e-5

# (output channels, upsample before this convolution) for the decoder's convolutions, in order.
_DECODER = (
    (256, False),
    (256, True),
    (256, False),
    (256, False),
    (128, False),
    (128, True),
    (64, False),
    (64, True),
    (3, False),
)


def decoder_layers() -> tuple[tuple[str, int, int, bool], ...]:
    """``(name, in channels, out channels, upsampled first)`` of each decoder convolution, in order.

    Names are ``conv1`` … ``conv9`` (the reference's ``nn.Sequential`` numbers them
    by position instead).
    """
    out, c_in = [], 512
    for i, (c_out, up) in enumerate(_DECODER, 1):
        out.append((f"conv{i}", c_in, c_out, up))
        c_in = c_out
    return tuple(out)


def calc_mean_std(features: jax.Array, eps: float = EPS) -> tuple[jax.Array, jax.Array]:
    """Per-image, per-channel mean and std over positions: [B, H, W, C] -> ([B, 1, 1, C], [B, 1, 1, C]).

    ``std = sqrt(unbiased variance + eps)``, float32. Needs at least two positions.
    """
    x = features.astype(jnp.float32)
    n = x.shape[1] * x.shape[2]
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    var = jnp.sum(jnp.square(x - mean), axis=(1, 2), keepdims=True) / max(n - 1, 1)
    return mean, jnp.sqrt(var + eps)


def adaptive_instance_normalization(
    content: jax.Array, style_mean: jax.Array, style_std: jax.Array, eps: float = EPS
) -> jax.Array:
    """AdaIN: ``content`` [B, H, W, C] renormalised to the style's per-channel mean/std ([B or 1, 1, 1, C]).

    Take the style statistics from :func:`calc_mean_std` of the style features
    (or a blend of several styles': :func:`blend_statistics`). float32 out.
    """
    mean, std = calc_mean_std(content, eps)
    return (content.astype(jnp.float32) - mean) / std * style_std + style_mean


def mix_with_content(target: jax.Array, content: jax.Array, alpha: jax.Array | float) -> jax.Array:
    """``alpha · target + (1 − alpha) · content``: the content–style trade-off at test time (float32).

    ``alpha = 1`` is full AdaIN, ``alpha = 0`` the content's own features (the
    decoder then reconstructs the content).
    """
    return alpha * target + (1.0 - alpha) * content.astype(jnp.float32)


def blend_statistics(means: jax.Array, stds: jax.Array, weights: Sequence[float] | jax.Array):
    """One (mean, std) from several styles' ``[S, 1, 1, C]`` statistics and ``weights`` [S] summing to 1.

    AdaIN is affine in the style statistics, so ``Σ wᵢ · AdaIN(x, sᵢ)`` (the
    reference's style interpolation, a convex combination of AdaIN outputs) equals
    AdaIN with the blended statistics ``(Σ wᵢ μᵢ, Σ wᵢ σᵢ)``: one decoder pass for
    any number of styles. Returns two ``[1, 1, 1, C]`` arrays.
    """
    w = jnp.asarray(weights, jnp.float32)
    return jnp.einsum("s,sijc->ijc", w, means)[None], jnp.einsum("s,sijc->ijc", w, stds)[None]


class Decoder(nn.Module):
    """The AdaIN decoder: ``relu4_1`` features [B, h, w, 512] -> RGB images [B, 8h, 8w, 3] in [0, 1].

    Parameters: ``conv1`` … ``conv9`` with ``kernel`` [3, 3, Cin, Cout] (HWIO) and
    ``bias``, float32. ``dtype``: compute dtype.
    """

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        x = features.astype(self.dtype)
        layers = decoder_layers()
        for name, _, c_out, up in layers:
            # Upsample, pad, convolve; johnson.Conv does the upsampling layers without building the
            # upsampled image (the same arithmetic, faster on XLA:CPU).
            x = Conv(c_out, 3, upsample=2 if up else 1, dtype=self.dtype, name=name)(x)
            if name != layers[-1][0]:
                x = nn.relu(x)
        return x.astype(jnp.float32)


def init_decoder(seed: int = 0) -> dict[str, Any]:
    """Fresh :class:`Decoder` parameters, seeded, float32 NumPy (PyTorch's default initialisation,
    :func:`nstjax.models.johnson.torch_like_init`)."""
    shapes = jax.eval_shape(Decoder().init, jax.random.key(0), jnp.zeros((1, 2, 2, 512), jnp.float32))
    return torch_like_init(shapes["params"], seed)


def encode(
    vgg_params: Any, images: jax.Array, layers: Sequence[str] = (ENCODER_LAYER,), *, preprocessing: str = "caffe",
    dtype: Any = jnp.float32,
) -> dict[str, jax.Array]:
    """Encoder features ``{layer: [B, h, w, C]}`` of images [B, H, W, 3] RGB in [0, 1].

    nstjax's VGG-19 with reflection padding and max pooling (the AdaIN encoder's).
    """
    return vgg.features(vgg_params, images, tuple(layers), pooling="max", padding="reflect",
                        preprocessing=preprocessing, dtype=dtype)


def decode(decoder_params: Any, features: jax.Array, *, dtype: Any = jnp.float32) -> jax.Array:
    """Pure-function form of :class:`Decoder`: features [B, h, w, 512] -> images [B, 8h, 8w, 3]."""
    return Decoder(dtype=dtype).apply({"params": decoder_params}, features)
