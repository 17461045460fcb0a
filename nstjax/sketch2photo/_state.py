"""The sketch -> photo train state (generator side, discriminator side, their state collections, a key) and its start."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..train.optimizer import adam as fusable_adam
from ..train.state import NetState, init_net, linear_decay_rate
from ._config import Sketch2PhotoConfig, make_networks

__all__ = ["Sketch2PhotoState", "init_state", "init_variables", "optimizers"]


@flax.struct.dataclass
class Sketch2PhotoState:
    """Everything one training step reads and writes; a pytree, checkpointed whole.

    step: int32, steps done.
    g: params ``{"generator"}`` (+ ``"encoder"``: SPADE's VAE, optimised with the
      generator as NVlabs does) and their Adam state; d: ``{"discriminator"}`` and its.
    g_stats / d_stats: the networks' ``"batch_stats"`` collections (spectral norm's
      ``u`` and ``sigma``, batch norm's running averages), ``{"generator", "encoder"}``
      and ``{"discriminator"}``; empty for pix2pix.
    key: PRNG key (uint32 [2]) of the VAE's noise / pix2pix's dropout; each step uses
      ``fold_in(key, step)``.
    lr_g, lr_d (float32), total_steps, decay_steps (int32): the learning-rate
      schedules as data (one compiled step serves any run length).
    """

    step: jax.Array
    g: NetState
    d: NetState
    g_stats: Any
    d_stats: Any
    key: jax.Array
    lr_g: jax.Array
    lr_d: jax.Array
    total_steps: jax.Array
    decay_steps: jax.Array


def optimizers(config: Sketch2PhotoConfig, state_or_none: Sketch2PhotoState | None = None,
               total_steps=1, decay_steps=0) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """(generator Adam, discriminator Adam) with the run's schedule (from ``state`` when given).

    SPADE: TTUR, lr_g / lr_d with betas (0, 0.9); pix2pix: one lr, betas (0.5, 0.999).
    The optimiser states' structure does not depend on the schedule's values.
    """
    if config.model == "spade":
        lr_g, lr_d, b1, b2 = config.spade.lr_g, config.spade.lr_d, config.spade.beta1, config.spade.beta2
    else:
        lr_g = lr_d = config.pix2pix.lr
        b1, b2 = config.pix2pix.beta1, config.pix2pix.beta2
    if state_or_none is not None:
        s = state_or_none
        lr_g, lr_d, total_steps, decay_steps = s.lr_g, s.lr_d, s.total_steps, s.decay_steps

    def adam(base):
        return fusable_adam(lambda count: linear_decay_rate(base, count, total_steps, decay_steps), b1=b1, b2=b2)

    return adam(lr_g), adam(lr_d)


def _input_shapes(config: Sketch2PhotoConfig, num_classes: int) -> dict[str, tuple]:
    s = config.size
    c_in = num_classes if config.input_kind == "labels" else 3
    d_in = c_in + 3
    return {"generator": (1, s, s, c_in), "discriminator": (1, s, s, d_in), "encoder": (1, config.spade.enc_size,
                                                                                       config.spade.enc_size, 3)}


def _fill(path, shape: jax.ShapeDtypeStruct, rng: np.random.Generator, model: str) -> np.ndarray:
    name = path[-1].key
    dims = shape.shape
    if name == "kernel":
        if model == "pix2pix":  # the authors' init_weights('normal', 0.02)
            return rng.normal(0.0, 0.02, dims)
        # NVlabs' init_weights('xavier', 0.02): Glorot normal with gain 0.02.
        receptive = int(np.prod(dims[:-2])) if len(dims) > 2 else 1
        fan_in, fan_out = receptive * dims[-2], receptive * dims[-1]
        return rng.normal(0.0, 0.02 * np.sqrt(2.0 / (fan_in + fan_out)), dims)
    if name == "scale":  # pix2pix's batch norm: N(1, 0.02)
        return rng.normal(1.0, 0.02, dims)
    if name.endswith("/u"):  # spectral norm: a random unit vector, as PyTorch's spectral_norm
        u = rng.normal(size=dims)
        return u / max(np.linalg.norm(u), 1e-12)
    if name.endswith("/sigma") or name == "var":
        return np.ones(dims)
    return np.zeros(dims)  # biases, running means


def init_variables(config: Sketch2PhotoConfig, num_classes: int, seed: int) -> tuple[dict, dict, dict, dict]:
    """(g params, g stats, d params, d stats) for ``config``, seeded, as float32 NumPy.

    Drawn with NumPy after ``jax.eval_shape`` (XLA:CPU takes seconds to compile JAX's
    random bits for each large parameter shape). SPADE: Glorot-normal kernels with
    gain 0.02 (NVlabs' ``xavier``, 0.02), zero biases, unit ``u`` vectors; pix2pix:
    N(0, 0.02) kernels, batch-norm scales N(1, 0.02).
    """
    nets = make_networks(config, num_classes)
    shapes = _input_shapes(config, num_classes)
    params: dict[str, dict] = {}
    stats: dict[str, dict] = {}
    for i, (name, net) in enumerate(sorted(nets.items())):
        x = jax.ShapeDtypeStruct(shapes[name], jnp.float32)
        rngs = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)}
        if name == "generator" and config.model == "spade":
            z = jax.ShapeDtypeStruct((1, config.spade.z_dim), jnp.float32) if config.spade.use_vae else None
            variables = jax.eval_shape(lambda x, z: net.init(rngs, x, z, False), x, z)
        elif name == "generator":
            variables = jax.eval_shape(lambda x: net.init(rngs, x, True), x)
        else:
            variables = jax.eval_shape(lambda x: net.init(rngs, x, False), x)
        rng = np.random.default_rng([seed, i])
        fill = lambda path, s: _fill(path, s, rng, config.model).astype(np.float32)  # noqa: E731
        params[name] = jax.tree_util.tree_map_with_path(fill, dict(variables["params"]))
        if "batch_stats" in variables:
            stats[name] = jax.tree_util.tree_map_with_path(fill, dict(variables["batch_stats"]))
    g_names = [n for n in ("generator", "encoder") if n in params]
    return ({n: params[n] for n in g_names}, {n: stats[n] for n in g_names if n in stats},
            {"discriminator": params["discriminator"]},
            {"discriminator": stats["discriminator"]} if "discriminator" in stats else {})  # fmt: skip


def init_state(config: Sketch2PhotoConfig, num_classes: int, total_steps: int, decay_steps: int) -> Sketch2PhotoState:
    """A fresh train state for ``config`` (seeded by ``config.train.seed``), on the default device."""
    g, g_stats, d, d_stats = init_variables(config, num_classes, config.train.seed)
    tx_g, tx_d = optimizers(config, None, total_steps, decay_steps)
    lr_g, lr_d = (config.spade.lr_g, config.spade.lr_d) if config.model == "spade" else (config.pix2pix.lr,) * 2
    return Sketch2PhotoState(
        step=jnp.zeros((), jnp.int32),
        g=init_net(g, tx_g),
        d=init_net(d, tx_d),
        g_stats=jax.tree.map(jnp.asarray, g_stats),
        d_stats=jax.tree.map(jnp.asarray, d_stats),
        key=jax.random.PRNGKey(config.train.seed),
        lr_g=jnp.asarray(lr_g, jnp.float32),
        lr_d=jnp.asarray(lr_d, jnp.float32),
        total_steps=jnp.asarray(total_steps, jnp.int32),
        decay_steps=jnp.asarray(decay_steps, jnp.int32),
    )
