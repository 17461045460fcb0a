"""One stylisation problem: images, colour transforms and masks prepared once; targets per scale.

:class:`Problem` holds what stays fixed through a run — the content and style
images (float32 [H, W, 3], RGB in [0, 1]), colour preservation applied, the
semantic or per-style masks — and builds the :class:`~nstjax.nst.engine.Targets`
for any output shape. :func:`nstjax.nst.run.run_stylize` and the batch engine
(:mod:`nstjax.nst.batch`) both drive it.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import NstjaxError
from ..io import color, images
from ..models import vgg
from . import masks as masks_lib
from .config import StylizeConfig
from .engine import EngineSpec, Targets, content_targets, style_grams


def check_size(shape: tuple[int, int], config: StylizeConfig, what: str) -> None:
    """Raise when an image of ``shape`` (h, w) is too small for the deepest layer ``config`` reads.

    ``what`` names the image in the message (``"output"``, ``"style image"``).
    """
    names = [n for n, _ in config.style_layers] + [n for n, _ in config.content_layers]
    need = vgg.min_input_size(names, config.padding)
    if min(shape) < need:
        raise NstjaxError(
            f"{what} of {shape[1]}x{shape[0]} px is too small for the deepest layer; "
            f"each side needs at least {need} px (raise --size or --style-scale)"
        )


def upsample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of an optimised image [h, w, 3] to ``shape``: the next scale's start."""
    return np.asarray(jax.image.resize(jnp.asarray(image), (*shape, 3), method="bicubic"), np.float32)


class Problem:
    """Images, masks and settings prepared once; builds the per-scale targets."""

    def __init__(
        self, content, styles, config, weights=None, *, content_mask=None, style_masks=None, region_styles=None,
        allow_unmatched=False,
    ):  # fmt: skip
        """Load and prepare the images and masks; ``weights`` may be set later (before :meth:`targets`)."""
        self.config = config
        self.weights = weights
        self.content = images.image_array(content, "content image")
        styles = images.as_list(styles)
        if not styles:
            raise NstjaxError("at least one style image is needed")
        self.styles = [images.image_array(s, f"style image {i + 1}") for i, s in enumerate(styles)]
        n = len(self.styles)
        self.blend = _per_style(config.style_blend, n, "--style-blend", default=1.0)
        total = sum(self.blend)
        self.blend = [b / total for b in self.blend]
        self.style_scale = _per_style(config.style_scale, n, "--style-scale", default=1.0, broadcast=True)

        if config.preserve_color == "histogram":
            self.styles = [color.match_color(s, self.content, method=config.color_match) for s in self.styles]
        if config.preserve_color == "luminance":
            content_y = color.luminance(self.content)
            # The network sees grey images: Y replicated to 3 channels (Y of (y, y, y) is y).
            self.styles = [
                np.repeat(color.match_luminance(color.luminance(s), content_y), 3, axis=-1)
                for s in self.styles
            ]
            self.net_content = color.luminance_image(self.content)
        else:
            self.net_content = self.content

        # Spatial control: "semantic" (colour-coded segmentations of content and styles) or
        # "per-style" (one grayscale mask of the content per style).
        self.mode = "plain"
        self.region = None
        self.gray_masks = None
        if content_mask is not None:
            if style_masks is None:
                raise NstjaxError("a content mask needs style masks (one segmentation per style image)")
            style_masks = images.as_list(style_masks)
            if len(style_masks) != n:
                raise NstjaxError(f"{len(style_masks)} style masks given for {n} style images")
            content_seg = _load_seg(content_mask, self.content.shape[:2])
            style_segs = [_load_seg(m, s.shape[:2]) for m, s in zip(style_masks, self.styles)]
            self.region = masks_lib.match_regions(
                content_seg,
                style_segs,
                allow_unmatched=allow_unmatched,
                content_name=_name(content_mask, "content mask"),
                style_names=[_name(m, f"style mask {i + 1}") for i, m in enumerate(style_masks)],
            )
            self.region_styles = _region_style_table(self.region, region_styles, self.blend)
            self.mode = "semantic"
        elif style_masks is not None:
            style_masks = images.as_list(style_masks)
            if len(style_masks) != n:
                raise NstjaxError(f"{len(style_masks)} style masks given for {n} style images")
            self.gray_masks = [_load_gray(m, self.content.shape[:2]) for m in style_masks]
            self.mode = "per-style"

    @property
    def guided(self) -> bool:
        return self.mode != "plain"

    def shape_at(self, longest: int) -> tuple[int, int]:
        return images.fit_longest_side(self.content.shape[:2], longest)

    def targets(self, shape: tuple[int, int], spec: EngineSpec, params: Any = None) -> tuple[Targets, np.ndarray]:
        """Targets for an output of ``shape``, and the content image at that shape.

        ``params``: the network's parameters as the optimiser takes them
        (:func:`nstjax.nst.engine.device_params`: their prepared kernel forms save
        recomputing them); default the weights' own.
        """
        params = self.weights.params if params is None else params
        content = images.resize_image(self.net_content, shape)
        content_feats = content_targets(params, jnp.asarray(content)[None], spec)
        style_names = [n for n, _ in spec.style_layers]
        styles = []
        for style, scale in zip(self.styles, self.style_scale):
            longest = max(1, round(max(shape) * scale))
            style_shape = images.fit_longest_side(style.shape[:2], longest)
            check_size(style_shape, self.config, "style image")
            styles.append(images.resize_image(style, style_shape))

        if self.mode == "plain":
            grams = [style_grams(params, jnp.asarray(s)[None], None, spec) for s in styles]
            blended = {n: sum(b * g[n] for b, g in zip(self.blend, grams)) for n in style_names}
            return Targets(content_feats, blended, None, jnp.ones((1,), jnp.float32)), content

        if self.mode == "per-style":
            grams = [style_grams(params, jnp.asarray(s)[None], None, spec) for s in styles]
            masks = np.stack([images.resize_image(m[..., None].repeat(3, -1), shape)[..., 0] for m in self.gray_masks])
            masks = np.clip(masks, 0.0, 1.0)
            # Each style's term weighs by the share of the picture its mask covers (times its blend weight).
            area = masks.reshape(len(masks), -1).mean(axis=1)
            weights = np.asarray(self.blend) * area * len(self.blend)
            style_t = {n: jnp.concatenate([g[n] for g in grams]) for n in style_names}
            layer_m = masks_lib.layer_masks(masks, style_names)
            return Targets(content_feats, style_t, layer_m, jnp.asarray(weights, jnp.float32)), content

        # Semantic: one term per (region, style that region draws from).
        region = self.region
        content_masks = _resize_masks(region.content_masks, shape)
        area = content_masks.reshape(len(content_masks), -1).mean(axis=1)
        per_style_grams = []
        for s_index, style in enumerate(styles):
            s_masks = _resize_masks(region.style_masks[s_index], style.shape[:2])
            per_style_grams.append(
                style_grams(params, jnp.asarray(style)[None], masks_lib.layer_masks(s_masks, style_names), spec)
            )
        terms, weights, masks = {n: [] for n in style_names}, [], []
        for r in range(len(region.colors)):
            sources = self.region_styles[r]
            for s_index, share in sources:
                for n in style_names:
                    terms[n].append(per_style_grams[s_index][n][r])
                weights.append(area[r] * share)
                masks.append(content_masks[r])
        style_t = {n: jnp.stack(terms[n]) for n in style_names}
        layer_m = masks_lib.layer_masks(np.stack(masks), style_names)
        return Targets(content_feats, style_t, layer_m, jnp.asarray(weights, jnp.float32)), content

    def initial_image(self, shape: tuple[int, int]) -> np.ndarray:
        """The optimiser's starting image [h, w, 3] at ``shape``, as ``config.init`` says."""
        init = self.config.init
        if init == "content":
            return images.resize_image(self.net_content, shape)
        if init == "style":
            return images.resize_image(self.styles[0], shape)
        if init == "grey":
            return np.full((*shape, 3), 0.5, np.float32)
        if init == "noise":
            # Uniform noise in [0, 1], seeded: jax.random is identical across runs on a device.
            noise = jax.random.uniform(jax.random.key(self.config.seed), (*shape, 3), minval=0.0, maxval=1.0)
            return np.asarray(noise, np.float32)
        return images.resize_image(images.load_image(init), shape)

    def finish(self, image: np.ndarray) -> np.ndarray:
        """An optimised image [h, w, 3] as output: colour preservation undone, clipped to [0, 1]."""
        if self.config.preserve_color == "luminance":
            content = images.resize_image(self.content, image.shape[:2])
            image = color.combine_luminance(image, content)
        return np.clip(image, 0.0, 1.0).astype(np.float32)


def _per_style(values, n, flag, default, broadcast=False):
    values = tuple(values)
    if not values:
        return [default] * n
    if broadcast and len(values) == 1:
        return [values[0]] * n
    if len(values) != n:
        raise NstjaxError(f"{flag} has {len(values)} values for {n} style images")
    return list(values)


def _name(value, fallback: str) -> str:
    return os.fspath(value) if isinstance(value, str | os.PathLike) else fallback


def _load_seg(value, shape):
    if isinstance(value, str | os.PathLike):
        return masks_lib.load_segmentation(value, shape)
    seg = np.asarray(value)
    if seg.shape[:2] != tuple(shape):
        raise NstjaxError(f"segmentation array has shape {seg.shape[:2]}, its image has {tuple(shape)}")
    if np.issubdtype(seg.dtype, np.floating):
        # Float colours are [0, 1], like the images (a plain cast to uint8 made every colour 0: one region).
        if not (np.all(np.isfinite(seg)) and seg.min() >= 0.0 and seg.max() <= 1.0):
            raise NstjaxError("a float segmentation array must hold RGB colours in [0, 1] (or pass uint8 0..255)")
        return np.rint(seg * 255.0).astype(np.uint8)
    if seg.size and (seg.min() < 0 or seg.max() > 255):
        raise NstjaxError("an integer segmentation array must hold RGB colours in 0..255")
    return seg.astype(np.uint8)


def _load_gray(value, shape):
    if isinstance(value, str | os.PathLike):
        return masks_lib.load_gray_mask(value, shape)
    mask = np.asarray(value, np.float32)
    if mask.shape != tuple(shape):
        raise NstjaxError(f"mask array has shape {mask.shape}, the content image has {tuple(shape)}")
    return mask


def _resize_masks(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of 0/1 masks [R, H, W] to ``shape`` (keeps them binary)."""
    if masks.shape[1:] == tuple(shape):
        return masks.astype(np.float32)
    rows = (np.arange(shape[0]) * masks.shape[1] // shape[0]).astype(int)
    cols = (np.arange(shape[1]) * masks.shape[2] // shape[1]).astype(int)
    return masks[:, rows][:, :, cols].astype(np.float32)


def _region_style_table(region, region_styles, blend):
    """For each region: [(style index, share)]; a region drawing on several styles splits by blend weight."""
    use = masks_lib.resolve_region_styles(region, masks_lib.parse_region_styles(region_styles, len(blend)))  # [S, R]
    table = []
    for r in range(use.shape[1]):
        chosen = [int(s) for s in np.flatnonzero(use[:, r])]
        total = sum(blend[s] for s in chosen)
        if total <= 0:  # every style this region draws on has blend weight 0: fall back to equal shares
            table.append([(s, 1.0 / len(chosen)) for s in chosen])
        else:
            table.append([(s, blend[s] / total) for s in chosen if blend[s] > 0])
    return table
