"""The AdaIN training loss (Huang & Belongie 2017, as the reference implementation computes it).

For content photos ``c`` and style images ``s``:

* ``t = AdaIN(f(c), f(s))`` with ``f`` the encoder to relu4_1 (a constant);
* ``g = decoder(t)``, the stylised images;
* **content loss**: mean squared difference between ``f(g)`` and ``t``;
* **style loss**: for each of relu1_1, relu2_1, relu3_1, relu4_1, the mean squared
  difference of the per-channel means plus that of the per-channel stds
  (:func:`nstjax.models.adain.calc_mean_std`) of ``g``'s and ``s``'s features,
  *summed* over the four layers.

Per image ``[B]`` values; the reference's batch means are their means.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..models.adain import ENCODER_LAYER, STYLE_LAYERS, adaptive_instance_normalization, calc_mean_std, decode, encode

__all__ = ["adain_terms", "dtype_of"]


def dtype_of(name: str) -> Any:
    return jnp.bfloat16 if name == "bfloat16" else jnp.float32


def adain_terms(
    decoder_params: Any, vgg_params: Any, contents: jax.Array, styles: jax.Array, *, preprocessing: str,
    dtype: str = "float32",
) -> tuple[dict[str, jax.Array], jax.Array]:
    """``({"content": [B], "style": [B]}, decoded images [B, H, W, 3])`` for contents and styles [B, H, W, 3].

    H and W must be multiples of 8. Gradients reach the decoder parameters through ``g``.
    """
    dt = dtype_of(dtype)
    content_f = encode(vgg_params, contents, (ENCODER_LAYER,), preprocessing=preprocessing, dtype=dt)[ENCODER_LAYER]
    style_f = encode(vgg_params, styles, STYLE_LAYERS, preprocessing=preprocessing, dtype=dt)
    s_mean, s_std = calc_mean_std(style_f[ENCODER_LAYER])
    target = jax.lax.stop_gradient(adaptive_instance_normalization(content_f, s_mean, s_std))
    images = decode(decoder_params, target, dtype=dt)
    g_f = encode(vgg_params, images, STYLE_LAYERS, preprocessing=preprocessing, dtype=dt)
    content = jnp.mean(jnp.square(g_f[ENCODER_LAYER].astype(jnp.float32) - target), axis=(1, 2, 3))
    style = 0.0
    for layer in STYLE_LAYERS:
        gm, gs = calc_mean_std(g_f[layer])
        sm, ss = calc_mean_std(jax.lax.stop_gradient(style_f[layer]))
        style = style + jnp.mean(jnp.square(gm - sm), axis=(1, 2, 3)) + jnp.mean(jnp.square(gs - ss), axis=(1, 2, 3))
    return {"content": content, "style": style}, images
