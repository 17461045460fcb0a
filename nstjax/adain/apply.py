"""Arbitrary style transfer with a trained AdaIN decoder: any style image, at once.

``stylize(content) = decoder(α · AdaIN(f(c), s̄) + (1 − α) · f(c))``, where
``f`` is the frozen encoder and ``s̄`` the (blended) per-channel mean and std of
the style images' relu4_1 features. Options, as in the reference:

* ``alpha`` in [0, 1]: how much style (0 reconstructs the content);
* several styles with ``blend`` weights: their statistics are mixed
  (:func:`nstjax.models.adain.blend_statistics`);
* ``preserve_color``: each style is first recoloured to the content's colour
  mean and covariance (:func:`nstjax.io.color.match_color`, the reference's
  "coral"). For a video the colours of its first frame are used throughout, so
  the style stays fixed from frame to frame.

Contents and styles are resized so their *short* side is ``size`` / ``style_size`` (512),
torchvision's ``Resize(512)`` in the reference's ``test.py``: a 4:3 photo becomes 683x512.
Images of any size are padded by reflection to multiples of 8 and cropped back.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import NstjaxError
from ..io.color import match_color
from ..io.images import fit_shortest_side, image_array, resize_image
from ..models.adain import (
    ENCODER_LAYER,
    SIZE_MULTIPLE,
    adaptive_instance_normalization,
    blend_statistics,
    calc_mean_std,
    decode,
    encode,
    init_decoder,
    mix_with_content,
    pad_to_multiple,
)
from ..models.vgg_normalise import CALIBRATION_VERSION
from ..weights import load_weights, random_weights, resolve_weights
from ..train import load_export
from ..io.media import MediaProgress, MediaResult, plan_jobs, run_jobs
from .losses import dtype_of
from .train import encoder_params, vgg_digest

__all__ = ["AdaINModel", "adain_transfer", "apply_adain", "load_adain_model", "style_statistics", "stylizer"]


@dataclasses.dataclass(frozen=True)
class AdaINModel:
    """A decoder with the encoder weights it was trained on.

    decoder: :class:`~nstjax.models.adain.Decoder` parameters; vgg: the encoder's VGG parameters
    (JAX arrays; normalised unless the decoder was trained on raw weights, see
    :func:`~nstjax.adain.train.encoder_params`); preprocessing: their input convention; info: the
    export's config.
    """

    decoder: Any
    vgg: Any
    preprocessing: str
    info: dict = dataclasses.field(default_factory=dict)


def load_adain_model(run_dir: str | os.PathLike, *, weights: Any = None) -> AdaINModel:
    """The decoder exported by an ``adain train`` run, with its encoder weights.

    ``weights`` (a spec or loaded weights) overrides where the VGG weights come from;
    by default the export's own source is loaded (random weights with the recorded seed).
    The encoder is built as in training: normalised (:func:`~nstjax.adain.train.encoder_params`),
    or the raw weights for a decoder trained on them (exports from before issue 28 included).

    Raises:
      NstjaxError: no export, another system's export, or VGG weights other than the
        ones the decoder was trained on (the digests differ).
    """
    params, config = load_export(run_dir)
    if config.get("system") != "adain":
        raise NstjaxError(f"holds a {config.get('system', 'unknown')!r} model, not an AdaIN decoder", run_dir)
    if jax.tree_util.tree_structure(params) != jax.tree_util.tree_structure(init_decoder()):
        raise NstjaxError("the exported parameters do not fit the AdaIN decoder", run_dir)
    record = config.get("vgg", {})
    if weights is None:
        source = record.get("source", "auto")
        weights = random_weights(int(record.get("seed", 0))) if source == "random" else load_weights(source)
    vgg = resolve_weights(weights)
    if record.get("digest") and vgg_digest(vgg.params) != record["digest"]:
        raise NstjaxError(
            f"the decoder was trained on other VGG-19 weights ({record.get('source')}, digest {record['digest']}) "
            f"than these ({vgg.source}, digest {vgg_digest(vgg.params)}); give the same --weights",
            run_dir,
        )
    if record.get("encoder") == "normalised" and record.get("calibration", CALIBRATION_VERSION) != CALIBRATION_VERSION:
        raise NstjaxError(f"the decoder was trained on an encoder normalised by calibration {record['calibration']}; "
                          f"this nstjax computes calibration {CALIBRATION_VERSION}", run_dir)  # fmt: skip
    encoder = encoder_params(vgg, record.get("encoder", "raw"))
    return AdaINModel(jax.tree.map(jnp.asarray, params), jax.tree.map(jnp.asarray, encoder), vgg.preprocessing,
                      dict(config))


@functools.partial(jax.jit, static_argnames=("preprocessing", "dtype"))
def _statistics(vgg_params, style, *, preprocessing: str, dtype: str):
    feats = encode(vgg_params, style, (ENCODER_LAYER,), preprocessing=preprocessing, dtype=dtype_of(dtype))
    return calc_mean_std(feats[ENCODER_LAYER])


def style_statistics(model: AdaINModel, style: np.ndarray, *, dtype: str = "float32") -> tuple[jax.Array, jax.Array]:
    """Per-channel (mean, std) ``[1, 1, 1, 512]`` of a style image [H, W, 3]'s relu4_1 features."""
    padded, _ = pad_to_multiple(np.asarray(style, np.float32)[None], SIZE_MULTIPLE)
    return _statistics(model.vgg, padded, preprocessing=model.preprocessing, dtype=dtype)


@functools.partial(jax.jit, static_argnames=("preprocessing", "dtype"))
def _transfer(decoder_params, vgg_params, contents, style_mean, style_std, alpha, *, preprocessing: str, dtype: str):
    dt = dtype_of(dtype)
    feats = encode(vgg_params, contents, (ENCODER_LAYER,), preprocessing=preprocessing, dtype=dt)[ENCODER_LAYER]
    target = mix_with_content(adaptive_instance_normalization(feats, style_mean, style_std), feats, alpha)
    return decode(decoder_params, target, dtype=dt)


def adain_transfer(
    model: AdaINModel, contents: np.ndarray, style_mean: jax.Array, style_std: jax.Array, alpha: float = 1.0, *,
    dtype: str = "float32", clip: bool = True,
) -> np.ndarray:
    """Stylise contents float [B, H, W, 3] in [0, 1] with style statistics ``[1, 1, 1, 512]``.

    Returns float32 [B, H, W, 3] (clipped to [0, 1] unless ``clip=False``). Compiled
    once per content shape; ``alpha`` and the statistics are arguments.
    """
    if not 0.0 <= alpha <= 1.0:
        raise NstjaxError(f"alpha must be between 0 and 1, got {alpha}")
    padded, (h, w) = pad_to_multiple(np.asarray(contents, np.float32), SIZE_MULTIPLE)
    out = _transfer(model.decoder, model.vgg, padded, style_mean, style_std, jnp.float32(alpha),
                    preprocessing=model.preprocessing, dtype=dtype)[:, :h, :w]
    return np.asarray(jnp.clip(out, 0.0, 1.0) if clip else out)


def _blend_weights(blend: Sequence[float] | None, count: int) -> np.ndarray:
    if not blend:
        return np.full(count, 1.0 / count, np.float32)
    if len(blend) != count:
        raise NstjaxError(f"--style-blend has {len(blend)} weights for {count} styles")
    weights = np.asarray(blend, np.float64)
    if np.any(weights < 0) or weights.sum() <= 0:
        raise NstjaxError("style blend weights must be non-negative and not all zero")
    return (weights / weights.sum()).astype(np.float32)


def stylizer(
    model: AdaINModel, styles: Sequence[np.ndarray], *, alpha: float = 1.0, blend: Sequence[float] | None = None,
    preserve_color: bool = False, dtype: str = "float32",
) -> Callable[[np.ndarray], np.ndarray]:
    """A batch function ``[B, H, W, 3] -> [B, H, W, 3]`` for one file (image or video).

    The style statistics are computed once, on the first call: from the styles as
    they are, or recoloured to the first frame's colours with ``preserve_color``.
    """
    weights = _blend_weights(blend, len(styles))
    if not 0.0 <= alpha <= 1.0:
        raise NstjaxError(f"alpha must be between 0 and 1, got {alpha}")
    cache: dict[str, Any] = {}

    def run(frames: np.ndarray) -> np.ndarray:
        if "stats" not in cache:
            recoloured = [match_color(s, frames[0]) if preserve_color else s for s in styles]
            stats = [style_statistics(model, np.clip(s, 0.0, 1.0), dtype=dtype) for s in recoloured]
            means = jnp.concatenate([m for m, _ in stats])
            stds = jnp.concatenate([s for _, s in stats])
            cache["stats"] = blend_statistics(means, stds, weights)
        mean, std = cache["stats"]
        return adain_transfer(model, frames, mean, std, alpha, dtype=dtype)

    return run


def apply_adain(
    model: AdaINModel | str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    styles: Sequence[str | os.PathLike | np.ndarray],
    output: str | os.PathLike,
    *,
    alpha: float = 1.0,
    blend: Sequence[float] | None = None,
    preserve_color: bool = False,
    style_size: int | None = 512,
    size: int | None = 512,
    batch_size: int = 4,
    blend_frames: float = 0.0,
    motion: float = 0.1,
    quality: int = 95,
    video_quality: int = 18,
    dtype: str = "float32",
    weights: Any = None,
    progress: Callable[[MediaProgress], None] | None = None,
) -> list[MediaResult]:
    """Stylise content images, folders or videos with one or several style images.

    Args:
      model: a loaded :class:`AdaINModel` or a run directory / export folder.
      inputs: content files and folders; ``styles``: style image files or arrays.
      alpha, blend, preserve_color: see the module docstring.
      style_size: short side of the styles (None: as they are); ``size``: of the
        contents (512 in the reference, its ``Resize(512)``; None: as they are).
      batch_size, blend_frames, motion, quality, video_quality, progress: see
        :func:`nstjax.io.media.run_jobs` (``blend_frames`` is its ``blend``).
      weights: VGG weights, when not the export's own source.
    """
    jobs = plan_jobs(inputs, output)
    if not styles:
        raise NstjaxError("give at least one style image")
    _blend_weights(blend, len(styles))
    if not 0.0 <= alpha <= 1.0:
        raise NstjaxError(f"alpha must be between 0 and 1, got {alpha}")
    style_images = []
    for i, style in enumerate(styles, 1):
        image = image_array(style, f"style image {i}")
        if style_size is not None:
            image = resize_image(image, fit_shortest_side(image.shape[:2], style_size))
        style_images.append(image)
    if not isinstance(model, AdaINModel):
        model = load_adain_model(model, weights=weights)

    def new_stylizer() -> Callable[[np.ndarray], np.ndarray]:
        return stylizer(model, style_images, alpha=alpha, blend=blend, preserve_color=preserve_color, dtype=dtype)

    # Without colour preservation the style statistics are the same for every file: compute them once.
    shared = None if preserve_color else new_stylizer()

    def for_job(job) -> Callable[[np.ndarray], np.ndarray]:
        return shared or new_stylizer()

    return run_jobs(jobs, for_job, size=size, side="shortest", batch_size=batch_size, blend=blend_frames, motion=motion,
                    quality=quality, video_quality=video_quality, progress=progress)
