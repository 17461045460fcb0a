"""Content, style and total-variation losses (Gatys et al. 2016), with their normalisation.

Normalisation, chosen so that a weight means the same at any image size and
any number of layers:

* **Gram matrix** of features ``F`` [h, w, C]: ``G = Fᵀ F / (C · h · w)``, the
  channel co-activation averaged over positions and divided by the channel
  count. This is the normalisation of neural-style, the PyTorch tutorial and
  (through its 1/C² layer weights) Gatys' own PyTorch code, so their weights
  translate: a style weight ``s`` summed over ``L`` layers there is ``s · L``
  here, because layers are averaged (below).
* **Style loss of a layer**: mean over the C×C entries of ``(G - A)²``.
  **Style loss**: the layer losses averaged with the layer weights
  (``Σ w_l E_l / Σ w_l``), so adding a layer does not inflate the loss.
* **Content loss of a layer**: mean over h·w·C of ``(F - P)²``; averaged over
  content layers with their weights the same way.
* **Total variation**: mean over pixels and channels of the squared
  differences between horizontal and vertical neighbours, in [0, 1] pixel units.

Guided (masked) Gram matrices follow Gatys et al. 2017 ("Controlling Perceptual
Factors"): features are multiplied by a region mask and the sum is divided by the
region's area instead of h·w, so an all-ones mask gives the plain Gram matrix.

All functions take a leading batch axis and return one value per batch element
in float32, whatever the features' dtype.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

_EPS = 1e-8


GRAM_CHUNK_ROWS = 4096
"""Positions per partial product of :func:`gram_matrix`'s forward pass (see there)."""


def _gram_chunks(positions: int) -> int:
    """How many partial products a Gram matrix over ``positions`` feature rows is split into."""
    chunks = 1
    while positions % (4 * chunks) == 0 and positions // (4 * chunks) >= GRAM_CHUNK_ROWS:
        chunks *= 4
    return chunks


@jax.custom_vjp
def _feature_products(features: jax.Array) -> jax.Array:
    """``Fᵀ F`` per image, unnormalised: [B, h, w, C] -> float32 [B, C, C]."""
    b, h, w, c = features.shape
    chunks = _gram_chunks(h * w)
    # One product over all h·w positions is a skinny [C, h·w]·[h·w, C] GEMM that XLA:CPU
    # runs at a third of its speed (after copying the features to [C, h·w]); partial
    # products over runs of GRAM_CHUNK_ROWS positions, summed, were 1.2-3x faster at
    # 128-512 px (64-256 channels). Below that size it is the one product.
    rows = features.reshape(b, chunks, h * w // chunks, c)
    partial = jnp.einsum("bnkc,bnkd->bncd", rows, rows, preferred_element_type=jnp.float32)
    return jnp.sum(partial, axis=1)


def _feature_products_fwd(features):
    return _feature_products(features), features


def _feature_products_bwd(features, cotangent):
    # d(Fᵀ F) = dFᵀ F + Fᵀ dF, so the features' cotangent is F (G + Gᵀ): one
    # [h·w, C]·[C, C] product on the features as they are laid out. JAX's own
    # transpose of the einsum produced it as [C, h·w] and transposed it back, two
    # slow copies of the largest style layer per evaluation.
    symmetric = (cotangent + jnp.swapaxes(cotangent, 1, 2)).astype(features.dtype)
    grad = jnp.einsum("bhwc,bcd->bhwd", features, symmetric, preferred_element_type=jnp.float32)
    return (grad.astype(features.dtype),)


_feature_products.defvjp(_feature_products_fwd, _feature_products_bwd)


def gram_matrix(features: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Normalised (optionally region-guided) Gram matrices.

    Args:
      features: [B, h, w, C], any float dtype.
      mask: optional region weights in [0, 1], [B, h, w] or [h, w]. The
        features are multiplied by it and the result is divided by ``C · Σ mask``
        instead of ``C · h · w``.

    Returns:
      float32 [B, C, C], accumulated in float32. Differentiable in reverse mode
      (a hand-written VJP, see ``_feature_products_bwd``); no forward mode.
    """
    _, h, w, c = features.shape
    if mask is None:
        return _feature_products(features) / (c * h * w)
    mask = jnp.broadcast_to(mask, features.shape[:3]).astype(jnp.float32)
    guided = features * mask[..., None].astype(features.dtype)
    area = jnp.sum(mask, axis=(1, 2))
    return _feature_products(guided) / (c * jnp.maximum(area, _EPS))[:, None, None]


def content_loss(features: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared feature difference, [B, h, w, C] × [B or 1, h, w, C] -> [B] float32."""
    diff = features.astype(jnp.float32) - target.astype(jnp.float32)
    return jnp.mean(jnp.square(diff), axis=(1, 2, 3))


def style_layer_loss(gram: jax.Array, target_gram: jax.Array) -> jax.Array:
    """Mean squared Gram difference, [B, C, C] × [B or 1, C, C] -> [B] float32."""
    return jnp.mean(jnp.square(gram - target_gram), axis=(1, 2))


def total_variation_loss(images: jax.Array) -> jax.Array:
    """Mean squared neighbour difference of images [B, H, W, 3] in [0, 1] -> [B]."""
    dy = images[:, 1:, :, :] - images[:, :-1, :, :]
    dx = images[:, :, 1:, :] - images[:, :, :-1, :]
    return jnp.mean(jnp.square(dy), axis=(1, 2, 3)) + jnp.mean(jnp.square(dx), axis=(1, 2, 3))


def weighted_mean(values: Mapping[str, jax.Array], weights: Mapping[str, float]) -> jax.Array:
    """``Σ w_l v_l / Σ w_l`` over the layers in ``weights`` ([B] each -> [B])."""
    total = sum(weights.values())
    return sum(weights[name] * values[name] for name in weights) / total


def style_loss(
    features: Mapping[str, jax.Array],
    target_grams: Mapping[str, jax.Array],
    layer_weights: Mapping[str, float],
    masks: Mapping[str, jax.Array] | None = None,
    term_weights: jax.Array | None = None,
) -> jax.Array:
    """Style loss over several layers and, optionally, several guided terms.

    A *term* is one (target, region) pair: a style image (or a blend of them)
    for the whole picture, or the style of one region for one region.

    Args:
      features: ``{layer: [B, h, w, C]}`` of the image being optimised.
      target_grams: ``{layer: [T, C, C]}``, one target per term.
      layer_weights: ``{layer: w_l}``; layers are averaged with these weights.
      masks: optional ``{layer: [T, h, w]}`` region masks of the optimised image,
        already at each layer's resolution. ``None`` means every term covers the
        whole image.
      term_weights: [T] weights summed over terms; default all ones.

    Returns:
      [B] float32.
    """

    def term_loss(target_t, mask_t):
        per_layer = {
            name: style_layer_loss(
                gram_matrix(features[name], None if mask_t is None else mask_t[name]),
                target_t[name][None],
            )
            for name in layer_weights
        }
        return weighted_mean(per_layer, layer_weights)

    targets = {name: target_grams[name] for name in layer_weights}
    masks = None if masks is None else {name: masks[name] for name in layer_weights}
    # vmap over terms: one compiled Gram per layer whatever the number of regions.
    per_term = jax.vmap(term_loss, in_axes=(0, None if masks is None else 0))(targets, masks)  # [T, B]
    if term_weights is None:
        return jnp.sum(per_term, axis=0)
    return jnp.einsum("t,tb->b", term_weights.astype(jnp.float32), per_term)
