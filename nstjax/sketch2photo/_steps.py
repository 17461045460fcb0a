"""The networks' passes, the loss terms and the jitted train steps of SPADE and pix2pix.

**SPADE** (NVlabs' ``Pix2PixTrainer.run_one_step``), one jitted function:

1. Generator (+ encoder) step: ``z = mu + eps * exp(logvar / 2)`` from the encoder
   (with the VAE), ``fake = G(labels, z)``; the discriminator sees
   ``[labels | fake]`` and ``[labels | real]`` as one batch of 2B (as NVlabs
   concatenates them). Loss: hinge ``-mean(D(fake))`` over the scales, feature
   matching ``lambda_feat / num_d * sum |D_k(fake) - D_k(real)|_1`` over scales and
   layers, VGG ``lambda_vgg * sum_l w_l |VGG_l(fake) - VGG_l(real)|_1`` on NVlabs' scale
   (:func:`vgg_loss`) and KL
   ``lambda_kld * KL(N(mu, sigma) || N(0, 1))`` (summed over the batch, as NVlabs).
   One Adam step (lr_g).
2. Discriminator step: a *new* fake from the updated generator (fresh noise), the
   hinge loss ``mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))``; one Adam step (lr_d).

Every pass in training mode updates the spectral-norm vectors and batch-norm
running averages it touches, as PyTorch modules in train mode do: two power
iterations per step for each network.

**pix2pix** (the authors' ``Pix2PixModel.optimize_parameters``): ``fake = G(x)``
(dropout on); the discriminator step first, ``0.5 (gan(D(x, real), real) +
gan(D(x, fake), fake))``; then the generator step against the *updated*
discriminator, ``gan(D(x, fake)) + lambda_l1 |fake - real|_1``, from the same
``fake`` (one generator pass; its gradient flows back through a VJP).

Label maps come in as int32 [B, S, S] and are one-hot encoded inside the step;
images are float32 [B, S, S, 3] in [-1, 1].
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from ..labels import one_hot
from ..losses.gan import fake_loss, generator_loss, real_loss
from ..models.vgg import TORCH_MEAN, TORCH_STD
from ..models.vgg import features as vgg_features
from ..models.vgg import prepared_params
from ..train.state import apply_gradients, linear_decay_rate
from ._config import DTYPES, VGG_LAYERS, Sketch2PhotoConfig, make_networks
from ._state import Sketch2PhotoState, optimizers

__all__ = [
    "discriminate",
    "feature_matching_loss",
    "generate",
    "generator_input",
    "kld_loss",
    "noise",
    "step_keys",
    "spade_discriminator_losses",
    "spade_generator_losses",
    "train_step_fn",
    "vgg_loss",
    "vgg_loss_params",
    "vgg_scale",
]


def _l1(x, y) -> jax.Array:
    return jnp.mean(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)))


def kld_loss(mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """NVlabs' ``KLDLoss``: ``-0.5 * sum(1 + logvar - mu^2 - exp(logvar))`` over every element (batch included)."""
    return -0.5 * jnp.sum(1.0 + logvar - jnp.square(mu) - jnp.exp(logvar))


def feature_matching_loss(fake_outputs, real_outputs, weight: float) -> jax.Array:
    """``weight / num_d * sum`` over scales and intermediate layers of the mean |fake - real| (real held fixed).

    ``*_outputs``: one ``(features, logits)`` per scale, as :class:`MultiscaleDiscriminator` returns.
    """
    total = jnp.zeros((), jnp.float32)
    for (f_fake, _), (f_real, _) in zip(fake_outputs, real_outputs):
        for a, b in zip(f_fake, f_real):
            total = total + _l1(a, jax.lax.stop_gradient(b)) * weight / len(fake_outputs)
    return total


def vgg_scale(preprocessing: str, *, normalised: bool = False) -> float:
    """What NVlabs-style VGG features of weights of this input convention are multiplied by (> 0).

    ``"torch"`` weights: 1 (torchvision's VGG-19 is NVlabs' network). ``"caffe"`` weights read
    images on a 0-255 scale where torchvision's read ``(x - mean) / std``, 255 * 0.226 = 57.6 times
    larger on average, and their features are that much larger too: a ReLU network with max pooling
    is positively homogeneous in its input and biases together, so the Caffe network on
    ``57.6 x`` divided by 57.6 *is* a network on ``x`` (its biases divided by 57.6). The factor is
    ``1 / (255 * mean(TORCH_STD))``. ``normalised`` weights (Gatys et al.'s, each filter's mean
    activation 1): 1, the order of torchvision's features.
    """
    if normalised or preprocessing == "torch":
        return 1.0
    if preprocessing == "caffe":
        return float(1.0 / (255.0 * (sum(TORCH_STD) / 3.0)))
    raise ValueError(f"unknown preprocessing {preprocessing!r}")


def vgg_loss_params(vgg_params: Any, config: Sketch2PhotoConfig) -> Any:
    """The perceptual loss network's parameters as the step takes them: with the kernel forms its
    layers (``config.spade.vgg_layers``, in ``config.dtype``) read, made once
    (:func:`nstjax.models.vgg.prepared_params`) rather than in every step."""
    layers = [name for name, _ in config.spade.vgg_layers]
    return prepared_params(vgg_params, layers, dtype=DTYPES[config.dtype])


def vgg_loss(vgg_params: Any, fake: jax.Array, real: jax.Array, *, preprocessing: str, vgg_input: str = "nvlabs",
             scale: float | None = None, dtype: Any = jnp.float32,
             layers: tuple[tuple[str, float], ...] = VGG_LAYERS) -> jax.Array:
    """``scale * sum_l w_l mean|VGG_l(fake) - VGG_l(real)|`` for images in [-1, 1] (real held fixed), float32.

    ``vgg_input="nvlabs"`` (the default): NVlabs' ``VGGLoss`` feeds the [-1, 1] image straight to
    torchvision's VGG-19, whose first layer expects ``(u - mean) / std`` of a [0, 1] image ``u``;
    so the image it shows the network is ``u = mean + std * x`` (the picture at about 0.45 of its
    contrast). nstjax shows every network that picture, through the weights' own preprocessing:
    exactly NVlabs' input for torch-convention weights, and the same picture for Caffe-convention
    ones. ``scale`` (None: :func:`vgg_scale` of ``preprocessing``) puts the features on
    torchvision's scale, so ``lambda_vgg = 10`` weighs the term as in NVlabs' runs.

    ``vgg_input="preprocessed"``: nstjax's former term: ``(x + 1) / 2`` through the weights'
    preprocessing, features at the weights' own scale (``scale`` None: 1).

    ``fake``, ``real``: [B, H, W, 3]; ``layers``: (VGG layer, weight) pairs (:data:`VGG_LAYERS`).
    """
    if vgg_input == "nvlabs":
        mean, std = jnp.asarray(TORCH_MEAN, jnp.float32), jnp.asarray(TORCH_STD, jnp.float32)
        to_image = lambda x: mean + std * x.astype(jnp.float32)  # noqa: E731
        scale = vgg_scale(preprocessing) if scale is None else scale
    elif vgg_input == "preprocessed":
        to_image = lambda x: (x.astype(jnp.float32) + 1.0) * 0.5  # noqa: E731
        scale = 1.0 if scale is None else scale
    else:
        raise ValueError(f"unknown vgg_input {vgg_input!r}")
    names = tuple(n for n, _ in layers)
    f_fake = vgg_features(vgg_params, to_image(fake), names, preprocessing=preprocessing, dtype=dtype)
    f_real = vgg_features(vgg_params, to_image(jax.lax.stop_gradient(real)), names, preprocessing=preprocessing,
                          dtype=dtype)  # fmt: skip
    return scale * sum(w * _l1(f_fake[n], jax.lax.stop_gradient(f_real[n])) for n, w in layers)


def generator_input(config: Sketch2PhotoConfig, num_classes: int, batch: dict[str, jax.Array]) -> jax.Array:
    """What the generator conditions on: one-hot ``batch["labels"]`` [B, S, S, K] or ``batch["input"]`` (RGB)."""
    if config.input_kind == "labels":
        return one_hot(batch["labels"], num_classes)
    return batch["input"]


def noise(config: Sketch2PhotoConfig, key: jax.Array, batch_size: int) -> jax.Array:
    """The reparameterisation noise ``eps`` [B, z_dim] for ``key`` (float32, N(0, 1))."""
    return jax.random.normal(key, (batch_size, config.spade.z_dim), jnp.float32)


def step_keys(key: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The two keys step ``step`` uses: (generator step / pix2pix dropout, discriminator step)."""
    k = jax.random.split(jax.random.fold_in(key, step))
    return k[0], k[1]


def generate(config: Sketch2PhotoConfig, num_classes: int, g_params: dict, g_stats: dict, seg: jax.Array,
             real: jax.Array | None, eps: jax.Array | None, *, train: bool):
    """SPADE's ``generate_fake``: (fake [B, S, S, 3], mu, logvar, new g_stats); mu/logvar None without the VAE.

    With the VAE, ``z = mu + eps * exp(logvar / 2)`` from ``real``'s encoding
    (``real=None``: ``z = eps``, the prior). ``train``: batch statistics and one
    power iteration (the stats are updated and returned); else the running averages
    (``g_stats`` returned unchanged).
    """
    nets = make_networks(config, num_classes)
    mutable = ["batch_stats"] if train else False
    new_stats = dict(g_stats)
    z = mu = logvar = None
    if config.spade.use_vae:
        if real is None:
            z = eps
        else:
            enc_vars = {"params": g_params["encoder"], "batch_stats": g_stats["encoder"]}
            out = nets["encoder"].apply(enc_vars, real, train, mutable=mutable)
            if train:
                (mu, logvar), updated = out
                new_stats["encoder"] = updated["batch_stats"]
            else:
                mu, logvar = out
            z = mu + eps * jnp.exp(0.5 * logvar)
    gen_vars = {"params": g_params["generator"], "batch_stats": g_stats["generator"]}
    out = nets["generator"].apply(gen_vars, seg, z, train, mutable=mutable)
    if train:
        fake, updated = out
        new_stats["generator"] = updated["batch_stats"]
    else:
        fake = out
    return fake, mu, logvar, new_stats


def discriminate(config: Sketch2PhotoConfig, num_classes: int, d_params: dict, d_stats: dict, seg: jax.Array,
                 fake: jax.Array, real: jax.Array):
    """SPADE's ``discriminate``: (fake outputs, real outputs, new d_stats) from one pass over 2B inputs.

    Each output is a list over scales of ``(features, logits)``.
    """
    disc = make_networks(config, num_classes)["discriminator"]
    x = jnp.concatenate([jnp.concatenate([seg, fake], -1), jnp.concatenate([seg, real], -1)], axis=0)
    outs, updated = disc.apply({"params": d_params["discriminator"], "batch_stats": d_stats["discriminator"]}, x, True,
                               mutable=["batch_stats"])  # fmt: skip
    b = fake.shape[0]
    fake_out = [([f[:b] for f in feats], logits[:b]) for feats, logits in outs]
    real_out = [([f[b:] for f in feats], logits[b:]) for feats, logits in outs]
    return fake_out, real_out, {"discriminator": updated["batch_stats"]}


def spade_generator_losses(g_params, d_params, g_stats, d_stats, seg, real, eps, vgg_params, *,
                           config: Sketch2PhotoConfig, num_classes: int, preprocessing: str,
                           vgg_scale: float | None = None):
    """(total, (terms, fake, g_stats, d_stats)): SPADE's generator (+ encoder) loss on one batch.

    Terms (float32 scalars): ``g_gan`` (hinge), ``g_feat`` (feature matching,
    ``lambda_feat``), ``g_vgg`` (``lambda_vgg``; left out when 0; :func:`vgg_loss` with
    ``config.spade.vgg_input``, ``preprocessing`` and ``vgg_scale``), ``g_kld``
    (``lambda_kld``, with the VAE). ``seg`` one-hot [B, S, S, K]; ``real`` [B, S, S, 3].
    """
    s = config.spade
    fake, mu, logvar, g_stats = generate(config, num_classes, g_params, g_stats, seg, real, eps, train=True)
    fake_out, real_out, d_stats = discriminate(config, num_classes, d_params, d_stats, seg, fake, real)
    terms = {
        "g_gan": generator_loss("hinge", [logits for _, logits in fake_out]),
        "g_feat": feature_matching_loss(fake_out, real_out, s.lambda_feat),
    }
    if s.lambda_vgg > 0:
        terms["g_vgg"] = s.lambda_vgg * vgg_loss(vgg_params, fake, real, preprocessing=preprocessing,
                                                 vgg_input=s.vgg_input, scale=vgg_scale, dtype=DTYPES[config.dtype],
                                                 layers=s.vgg_layers)  # fmt: skip
    if s.use_vae:
        terms["g_kld"] = s.lambda_kld * kld_loss(mu, logvar)
    return sum(terms.values()), (terms, fake, g_stats, d_stats)


def spade_discriminator_losses(d_params, d_stats, seg, fake, real, *, config: Sketch2PhotoConfig, num_classes: int):
    """(total, (terms, d_stats)): hinge ``d_fake`` + ``d_real`` (fake held fixed)."""
    fake_out, real_out, d_stats = discriminate(config, num_classes, d_params, d_stats, seg,
                                               jax.lax.stop_gradient(fake), real)  # fmt: skip
    terms = {"d_fake": fake_loss("hinge", [l for _, l in fake_out]), "d_real": real_loss("hinge", [l for _, l in real_out])}
    return terms["d_fake"] + terms["d_real"], (terms, d_stats)


def _key(config: Sketch2PhotoConfig) -> Sketch2PhotoConfig:
    """The part of the config a compiled step depends on (not the run's length or intervals)."""
    return config.replace(train=type(config.train)(steps=1))


def train_step_fn(config: Sketch2PhotoConfig, num_classes: int, preprocessing: str = "torch",
                  vgg_scale: float | None = None):
    """The jitted step ``(state, batch, vgg_params) -> (state, metrics)``; the state is donated.

    ``batch``: ``{"labels": int32 [B, S, S], "image": float32 [B, S, S, 3]}`` (pix2pix
    with image input: ``{"input", "image"}``). ``vgg_params``: the VGG-19 parameters of
    SPADE's perceptual loss (ignored by pix2pix; pass None), ``preprocessing`` theirs,
    ``vgg_scale`` their features' factor (None: :func:`vgg_loss`'s default for the convention).
    Metrics: the loss terms, ``g_total``, ``d_total``, ``lr_g``, ``lr_d`` (float32 scalars).
    One compiled program per (model settings, K, preprocessing, scale, batch shape).
    """
    return _train_step_fn(_key(config), num_classes, preprocessing, vgg_scale)


@functools.lru_cache(maxsize=16)
def _train_step_fn(config: Sketch2PhotoConfig, num_classes: int, preprocessing: str, vgg_scale: float | None):
    step = _spade_step if config.model == "spade" else _pix2pix_step
    return jax.jit(functools.partial(step, config=config, num_classes=num_classes, preprocessing=preprocessing,
                                     vgg_scale=vgg_scale), donate_argnums=0)  # fmt: skip


def _rates(state: Sketch2PhotoState) -> dict[str, jax.Array]:
    return {"lr_g": linear_decay_rate(state.lr_g, state.step, state.total_steps, state.decay_steps),
            "lr_d": linear_decay_rate(state.lr_d, state.step, state.total_steps, state.decay_steps)}  # fmt: skip


def _spade_step(state: Sketch2PhotoState, batch: dict[str, jax.Array], vgg_params: Any, *,
                config: Sketch2PhotoConfig, num_classes: int, preprocessing: str, vgg_scale: float | None):
    tx_g, tx_d = optimizers(config, state)
    seg = generator_input(config, num_classes, batch)
    real = batch["image"]
    key_g, key_d = step_keys(state.key, state.step)
    b = real.shape[0]
    eps_g, eps_d = noise(config, key_g, b), noise(config, key_d, b)

    g_fn = functools.partial(spade_generator_losses, config=config, num_classes=num_classes, preprocessing=preprocessing,
                             vgg_scale=vgg_scale)
    (g_total, (g_terms, _, g_stats, d_stats)), g_grads = jax.value_and_grad(g_fn, has_aux=True)(
        state.g.params, state.d.params, state.g_stats, state.d_stats, seg, real, eps_g, vgg_params
    )
    g = apply_gradients(state.g, g_grads, tx_g)

    # NVlabs' discriminator step draws a new fake from the updated generator (no gradient to it).
    fake, _, _, g_stats = generate(config, num_classes, g.params, g_stats, seg, real, eps_d, train=True)
    fake = jax.lax.stop_gradient(fake)
    d_fn = functools.partial(spade_discriminator_losses, config=config, num_classes=num_classes)
    (d_total, (d_terms, d_stats)), d_grads = jax.value_and_grad(d_fn, has_aux=True)(
        state.d.params, d_stats, seg, fake, real
    )
    d = apply_gradients(state.d, d_grads, tx_d)
    metrics = {**g_terms, **d_terms, "g_total": g_total, "d_total": d_total, **_rates(state)}
    new = state.replace(step=state.step + 1, g=g, d=d, g_stats=g_stats, d_stats=d_stats)
    return new, metrics


def _pix2pix_step(state: Sketch2PhotoState, batch: dict[str, jax.Array], vgg_params: Any = None, *,
                  config: Sketch2PhotoConfig, num_classes: int, preprocessing: str, vgg_scale: float | None):
    del vgg_params, preprocessing, vgg_scale
    tx_g, tx_d = optimizers(config, state)
    nets = make_networks(config, num_classes)
    gan = config.pix2pix.gan
    x = generator_input(config, num_classes, batch)
    real = batch["image"]
    key, _ = step_keys(state.key, state.step)

    def gen(params):
        return nets["generator"].apply({"params": params["generator"]}, x, rngs={"dropout": key})

    fake, gen_vjp = jax.vjp(gen, state.g.params)

    def disc(d_params, y):
        return nets["discriminator"].apply({"params": d_params["discriminator"]}, jnp.concatenate([x, y], -1))

    def d_fn(d_params):
        terms = {"d_real": 0.5 * real_loss(gan, disc(d_params, real)),
                 "d_fake": 0.5 * fake_loss(gan, disc(d_params, jax.lax.stop_gradient(fake)))}  # fmt: skip
        return terms["d_real"] + terms["d_fake"], terms

    (d_total, d_terms), d_grads = jax.value_and_grad(d_fn, has_aux=True)(state.d.params)
    d = apply_gradients(state.d, d_grads, tx_d)

    def g_fn(y):  # against the updated discriminator, as the authors' code
        terms = {"g_gan": generator_loss(gan, disc(d.params, y)), "g_l1": config.pix2pix.lambda_l1 * _l1(y, real)}
        return terms["g_gan"] + terms["g_l1"], terms

    (g_total, g_terms), fake_grad = jax.value_and_grad(g_fn, has_aux=True)(fake)
    (g_grads,) = gen_vjp(fake_grad)
    g = apply_gradients(state.g, g_grads, tx_g)
    metrics = {**g_terms, **d_terms, "g_total": g_total, "d_total": d_total, **_rates(state)}
    return state.replace(step=state.step + 1, g=g, d=d), metrics
