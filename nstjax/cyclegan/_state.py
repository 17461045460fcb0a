"""The CycleGAN train state: both generators, both discriminators, their optimisers, the pools, a key."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..train.optimizer import adam
from ..train.state import NetState, init_net, linear_decay_rate
from ._config import CycleGANConfig, ModelConfig, OptimConfig, make_discriminator, make_generator
from ._pool import ImagePool, init_pool

__all__ = ["CycleGANState", "init_params", "init_state", "optimizer"]


@flax.struct.dataclass
class CycleGANState:
    """Everything one training step reads and writes; a pytree, checkpointed whole.

    step: int32, steps done. g: params ``{"g_ab", "g_ba"}`` (A->B and B->A) and their one
    Adam state; d: params ``{"d_a", "d_b"}`` (D_A judges domain-A images: real A against
    G_BA's fakes; D_B domain B) and their Adam state. pool_a / pool_b: histories of fake A /
    fake B images for D_A / D_B. key: the pools' PRNG key (uint32 [2]). lr (float32),
    total_steps, decay_steps (int32): the learning-rate schedule, as data (one compiled
    step serves any learning rate and run length; a resumed run may train longer).
    """

    step: jax.Array
    g: NetState
    d: NetState
    pool_a: ImagePool
    pool_b: ImagePool
    key: jax.Array
    lr: jax.Array
    total_steps: jax.Array
    decay_steps: jax.Array


def optimizer(optim: OptimConfig, total_steps, decay_steps, lr=None) -> optax.GradientTransformation:
    """Adam with the CycleGAN schedule (base ``lr``, default ``optim.lr``; numbers or traced arrays).

    The optimiser state's structure does not depend on the schedule's values.
    """
    base = optim.lr if lr is None else lr
    return adam(lambda count: linear_decay_rate(base, count, total_steps, decay_steps), b1=optim.beta1, b2=optim.beta2)


def _normal_init(module, side: int, rng: np.random.Generator) -> dict:
    # The authors' init_weights('normal'): kernels N(0, 0.02), biases 0. Drawn with NumPy: XLA:CPU
    # takes seconds to compile JAX's random bits for each large parameter shape.
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32))
    return jax.tree_util.tree_map_with_path(
        lambda path, s: (rng.normal(0.0, 0.02, s.shape) if path[-1].key == "kernel" else np.zeros(s.shape)).astype(
            np.float32
        ),
        shapes["params"],
    )


def init_params(model: ModelConfig, seed: int) -> tuple[dict, dict]:
    """(generator params ``{"g_ab", "g_ba"}``, discriminator params ``{"d_a", "d_b"}``), seeded, as NumPy.

    Kernels N(0, 0.02), biases 0. Networks are fully convolutional, so their parameters
    do not depend on the image size.
    """
    side = max(2 * model.multiple, 32)
    gen, disc = make_generator(model), make_discriminator(model)
    rngs = [np.random.default_rng([seed, i]) for i in range(4)]
    g = {"g_ab": _normal_init(gen, side, rngs[0]), "g_ba": _normal_init(gen, side, rngs[1])}
    d = {"d_a": _normal_init(disc, side, rngs[2]), "d_b": _normal_init(disc, side, rngs[3])}
    return g, d


def init_state(config: CycleGANConfig, total_steps: int, decay_steps: int) -> CycleGANState:
    """A fresh train state for ``config`` (seeded by ``config.train.seed``), on the default device."""
    g, d = init_params(config.model, config.train.seed)
    tx = optimizer(config.optim, total_steps, decay_steps)
    shape = (config.model.size, config.model.size, 3)
    return CycleGANState(
        step=jnp.zeros((), jnp.int32),
        g=init_net(g, tx),
        d=init_net(d, tx),
        pool_a=init_pool(config.loss.pool_size, shape),
        pool_b=init_pool(config.loss.pool_size, shape),
        key=jax.random.PRNGKey(config.train.seed),
        lr=jnp.asarray(config.optim.lr, jnp.float32),
        total_steps=jnp.asarray(total_steps, jnp.int32),
        decay_steps=jnp.asarray(decay_steps, jnp.int32),
    )
