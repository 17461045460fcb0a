"""The GAN trainers' Adam in one pass per array (nstjax.native.fused_adam_update, nstjax.train.optimizer).

The native step does optax's arithmetic in optax's order with the same float32 constants and no
fused multiply-adds, so its results are optax's to the bit: every comparison here is exact.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nstjax import native
from nstjax.errors import NstjaxError
from nstjax.train import NetState, adam, apply_gradients, linear_decay_rate
from nstjax.train.optimizer import fused_adam_step


def tree(seed: int, scale: float = 1.0) -> dict:
    # Odd sizes (the threads' split falls inside arrays), a scalar-like bias, and sizes under a SIMD width.
    rng = np.random.default_rng(seed)
    shapes = {"conv": {"kernel": (4, 4, 3, 5), "bias": (5,)}, "head": {"kernel": (1, 1, 5, 1), "bias": (1,)},
              "norm": {"scale": (7,)}}  # fmt: skip
    return jax.tree.map(lambda s: jnp.asarray(scale * rng.standard_normal(s), jnp.float32), shapes,
                        is_leaf=lambda s: isinstance(s, tuple))  # fmt: skip


def optax_run(tx, params, grads_per_step):
    state = tx.init(params)
    for grads in grads_per_step:
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def assert_identical(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


SCHEDULE = functools.partial(linear_decay_rate, 2e-3, total_steps=5, decay_steps=3)


@pytest.mark.parametrize("learning_rate", [1e-3, SCHEDULE], ids=["constant", "schedule"])
def test_apply_gradients_equals_optax_to_the_bit(onednn, learning_rate, monkeypatch):
    # Five steps (the bias corrections change every step, the schedule decays over the last three), with
    # gradients of mixed scales (tiny ones: eps matters) and zeros.
    tx = adam(learning_rate, b1=0.5, b2=0.999)
    params = tree(0)
    grads = [tree(1 + k, scale=10.0 ** (k - 3)) for k in range(4)] + [jax.tree.map(jnp.zeros_like, params)]
    want_params, want_state = optax_run(optax.adam(learning_rate, b1=0.5, b2=0.999), params, grads)

    step = jax.jit(apply_gradients, static_argnums=2, donate_argnums=0)
    net = NetState(params=params, opt_state=tx.init(params))
    for g in grads:
        net = step(net, g, tx)
    assert "nstjax_fused_adam" in step.lower(net, grads[0], tx).as_text()
    assert_identical(net.params, want_params)
    assert_identical(net.opt_state, want_state)


def test_a_large_tree_split_over_threads_equals_optax(onednn):
    # Over ~1 M elements per usable core the arrays are split between threads, at boundaries inside arrays
    # (2.3 M elements in odd sizes: two threads on a 2-core machine).
    rng = np.random.default_rng(3)
    shapes = [(1_000_003,), (3, 5), (1_299_989,), (7,)]
    params = [jnp.asarray(rng.standard_normal(s), jnp.float32) for s in shapes]
    grads = [[jnp.asarray(rng.standard_normal(s) * 1e-3, jnp.float32) for s in shapes] for _ in range(2)]
    tx = adam(SCHEDULE, b1=0.5)
    net = NetState(params=params, opt_state=tx.init(params))
    for g in grads:
        net = apply_gradients(net, g, tx)
    want_params, want_state = optax_run(optax.adam(SCHEDULE, b1=0.5), params, grads)
    assert_identical(net.params, want_params)
    assert_identical(net.opt_state, want_state)


def test_one_native_call_in_place_for_the_whole_tree(onednn):
    tx = adam(1e-3)
    params = tree(0)
    net = NetState(params=params, opt_state=tx.init(params))
    step = jax.jit(apply_gradients, static_argnums=2, donate_argnums=0)
    hlo = step.lower(net, tree(1), tx).compile().as_text()
    assert hlo.count('custom_call_target="nstjax_fused_adam"') == 1
    # The donated parameters and moments are updated where they lie: no copies of them (optax's update
    # copied every first moment, its donated buffer being read after the new one was written).
    assert " copy(" not in hlo


def test_where_it_does_not_apply_optax_steps(onednn, monkeypatch):
    tx = adam(1e-3)
    params = tree(0)
    net = NetState(params=params, opt_state=tx.init(params))
    grads = tree(1)
    monkeypatch.setenv("NSTJAX_FUSED_ADAM", "0")
    assert native.fused_adam_status() == "turned off (NSTJAX_FUSED_ADAM=0)"
    assert fused_adam_step(net.params, net.opt_state, grads, tx) is None
    assert "nstjax_fused_adam" not in jax.jit(apply_gradients, static_argnums=2).lower(net, grads, tx).as_text()
    with pytest.raises(NstjaxError, match="the fused Adam cannot run here: turned off"):
        native.fused_adam_update([], [], [], [], jnp.zeros(9))
    monkeypatch.delenv("NSTJAX_FUSED_ADAM")
    # bfloat16 parameters: optax's update (the native step is float32 only).
    half = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    assert fused_adam_step(half, tx.init(half), jax.tree.map(lambda a: a.astype(jnp.bfloat16), grads), tx) is None
    want = optax_run(optax.adam(1e-3), half, [jax.tree.map(lambda a: a.astype(jnp.bfloat16), grads)])
    got = apply_gradients(NetState(params=half, opt_state=tx.init(half)), jax.tree.map(
        lambda a: a.astype(jnp.bfloat16), grads), tx)  # fmt: skip
    assert_identical(got.params, want[0])


def test_fused_adam_update_checks_its_arrays(onednn):
    p = [jnp.ones((3,), jnp.float32)]
    with pytest.raises(ValueError, match="float32"):
        native.fused_adam_update(p, p, p, [jnp.ones((3,), jnp.bfloat16)], jnp.zeros(9))
    with pytest.raises(ValueError):  # a moment missing
        native.fused_adam_update(p, p, [], p, jnp.zeros(9))


def test_a_vmapped_update_is_one_per_member(onednn):
    # vmap (e.g. over ensembles of small models) runs the call once per member: the same values as optax's.
    tx = adam(1e-3)
    params = jax.tree.map(lambda *a: jnp.stack(a), tree(0), tree(5))
    grads = jax.tree.map(lambda *a: jnp.stack(a), tree(1), tree(6))
    got = jax.vmap(lambda p, g: apply_gradients(NetState(params=p, opt_state=tx.init(p)), g, tx).params)(params, grads)
    want = jax.vmap(lambda p, g: optax_run(optax.adam(1e-3), p, [g])[0])(params, grads)
    assert_identical(got, want)
