"""Training a Johnson et al. network for one style on a folder of content photos.

:func:`train_system` describes the run: the batches (:func:`~nstjax.train.plain`
crops of the content photos), the train state, the step, sample grids and the
export; :func:`train` (also :func:`train_fast`) runs it with
:func:`nstjax.train.run`, as every trained model is run. The jitted step
(:func:`train_step`) takes the VGG parameters and the style's Gram targets as
arguments, so nothing large is baked into the compiled program, and donates the
state.

Training is as in the paper and the PyTorch example: Adam at a constant rate
(1e-3), batches of 4 square crops (256 px), content photos resized (bilinear) so
the short side is the crop size, then centre-cropped, never flipped
(:func:`content_augment`); the style image at its own size unless
``config.style_size`` is given (the example's ``--style-size`` None).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..hub import sha256_file
from ..io.images import fit_longest_side, load_image, resize_image
from ..models.johnson import TransformerNet, init_transformer
from ..models.vgg import prepared_params
from ..models.vgg_layers import validate_layers
from ..weights import resolve_weights
from ..train import (
    Augment,
    BatchLoader,
    NetState,
    TrainProgress,
    TrainResult,
    TrainSettings,
    TrainSystem,
    apply_gradients,
    image_grid,
    init_net,
    plain,
    replicate,
    run,
    to_host,
)
from .config import FastConfig, default_style_layers, default_style_weight
from .losses import perceptual_terms, style_grams, weighted_loss

__all__ = [
    "SYSTEM",
    "FastState",
    "FastTrainResult",
    "content_augment",
    "evaluate_style_loss",
    "export_config",
    "fast_tx",
    "file_digest",
    "init_state",
    "load_style",
    "train",
    "train_fast",
    "train_step",
    "train_system",
]

SYSTEM = "fast"


@flax.struct.dataclass
class FastState:
    """The whole train state: step (int32 scalar) and the transformer's parameters with Adam's state."""

    step: jax.Array
    net: NetState


def fast_tx(config: FastConfig) -> optax.GradientTransformation:
    """Adam at the config's constant learning rate (the paper's and the example's optimiser)."""
    return optax.adam(config.learning_rate)


def init_state(config: FastConfig, seed: int) -> FastState:
    """A fresh state: seeded Flax-initialised transformer parameters, Adam's zero moments, step 0."""
    params = init_transformer(seed, output=config.output)
    return FastState(step=jnp.int32(0), net=init_net(params, fast_tx(config)))


def _model(config: FastConfig) -> TransformerNet:
    return TransformerNet(output=config.output, dtype=jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32)


def _step(state: FastState, batch: dict[str, jax.Array], vgg_params: Any, grams: dict[str, jax.Array], *,
          config: FastConfig, preprocessing: str) -> tuple[FastState, dict[str, jax.Array]]:
    contents = (batch["image"] + 1.0) * 0.5  # the loader's [-1, 1] back to [0, 1] pixels

    def loss_fn(params):
        outputs = _model(config).apply({"params": params}, contents)
        terms = perceptual_terms(
            vgg_params, outputs, contents, grams, content_layer=config.content_layer,
            style_layers=config.style_layers, pooling=config.pooling, preprocessing=preprocessing, dtype=config.dtype,
        )  # fmt: skip
        return weighted_loss(terms, config.content_weight, config.style_weight, config.tv_weight), terms

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.net.params)
    net = apply_gradients(state.net, grads, fast_tx(config))
    metrics = {"loss": loss, **{k: jnp.mean(v) for k, v in terms.items()}}
    return state.replace(step=state.step + 1, net=net), metrics


train_step = jax.jit(_step, static_argnames=("config", "preprocessing"), donate_argnums=0)
"""One optimiser step: ``(state, {"image": [B, S, S, 3] in [-1, 1]}, vgg_params, grams, config=, preprocessing=)
-> (state, {"loss", "content", "style", "tv"})``. The state is donated."""


@functools.partial(jax.jit, static_argnames=("config", "preprocessing"))
def _evaluate(params, contents, vgg_params, grams, *, config: FastConfig, preprocessing: str):
    outputs = _model(config).apply({"params": params}, contents)
    return perceptual_terms(
        vgg_params, outputs, contents, grams, content_layer=config.content_layer, style_layers=config.style_layers,
        pooling=config.pooling, preprocessing=preprocessing, dtype=config.dtype,
    )  # fmt: skip


def evaluate_style_loss(params: Any, contents: np.ndarray, vgg_params: Any, grams: dict[str, jax.Array], *,
                        config: FastConfig, preprocessing: str) -> dict[str, float]:
    """Mean unweighted loss terms of the network's outputs for ``contents`` [B, S, S, 3] in [0, 1]."""
    terms = _evaluate(params, jnp.asarray(contents), vgg_params, grams, config=config, preprocessing=preprocessing)
    return {k: float(jnp.mean(v)) for k, v in terms.items()}


_style_grams = jax.jit(style_grams, static_argnames=("style_layers", "pooling", "preprocessing", "dtype"))


@functools.partial(jax.jit, static_argnames=("config",))
def _render(params, contents, *, config: FastConfig):
    return jnp.clip(_model(config).apply({"params": params}, contents), 0.0, 1.0)


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (identifies the style image in the run's config)."""
    return sha256_file(path)


def load_style(style: str | os.PathLike | np.ndarray, side: int | None) -> np.ndarray:
    """The style image as float32 [1, h, w, 3] in [0, 1], longest side ``side`` (None: as it is)."""
    image = load_image(style) if isinstance(style, str | os.PathLike) else np.asarray(style, np.float32)
    if side is not None:
        image = resize_image(image, fit_longest_side(image.shape[:2], side))
    return image[None]


def content_augment(size: int) -> Augment:
    """The PyTorch example's content transform: ``Resize(size)`` (short side, bilinear), ``CenterCrop(size)``,
    no flip. ``Augment(size, size, resize="short_side", filter="lanczos")`` is nstjax's earlier random crop and flip."""
    return Augment(load_size=size, crop_size=size, flip=False, resize="short_side", filter="bilinear", crop="center")


def export_config(config: FastConfig, *, style_name: str, step: int, vgg: dict[str, Any]) -> dict[str, Any]:
    """What ``fast apply`` needs (and shows) about a trained network: the export's config.json."""
    return {
        "system": SYSTEM,
        "model": {"output": config.output, "pixel_scale": 255.0},
        "style": style_name,
        "size": config.size,
        "step": int(step),
        "loss": config.to_json(),
        "vgg": vgg,
    }


FastTrainResult = TrainResult
"""What :func:`train_fast` returns (the shared :class:`nstjax.train.TrainResult`): run_dir, step,
total_steps, params (the transformer's, NumPy), config (with the resolved style weight), vgg_source,
metrics; and the final ``state``."""


def train_system(
    style: str | os.PathLike,
    data: str | os.PathLike,
    *,
    config: FastConfig | None = None,
    settings: TrainSettings,
    weights: Any = None,
) -> TrainSystem:
    """The run that trains a network for ``style`` on the photos in ``data``, for :func:`nstjax.train.run`.

    Checks the inputs and loads the VGG weights (NumPy) first: a mistyped path must not
    wait for a download, and nothing is created before they are good. Arguments as for
    :func:`train`.
    """
    config = config or FastConfig()
    style = Path(style)
    style_image = load_style(style, config.style_side)
    dataset = plain(data)
    vgg = resolve_weights(weights, settings.seed)
    if config.style_weight is None:
        config = config.replace(style_weight=default_style_weight(vgg.preprocessing, vgg.source))
    if config.style_layers is None:  # the paper's loss network and layers when the weights are VGG-16's
        config = config.replace(style_layers=default_style_layers(vgg.network))
    loss_layers = [config.content_layer, *(name for name, _ in config.style_layers)]
    validate_layers(loss_layers, "loss layer", vgg.network)
    vgg_info = {"source": vgg.source, "preprocessing": vgg.preprocessing}
    run_config = {
        "system": SYSTEM,
        "style": {"file": style.name, "sha256": file_digest(style)},
        "data": str(Path(data).expanduser().resolve()),
        "loss": config.to_json(),
        "train": {"steps": settings.steps, "epochs": settings.epochs, "batch_size": settings.batch_size,
                  "seed": settings.seed},
        "vgg": vgg_info,
    }  # fmt: skip

    def make_step(mesh):
        # The loss network's kernel forms once, not in every step.
        prepared = prepared_params(vgg.params, loss_layers, dtype=config.dtype)
        vgg_params = replicate(jax.tree.map(jnp.asarray, prepared), mesh)
        grams = replicate(
            _style_grams(vgg_params, jnp.asarray(style_image), config.style_layers, pooling=config.pooling,
                         preprocessing=vgg.preprocessing, dtype=config.dtype),
            mesh,
        )  # fmt: skip
        return functools.partial(train_step, vgg_params=vgg_params, grams=grams, config=config,
                                 preprocessing=vgg.preprocessing)  # fmt: skip

    def make_sampler(mesh, loader: BatchLoader):
        samples = (loader.batch(0)["image"][:4] + 1.0) * 0.5

        def sample_fn(current: FastState) -> np.ndarray:
            out = to_host(_render(current.net.params, jnp.asarray(samples), config=config))
            style_tile = style_image[0]
            return image_grid([[style_tile, *samples], [style_tile, *out]], labels=["style", "inputs / outputs"])

        return sample_fn

    def export(current: FastState) -> tuple[Any, dict]:
        step = int(to_host(current.step))
        return current.net.params, export_config(config, style_name=style.stem, step=step, vgg=vgg_info)

    return TrainSystem(
        name=SYSTEM,
        config=config,
        run_config=run_config,
        settings=settings,
        may_change_on_resume=("train.steps", "train.epochs"),
        dataset=dataset,
        augment=content_augment(config.size),
        init_state=lambda total_steps, decay_steps: init_state(config, settings.seed),  # Adam at a constant rate
        make_step=make_step,
        make_sampler=make_sampler,
        export=export,
        vgg_source=vgg.source,
    )


def train(
    style: str | os.PathLike,
    data: str | os.PathLike,
    run_dir: str | os.PathLike,
    *,
    config: FastConfig | None = None,
    settings: TrainSettings,
    weights: Any = None,
    resume: bool = False,
    progress: Callable[[TrainProgress], None] | None = None,
    stop: Callable[[], bool] | None = None,
    mesh: Any = None,
    threads: int | None = None,
    distributed: bool | None = None,
) -> TrainResult:
    """Train (or resume) a feed-forward network for ``style`` on the photos in ``data``.

    Args:
      style: the style image file.
      data: a folder of content photos (any size; read as :func:`~nstjax.train.plain`).
      run_dir: the run directory (see :class:`~nstjax.train.RunDir`).
      config: model and loss settings (default :class:`FastConfig`); a ``style_weight``
        of None is resolved from the VGG weights (:func:`default_style_weight`).
      settings: length, batch, seed and intervals (the learning rate stays constant:
        ``decay_fraction`` is not used).
      weights: VGG-19 weights for the loss (a spec, loaded weights, or None for auto).
      resume: continue the run in ``run_dir`` (same settings; steps/epochs may grow).
      progress, stop, mesh, threads, distributed: see :func:`nstjax.train.run`.

    Returns:
      A :class:`nstjax.train.TrainResult` (:data:`FastTrainResult`).

    Raises:
      NstjaxError: bad inputs or settings, a run that does not match on resume.
      TrainingInterrupted, TrainingDiverged: from :func:`~nstjax.train.fit`.
    """
    system = train_system(style, data, config=config, settings=settings, weights=weights)
    return run(system, run_dir, resume=resume, progress=progress, stop=stop, mesh=mesh, threads=threads,
               distributed=distributed)  # fmt: skip


train_fast = train
"""The name ``nstjax fast train`` and the package export use: :func:`train`."""
