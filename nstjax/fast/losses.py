"""The perceptual loss of Johnson et al. (2016) on nstjax's VGG-19.

* **Style**: Gram matrices of the output at the style layers against those of
  the style image (:func:`style_grams`), each layer's loss the mean squared Gram
  difference, layers averaged with their weights (:func:`nstjax.losses.style.style_loss`).
* **Content** (feature reconstruction): mean squared difference between the
  output's and the content photo's features at one mid layer (relu2_2).
* **TV**: total variation of the output (:func:`nstjax.losses.style.total_variation_loss`).

Every function is pure: VGG parameters, targets and images are arguments.
Images are RGB float ``[B, H, W, 3]`` in [0, 1] (the network's outputs may
stray outside; they are fed as they are, as in the reference).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..losses.style import content_loss, gram_matrix, style_loss, total_variation_loss
from ..models.vgg import features

__all__ = ["perceptual_terms", "style_grams", "weighted_loss"]


def _dtype(name: str) -> Any:
    return jnp.bfloat16 if name == "bfloat16" else jnp.float32


def style_grams(
    vgg_params: Any,
    style: jax.Array,
    style_layers: tuple[tuple[str, float], ...],
    *,
    pooling: str = "max",
    preprocessing: str = "caffe",
    dtype: str = "float32",
) -> dict[str, jax.Array]:
    """``{layer: float32 [1, C, C]}``: Gram matrices of one style image [1, H, W, 3]."""
    layers = tuple(name for name, _ in style_layers)
    feats = features(vgg_params, style, layers, pooling=pooling, preprocessing=preprocessing, dtype=_dtype(dtype))
    return {name: gram_matrix(feats[name]) for name in layers}


def perceptual_terms(
    vgg_params: Any,
    outputs: jax.Array,
    contents: jax.Array,
    grams: Mapping[str, jax.Array],
    *,
    content_layer: str,
    style_layers: tuple[tuple[str, float], ...],
    pooling: str = "max",
    preprocessing: str = "caffe",
    dtype: str = "float32",
) -> dict[str, jax.Array]:
    """Unweighted loss terms per image: ``{"content", "style", "tv"}``, each float32 [B].

    Args:
      outputs: the network's images [B, H, W, 3] (gradients flow through them).
      contents: the input photos [B, H, W, 3] (their features are constants).
      grams: :func:`style_grams` of the style image.
    """
    dt = _dtype(dtype)
    layers = tuple(dict.fromkeys((content_layer, *(name for name, _ in style_layers))))
    out_feats = features(vgg_params, outputs, layers, pooling=pooling, preprocessing=preprocessing, dtype=dt)
    target = features(vgg_params, contents, (content_layer,), pooling=pooling, preprocessing=preprocessing, dtype=dt)
    target = jax.lax.stop_gradient(target[content_layer])
    weights = dict(style_layers)
    return {
        "content": content_loss(out_feats[content_layer], target),
        "style": style_loss(out_feats, {k: grams[k] for k in weights}, weights),
        "tv": total_variation_loss(outputs.astype(jnp.float32)),
    }


def weighted_loss(terms: Mapping[str, jax.Array], content_weight: float, style_weight: float,
                  tv_weight: float) -> jax.Array:
    """The training objective: the weighted sum of the terms, averaged over the batch (scalar float32)."""
    total = content_weight * terms["content"] + style_weight * terms["style"] + tv_weight * terms["tv"]
    return jnp.mean(total)
