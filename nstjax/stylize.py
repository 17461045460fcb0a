"""The Gatys optimisation engine: targets, objective, jit-compiled optimiser loop.

The image being optimised is float32 [B, H, W, 3], RGB, in [0, 1] pixel units
(unconstrained while optimising; clipped on output). Everything that runs per
step is inside one jitted ``while_loop`` per chunk of steps; the host only
starts chunks, reads back one loss history per chunk and draws progress.

Layering (each piece usable alone and under ``vmap``):

* :func:`objective` — loss of one image batch given targets: pure, jit-able.
* :func:`init_carry` / :func:`run_steps` — optimiser state and a chunk of steps.
* :func:`run_stylize` — the host loop: multi-scale schedule, progress, intermediate
  saves, early stop, Ctrl-C and NaN handling. :func:`stylize` returns just the image.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import images as _images
from . import losses, vgg
from .config import StylizeConfig, preset
from .errors import NstjaxError

Array = jax.Array
ImageLike = str | os.PathLike | np.ndarray


# --------------------------------------------------------------------------- static spec


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """The static (compile-time) part of a problem: everything that changes the program.

    Loss weights are not here: they travel as traced scalars, so changing them
    does not recompile.
    """

    content_layers: tuple[tuple[str, float], ...]
    style_layers: tuple[tuple[str, float], ...]
    pooling: str
    padding: str
    preprocessing: str
    dtype: str
    remat: str
    optimizer: str
    learning_rate: float
    adam_average: float
    lbfgs_memory: int
    guided: bool
    """Whether style terms carry region masks (semantic or per-style masks)."""

    @property
    def layers(self) -> tuple[str, ...]:
        names = {n for n, _ in self.content_layers} | {n for n, _ in self.style_layers}
        return tuple(sorted(names, key=vgg.LAYERS.index))

    def features(self, params: Any, images: Array, layers: Sequence[str] | None = None) -> dict[str, Array]:
        return vgg.features(
            params,
            images,
            self.layers if layers is None else tuple(layers),
            pooling=self.pooling,
            padding=self.padding,
            preprocessing=self.preprocessing,
            dtype=jnp.dtype(self.dtype),
            remat=self.remat,
        )

    def optimizer_transform(self) -> optax.GradientTransformationExtraArgs:
        if self.optimizer == "lbfgs":
            return optax.lbfgs(memory_size=self.lbfgs_memory)
        return optax.adam(self.learning_rate)


def make_spec(config: StylizeConfig, preprocessing: str, *, guided: bool, remat: str | None = None) -> EngineSpec:
    """The :class:`EngineSpec` for ``config`` and weights of the given input convention."""
    return EngineSpec(
        content_layers=tuple(config.content_layers),
        style_layers=tuple(config.style_layers),
        pooling=config.pooling,
        padding=config.padding,
        preprocessing=preprocessing,
        dtype=config.dtype,
        remat=remat or ("none" if config.remat == "auto" else config.remat),
        optimizer=config.optimizer,
        learning_rate=float(config.learning_rate),
        adam_average=float(config.adam_average),
        lbfgs_memory=int(config.lbfgs_memory),
        guided=guided,
    )


def traced_settings(config: StylizeConfig) -> tuple[dict[str, Array], dict[str, Array]]:
    """The settings that enter the jitted loop as data: (loss weights, early-stop rule).

    Passing them as arrays rather than in :class:`EngineSpec` means changing a
    weight or the tolerance does not recompile.
    """
    loss_weights = {
        "content": jnp.float32(config.content_weight),
        "style": jnp.float32(config.style_weight),
        "tv": jnp.float32(config.tv_weight),
    }
    stop = {
        # A tolerance of 0 disables early stopping: no relative improvement is below -inf.
        "tolerance": jnp.float32(config.tolerance if config.tolerance > 0 else -jnp.inf),
        "patience": jnp.int32(config.patience),
    }
    return loss_weights, stop


# --------------------------------------------------------------------------- targets


class Targets(NamedTuple):
    """What the optimised image is pulled towards; arrays, passed into jit as data.

    content: ``{layer: [B, h, w, C]}`` content features.
    style: ``{layer: [T, C, C]}`` one Gram target per style term.
    masks: ``{layer: [T, h, w]}`` region of the optimised image each term applies to,
      or ``None`` when every term covers the whole image.
    term_weights: [T], summing over terms.
    """

    content: dict[str, Array]
    style: dict[str, Array]
    masks: dict[str, Array] | None
    term_weights: Array


@functools.partial(jax.jit, static_argnames=("spec",))
def content_targets(params: Any, content: Array, spec: EngineSpec) -> dict[str, Array]:
    """Content features ``{layer: [B, h, w, C]}`` of images [B, H, W, 3] in [0, 1]."""
    names = tuple(n for n, _ in spec.content_layers)
    return {k: v for k, v in spec.features(params, content, names).items()}


@functools.partial(jax.jit, static_argnames=("spec",))
def style_grams(params: Any, style: Array, masks: dict[str, Array] | None, spec: EngineSpec) -> dict[str, Array]:
    """Gram targets of one style image [1, Hs, Ws, 3].

    With ``masks`` (``{layer: [R, h, w]}`` at the style image's layer resolutions)
    one guided Gram per region: ``{layer: [R, C, C]}``; else ``{layer: [1, C, C]}``.
    """
    names = tuple(n for n, _ in spec.style_layers)
    feats = spec.features(params, style, names)
    if masks is None:
        return {n: losses.gram_matrix(feats[n]) for n in names}
    return {n: jax.vmap(lambda m, f=feats[n]: losses.gram_matrix(f, m[None])[0])(masks[n]) for n in names}


def plain_targets(params: Any, content: Array, style: Array, spec: EngineSpec) -> Targets:
    """Targets of one style image [1, Hs, Ws, 3] for contents [B, H, W, 3]: no masks, one term."""
    return Targets(
        content_targets(params, content, spec),
        style_grams(params, style, None, spec),
        None,
        jnp.ones((1,), jnp.float32),
    )


def device_params(params: Any, sharding: Any = None) -> Any:
    """``params`` as the optimiser takes them: with :func:`nstjax.vgg.with_transposed_kernels`'
    input-gradient kernels, put on the device (or ``sharding``) once per run."""
    return jax.device_put(vgg.with_transposed_kernels(params), sharding)


# --------------------------------------------------------------------------- objective


def objective(
    image: Array, params: Any, targets: Targets, loss_weights: Mapping[str, Array], spec: EngineSpec
) -> tuple[Array, dict[str, Array]]:
    """Weighted total loss of images [B, H, W, 3] in [0, 1] and its terms.

    Returns:
      (scalar: total summed over the batch, ``{"content", "style", "tv": [B]}`` weighted terms).
    """
    feats = spec.features(params, image)
    content_w = dict(spec.content_layers)
    content = losses.weighted_mean(
        {n: losses.content_loss(feats[n], targets.content[n]) for n in content_w}, content_w
    )
    style = losses.style_loss(
        feats, targets.style, dict(spec.style_layers), targets.masks, targets.term_weights
    )
    tv = losses.total_variation_loss(image)
    terms = {
        "content": loss_weights["content"] * content,
        "style": loss_weights["style"] * style,
        "tv": loss_weights["tv"] * tv,
    }
    return jnp.sum(terms["content"] + terms["style"] + terms["tv"]), terms


# --------------------------------------------------------------------------- optimiser loop


class Carry(NamedTuple):
    """Optimiser loop state; every field is an array so the whole carry can be vmapped."""

    image: Array
    opt_state: Any
    average: Array
    """EMA of Adam iterates (equals ``image`` when averaging is off)."""
    best_image: Array
    best_loss: Array
    stall: Array
    """Consecutive steps whose relative improvement of the best loss was below tolerance."""
    step: Array
    evaluations: Array
    nonfinite: Array


def init_carry(image: Array, spec: EngineSpec) -> Carry:
    """Fresh optimiser state for ``image`` [B, H, W, 3] (float32)."""
    image = image.astype(jnp.float32)
    # optax starts some state as weakly typed Python scalars that its first update returns
    # strongly typed; fixing the types here keeps the carry's type stable, so the chunk
    # compiles once instead of twice.
    opt_state = jax.tree.map(
        lambda x: jax.lax.convert_element_type(x, jnp.asarray(x).dtype), spec.optimizer_transform().init(image)
    )
    return Carry(
        image=image,
        opt_state=opt_state,
        average=image,
        best_image=image,
        best_loss=jnp.array(jnp.inf, jnp.float32),
        stall=jnp.array(0, jnp.int32),
        step=jnp.array(0, jnp.int32),
        evaluations=jnp.array(0, jnp.int32),
        nonfinite=jnp.array(False),
    )


def run_steps(
    carry: Carry,
    params: Any,
    targets: Targets,
    loss_weights: Mapping[str, Array],
    n_steps: Array,
    stop: Mapping[str, Array],
    spec: EngineSpec,
    history_len: int,
) -> tuple[Carry, Array]:
    """Up to ``n_steps`` (traced, ≤ ``history_len``) optimiser steps inside one ``while_loop``.

    Stops early on a non-finite loss (the best finite image is kept) or when the
    best loss has improved by less than ``stop["tolerance"]`` (relative) for
    ``stop["patience"]`` consecutive steps.

    Returns:
      (new carry, float32 [history_len] loss of each step's starting image, NaN
      where no step ran).
    """
    transform = spec.optimizer_transform()

    def value_fn(x):
        # A nested jit: L-BFGS calls the objective from several places (first value, line-search
        # steps); tracing it once instead of at each call site halves the time to compile.
        return _objective_jit(x, params, targets, loss_weights, spec)[0]

    def lbfgs_step(c: Carry):
        value, grad = optax.value_and_grad_from_state(value_fn)(c.image, state=c.opt_state)
        updates, opt_state = transform.update(
            grad, c.opt_state, c.image, value=value, grad=grad, value_fn=value_fn
        )
        evals = optax.tree_utils.tree_get(opt_state, "num_linesearch_steps")
        # The very first value comes from a fresh evaluation; later ones from the line search.
        evals = evals + jnp.where(c.step == 0, 1, 0)
        return value, optax.apply_updates(c.image, updates), opt_state, evals

    def adam_step(c: Carry):
        value, grad = jax.value_and_grad(value_fn)(c.image)
        updates, opt_state = transform.update(grad, c.opt_state, c.image)
        return value, optax.apply_updates(c.image, updates), opt_state, jnp.array(1, jnp.int32)

    step_fn = lbfgs_step if spec.optimizer == "lbfgs" else adam_step

    def cond(state):
        i, c, _ = state
        return (i < n_steps) & ~c.nonfinite & (c.stall < stop["patience"])

    def body(state):
        i, c, history = state
        value, image, opt_state, evals = step_fn(c)
        finite = jnp.isfinite(value)
        # The loss is that of c.image (for Adam's averaged path: of the average, tracked below).
        candidate = c.average if spec.adam_average > 0 else c.image
        improved = finite & (value < c.best_loss)
        best_loss = jnp.where(improved, value, c.best_loss)
        relative = (c.best_loss - best_loss) / jnp.maximum(jnp.abs(c.best_loss), 1e-30)
        small = jnp.isfinite(c.best_loss) & (relative < stop["tolerance"])
        average = (
            spec.adam_average * c.average + (1.0 - spec.adam_average) * image
            if spec.adam_average > 0
            else image
        )
        new = Carry(
            image=jnp.where(finite, image, c.image),
            opt_state=jax.tree.map(lambda a, b: jnp.where(finite, a, b), opt_state, c.opt_state),
            average=jnp.where(finite, average, c.average),
            best_image=jnp.where(improved, candidate, c.best_image),
            best_loss=best_loss,
            stall=jnp.where(small, c.stall + 1, 0).astype(jnp.int32),
            step=c.step + 1,
            evaluations=c.evaluations + evals.astype(jnp.int32),
            nonfinite=~finite,
        )
        return i + 1, new, history.at[i].set(value)

    history = jnp.full((history_len,), jnp.nan, jnp.float32)
    _, carry, history = jax.lax.while_loop(cond, body, (jnp.array(0, jnp.int32), carry, history))
    return carry, history


_objective_jit = jax.jit(objective, static_argnames=("spec",))

HISTORY_LEN = 512
"""Steps one compiled chunk can run; the host asks for fewer without recompiling."""


@functools.partial(jax.jit, static_argnames=("spec",))
def _init_carry_jit(image: Array, spec: EngineSpec) -> Carry:
    return init_carry(image, spec)


@functools.partial(jax.jit, static_argnames=("spec",), donate_argnums=(0,))
def _run_chunk(carry, params, targets, loss_weights, n_steps, stop, spec):
    return run_steps(carry, params, targets, loss_weights, n_steps, stop, spec, HISTORY_LEN)


_evaluate = _objective_jit


# --------------------------------------------------------------------------- host side


@dataclasses.dataclass
class Progress:
    """What a progress callback sees after each chunk of steps."""

    scale: int
    scales: int
    size: tuple[int, int]
    step: int
    steps: int
    evaluations: int
    loss: float
    terms: dict[str, float]
    elapsed: float
    evals_per_second: float
    best_image: Callable[[], np.ndarray]
    """Fetches the best image so far as [H, W, 3] float32 in [0, 1] (a device→host copy)."""


@dataclasses.dataclass
class StylizeResult:
    """The outcome of :func:`run_stylize`.

    image: [H, W, 3] float32 RGB in [0, 1], the best image found.
    stopped: ``"steps"`` (ran all steps), ``"converged"`` (early stop),
      ``"nonfinite"`` (loss became NaN/inf; image is the last finite best) or
      ``"interrupted"`` (Ctrl-C).
    """

    image: np.ndarray
    loss: float
    terms: dict[str, float]
    steps: int
    evaluations: int
    stopped: str
    history: list[np.ndarray]
    """Per scale: loss at each step, float32 [steps]."""
    seconds: float
    config: StylizeConfig
    weights_source: str


class StylizeInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_stylize`; ``.result`` holds the best image so far."""

    def __init__(self, result: StylizeResult):
        super().__init__("interrupted")
        self.result = result


_COMPILATION_CACHE_READY = False


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> None:
    """Turn on JAX's persistent compilation cache (default: ``<nstjax cache>/jax``).

    A second run with the same shapes then skips most of the compile time. Set
    ``NSTJAX_COMPILATION_CACHE=0`` to leave JAX's settings alone.
    """
    global _COMPILATION_CACHE_READY
    if _COMPILATION_CACHE_READY or os.environ.get("NSTJAX_COMPILATION_CACHE", "1") == "0":
        return
    if jax.config.jax_compilation_cache_dir is None:
        from .weights import cache_dir

        path = os.fspath(directory or cache_dir() / "jax")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:
            return  # an unwritable cache only costs compile time
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    _COMPILATION_CACHE_READY = True


def _as_image(value: ImageLike, what: str) -> np.ndarray:
    if isinstance(value, str | os.PathLike):
        return _images.load_image(value)
    array = np.asarray(value, dtype=np.float32)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise NstjaxError(f"{what} must be an [H, W, 3] RGB array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise NstjaxError(f"{what} contains NaN or infinite values")
    return array


def _resolve_weights(weights: Any, seed: int):
    if hasattr(weights, "params") and hasattr(weights, "preprocessing"):
        return weights  # a VGGWeights (or anything shaped like one)
    from .weights import load_weights

    return load_weights(weights, seed=seed)


class _Problem:
    """Images, masks and settings prepared once; builds the per-scale targets."""

    def __init__(
        self, content, styles, config, weights, *, content_mask=None, style_masks=None, region_styles=None,
        allow_unmatched=False,
    ):  # fmt: skip
        from . import masks as _masks

        self.config = config
        self.weights = weights
        self.content = _as_image(content, "content image")
        styles = [styles] if isinstance(styles, str | os.PathLike | np.ndarray) else list(styles)
        if not styles:
            raise NstjaxError("at least one style image is needed")
        self.styles = [_as_image(s, f"style image {i + 1}") for i, s in enumerate(styles)]
        n = len(self.styles)
        self.blend = _per_style(config.style_blend, n, "--style-blend", default=1.0)
        total = sum(self.blend)
        self.blend = [b / total for b in self.blend]
        self.style_scale = _per_style(config.style_scale, n, "--style-scale", default=1.0, broadcast=True)

        if config.preserve_color == "histogram":
            self.styles = [_images.match_color(s, self.content, method=config.color_match) for s in self.styles]
        if config.preserve_color == "luminance":
            content_y = _images.luminance(self.content)
            # The network sees grey images: Y replicated to 3 channels (Y of (y, y, y) is y).
            self.styles = [
                np.repeat(_images.match_luminance(_images.luminance(s), content_y), 3, axis=-1)
                for s in self.styles
            ]
            self.net_content = _images.luminance_image(self.content)
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
            style_masks = [style_masks] if isinstance(style_masks, str | os.PathLike | np.ndarray) else list(style_masks)
            if len(style_masks) != n:
                raise NstjaxError(f"{len(style_masks)} style masks given for {n} style images")
            content_seg = _load_seg(content_mask, self.content.shape[:2], _masks)
            style_segs = [_load_seg(m, s.shape[:2], _masks) for m, s in zip(style_masks, self.styles)]
            self.region = _masks.match_regions(
                content_seg,
                style_segs,
                allow_unmatched=allow_unmatched,
                content_name=_name(content_mask, "content mask"),
                style_names=[_name(m, f"style mask {i + 1}") for i, m in enumerate(style_masks)],
            )
            self.region_styles = _region_style_table(self.region, region_styles, self.blend, _masks)
            self.mode = "semantic"
        elif style_masks is not None:
            style_masks = [style_masks] if isinstance(style_masks, str | os.PathLike | np.ndarray) else list(style_masks)
            if len(style_masks) != n:
                raise NstjaxError(f"{len(style_masks)} style masks given for {n} style images")
            self.gray_masks = [_load_gray(m, self.content.shape[:2], _masks) for m in style_masks]
            self.mode = "per-style"

    @property
    def guided(self) -> bool:
        return self.mode != "plain"

    def shape_at(self, longest: int) -> tuple[int, int]:
        return _images.fit_longest_side(self.content.shape[:2], longest)

    def targets(self, shape: tuple[int, int], spec: EngineSpec) -> tuple[Targets, np.ndarray]:
        """Targets for an output of ``shape``, and the content image at that shape."""
        from . import masks as _masks

        params = self.weights.params
        content = _images.resize_image(self.net_content, shape)
        content_feats = content_targets(params, jnp.asarray(content)[None], spec)
        style_names = [n for n, _ in spec.style_layers]
        styles = []
        for style, scale in zip(self.styles, self.style_scale):
            longest = max(1, round(max(shape) * scale))
            style_shape = _images.fit_longest_side(style.shape[:2], longest)
            self._check_size(style_shape, "style image")
            styles.append(_images.resize_image(style, style_shape))

        if self.mode == "plain":
            grams = [style_grams(params, jnp.asarray(s)[None], None, spec) for s in styles]
            blended = {n: sum(b * g[n] for b, g in zip(self.blend, grams)) for n in style_names}
            return Targets(content_feats, blended, None, jnp.ones((1,), jnp.float32)), content

        if self.mode == "per-style":
            grams = [style_grams(params, jnp.asarray(s)[None], None, spec) for s in styles]
            masks = np.stack([_images.resize_image(m[..., None].repeat(3, -1), shape)[..., 0] for m in self.gray_masks])
            masks = np.clip(masks, 0.0, 1.0)
            # Each style's term weighs by the share of the picture its mask covers (times its blend weight).
            area = masks.reshape(len(masks), -1).mean(axis=1)
            weights = np.asarray(self.blend) * area * len(self.blend)
            style_t = {n: jnp.concatenate([g[n] for g in grams]) for n in style_names}
            layer_m = _masks.layer_masks(masks, style_names)
            return Targets(content_feats, style_t, layer_m, jnp.asarray(weights, jnp.float32)), content

        # Semantic: one term per (region, style that region draws from).
        region = self.region
        content_masks = _resize_masks(region.content_masks, shape)
        area = content_masks.reshape(len(content_masks), -1).mean(axis=1)
        per_style_grams = []
        for s_index, style in enumerate(styles):
            s_masks = _resize_masks(region.style_masks[s_index], style.shape[:2])
            per_style_grams.append(
                style_grams(params, jnp.asarray(style)[None], _masks.layer_masks(s_masks, style_names), spec)
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
        layer_m = _masks.layer_masks(np.stack(masks), style_names)
        return Targets(content_feats, style_t, layer_m, jnp.asarray(weights, jnp.float32)), content

    def _check_size(self, shape, what):
        names = [n for n, _ in self.config.style_layers] + [n for n, _ in self.config.content_layers]
        need = vgg.min_input_size(names, self.config.padding)
        if min(shape) < need:
            raise NstjaxError(
                f"{what} of {shape[1]}x{shape[0]} px is too small for the deepest layer; "
                f"each side needs at least {need} px (raise --size or --style-scale)"
            )


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


def _load_seg(value, shape, _masks):
    if isinstance(value, str | os.PathLike):
        return _masks.load_segmentation(value, shape)
    seg = np.asarray(value)
    if seg.shape[:2] != tuple(shape):
        raise NstjaxError(f"segmentation array has shape {seg.shape[:2]}, its image has {tuple(shape)}")
    return seg.astype(np.uint8)


def _load_gray(value, shape, _masks):
    if isinstance(value, str | os.PathLike):
        return _masks.load_gray_mask(value, shape)
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


def _region_style_table(region, region_styles, blend, _masks):
    """For each region: [(style index, share)]; a region drawing on several styles splits by blend weight."""
    use = _masks.resolve_region_styles(region, _masks.parse_region_styles(region_styles, len(blend)))  # [S, R]
    table = []
    for r in range(use.shape[1]):
        chosen = [int(s) for s in np.flatnonzero(use[:, r])]
        total = sum(blend[s] for s in chosen)
        if total <= 0:  # every style this region draws on has blend weight 0: fall back to equal shares
            table.append([(s, 1.0 / len(chosen)) for s in chosen])
        else:
            table.append([(s, blend[s] / total) for s in chosen if blend[s] > 0])
    return table


def _initial_image(config: StylizeConfig, problem: _Problem, shape: tuple[int, int]) -> np.ndarray:
    init = config.init
    if init == "content":
        return _images.resize_image(problem.net_content, shape)
    if init == "style":
        return _images.resize_image(problem.styles[0], shape)
    if init == "grey":
        return np.full((*shape, 3), 0.5, np.float32)
    if init == "noise":
        # Uniform noise around mid-grey, seeded: jax.random is identical across runs on a device.
        noise = jax.random.uniform(jax.random.key(config.seed), (*shape, 3), minval=0.0, maxval=1.0)
        return np.asarray(noise, np.float32)
    return _images.resize_image(_images.load_image(init), shape)


def _upsample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.asarray(jax.image.resize(jnp.asarray(image), (*shape, 3), method="bicubic"), np.float32)


def _finish(image: np.ndarray, problem: _Problem) -> np.ndarray:
    """Undo the colour-preservation transform and clip to [0, 1]."""
    if problem.config.preserve_color == "luminance":
        content = _images.resize_image(problem.content, image.shape[:2])
        image = _images.combine_luminance(image, content)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def run_stylize(
    content: ImageLike,
    styles: ImageLike | Sequence[ImageLike],
    *,
    weights: Any = None,
    config: StylizeConfig | None = None,
    content_mask: ImageLike | None = None,
    style_masks: ImageLike | Sequence[ImageLike] | None = None,
    region_styles: str | None = None,
    allow_unmatched: bool = False,
    progress: Callable[[Progress], None] | None = None,
    **overrides: Any,
) -> StylizeResult:
    """Stylise ``content`` with ``styles``; the full result with losses and history.

    Args:
      content: path or float [H, W, 3] RGB array in [0, 1].
      styles: one or several paths/arrays.
      weights: :class:`~nstjax.weights.VGGWeights`, a spec for
        :func:`~nstjax.weights.load_weights` (path, source name, ``"random"``,
        ``"auto"``) or ``None`` (``$NSTJAX_WEIGHTS`` or ``auto``).
      config: settings; default the ``gatys`` preset. ``overrides`` replace fields.
      content_mask, style_masks: colour-coded segmentations (content + one per
        style) for semantic control, or ``style_masks`` alone: one grayscale mask
        of the content per style.
      region_styles: with several styles, which style each region takes, e.g.
        ``"#87ceeb:0,#228b22:1"``. A region drawing on several styles splits its
        weight by ``style_blend``.
      allow_unmatched: content regions whose colour is in no style segmentation
        get no style loss (reported as a warning) instead of an error.
      progress: called after every chunk of steps with a :class:`Progress`.

    Raises:
      NstjaxError: bad input or settings.
      StylizeInterrupted: on Ctrl-C, carrying the best result so far.
    """
    config = (config or preset(None)).replace(**overrides) if overrides else (config or preset(None))
    enable_compilation_cache()
    problem = _Problem(
        content,
        styles,
        config,
        None,
        content_mask=content_mask,
        style_masks=style_masks,
        region_styles=region_styles,
        allow_unmatched=allow_unmatched,
    )
    schedule = config.schedule
    for longest, _ in schedule:
        problem._check_size(problem.shape_at(longest), "output")
    # Weights only after the inputs passed their checks: a mistyped path must not wait for a download.
    problem.weights = weights = _resolve_weights(weights, config.seed)

    from .memory import choose_remat

    final_shape = problem.shape_at(config.size)
    remat = choose_remat(final_shape, config)
    spec = make_spec(config, weights.preprocessing, guided=problem.guided, remat=remat)
    loss_weights, stop = traced_settings(config)
    params = device_params(weights.params)

    start = time.perf_counter()
    histories: list[np.ndarray] = []
    total_steps = total_evals = 0
    stopped = "steps"
    image = None
    carry = None
    loss, terms = math.nan, {}

    def result_now(best: np.ndarray) -> StylizeResult:
        return StylizeResult(
            image=_finish(best, problem),
            loss=loss,
            terms=terms,
            steps=total_steps,
            evaluations=total_evals,
            stopped=stopped,
            history=histories,
            seconds=time.perf_counter() - start,
            config=config,
            weights_source=weights.source,
        )

    try:
        for scale_index, (longest, steps) in enumerate(schedule):
            shape = problem.shape_at(longest)
            targets, _ = problem.targets(shape, spec)
            init = _initial_image(config, problem, shape) if image is None else _upsample(image, shape)
            carry = _init_carry_jit(jnp.asarray(init)[None], spec)
            history = []
            done = 0
            stopped = "steps"
            chunk = 1  # the first chunk also pays for compilation; then aim for ~1 s per chunk
            scale_start = time.perf_counter()
            while done < steps:
                n = min(chunk, steps - done, HISTORY_LEN)
                if config.save_every:
                    n = min(n, config.save_every - done % config.save_every)
                t0 = time.perf_counter()
                carry, hist = _run_chunk(carry, params, targets, loss_weights, jnp.int32(n), stop, spec)
                hist = np.asarray(hist)
                ran = int(carry.step) - done
                history.append(hist[:ran])
                done += ran
                dt = time.perf_counter() - t0
                if ran and dt > 0:
                    chunk = max(1, min(HISTORY_LEN, int(ran / dt)))
                loss = float(carry.best_loss)
                if progress is not None:
                    _, t = _evaluate(carry.best_image, params, targets, loss_weights, spec)
                    terms = {k: float(v[0]) for k, v in t.items()}
                    progress(
                        Progress(
                            scale=scale_index + 1,
                            scales=len(schedule),
                            size=shape,
                            step=done,
                            steps=steps,
                            evaluations=total_evals + int(carry.evaluations),
                            loss=loss,
                            terms=terms,
                            elapsed=time.perf_counter() - scale_start,
                            evals_per_second=int(carry.evaluations) / max(time.perf_counter() - scale_start, 1e-9),
                            best_image=lambda c=carry: _finish(np.asarray(c.best_image[0]), problem),
                        )
                    )
                if bool(carry.nonfinite):
                    stopped = "nonfinite"
                    break
                if ran < n:  # the loop left early: converged at this scale
                    stopped = "converged"
                    break
            histories.append(np.concatenate(history) if history else np.zeros((0,), np.float32))
            total_steps += int(carry.step)
            total_evals += int(carry.evaluations)
            image = np.asarray(carry.best_image[0])
            carry = None  # counted: an interrupt before the next scale starts keeps `image`
            if stopped == "nonfinite":
                break
    except KeyboardInterrupt:
        stopped = "interrupted"
        best = image
        if carry is not None and np.isfinite(float(carry.best_loss)):
            best = np.asarray(carry.best_image[0])
            total_steps += int(carry.step)
            total_evals += int(carry.evaluations)
        if best is None:
            raise  # nothing ran yet: no image to keep
        raise StylizeInterrupted(result_now(best)) from None

    final_targets, _ = problem.targets(image.shape[:2], spec)
    total, t = _evaluate(jnp.asarray(image)[None], params, final_targets, loss_weights, spec)
    loss, terms = float(total), {k: float(v[0]) for k, v in t.items()}
    return result_now(image)


def stylize(
    content: ImageLike,
    styles: ImageLike | Sequence[ImageLike],
    *,
    weights: Any = None,
    config: StylizeConfig | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Stylise ``content`` with ``styles`` and return the image.

    Takes the arguments of :func:`run_stylize`; returns float32 [H, W, 3], RGB in
    [0, 1], with the longest side ``config.size``.
    """
    return run_stylize(content, styles, weights=weights, config=config, **kwargs).image


def print_progress(stream=None) -> Callable[[Progress], None]:
    """A progress callback drawing one updating line: scale, step, loss terms, evals/s, ETA."""
    stream = stream or sys.stderr

    def draw(p: Progress) -> None:
        rate = p.step / max(p.elapsed, 1e-9)
        eta = (p.steps - p.step) / rate if rate > 0 else float("inf")
        scale = f"scale {p.scale}/{p.scales} {p.size[1]}x{p.size[0]} " if p.scales > 1 else ""
        terms = " ".join(f"{k} {v:.4g}" for k, v in p.terms.items())
        line = (
            f"\r{scale}step {p.step}/{p.steps} loss {p.loss:.5g} ({terms}) "
            f"{p.evals_per_second:.1f} evals/s ETA {_duration(eta)}"
        )
        stream.write(line.ljust(100))
        if p.step >= p.steps and p.scale == p.scales:
            stream.write("\n")
        stream.flush()

    return draw


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def snapshot_path(output: str | os.PathLike, step: int, scale: int | None = None) -> Path:
    """Where ``--save-every`` writes: ``out_step0050.png`` (``out_s1_step0050.png`` per scale)."""
    output = Path(output)
    tag = f"_s{scale}" if scale is not None else ""
    return output.with_name(f"{output.stem}{tag}_step{step:04d}{output.suffix}")


def stylize_to_file(
    content: ImageLike,
    styles: ImageLike | Sequence[ImageLike],
    output: str | os.PathLike,
    *,
    config: StylizeConfig | None = None,
    weights: Any = None,
    quality: int = 95,
    quiet: bool = False,
    stream=None,
    **kwargs: Any,
) -> int:
    """Run :func:`run_stylize` and write the image to ``output``; the job behind ``nstjax stylize``.

    Writes are atomic. On Ctrl-C the best image so far is written before
    returning 130; if the loss becomes NaN/inf the last finite image is written
    and 1 is returned. Returns 0 on success. ``kwargs`` go to :func:`run_stylize`.
    """
    output = _images.check_output_path(output)
    stream = stream or sys.stderr
    config = config or preset(None)
    draw = None if quiet else print_progress(stream)
    multi = len(config.schedule) > 1

    def on_progress(p: Progress) -> None:
        if draw is not None:
            draw(p)
        if config.save_every and p.step % config.save_every == 0 and p.step < p.steps:
            _images.save_image(snapshot_path(output, p.step, p.scale if multi else None), p.best_image(), quality=quality)

    callback = on_progress if (draw is not None or config.save_every) else None
    try:
        result = run_stylize(content, styles, weights=weights, config=config, progress=callback, **kwargs)
    except StylizeInterrupted as interrupted:
        _images.save_image(output, interrupted.result.image, quality=quality)
        stream.write(f"\ninterrupted after {interrupted.result.steps} steps: saved the best image so far to {output}\n")
        return 130
    _images.save_image(output, result.image, quality=quality)
    if result.stopped == "nonfinite":
        stream.write(
            f"\nerror: the loss became NaN or infinite after {result.steps} steps (try smaller weights or "
            f"learning rate); saved the last finite image to {output}\n"
        )
        return 1
    h, w = result.image.shape[:2]
    terms = ", ".join(f"{k} {v:.4g}" for k, v in result.terms.items())
    print(
        f"wrote {output} ({w}x{h}) in {result.seconds:.1f} s: loss {result.loss:.5g} ({terms}); "
        f"{result.steps} steps, {result.evaluations} evaluations, stopped: {result.stopped}, "
        f"weights: {result.weights_source}"
    )
    return 0
