"""The GAN trainers' Adam: ``optax.adam``, stepped in one pass per array on CPU where it can be.

:func:`adam` is ``optax.adam`` (same ``init``, ``update`` and state) that also carries its
hyperparameters, so :func:`~nstjax.train.state.apply_gradients` can step it with
:func:`nstjax.native.fused_adam_update` instead of optax's update and ``apply_updates``:
XLA:CPU runs those as three loops and a copy per array (13 passes over its size against
Adam's 7: docs/benchmarks.md, "GAN steps: one pass of Adam"). Same arithmetic in the same
order: the results are optax's to the bit (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .. import native

__all__ = ["Adam", "adam", "fused_adam_step"]


class Adam(NamedTuple):
    """``optax.adam(learning_rate, b1, b2, eps)`` as a GradientTransformation (``init``, ``update``), with its
    settings. ``learning_rate``: a number or a schedule of the step count (float32 result)."""

    init: Callable
    update: Callable
    learning_rate: float | Callable[[jax.Array], jax.Array]
    b1: float
    b2: float
    eps: float


def adam(learning_rate: float | Callable[[jax.Array], jax.Array], b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8) -> Adam:  # fmt: skip
    """``optax.adam`` (``eps_root`` 0, no Nesterov), which :func:`fused_adam_step` may step."""
    tx = optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)
    return Adam(tx.init, tx.update, learning_rate, b1, b2, eps)


def fused_adam_step(params: Any, opt_state: Any, grads: Any, tx: Adam) -> tuple[Any, Any] | None:
    """``(params', opt_state')`` of one step of ``tx`` by :func:`nstjax.native.fused_adam_update`, or None
    where it does not apply (the native library missing or off, an accelerator, a non-float32 leaf): the caller
    then takes optax's update."""
    leaves = jax.tree.leaves((params, grads))
    if any(jnp.asarray(a).dtype != jnp.float32 for a in leaves) or not native.fused_adam_available():
        return None
    adam_state, rate_state = opt_state
    count = optax.safe_increment(adam_state.count)
    if callable(tx.learning_rate):  # optax's scale_by_schedule: the rate of its own count, then that count + 1
        step = -1 * tx.learning_rate(rate_state.count)
        rate_state = optax.ScaleByScheduleState(count=optax.safe_increment(rate_state.count))
    else:
        step = -tx.learning_rate
    # Each float32 as optax computes it (bias corrections from the int32 count, constants rounded once).
    scalars = jnp.stack([jnp.asarray(a, jnp.float32) for a in (
        step, 1 - tx.b1**count, 1 - tx.b2**count, 1 - tx.b1, tx.b1, 1 - tx.b2, tx.b2, tx.eps, 0.0)])  # fmt: skip
    treedef = jax.tree.structure(params)
    new_params, mu, nu = native.fused_adam_update(jax.tree.leaves(params), treedef.flatten_up_to(adam_state.mu),
                                                  treedef.flatten_up_to(adam_state.nu), treedef.flatten_up_to(grads),
                                                  scalars)  # fmt: skip
    adam_state = optax.ScaleByAdamState(count=count, mu=treedef.unflatten(mu), nu=treedef.unflatten(nu))
    return treedef.unflatten(new_params), (adam_state, rate_state)
