"""Several processes (hosts) training one model: who writes, when they wait, what they agree on.

A multi-host run (``jax.distributed``; see :func:`nstjax.runtime.init_distributed`)
runs the same program in every process. Each process feeds its slice of the
global batch, all of them take part in every jitted step and in every orbax
checkpoint, and only the *primary* process (index 0) writes the run's plain
files: ``config.json``, metrics, loss curve, sample grids and the inference
export. The run directory must be on a filesystem every host sees.

In one process every function here is a no-op or a plain copy, so the
single-machine path costs nothing extra.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = ["any_process", "barrier", "is_primary", "multi_process", "to_host"]


def multi_process() -> bool:
    """Whether this program runs as several JAX processes."""
    return jax.process_count() > 1


def is_primary() -> bool:
    """Whether this process writes the run's files (process 0)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier ``name`` (nothing in one process)."""
    if multi_process():
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def any_process(flag: bool) -> bool:
    """True in every process when ``flag`` is true in any (a collective: all processes must call it)."""
    if not multi_process():
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.asarray([bool(flag)]))))


def _leaf_to_host(x: Any) -> Any:
    if not isinstance(x, jax.Array):
        return np.asarray(x)
    if x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
    if x.is_fully_replicated:  # train state and metrics: any local copy is the whole value
        return np.asarray(x.addressable_data(0))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def to_host(tree: Any) -> Any:
    """NumPy copies of every array in ``tree``, including arrays that span processes.

    Replicated arrays are read from a local copy; sharded ones are gathered from
    every process (a collective, so every process must call it then).
    """
    return jax.tree.map(_leaf_to_host, tree)
