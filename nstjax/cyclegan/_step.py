"""One CycleGAN training step: the generators' update, then the discriminators' on pooled fakes.

The authors' ``optimize_parameters``, as one jitted function:

1. Generators (discriminators fixed): ``fake_b = G_AB(a)``, ``fake_a = G_BA(b)``,
   ``rec_a = G_BA(fake_b)``, ``rec_b = G_AB(fake_a)``, identities ``G_AB(b)``, ``G_BA(a)``.
   Loss: adversarial (D_B on fake_b, D_A on fake_a) + ``lambda_cycle`` x L1 of each
   reconstruction + ``lambda_cycle * lambda_identity`` x L1 of each identity mapping.
   One Adam step on both generators.
2. The fakes of step 1 (made before the update, as the authors' code does) go
   through the history pools; each discriminator's loss is
   ``0.5 * (real term + fake term)`` (the authors' ``backward_D_basic``). One Adam
   step on both discriminators.

Every network pass sees a batch of B images, as in the authors' code, so all
passes of a network share XLA's compiled kernels (:func:`generator_passes`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from ..losses.gan import fake_loss, generator_loss, real_loss
from ..train.state import apply_gradients, linear_decay_rate
from ._config import DtypeName, LossConfig, ModelConfig, OptimConfig, make_discriminator, make_generator
from ._pool import query_pool
from ._state import CycleGANState, optimizer

__all__ = ["discriminator_losses", "generator_losses", "generator_passes", "network_fn", "train_step_fn"]


def _l1(x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)))


@functools.lru_cache(maxsize=32)
def network_fn(network) -> Any:
    """``jit(lambda params, x: network.apply({"params": params}, x))`` for a Flax module (hashable).

    Called several times inside the train step, a jitted function is traced once per
    input shape (JAX caches its jaxpr), where plain ``apply`` calls would be traced
    each time: seconds of Python per compile. XLA inlines it, so the program is the same.
    """
    return jax.jit(lambda params, x: network.apply({"params": params}, x))


def generator_passes(gen, g_params: dict, real_a: jax.Array, real_b: jax.Array, *, identity: bool = True,
                     rounds: int = 2) -> dict[str, jax.Array]:
    """The generator passes of a CycleGAN step, each on a batch of B as in the authors' code.

    Returns ``fake_b = G_AB(a)``, ``fake_a = G_BA(b)`` and, for ``rounds=2``,
    ``rec_a = G_BA(fake_b)``, ``rec_b = G_AB(fake_a)``; with ``identity`` also
    ``idt_b = G_AB(b)``, ``idt_a = G_BA(a)``. All [B, S, S, 3] float32.

    Every pass has the same shapes, so XLA:CPU compiles each fused kernel once
    for all of them (batching ``[a, b]`` into one pass would add a second set of
    kernels for the 2B shapes and double the compile time).
    """

    apply = network_fn(gen)

    def g(name: str, x: jax.Array) -> jax.Array:
        return apply(g_params[name], x)

    out = {"fake_b": g("g_ab", real_a), "fake_a": g("g_ba", real_b)}
    if identity:
        out["idt_b"], out["idt_a"] = g("g_ab", real_b), g("g_ba", real_a)
    if rounds == 2:
        out["rec_a"], out["rec_b"] = g("g_ba", out["fake_b"]), g("g_ab", out["fake_a"])
    return out


def generator_losses(
    g_params: dict, d_params: dict, real_a: jax.Array, real_b: jax.Array, *, model: ModelConfig, loss: LossConfig,
    dtype: DtypeName = "float32",
) -> tuple[jax.Array, tuple[dict[str, jax.Array], jax.Array, jax.Array]]:
    """(total, (terms, fake_a, fake_b)): the generators' loss on one batch.

    ``real_a``, ``real_b``: [B, S, S, 3] in [-1, 1]. Terms: ``g_gan_ab`` (D_B on G_AB's
    fakes), ``g_gan_ba``, ``g_cycle_a`` (``lambda * |G_BA(G_AB(a)) - a|``), ``g_cycle_b``,
    ``g_idt_a`` (``lambda * lambda_id * |G_BA(a) - a|``), ``g_idt_b``; all float32 scalars.
    """
    gen, disc = make_generator(model, dtype), make_discriminator(model, dtype)
    identity = loss.lambda_identity > 0
    out = generator_passes(gen, g_params, real_a, real_b, identity=identity)
    d_apply = network_fn(disc)
    logits_a = d_apply(d_params["d_a"], out["fake_a"])
    logits_b = d_apply(d_params["d_b"], out["fake_b"])
    lam = loss.lambda_cycle
    terms = {
        "g_gan_ab": generator_loss(loss.gan, logits_b),
        "g_gan_ba": generator_loss(loss.gan, logits_a),
        "g_cycle_a": lam * _l1(out["rec_a"], real_a),
        "g_cycle_b": lam * _l1(out["rec_b"], real_b),
    }
    if identity:
        terms["g_idt_a"] = lam * loss.lambda_identity * _l1(out["idt_a"], real_a)
        terms["g_idt_b"] = lam * loss.lambda_identity * _l1(out["idt_b"], real_b)
    total = sum(terms.values())
    return total, (terms, out["fake_a"], out["fake_b"])


def discriminator_losses(
    d_params: dict, real_a: jax.Array, real_b: jax.Array, fake_a: jax.Array, fake_b: jax.Array, *,
    model: ModelConfig, loss: LossConfig, dtype: DtypeName = "float32",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(total, terms): ``d_a = 0.5 (real(D_A(a)) + fake(D_A(fake_a)))``, ``d_b`` likewise; total = d_a + d_b."""
    d_apply = network_fn(make_discriminator(model, dtype))
    terms = {}
    for name, real, fake in (("d_a", real_a, fake_a), ("d_b", real_b, fake_b)):
        # Separate passes of B images: the same shapes as the generator step's, so the same compiled kernels.
        real_logits = d_apply(d_params[name], real)
        fake_logits = d_apply(d_params[name], jax.lax.stop_gradient(fake))
        terms[name] = 0.5 * (real_loss(loss.gan, real_logits) + fake_loss(loss.gan, fake_logits))
    return terms["d_a"] + terms["d_b"], terms


def train_step_fn(model: ModelConfig, loss: LossConfig, optim: OptimConfig, dtype: DtypeName = "float32"):
    """The jitted step ``(state, {"a": [B,S,S,3], "b": [B,S,S,3]}) -> (state, metrics)``; the state is donated.

    Metrics: the loss terms of :func:`generator_losses` and :func:`discriminator_losses`,
    ``g_total``, ``d_total`` and ``lr`` (the learning rate used), float32 scalars.
    One compiled program per (model, loss, Adam betas, dtype, batch shape): the learning
    rate and the run's length are data in the state (``optim.lr`` is not used here).
    """
    return _train_step_fn(model, loss, optim.beta1, optim.beta2, dtype)


@functools.lru_cache(maxsize=32)
def _train_step_fn(model: ModelConfig, loss: LossConfig, beta1: float, beta2: float, dtype: DtypeName):
    optim = OptimConfig(beta1=beta1, beta2=beta2)

    def step(state: CycleGANState, batch: dict[str, jax.Array]) -> tuple[CycleGANState, dict[str, Any]]:
        real_a, real_b = batch["a"], batch["b"]
        tx = optimizer(optim, state.total_steps, state.decay_steps, state.lr)
        g_fn = functools.partial(generator_losses, model=model, loss=loss, dtype=dtype)
        (g_total, (g_terms, fake_a, fake_b)), g_grads = jax.value_and_grad(g_fn, has_aux=True)(
            state.g.params, state.d.params, real_a, real_b
        )
        g = apply_gradients(state.g, g_grads, tx)

        key, key_a, key_b = jax.random.split(state.key, 3)
        pool_a, pooled_a = query_pool(state.pool_a, fake_a, key_a)
        pool_b, pooled_b = query_pool(state.pool_b, fake_b, key_b)
        d_fn = functools.partial(discriminator_losses, model=model, loss=loss, dtype=dtype)
        (d_total, d_terms), d_grads = jax.value_and_grad(d_fn, has_aux=True)(
            state.d.params, real_a, real_b, pooled_a, pooled_b
        )
        d = apply_gradients(state.d, d_grads, tx)

        metrics = {**g_terms, **d_terms, "g_total": g_total, "d_total": d_total,
                   "lr": linear_decay_rate(state.lr, state.step, state.total_steps, state.decay_steps)}
        new = state.replace(step=state.step + 1, g=g, d=d, pool_a=pool_a, pool_b=pool_b, key=key)
        return new, metrics

    return jax.jit(step, donate_argnums=0)
