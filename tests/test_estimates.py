"""Plans and ETAs of the long commands: what the plan lines count, and the cost-weighted ETA's arithmetic.

Timings and the machine's speed are injected (a fake clock, ``flops_per_second``), never measured: these
tests check arithmetic and wiring, not this machine.
"""

from __future__ import annotations

import io
import math
import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rich.console import Console

from nstjax.cli.common import TrainBar, train_plan_line
from nstjax.cli.nst import BatchBar, StepBar, batch_plan_line, plan_line
from nstjax.cli.recreate import StageBars, plan_line as recreate_plan_line
from nstjax.labels import load_palette
from nstjax.nst.batch import batch_phases
from nstjax.nst.config import preset
from nstjax.nst.estimate import estimate_run
from nstjax.nst.run import Progress, RunPlan
from nstjax.recreate.config import RecreateConfig
from nstjax.recreate.events import StageProgress, StageStart
from nstjax.recreate.plan import make_plan
from nstjax.train.estimate import Phase, WorkEta, step_flops
from nstjax.train.loop import TrainPlan, plan_training

RATE = 1e11  # injected device speed, FLOP/s


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Remembered compile times and speeds go to a fresh cache: the defaults apply, the user's stay."""
    monkeypatch.setenv("NSTJAX_CACHE", str(tmp_path / "cache"))


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate(phases, true_step, true_compile, eta: WorkEta, clock: Clock, chunk=5):
    """Run ``phases`` on a fake clock: each phase compiles (``true_compile`` s), then steps of
    ``true_step(phase)`` s in chunks. Yields (elapsed, eta's remaining, the step-count ETA: the mean time of
    the steps so far times the steps left, as a bar counting steps would say)."""
    total_steps = sum(p.units for p in phases)
    done_steps, stepping = 0, 0.0
    for i, p in enumerate(phases):
        eta.start(i)
        clock.now += true_compile + true_step(i)  # the first chunk is one step and pays for compilation
        done, done_steps, stepping = 1, done_steps + 1, stepping + true_step(i)
        yield clock.now, eta.update(i, done), stepping / done_steps * (total_steps - done_steps)
        while done < p.units:
            n = min(chunk, p.units - done)
            clock.now += n * true_step(i)
            done, done_steps, stepping = done + n, done_steps + n, stepping + n * true_step(i)
            yield clock.now, eta.update(i, done), stepping / done_steps * (total_steps - done_steps)


def test_a_multi_scale_eta_weights_the_remaining_work_by_its_cost():
    """Three scales of 100 steps, each with 4x the pixels of the one before (the predicted step costs);
    the true step time is a fixed cost plus a part proportional to the pixels, 2.5x slower than predicted,
    and each scale compiles for 20 s where 12 s were predicted. From the middle of the run on (by time)
    the ETA is within 30 % of the true remaining time; the step-count ETA is not (it is ~2x too low)."""
    predicted = [0.01, 0.04, 0.16]
    phases = [Phase(f"scale {i + 1}", 100, u, 12.0) for i, u in enumerate(predicted)]

    def true_step(i):
        return 0.05 + 2.5 * predicted[i]

    total = sum(20.0 + 100 * true_step(i) for i in range(3))  # 7.5 + 15 + 45 + 60 (compiling) = 127.5 s
    clock = Clock()
    samples = list(simulate(phases, true_step, 20.0, WorkEta(phases, clock), clock))
    assert samples[-1][0] == pytest.approx(total)
    late = [(t, eta, naive) for t, eta, naive in samples if t >= total / 2 and t < total]
    assert late, "the run has samples after its middle"
    for t, eta, _ in late:
        assert abs(eta - (total - t)) <= 0.3 * (total - t), (t, eta, total - t)
    # The step count alone: at the middle of the run (in the last scale) it says far too little.
    t, _, naive = late[0]
    assert naive < 0.7 * (total - t), (t, naive, total - t)


def test_the_eta_before_any_step_is_the_prediction_and_compilation_counts():
    phases = [Phase("a", 10, 1.0, 30.0), Phase("b", 10, 4.0, 30.0)]
    clock = Clock()
    eta = WorkEta(phases, clock)
    eta.start(0)
    assert eta.remaining() == pytest.approx(10 + 40 + 60)
    clock.now = 10.0  # compiling for 10 s: 20 s of the first compilation left
    assert eta.remaining() == pytest.approx(20 + 10 + 40 + 30)


def test_a_training_eta_comes_from_the_measured_step_time_after_compilation():
    """One phase: 1000 steps predicted at 0.1 s, really 0.3 s, after a 40 s compilation. After 51 steps
    the ETA is 949 x 0.3 s: the compilation is not spread over the steps (it would say 1.7x that)."""
    clock = Clock()
    eta = WorkEta([Phase("fast", 1000, 0.1, 30.0)], clock)
    eta.start(0)
    clock.now = 40.3
    eta.update(0, 1)
    clock.now += 50 * 0.3
    assert eta.update(0, 51) == pytest.approx(949 * 0.3)
    assert eta.compile_measured() == [pytest.approx(40.0)]


# --------------------------------------------------------------------------- plans


def test_a_stylize_plan_counts_its_scales_and_compilations():
    config = preset("gatys", size=256, steps=100, scales=(64, 128), scale_steps=(50, 50))
    shapes = [(48, 64), (96, 128), (192, 256)]
    estimate = estimate_run(config, shapes, flops_per_second=RATE, compile_seconds_per_scale=12.0)
    # Each scale's step costs about 4x the one before (VGG's FLOPs follow the pixels).
    s = estimate.step_seconds
    assert 3.5 < s[1] / s[0] < 4.5 and 3.5 < s[2] / s[1] < 4.5
    assert estimate.seconds == pytest.approx(50 * s[0] + 50 * s[1] + 100 * s[2])
    assert estimate.compile_total == 36.0
    plan = RunPlan(tuple(shapes), (50, 50, 100), config, "random", "cpu (2 cores)", "none", estimate)
    line = plan_line(plan)
    assert "64x48 → 128x96 → 256x192 px" in line and "50+50+100 steps" in line
    assert "+ 3 compilations ~0:36 (estimate)" in line, line


def test_a_batch_plan_compiles_each_size_once_per_scale():
    config = preset("gatys", size=64, steps=10, scales=(32,), scale_steps=(10,))
    small, large = ((16, 32), (32, 64)), ((24, 32), (48, 64))
    phases = batch_phases(config, [(small, 5, 2), (large, 1, 1)], "vgg19", flops_per_second=RATE)
    assert len(phases) == (3 + 1) * 2  # 3 batches of the first size, 1 of the second, 2 scales each
    assert [p.compile_seconds > 0 for p in phases] == [True, True, False, False, False, False, True, True]
    plan = types.SimpleNamespace(images=6, skipped=2, batches=4, batch_size=2, buckets=2, steps=(10, 10),
                                 seconds=sum(p.units * p.unit_seconds for p in phases),
                                 compile_seconds=sum(p.compile_seconds for p in phases), compilations=4,
                                 weights_source="random", device="cpu (2 cores)")  # fmt: skip
    line = batch_plan_line(plan)
    assert "6 images (2 done already) in 4 batches of up to 2, 2 sizes" in line and "+ 4 compilations" in line


def test_a_recreate_plan_counts_every_stage_and_scale(tmp_path, random_weights):
    """The exemplar stage at three scales, plain and semantic NST at one: five compilations, and the
    photo stage's last scale (16x the pixels of its first) costs about 16x per step."""
    from nstjax.io.images import save_image
    from nstjax.labels import save_label_map

    pal = load_palette("landscape")
    labels = np.full((96, 128), pal.index("grass"), np.int32)
    labels[:40] = pal.index("sky")
    save_label_map(tmp_path / "sketch.png", labels, pal, kind="color")
    (tmp_path / "ex" / "labels").mkdir(parents=True)
    (tmp_path / "ex" / "photos").mkdir()
    save_label_map(tmp_path / "ex" / "labels" / "a.png", labels, pal, kind="color")
    save_image(tmp_path / "ex" / "photos" / "a.png", np.full((96, 128, 3), 0.5, np.float32))
    painting = np.full((48, 64, 3), 0.4, np.float32)
    config = RecreateConfig(exemplars=tmp_path / "ex", size=256, steps=20, stages=tmp_path / "stages",
                            photo_scales=(64, 128), nst_config=preset("gatys"))  # fmt: skip
    plan = make_plan(tmp_path / "sketch.png", painting, labels[::2, ::2], None, config)
    announced = plan.announce(random_weights, flops_per_second=RATE)
    assert [s.name for s in announced.stages] == ["photo", "plain", "semantic"]
    photo = announced.stages[0].estimate
    assert len(photo.shapes) == 3 and 12 < photo.step_seconds[2] / photo.step_seconds[0] < 20
    assert announced.compilations == 5
    assert announced.seconds == pytest.approx(sum(s.estimate.seconds for s in announced.stages))
    line = recreate_plan_line(announced)
    assert "photo (exemplar-guided NST from 1 exemplar(s), 20+20+20 steps at 64x48 → 128x96 → 256x192)" in line
    assert "+ 5 compilations" in line and "(estimate)" in line, line


def test_a_training_plan_counts_the_steps_flops_and_compilation():
    @jax.jit
    def step(state, batch):
        y = jnp.tanh(batch["image"] @ state)
        return state - 0.1 * jnp.mean(y), {"loss": jnp.mean(y)}

    state = jnp.ones((64, 64), jnp.float32)
    batch = {"image": jnp.ones((4, 32, 64), jnp.float32)}
    flops = step_flops(step, state, batch)
    assert flops is not None and flops >= 2 * 4 * 32 * 64 * 64  # the matmul at least
    plan = plan_training("fast", step, state, batch, 100, 1100, flops_per_second=RATE, device="cpu (2 cores)")
    assert plan.steps == 1000 and plan.flops_per_step == flops and plan.compile_seconds == 30.0
    assert plan.seconds == pytest.approx(1000 * flops / (RATE * 0.25))
    line = train_plan_line(plan)
    assert line.startswith("fast train: 1000 steps (from step 100), batch 4x32x64") and "+ 1 compilation ~0:30" in line


# --------------------------------------------------------------------------- bars at 80 columns


def rendered(bar, events, width=80) -> list[str]:
    for event in events:
        bar(event) if not callable(event) else event(bar)
    bar.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", bar.out.getvalue())
    return [line for line in re.split(r"[\r\n]", text) if line.strip()]


def console_bar(cls, **kwargs):
    out = io.StringIO()
    bar = cls(console=Console(file=out, width=80, force_terminal=True, color_system=None), **kwargs)
    bar.out = out
    return bar


def test_every_bar_shows_compiling_then_counts_with_the_library_eta_in_80_columns():
    config = preset("gatys", size=256, steps=100, scales=(128,), scale_steps=(50,))
    shapes = ((96, 128), (192, 256))
    estimate = estimate_run(config, shapes, flops_per_second=RATE, compile_seconds_per_scale=12.0)
    plan = RunPlan(shapes, (50, 100), config, "random", "cpu (2 cores)", "none", estimate)
    terms = {"content": 0.123456, "style": 1.23456, "tv": 0.000123}

    def progress(scale, step, steps, eta):
        return Progress(scale=scale, scales=2, size=shapes[scale - 1], step=step, steps=steps, evaluations=step,
                        loss=1.358, terms=terms, elapsed=1.0, evals_per_second=0.35, best_image=lambda: None,
                        eta=eta)  # fmt: skip

    bar = console_bar(StepBar)
    lines = rendered(bar, [lambda b: b.start(plan), progress(1, 50, 50, 3725.0), progress(2, 40, 100, 65.0)])
    assert lines[0].startswith("stylize 128x96 → 256x192 px") and "2 compilations" in lines[0]
    bars = lines[1:]
    assert any("scale 1/2" in line and "compiling" in line for line in bars)
    assert any("scale 2/2" in line and "compiling" in line for line in bars)  # after scale 1's last step
    assert all(len(line) <= 80 for line in bars), bars
    assert "40/100" in bars[-1] and "ETA 0:01:05" in bars[-1], bars[-1]

    stage_bar = console_bar(StageBars)
    p = progress(2, 40, 100, 65.0)
    lines = rendered(stage_bar, [StageStart("semantic", "semantic NST", 150), StageProgress("semantic", 90, 150, p, 65.0)])
    assert any("compiling" in line for line in lines) and all(len(line) <= 80 for line in lines), lines
    assert "90/150" in lines[-1] and "ETA 0:01:05" in lines[-1]

    train_plan = TrainPlan("cyclegan", 0, 12000, {"a": (1, 256, 256, 3)}, 1.3e11, 2.0, 30.0, "cpu (2 cores)")

    def train_event(name, step, **kw):
        return types.SimpleNamespace(event=name, step=step, total=12000, metrics=kw.get("metrics", {}),
                                     steps_per_second=kw.get("rate", 0.0), skipped_files=0, resumed_from=None,
                                     elapsed=kw.get("elapsed", 0.0), eta=kw.get("eta", math.inf),
                                     plan=kw.get("plan"))  # fmt: skip

    metrics = {"g_loss": 1.234, "d_loss": 0.51, "cycle": 3.2, "idt": 1.1, "d_a": 0.3, "d_b": 0.3}
    train_bar = console_bar(TrainBar, label="cyclegan")
    lines = rendered(train_bar, [train_event("start", 0, plan=train_plan), train_event("compiled", 1, elapsed=41.0),
                                 train_event("log", 50, metrics=metrics, rate=0.5, eta=23900.0)])  # fmt: skip
    assert lines[0].startswith("cyclegan train: 12000 steps, batch 1x256x256, 130 GFLOP/step")
    assert any("compiling step 1" in line for line in lines)
    assert train_bar.row(train_event("compiled", 1, elapsed=41.0)).info == "compiled in 0:41, training"
    assert all(len(line) <= 80 for line in lines[1:]) and "50/12000" in lines[-1] and "ETA 6:38:20" in lines[-1]

    batch_bar = console_bar(BatchBar)
    batch_plan = types.SimpleNamespace(images=8, skipped=0, batches=2, batch_size=4, buckets=1, steps=(10,),
                                       seconds=100.0, compile_seconds=12.0, compilations=1, weights_source="random",
                                       device="cpu (2 cores)")  # fmt: skip
    lines = rendered(batch_bar, [lambda b: b.start(batch_plan)])
    assert lines[0].startswith("stylize-batch 8 images") and any("compiling" in line for line in lines[1:])
    assert all(len(line) <= 80 for line in lines[1:])
