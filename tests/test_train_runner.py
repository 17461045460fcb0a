"""nstjax.train.run: one runner for every trained system.

A toy system (a linear model on the channel means of tiny random images, Adam
with the constant-then-linear-decay schedule held in its state) proves what the
runner owns: resume replays an uninterrupted run bit for bit, a resumed run
that is made longer spreads its decay over the new length, the progress events
and the result say where a run resumed from, and a result reads like its final
state. Then each of the four systems' ``train`` is shown to go through
:func:`nstjax.train.run` (with ``run`` replaced: nothing is trained).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

import nstjax.adain.train
import nstjax.cyclegan.training
import nstjax.fast.train
import nstjax.sketch2photo.training
import nstjax.train
from nstjax.train import (
    Augment,
    NetState,
    TrainingInterrupted,
    TrainResult,
    TrainSettings,
    TrainSystem,
    apply_gradients,
    init_net,
    linear_decay_rate,
    plain,
)

TRUE_W = np.array([0.5, -1.0, 2.0], np.float32)
LR = 0.05


@flax.struct.dataclass
class ToyState:
    step: jax.Array
    net: NetState
    total_steps: jax.Array
    decay_steps: jax.Array


def toy_tx(total_steps, decay_steps) -> optax.GradientTransformation:
    return optax.adam(lambda count: linear_decay_rate(LR, count, total_steps, decay_steps))


def toy_init(total_steps: int, decay_steps: int) -> ToyState:
    params = {"w": np.zeros(3, np.float32), "b": np.zeros((), np.float32)}
    return ToyState(step=jnp.zeros((), jnp.int32), net=init_net(params, toy_tx(total_steps, decay_steps)),
                    total_steps=jnp.asarray(total_steps, jnp.int32), decay_steps=jnp.asarray(decay_steps, jnp.int32))


def _toy_step(state: ToyState, batch):
    x = batch["image"].mean(axis=(1, 2))  # [B, 3] channel means in [-1, 1]
    y = x @ TRUE_W + 0.25

    def loss_fn(params):
        return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state.net.params)
    net = apply_gradients(state.net, grads, toy_tx(state.total_steps, state.decay_steps))
    lr = linear_decay_rate(LR, state.step, state.total_steps, state.decay_steps)
    return state.replace(step=state.step + 1, net=net), {"loss": loss, "lr": lr}


toy_step = jax.jit(_toy_step, donate_argnums=0)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def toy_system(images: Path, steps: int) -> TrainSystem:
    settings = TrainSettings(steps=steps, batch_size=2, log_every=1, sample_every=0, checkpoint_every=0)
    return TrainSystem(
        name="toy", config=None, settings=settings, may_change_on_resume=("train.steps",),
        run_config={"system": "toy", "train": {"steps": steps, "batch_size": 2}},
        dataset=plain(images), augment=Augment(load_size=8, crop_size=8),
        init_state=toy_init, schedule_fields=("total_steps", "decay_steps"),
        make_step=lambda mesh: toy_step, export=lambda state: (state.net.params, {"system": "toy"}),
    )  # fmt: skip


def host_leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def stop_after(n: int):
    polls = []
    return lambda: polls.append(1) or len(polls) >= n


def test_resume_equals_uninterrupted(images, tmp_path):
    straight = nstjax.train.run(toy_system(images, 6), tmp_path / "straight")
    assert straight.step == 6 and straight.resumed_from is None and straight.total_steps == 6
    with pytest.raises(TrainingInterrupted) as info:
        nstjax.train.run(toy_system(images, 6), tmp_path / "split", stop=stop_after(3))
    assert info.value.step == 3
    events = []
    resumed = nstjax.train.run(toy_system(images, 6), tmp_path / "split", resume=True, progress=events.append)
    assert resumed.resumed_from == 3 and resumed.step == 6
    assert events[0].event == "start" and events[0].step == 3 and {e.resumed_from for e in events} == {3}
    for a, b in zip(host_leaves(straight.state), host_leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r["step"] for r in map(json.loads, (tmp_path / "split" / "metrics.jsonl").read_text().splitlines())] == [
        1, 2, 3, 4, 5, 6]  # fmt: skip
    assert resumed.metrics["loss"] == straight.metrics["loss"] and resumed.metrics["loss"] < 0.5
    params, config = nstjax.train.load_export(tmp_path / "split")
    np.testing.assert_array_equal(params["w"], resumed.params["w"])
    assert config == {"system": "toy"}


def test_a_longer_resumed_run_spreads_its_decay_over_the_new_length(images, tmp_path):
    with pytest.raises(TrainingInterrupted):
        nstjax.train.run(toy_system(images, 4), tmp_path / "run", stop=stop_after(2))
    longer = nstjax.train.run(toy_system(images, 8), tmp_path / "run", resume=True)
    assert longer.step == 8 and int(longer.state.total_steps) == 8 and int(longer.state.decay_steps) == 4
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # Constant for the first half of 8 steps, then linearly to 0: LR * (8 - s) / 4 at step s (0-based).
    expected = [LR * min(1.0, (8 - s) / 4) for s in range(8)]
    np.testing.assert_allclose([r["lr"] for r in records], expected, rtol=1e-6)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["steps"] == 8


def test_a_result_reads_like_its_final_state(images, tmp_path):
    result = nstjax.train.run(toy_system(images, 2), tmp_path / "run")
    assert isinstance(result, TrainResult) and result.run_dir == (tmp_path / "run").resolve()
    assert result.net is result.state.net and int(result.decay_steps) == 1  # the state's fields
    assert len(host_leaves(result)) == len(host_leaves(result.state))
    on_host = jax.device_get(result)
    assert isinstance(on_host, TrainResult) and on_host.step == 2 and isinstance(on_host.net.params["w"], np.ndarray)
    with pytest.raises(AttributeError):
        result.nothing  # noqa: B018


def test_resume_before_the_first_checkpoint_starts_again(images, tmp_path):
    nstjax.train.run(toy_system(images, 2), tmp_path / "run")
    for path in (tmp_path / "run" / "checkpoints").iterdir():  # as if killed before its first checkpoint
        if path.is_dir():
            shutil.rmtree(path)
    again = nstjax.train.run(toy_system(images, 2), tmp_path / "run", resume=True)
    assert again.resumed_from is None and again.step == 2
    assert [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] == [
        1, 2]  # fmt: skip


# ----------------------------------------------------------------------------- the four systems


@pytest.fixture
def recorded_run(monkeypatch):
    """Replaces ``run`` in each system's module; records (system, run_dir, options) and returns a marker."""
    calls = []

    def fake_run(system, run_dir, **options):
        calls.append((system, run_dir, options))
        return "result"

    for module in (nstjax.cyclegan.training, nstjax.sketch2photo.training, nstjax.fast.train, nstjax.adain.train):
        assert module.run is nstjax.train.run, module.__name__
        monkeypatch.setattr(module, "run", fake_run)
    return calls


def test_every_system_trains_through_the_runner(images, tmp_path, recorded_run):
    from nstjax.adain import AdaINConfig, train_adain
    from nstjax.cyclegan import CycleGANConfig, ModelConfig, train
    from nstjax.fast import FastConfig, train_fast
    from nstjax.sketch2photo import Pix2PixConfig, Sketch2PhotoConfig
    from nstjax.sketch2photo import train as train_sketch2photo

    settings = TrainSettings(steps=2)
    stop = lambda: False  # noqa: E731
    small = CycleGANConfig(model=ModelConfig(ngf=8, ndf=8, blocks=1, size=32), train=settings)
    assert train(images, images, tmp_path / "c", small, resume=True, stop=stop, threads=1) == "result"
    pix2pix = Sketch2PhotoConfig(model="pix2pix", size=32, pix2pix=Pix2PixConfig(), train=settings)
    assert train_sketch2photo(images, images, tmp_path / "s", pix2pix, stop=stop) == "result"
    assert train_fast(images / "0.png", images, tmp_path / "f", config=FastConfig(size=32), settings=settings,
                      weights="random", stop=stop) == "result"  # fmt: skip
    assert train_adain(images, images, tmp_path / "a", config=AdaINConfig(size=32, load_size=32), settings=settings,
                       weights="random", stop=stop) == "result"  # fmt: skip

    assert [system.name for system, _, _ in recorded_run] == ["cyclegan", "sketch2photo", "fast", "adain"]
    for system, run_dir, options in recorded_run:
        assert isinstance(system, TrainSystem) and system.run_config["system"] == system.name
        assert system.settings.steps == 2 and options["stop"] is stop
    assert recorded_run[0][2]["resume"] is True and recorded_run[0][2]["threads"] == 1
    assert recorded_run[2][0].config.style_weight is not None  # resolved from the VGG weights
    assert recorded_run[2][0].vgg_source == recorded_run[3][0].vgg_source == "random"
    assert not any((tmp_path / name).exists() for name in "csfa")  # describing a run creates nothing


def test_a_run_reports_its_plan_compilation_and_a_measured_eta(images, tmp_path, monkeypatch):
    """The start event carries the plan (steps, the step's FLOPs from XLA, a compilation), a "compiled"
    event follows the first step, and the logs' ETA is finite once steps were timed after compilation."""
    monkeypatch.setenv("NSTJAX_CACHE", str(tmp_path / "cache"))  # what a run remembers stays here
    events = []
    nstjax.train.run(toy_system(images, 6), tmp_path / "run", progress=events.append)
    kinds = [e.event for e in events]
    assert kinds[:2] == ["start", "compiled"] and kinds[-1] == "done"
    plan = events[0].plan
    assert plan.system == "toy" and (plan.start, plan.total, plan.steps) == (0, 6, 6)
    assert plan.batch == {"image": (2, 8, 8, 3)} and plan.flops_per_step > 0 and plan.compile_seconds > 0
    assert all(e.plan is None for e in events[1:])
    logs = [e for e in events if e.event == "log"]
    assert all(np.isfinite(e.eta) and e.eta >= 0 for e in logs[1:]) and logs[-1].eta == 0
