"""The Gatys optimisation engine: static spec, targets, objective and the jitted optimiser loop.

The image being optimised is float32 [B, H, W, 3], RGB, in [0, 1] pixel units
(unconstrained while optimising; clipped on output). Everything that runs per
step is inside one jitted ``while_loop`` per chunk of steps; the host only
starts chunks and reads back one loss history per chunk.

Layering (each piece usable alone and under ``vmap``):

* :func:`objective` — loss of one image batch given targets: pure, jit-able;
  :func:`evaluate` is its jitted form.
* :func:`init_carry` / :func:`run_steps` — optimiser state and a chunk of steps;
  :func:`init_carry_jit` / :func:`run_chunk` are their jitted forms (``run_chunk``
  donates the carry).

The host loop (multi-scale schedule, progress, early stop, Ctrl-C) is
:func:`nstjax.nst.run.run_stylize`; the batched one is :mod:`nstjax.nst.batch`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..losses import style as losses
from ..models import vgg
from .config import StylizeConfig

Array = jax.Array

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
    conv_impl: str = "auto"
    """How the VGG convolutions are computed: ``auto``, ``xla``, ``gemm`` or ``winograd``
    (:func:`nstjax.models.vgg.conv_plan`)."""

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
            conv_impl=self.conv_impl,
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
        conv_impl=config.conv_impl,
    )


def traced_settings(config: StylizeConfig, style_scale: float = 1.0) -> tuple[dict[str, Array], dict[str, Array]]:
    """The settings that enter the jitted loop as data: (loss weights, early-stop rule).

    Passing them as arrays rather than in :class:`EngineSpec` means changing a
    weight or the tolerance does not recompile. ``style_scale``: the weights'
    :attr:`~nstjax.weights.VGGWeights.style_weight_scale`, which makes
    ``config.style_weight`` mean the same balance on any network.
    """
    loss_weights = {
        "content": jnp.float32(config.content_weight),
        "style": jnp.float32(config.style_weight * style_scale),
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


def quick_spec(spec: EngineSpec) -> EngineSpec:
    """``spec`` with XLA's convolutions where it leaves the choice to the planner: its programs compile in
    about a second, ten times faster than with the planner's Winograd layers on CPU (docs/benchmarks.md,
    "Cold start"), and compute the same function up to float rounding. For the programs that run the
    network forward only (targets, loss reports: once per scale or per report), and for the first steps
    of a cold run (:mod:`nstjax.nst.tiered`). Where the planner takes oneDNN's convolution
    (:func:`nstjax.models.vgg.vgg_onednn`: bfloat16 on CPUs with fast bfloat16), oneDNN's for every layer
    instead: as quick to compile (no XLA convolution at all) and 3-8x faster per layer than XLA's."""
    if spec.conv_impl != "auto":
        return spec
    return dataclasses.replace(spec, conv_impl="onednn" if vgg.vgg_onednn(spec.dtype) else "xla")


@functools.partial(jax.jit, static_argnames=("spec",))
def content_targets(params: Any, content: Array, spec: EngineSpec) -> dict[str, Array]:
    """Content features ``{layer: [B, h, w, C]}`` of images [B, H, W, 3] in [0, 1]."""
    names = tuple(n for n, _ in spec.content_layers)
    return {k: v for k, v in quick_spec(spec).features(params, content, names).items()}


@functools.partial(jax.jit, static_argnames=("spec",))
def style_grams(params: Any, style: Array, masks: dict[str, Array] | None, spec: EngineSpec) -> dict[str, Array]:
    """Gram targets of one style image [1, Hs, Ws, 3].

    With ``masks`` (``{layer: [R, h, w]}`` at the style image's layer resolutions)
    one guided Gram per region: ``{layer: [R, C, C]}``; else ``{layer: [1, C, C]}``.
    """
    names = tuple(n for n, _ in spec.style_layers)
    feats = quick_spec(spec).features(params, style, names)
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


def device_params(params: Any, sharding: Any = None, spec: EngineSpec | None = None) -> Any:
    """``params`` as the optimiser takes them, put on the device (or ``sharding``) once per run.

    :func:`nstjax.models.vgg.prepared_params`: with the input-gradient kernels and, given
    the ``spec``, the Winograd forms of the layers up to its deepest that may run by
    Winograd (on CPU).
    """
    if spec is None:
        return jax.device_put(vgg.prepared_params(params), sharding)
    return jax.device_put(vgg.prepared_params(params, spec.layers, spec.conv_impl, dtype=spec.dtype), sharding)


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
        return evaluate(x, params, targets, loss_weights, spec)[0]

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


evaluate = jax.jit(objective, static_argnames=("spec",))
"""Jitted :func:`objective` (``spec`` static)."""

HISTORY_LEN = 512
"""Steps one compiled chunk can run; the host asks for fewer without recompiling."""


init_carry_jit = jax.jit(init_carry, static_argnames=("spec",))
"""Jitted :func:`init_carry` (``spec`` static)."""


@functools.partial(jax.jit, static_argnames=("spec",), donate_argnums=(0,))
def run_chunk(
    carry: Carry,
    params: Any,
    targets: Targets,
    loss_weights: Mapping[str, Array],
    n_steps: Array,
    stop: Mapping[str, Array],
    spec: EngineSpec,
) -> tuple[Carry, Array]:
    """Jitted :func:`run_steps` with a history of :data:`HISTORY_LEN`; the carry is donated.

    ``n_steps`` is traced, so one compiled program serves every chunk length up
    to :data:`HISTORY_LEN`.
    """
    return run_steps(carry, params, targets, loss_weights, n_steps, stop, spec, HISTORY_LEN)
