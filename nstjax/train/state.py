"""Train state of one network, optimiser schedules, and the data-parallel layout.

A system's whole train state is a ``flax.struct.dataclass`` of its own with a
``step`` field (int32 scalar), one :class:`NetState` per optimised network (or
group of networks sharing an optimiser) and anything else it carries (a PRNG
key, the CycleGAN image pool). Being a pytree, it is checkpointed whole and
passed through ``jax.jit`` with ``donate_argnums``.

Layout: one mesh axis, ``"data"``, over every device of every host. Batches
are split along their first axis; the train state is replicated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..errors import NstjaxError
from .optimizer import Adam, fused_adam_step

__all__ = [
    "DATA_AXIS",
    "NetState",
    "apply_gradients",
    "check_batch_splits",
    "constant_then_linear_decay",
    "linear_decay_rate",
    "data_mesh",
    "init_net",
    "replicate",
    "shard_batch",
]

DATA_AXIS = "data"


@flax.struct.dataclass
class NetState:
    """Parameters and optimiser state of one network (or of networks sharing one optimiser).

    The optimiser itself (an ``optax`` transformation) is not stored: it is
    rebuilt from the system's config wherever it is needed, so the state holds
    arrays only.
    """

    params: Any
    opt_state: Any


def init_net(params: Any, tx: optax.GradientTransformation) -> NetState:
    """A :class:`NetState` for ``params`` with ``tx``'s fresh optimiser state."""
    return NetState(params=params, opt_state=tx.init(params))


def apply_gradients(net: NetState, grads: Any, tx: optax.GradientTransformation) -> NetState:
    """One optimiser step: ``params ← params + tx.update(grads)``; an :func:`~nstjax.train.optimizer.adam` in one
    pass per array where :func:`~nstjax.train.optimizer.fused_adam_step` can (the same values)."""
    if isinstance(tx, Adam):
        fused = fused_adam_step(net.params, net.opt_state, grads, tx)
        if fused is not None:
            return NetState(params=fused[0], opt_state=fused[1])
    updates, opt_state = tx.update(grads, net.opt_state, net.params)
    return NetState(params=optax.apply_updates(net.params, updates), opt_state=opt_state)


def linear_decay_rate(base: Any, step: Any, total_steps: Any, decay_steps: Any) -> jax.Array:
    """``base`` until ``total_steps - decay_steps``, then linearly to 0 at ``total_steps`` (traceable).

    The schedule of :func:`constant_then_linear_decay` with every argument a number
    or a (traced) array, so a run's length and base rate can live in its train
    state: a resumed run may be made longer without recompiling or changing the
    optimiser state's structure. float32 scalar.
    """
    step = jnp.asarray(step, jnp.float32)
    total = jnp.asarray(total_steps, jnp.float32)
    decay = jnp.asarray(decay_steps, jnp.float32)
    fraction = jnp.clip((total - step) / jnp.maximum(decay, 1.0), 0.0, 1.0)
    return base * jnp.where(decay > 0, fraction, 1.0)


def constant_then_linear_decay(learning_rate: float, total_steps: int, decay_steps: int) -> optax.Schedule:
    """``learning_rate`` for ``total_steps - decay_steps`` steps, then linearly to 0 at ``total_steps``.

    The CycleGAN / pix2pix schedule (100 epochs constant, 100 decaying, in the papers).
    """
    decay_steps = max(0, min(int(decay_steps), int(total_steps)))
    flat = int(total_steps) - decay_steps
    if decay_steps == 0:
        return optax.constant_schedule(learning_rate)
    return optax.join_schedules(
        [optax.constant_schedule(learning_rate), optax.linear_schedule(learning_rate, 0.0, decay_steps)], [flat]
    )


def data_mesh(devices: Any = None) -> Mesh:
    """A one-axis (``"data"``) mesh over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """``tree`` placed whole on every device of ``mesh``.

    When ``mesh`` spans several processes each must pass the same values (a seeded
    initialisation is); every leaf then goes through host memory, since an array on
    one local device cannot be placed on another host's devices directly.
    """
    sharding = NamedSharding(mesh, P())
    if not mesh.is_multi_process:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: jax.device_put(np.asarray(x), sharding), tree)


def check_batch_splits(batch_size: int, mesh: Mesh) -> None:
    """Raise NstjaxError unless a global batch of ``batch_size`` splits evenly over ``mesh``'s devices.

    Training entry points call it before they create a run directory, so the mistake
    costs nothing.
    """
    devices = mesh.devices.size
    if batch_size % devices:
        raise NstjaxError(f"batch size {batch_size} does not split over {devices} devices; "
                          f"use a multiple of {devices}")  # fmt: skip


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """A global batch split along axis 0 over ``mesh``'s devices, from this host's part of it.

    Each process passes its own contiguous slice of the global batch (what
    :class:`~nstjax.train.data.BatchLoader` yields for its ``process_index``).
    """
    sharding = NamedSharding(mesh, P(DATA_AXIS))
    out = {}
    for name, local in batch.items():
        global_size = local.shape[0] * jax.process_count()
        check_batch_splits(global_size, mesh)
        out[name] = jax.make_array_from_process_local_data(sharding, local, (global_size, *local.shape[1:]))
    return out
