"""Adam in one pass per array, through the native library (CPU): :func:`fused_adam_update`."""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from ..errors import NstjaxError
from ._onednn import ADAM_TARGET, load_library

__all__ = ["fused_adam_available", "fused_adam_status", "fused_adam_update"]


def fused_adam_status() -> str | None:
    """None when :func:`fused_adam_update` can run here, else why not (one line).

    Off with ``NSTJAX_FUSED_ADAM=0``; CPU only (accelerators fuse Adam themselves); needs the
    native library (the ``onednn`` extra and a C++ compiler, :func:`load_library`).
    """
    if os.environ.get("NSTJAX_FUSED_ADAM", "1") == "0":
        return "turned off (NSTJAX_FUSED_ADAM=0)"
    if jax.default_backend() != "cpu":
        return "the fused Adam is for CPU only"
    return load_library()


def fused_adam_available() -> bool:
    """Whether :func:`fused_adam_update` can run here (:func:`fused_adam_status` says why not)."""
    return fused_adam_status() is None


def fused_adam_update(params: Sequence[jax.Array], mu: Sequence[jax.Array], nu: Sequence[jax.Array],
                      grads: Sequence[jax.Array], scalars: jax.Array) -> tuple[list, list, list]:  # fmt: skip
    """One Adam step over float32 arrays, each read and written once: ``(params', mu', nu')``.

    ``params``, ``mu``, ``nu``, ``grads``: equal-length lists, the i-th of each of one shape.
    ``scalars``: float32 [9], ``(step, 1 - b1^t, 1 - b2^t, 1 - b1, b1, 1 - b2, b2, eps, eps_root)``
    with ``step`` the negated learning rate and ``t`` the step count after this step. Per
    element, in optax's order of operations: ``m' = (1 - b1) g + b1 m``, ``v' = (1 - b2) g² +
    b2 v``, ``p' = p + step (m' / c1) / (sqrt(v' / c2 + eps_root) + eps)``. The results take the
    inputs' buffers where XLA may reuse them (donated state). Raises
    :class:`~nstjax.errors.NstjaxError` where :func:`fused_adam_status` says it cannot run.
    """
    reason = fused_adam_status()
    if reason is not None:
        raise NstjaxError(f"the fused Adam cannot run here: {reason}")
    arrays = [a for group in zip(params, mu, nu, grads, strict=True) for a in group]
    if any(jnp.asarray(a).dtype != jnp.float32 for a in arrays):
        raise ValueError("the fused Adam takes float32 parameters, moments and gradients")
    results = [jax.ShapeDtypeStruct(a.shape, jnp.float32) for p, m, v in zip(params, mu, nu) for a in (p, m, v)]
    # Operand 0 is the scalars; array i's p, m, v are operands 1 + 4i + k and results 3i + k.
    aliases = {1 + 4 * i + k: 3 * i + k for i in range(len(params)) for k in range(3)}
    call = jax.ffi.ffi_call(ADAM_TARGET, results, input_output_aliases=aliases, vmap_method="sequential")
    out = call(jnp.asarray(scalars, jnp.float32), *arrays)
    return list(out[0::3]), list(out[1::3]), list(out[2::3])
