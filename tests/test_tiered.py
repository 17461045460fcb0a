"""Tiered steps (nstjax.nst.tiered): the quick program runs while the planned one compiles, then hands over.

The planned program's compilation is held back by an event the test controls, so both tiers are seen
deterministically, whatever the machine's speed. Both tiers compute the same steps: on these tiny images
the planner picks XLA's convolutions anyway, and at 128 px (where it picks Winograd for conv1_2 .. conv4_x)
Winograd's float32 result is within a few float32 roundings of XLA's (tests/test_conv_planner.py); the
comparison below allows 1e-4 relative after a few Adam steps.
"""

from __future__ import annotations

import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nstjax.models import vgg
from nstjax.nst import StylizeConfig, engine, tiered

pytestmark = pytest.mark.skipif(jax.device_count() != 1 or jax.default_backend() != "cpu",
                                reason="tiering applies to one CPU device")  # fmt: skip


def problem(size: int):
    config = StylizeConfig(size=size, optimizer="adam", steps=4, content_layers=(("relu2_1", 1.0),),
                           style_layers=(("relu1_1", 1.0), ("relu2_1", 1.0)))  # fmt: skip
    spec = engine.make_spec(config, "torch", guided=False)
    params = engine.device_params(vgg.init_params(0))
    rng = np.random.default_rng(0)
    content = jnp.asarray(rng.random((1, size, size, 3), np.float32))
    style = jnp.asarray(rng.random((1, size, size, 3), np.float32))
    targets = engine.plain_targets(params, content, style, spec)
    weights, stop = engine.traced_settings(config)
    return spec, params, targets, weights, stop, content


class HeldCompile:
    """Stands in for run_chunk in nstjax.nst.tiered: calls pass through; ``lower`` waits for ``release``."""

    def __init__(self):
        self.release = threading.Event()
        self.lowered = threading.Event()

    def __call__(self, *args, **kwargs):
        return engine.run_chunk(*args, **kwargs)

    def lower(self, *args, **kwargs):
        self.lowered.set()
        assert self.release.wait(60), "the test never released the compilation"
        return engine.run_chunk.lower(*args, **kwargs)


def test_quick_tier_runs_until_the_planned_program_is_ready(monkeypatch):
    spec, params, targets, weights, stop, content = problem(32)
    held = HeldCompile()
    monkeypatch.setattr(tiered, "run_chunk", held)
    monkeypatch.setattr(tiered, "READY_WAIT_SECONDS", 0.0)
    chunks = tiered.TieredChunks(spec, params)
    carry = engine.init_carry_jit(content, spec)
    plain = engine.init_carry_jit(content, spec)
    chunks.start(carry, targets, weights, jnp.int32(1), stop)
    assert held.lowered.wait(60) and chunks.tier == "quick"
    carry, _ = chunks(carry, targets, weights, jnp.int32(2), stop)  # quick tier, while the compile is held
    assert chunks.tier == "quick"
    held.release.set()
    chunks.join()
    assert chunks.tier == "planned"
    carry, _ = chunks(carry, targets, weights, jnp.int32(2), stop)
    # The same four steps with the plain jitted run_chunk.
    plain, _ = engine.run_chunk(plain, params, targets, weights, jnp.int32(4), stop, spec)
    assert int(carry.step) == int(plain.step) == 4
    np.testing.assert_allclose(np.asarray(carry.image), np.asarray(plain.image), rtol=1e-4, atol=1e-6)


def test_a_ready_program_is_used_at_once_and_errors_reach_the_caller(monkeypatch):
    spec, params, targets, weights, stop, content = problem(32)
    chunks = tiered.TieredChunks(spec, params)
    carry = engine.init_carry_jit(content, spec)
    monkeypatch.setattr(tiered, "READY_WAIT_SECONDS", 60.0)  # long enough for any machine to compile 32 px
    chunks.start(carry, targets, weights, jnp.int32(1), stop)
    assert chunks.tier == "planned"

    class Broken(HeldCompile):
        def lower(self, *args, **kwargs):
            raise RuntimeError("compiler failed")

    monkeypatch.setattr(tiered, "run_chunk", Broken())
    with pytest.raises(RuntimeError, match="compiler failed"):
        chunks.start(carry, targets, weights, jnp.int32(1), stop)


def test_explicit_convolutions_run_one_program():
    spec, params, targets, weights, stop, content = problem(32)
    for impl in ("xla", "winograd"):
        chunks = tiered.TieredChunks(engine.dataclasses.replace(spec, conv_impl=impl), params)
        assert not chunks.tiered and chunks.tier == "planned"


def test_the_two_tiers_agree_where_the_plans_differ():
    # 128 px: the planned program computes conv1_2 .. conv2_x by Winograd, the quick one by XLA. Compared
    # on the objective and its gradient at one image (after optimiser steps, Adam's sign-like first
    # updates would turn rounding-level differences of near-zero gradients into whole steps).
    spec, params, targets, weights, stop, content = problem(128)
    assert vgg.conv_plan(128, 128, 64, 64, jnp.float32).method == "winograd"
    planned = vgg.with_winograd_kernels(params, spec.layers, spec.conv_impl)

    def value_and_grad(p, s):
        return jax.jit(jax.value_and_grad(lambda x: engine.objective(x, p, targets, weights, s)[0]))(content)

    (va, ga), (vb, gb) = value_and_grad(planned, spec), value_and_grad(params, engine.quick_spec(spec))
    assert abs(float(va) - float(vb)) <= 1e-5 * abs(float(vb))
    assert float(jnp.linalg.norm(ga - gb)) <= 1e-4 * float(jnp.linalg.norm(gb))


def test_a_short_scale_runs_the_quick_program_until_a_run_compiled_the_planned_one(monkeypatch, tmp_path):
    # Too few steps for its compilation to pay: no compilation starts, the quick tier runs.
    # A long scale compiles it and remembers so (it is in the persistent cache from then on); after that a
    # short scale of the same shapes takes the planned program too.
    monkeypatch.setenv("NSTJAX_CACHE", str(tmp_path))
    spec, params, targets, weights, stop, content = problem(32)
    held = HeldCompile()
    held.release.set()
    monkeypatch.setattr(tiered, "run_chunk", held)
    chunks = tiered.TieredChunks(spec, params)
    carry = engine.init_carry_jit(content, spec)
    short = 10  # steps: 32x32 px would need millions (tiered.planned_pays)
    assert not tiered.planned_pays(32 * 32, short) and tiered.planned_pays(32 * 32, 10**7)
    chunks.start(carry, targets, weights, jnp.int32(1), stop, steps=short)
    assert chunks.skipped and chunks.tier == "quick" and not held.lowered.is_set()
    carry, _ = chunks(carry, targets, weights, jnp.int32(2), stop)
    chunks.join()
    assert chunks.tier == "quick" and int(carry.step) == 2 and not held.lowered.is_set()

    chunks.start(carry, targets, weights, jnp.int32(1), stop, steps=10**7)
    chunks.join()
    assert held.lowered.is_set() and not chunks.skipped and chunks.tier == "planned"
    held.lowered.clear()
    again = tiered.TieredChunks(spec, params)  # a later run, same machine and shapes
    again.start(carry, targets, weights, jnp.int32(1), stop, steps=short)
    again.join()
    assert held.lowered.is_set() and not again.skipped and again.tier == "planned"
    # Other shapes are another program.
    other = engine.init_carry_jit(jnp.concatenate([content, content], axis=1), spec)
    again.start(other, targets, weights, jnp.int32(1), stop, steps=short)
    assert again.skipped and again.tier == "quick"


def test_planned_pays_from_fewer_steps_on_larger_images():
    # The break-even points the constants promise (docs/benchmarks.md, "Cold start"): 200 steps at 256x170 px
    # (a 3:2 photo at --size 256), 17 at 512x341; monotone in both steps and pixels.
    assert tiered.planned_pays(256 * 170, 200) and not tiered.planned_pays(256 * 170, 199)
    assert tiered.planned_pays(512 * 341, 17) and not tiered.planned_pays(512 * 341, 16)
    assert not tiered.planned_pays(256 * 170, 30) and tiered.planned_pays(512 * 341, 30)
    for steps in (1, 10, 100, 1000):
        pays = [tiered.planned_pays(side * side, steps) for side in (64, 128, 256, 384, 512, 1024)]
        assert pays == sorted(pays)  # once it pays at some size, it pays at every larger one
