"""Training an AdaIN decoder on a folder of content photos and a folder of style images.

:func:`train_system` describes the run and :func:`train` (also :func:`train_adain`)
runs it with :func:`nstjax.train.run`, as every trained model is run. The two
folders are paired at random (:func:`~nstjax.train.unpaired`: every step draws a
batch of contents and an independent batch of styles), both squashed to
``load_size x load_size`` (bilinear) and cropped at random to ``size``, never
flipped: the reference's ``Resize((512, 512))``, ``RandomCrop(256)``
(:func:`adain_augment`). The encoder (nstjax's VGG-19
to relu4_1) stays frozen; only the decoder learns. By default the encoder is the
loaded weights normalised as Gatys et al. normalised theirs (:func:`encoder_params`;
the reference's ``vgg_normalised.pth`` is such a network). The export records which VGG
weights the decoder was trained on (source, convention, a digest of the arrays and the
encoder kind), since it only works with those.
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

from ..models.adain import STYLE_LAYERS, init_decoder
from ..models.vgg import prepared_params
from ..models.vgg_normalise import CALIBRATION_VERSION, normalised_params, params_digest
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
    replicate,
    run,
    to_host,
    unpaired,
)
from .config import AdaINConfig
from .losses import adain_terms

__all__ = [
    "SYSTEM",
    "AdaINState",
    "AdaINTrainResult",
    "adain_augment",
    "adain_tx",
    "encoder_params",
    "init_state",
    "train",
    "train_adain",
    "train_step",
    "train_system",
    "vgg_digest",
    "vgg_record",
]

SYSTEM = "adain"


@flax.struct.dataclass
class AdaINState:
    """The whole train state: step (int32 scalar) and the decoder's parameters with Adam's state."""

    step: jax.Array
    net: NetState


def adain_tx(config: AdaINConfig) -> optax.GradientTransformation:
    """Adam with the reference's decay, ``lr / (1 + lr_decay · step)``."""
    lr, decay = config.learning_rate, config.lr_decay
    return optax.adam(lambda count: lr / (1.0 + decay * count))


def init_state(config: AdaINConfig, seed: int) -> AdaINState:
    return AdaINState(step=jnp.int32(0), net=init_net(init_decoder(seed), adain_tx(config)))


def _step(state: AdaINState, batch: dict[str, jax.Array], vgg_params: Any, *, config: AdaINConfig,
          preprocessing: str) -> tuple[AdaINState, dict[str, jax.Array]]:
    contents = (batch["a"] + 1.0) * 0.5  # the loader's [-1, 1] back to [0, 1] pixels
    styles = (batch["b"] + 1.0) * 0.5

    def loss_fn(params):
        terms, _ = adain_terms(params, vgg_params, contents, styles, preprocessing=preprocessing, dtype=config.dtype)
        loss = jnp.mean(config.content_weight * terms["content"] + config.style_weight * terms["style"])
        return loss, terms

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.net.params)
    net = apply_gradients(state.net, grads, adain_tx(config))
    return state.replace(step=state.step + 1, net=net), {"loss": loss, **{k: jnp.mean(v) for k, v in terms.items()}}


train_step = jax.jit(_step, static_argnames=("config", "preprocessing"), donate_argnums=0)
"""One step: ``(state, {"a": contents, "b": styles} in [-1, 1], vgg_params, config=, preprocessing=)
-> (state, {"loss", "content", "style"})``. The state is donated."""


@functools.partial(jax.jit, static_argnames=("preprocessing", "dtype"))
def _samples(params, vgg_params, contents, styles, *, preprocessing: str, dtype: str):
    _, images = adain_terms(params, vgg_params, contents, styles, preprocessing=preprocessing, dtype=dtype)
    return jnp.clip(images, 0.0, 1.0)


def vgg_digest(params: Any) -> str:
    """SHA-256 (first 16 hex digits) of VGG parameters: the kernels and biases in network order (16 for
    VGG-19, 13 for VGG-16): :func:`nstjax.models.vgg_normalise.params_digest`."""
    return params_digest(params)


def encoder_params(weights: Any, encoder: str = "normalised", *, cache: bool = True) -> Any:
    """The encoder's VGG parameters (NumPy) for loaded ``weights`` and ``encoder``
    (:data:`~nstjax.adain.config.ENCODERS`).

    ``"normalised"``: :func:`nstjax.models.vgg_normalise.normalised_params` (cached by the weights'
    digest), except for Gatys et al.'s published normalised VGG-19, used as it is. ``"raw"``: the weights
    as loaded.
    """
    if encoder == "raw" or weights.is_normalised:
        return weights.params
    return normalised_params(weights.params, preprocessing=weights.preprocessing, cache=cache)


def vgg_record(weights: Any, seed: int, encoder: str = "normalised") -> dict[str, Any]:
    """What the export says about the encoder: source, convention, digest of the weights as loaded,
    ``encoder`` (and the calibration version when normalised here, the seed for random weights).
    An export without ``encoder`` (before issue 28) was trained on the raw weights."""
    record = {"source": weights.source, "preprocessing": weights.preprocessing, "digest": vgg_digest(weights.params),
              "encoder": encoder}  # fmt: skip
    if encoder == "normalised" and not weights.is_normalised:
        record["calibration"] = CALIBRATION_VERSION
    if weights.source == "random":
        record["seed"] = int(weights.metadata.get("seed", seed))
    return record


AdaINTrainResult = TrainResult
"""What :func:`train_adain` returns (the shared :class:`nstjax.train.TrainResult`): run_dir, step,
total_steps, params (the decoder's, NumPy), config, vgg_source, metrics; and the final ``state``."""


def adain_augment(config: AdaINConfig) -> Augment:
    """The reference's ``train_transform``: squash to ``load_size`` square (bilinear), random ``size`` crop, no flip."""
    return Augment(load_size=config.load_size, crop_size=config.size, flip=False, resize="squash", filter="bilinear")


def train_system(
    contents: str | os.PathLike,
    styles: str | os.PathLike,
    *,
    config: AdaINConfig | None = None,
    settings: TrainSettings,
    weights: Any = None,
) -> TrainSystem:
    """The run that trains a decoder on ``contents`` and ``styles``, for :func:`nstjax.train.run`.

    Checks both folders before the VGG weights are loaded (NumPy). Arguments as for :func:`train`.
    """
    config = config or AdaINConfig()
    dataset = unpaired(contents, styles)
    vgg = resolve_weights(weights, settings.seed)
    record = vgg_record(vgg, settings.seed, config.encoder)
    run_config = {
        "system": SYSTEM,
        "data": {"contents": str(Path(contents).expanduser().resolve()),
                 "styles": str(Path(styles).expanduser().resolve())},
        "model": config.to_json(),
        "train": {"steps": settings.steps, "epochs": settings.epochs, "batch_size": settings.batch_size,
                  "seed": settings.seed},
        "vgg": record,
    }  # fmt: skip

    @functools.cache
    def vgg_on(mesh) -> Any:  # one copy on the mesh for the step and the samples
        # Normalised here, not above: the calibration pass is a JAX computation, and train.run must
        # start jax.distributed (several hosts) before any.
        # With its kernel forms, made once here rather than in every step.
        prepared = prepared_params(encoder_params(vgg, config.encoder), STYLE_LAYERS, dtype=config.dtype)
        return replicate(jax.tree.map(jnp.asarray, prepared), mesh)

    def make_step(mesh):
        return functools.partial(train_step, vgg_params=vgg_on(mesh), config=config, preprocessing=vgg.preprocessing)

    def make_sampler(mesh, loader: BatchLoader):
        first = loader.batch(0)
        sample_c, sample_s = ((first["a"][:4] + 1) * 0.5), ((first["b"][:4] + 1) * 0.5)
        vgg_params = vgg_on(mesh)

        def sample_fn(current: AdaINState) -> np.ndarray:
            out = to_host(_samples(current.net.params, vgg_params, jnp.asarray(sample_c), jnp.asarray(sample_s),
                                   preprocessing=vgg.preprocessing, dtype=config.dtype))
            return image_grid([list(sample_c), list(sample_s), list(out)], labels=["contents / styles / outputs"])

        return sample_fn

    def export(current: AdaINState) -> tuple[Any, dict]:
        step = int(to_host(current.step))
        return current.net.params, {"system": SYSTEM, "vgg": record, "size": config.size, "step": step}

    return TrainSystem(
        name=SYSTEM,
        config=config,
        run_config=run_config,
        settings=settings,
        may_change_on_resume=("train.steps", "train.epochs"),
        dataset=dataset,
        augment=adain_augment(config),
        init_state=lambda total_steps, decay_steps: init_state(config, settings.seed),  # its own decay: adain_tx
        make_step=make_step,
        make_sampler=make_sampler,
        export=export,
        vgg_source=vgg.source,
    )


def train(
    contents: str | os.PathLike,
    styles: str | os.PathLike,
    run_dir: str | os.PathLike,
    *,
    config: AdaINConfig | None = None,
    settings: TrainSettings,
    weights: Any = None,
    resume: bool = False,
    progress: Callable[[TrainProgress], None] | None = None,
    stop: Callable[[], bool] | None = None,
    mesh: Any = None,
    threads: int | None = None,
    distributed: bool | None = None,
) -> TrainResult:
    """Train (or resume) an AdaIN decoder on the photos in ``contents`` and the paintings in ``styles``.

    Args:
      contents, styles: image folders (e.g. COCO 2014 train and WikiArt).
      run_dir: the run directory (see :class:`~nstjax.train.RunDir`).
      config: :class:`AdaINConfig` (default: the reference's settings).
      settings: length, batch (8 in the reference), seed, intervals (the learning rate
        follows :func:`adain_tx`: ``decay_fraction`` is not used).
      weights: VGG-19 weights of the encoder (spec, loaded weights, or None for auto), normalised
        as ``config.encoder`` says (:func:`encoder_params`).
      resume, progress, stop, mesh, threads, distributed: see :func:`nstjax.train.run`.

    Returns:
      A :class:`nstjax.train.TrainResult` (:data:`AdaINTrainResult`).
    """
    system = train_system(contents, styles, config=config, settings=settings, weights=weights)
    return run(system, run_dir, resume=resume, progress=progress, stop=stop, mesh=mesh, threads=threads,
               distributed=distributed)  # fmt: skip


train_adain = train
"""The name ``nstjax adain train`` and the package export use: :func:`train`."""
