"""Batch stylisation: multi-device parity with single runs, early-stop freezing, buckets, resume.

In-process tests use one tiny Adam config (compiles in seconds); the multi-device
check runs L-BFGS in a subprocess with 4 virtual CPU devices, because XLA's device
count is fixed once jax has started in this process. That subprocess is started
when the module's first test begins and runs while the in-process tests do (XLA
compiles on one core; the machine has two).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image

from nstjax.io import images
from nstjax.nst import batch
from nstjax.nst.batch import (
    MANIFEST_NAME,
    TRACE_COUNTS,
    bucket_key,
    read_manifest,
    stylize_batch,
)
from nstjax.nst.config import preset
from nstjax.errors import NstjaxError

# Two shallow blocks are enough for the batching mechanics; Adam keeps each compile to a few
# seconds. Every in-process test uses this one config so a bucket shape compiles once per session.
CFG_KWARGS = dict(
    size=16,
    steps=3,
    optimizer="adam",
    learning_rate=0.05,
    tolerance=0.0,
    pooling="max",
    content_layers=(("relu2_1", 1.0),),
    style_layers=(("relu1_1", 1.0), ("relu2_1", 1.0)),
)
CFG = preset("gatys", **CFG_KWARGS)
WIDE = (16, 24)  # -> (11, 16) at size 16
TALL = (24, 16)  # -> (16, 11)

PARITY_TEST = "test_multi_device_batch_matches_single_runs"

# Runs with XLA_FLAGS=--xla_force_host_platform_device_count=4. Prints one JSON line.
MULTI_DEVICE_CODE = r"""
import json, time
import numpy as np
import jax, jax.numpy as jnp
from jax.sharding import PartitionSpec as P

assert len(jax.devices()) == 4, jax.devices()
from nstjax.nst import batch as B
from nstjax.nst.config import preset
from nstjax.nst.problem import Problem
from nstjax.nst.run import run_stylize
from nstjax.weights import random_weights

cfg = preset("gatys", size=16, steps=5, tolerance=0.0, pooling="max", optimizer="lbfgs",
             content_layers=(("relu2_1", 1.0),), style_layers=(("relu1_1", 1.0), ("relu2_1", 1.0)))
w = random_weights(0)
rng = np.random.default_rng(0)
contents = [(rng.random((16, 16, 3)) * 0.5 + 0.25 * (i % 3)).astype(np.float32) for i in range(8)]
style = np.random.default_rng(2).random((16, 16, 3)).astype(np.float32)
out = {"devices": len(jax.devices())}

t = time.perf_counter()
batched = B.stylize_images(contents, style, weights=w, config=cfg, batch_size=8)
out["batch_seconds"] = time.perf_counter() - t
t = time.perf_counter()
single = [run_stylize(c, style, weights=w, config=cfg) for c in contents]
out["single_seconds"] = time.perf_counter() - t
out["max_diff"] = max(float(np.abs(b.image - s.image).max()) for b, s in zip(batched, single))
out["loss_rel"] = max(abs(b.loss - s.loss) / s.loss for b, s in zip(batched, single))
out["steps"] = [[b.steps, s.steps] for b, s in zip(batched, single)]
out["evaluations"] = [[b.evaluations, s.evaluations] for b, s in zip(batched, single)]

# Early stop per image: a 5 % relative-improvement bar with patience 1 stops images at
# different steps; each must still equal its own single run.
early = cfg.replace(steps=30, tolerance=0.05, patience=1)
batched = B.stylize_images(contents, style, weights=w, config=early, batch_size=8)
single = [run_stylize(c, style, weights=w, config=early) for c in contents]
out["early_max_diff"] = max(float(np.abs(b.image - s.image).max()) for b, s in zip(batched, single))
out["early_steps"] = [[b.steps, s.steps, b.stopped, s.stopped] for b, s in zip(batched, single)]
out["traces"] = {str(k): v for k, v in B.TRACE_COUNTS.items()}

# Freezing under the batched while_loop: images 0 and 5 start with their stall counter at
# `patience`, so their loop condition is false from the start; the others run 3 steps.
eng = B.BatchEngine.create(cfg, w, [style], 0)
spec = eng.spec("none")
targets = eng.targets([Problem(c, [style], cfg, w) for c in contents], (16, 16), spec)
x = jax.device_put(np.stack(contents)[:, None], eng.batched())
carry = B.batch_init_carry(x, jax.device_put(np.zeros(8, bool), eng.batched()), spec, eng.batched())
stall = np.zeros(8, np.int32)
stall[[0, 5]] = cfg.patience
carry = carry._replace(stall=jax.device_put(stall, eng.batched()))
before = jax.tree.map(np.asarray, carry)  # host copy: the chunk donates `carry`
carry, hist = B.batch_run_chunk(carry, eng.params, targets, eng.loss_weights, jnp.int32(3), eng.stop,
                             spec, False, eng.batched())
after = jax.tree.map(np.asarray, carry)
same = lambda i: all(np.array_equal(a[i], b[i]) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))
out["frozen_unchanged"] = [same(0), same(5)]
out["others_moved"] = [not np.array_equal(before.image[i], after.image[i]) for i in (1, 2, 3, 4, 6, 7)]
out["steps_after"] = after.step.tolist()
out["frozen_history_nan"] = bool(np.isnan(np.asarray(hist)[[0, 5]]).all())
out["image_spec"] = carry.image.sharding.spec == P("batch")
out["shard_shapes"] = [list(s.data.shape) for s in carry.image.addressable_shards]
out["traces_after"] = {str(k): v for k, v in B.TRACE_COUNTS.items()}
print(json.dumps(out))
"""


@pytest.fixture(scope="module", autouse=True)
def multi_device_job(request, tmp_path_factory):
    """Start the 4-device subprocess early (only when its test is selected); yield its handle."""
    if not any(item.name == PARITY_TEST for item in request.session.items):
        yield None
        return
    logs = tmp_path_factory.mktemp("multi_device")
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    env["JAX_PLATFORMS"] = "cpu"
    with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", MULTI_DEVICE_CODE], stdout=out, stderr=err, env=env)
    handle = {"proc": proc, "logs": logs, "start": time.perf_counter()}
    yield handle
    if proc.poll() is None:  # the test did not wait for it (failed early): stop our own child
        proc.kill()
        proc.wait()


def write_images(directory: Path, shapes, seed=0, suffix=".png") -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, shape in enumerate(shapes):
        path = directory / f"img{i:02d}{suffix}"
        images.save_image(path, smooth_image(shape, seed + i))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def style_image_small():
    return np.random.default_rng(2).random((16, 16, 3)).astype(np.float32)


def manifest_lines(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / MANIFEST_NAME).read_text().splitlines() if line.startswith("{")]


# --------------------------------------------------------------------------- buckets


def test_bucket_key_policy():
    assert bucket_key((600, 800), preset(None, size=512)) == ((384, 512),)
    # Exact shapes: 16x24 and 15x24 photos differ by one row at size 16.
    assert bucket_key(WIDE, CFG) == ((11, 16),)
    assert bucket_key((15, 24), CFG) == ((10, 16),)
    # Rounding the short side to a multiple of 4 puts both into one bucket; the long side stays.
    assert bucket_key(WIDE, CFG, 4) == bucket_key((15, 24), CFG, 4) == ((12, 16),)
    assert bucket_key(TALL, CFG, 4) == ((16, 12),)
    # Never below the multiple, never above the long side.
    assert bucket_key((2, 24), CFG, 4) == ((4, 16),)
    assert bucket_key((16, 17), CFG, 8) == ((16, 16),)
    # With coarser scales every scale's shape is part of the key.
    multi = CFG.replace(scales=(8,))
    assert bucket_key(WIDE, multi) == ((5, 8), (11, 16))


def test_two_aspect_ratios_two_buckets_one_compile_each(tmp_path, random_weights, style_image_small):
    write_images(tmp_path / "in", [WIDE, WIDE, WIDE, TALL])
    report = stylize_batch(tmp_path / "in", style_image_small, tmp_path / "out", weights=random_weights,
                           config=CFG, batch_size=2)
    assert report.ok and len(report.written) == 4 and not report.skipped
    shapes = {r["output"]: tuple(r["shape"]) for r in report.written}
    assert sorted(shapes.values()) == [(11, 16)] * 3 + [(16, 11)]
    # The wide bucket ran two batches of 2 (the second padded), the tall one a padded batch
    # of 2: each program was traced (so compiled) exactly once in this whole session.
    assert TRACE_COUNTS[(2, 1, 11, 16, 3)] == 1
    assert TRACE_COUNTS[(2, 1, 16, 11, 3)] == 1
    assert {r["batch_size"] for r in report.written} == {2}
    for name, shape in shapes.items():
        assert images.load_image(tmp_path / "out" / name).shape == (*shape, 3)


def test_colour_preservation_gives_each_image_its_own_style_targets(random_weights, style_image_small):
    # Histogram matching adapts the style to each content image, so the style Grams are batched
    # (in_axes 0) instead of shared. Image a batched with b must come out as a batched with a
    # itself (and b likewise): a mix-up of the per-image Grams would show. All three calls run
    # one compiled program; parity with run_stylize is the multi-device test's job.
    config = CFG.replace(preserve_color="histogram")
    a, b = smooth_image(WIDE, 30), smooth_image(WIDE, 31) * 0.5
    run = dict(weights=random_weights, config=config, batch_size=2)
    mixed = batch.stylize_images([a, b], style_image_small, **run)
    only_a = batch.stylize_images([a, a], style_image_small, **run)
    only_b = batch.stylize_images([b, b], style_image_small, **run)
    np.testing.assert_allclose(mixed[0].image, only_a[0].image, atol=1e-6)
    np.testing.assert_allclose(mixed[1].image, only_b[0].image, atol=1e-6)
    assert mixed[0].loss == pytest.approx(only_a[0].loss, rel=1e-6)
    assert np.abs(mixed[0].image - mixed[1].image).max() > 0.05


# --------------------------------------------------------------------------- resume


def test_killed_job_resumes_without_redoing_finished_images(tmp_path, random_weights, style_image_small):
    inputs = write_images(tmp_path / "in", [WIDE] * 5, seed=10)
    out = tmp_path / "out"
    run = dict(weights=random_weights, config=CFG, batch_size=2)

    def die_after_first_batch(p):
        if p.batch_finished:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        stylize_batch(tmp_path / "in", style_image_small, out, progress=die_after_first_batch, **run)
    first = manifest_lines(out)
    assert [r["status"] for r in first] == ["done", "done"]
    finished = {r["output"]: (out / r["output"]).stat().st_mtime_ns for r in first}
    assert sorted(p.name for p in out.glob("*.png")) == sorted(finished)

    # A crash mid-write leaves a partial last line: it must be ignored, not glued onto.
    with open(out / MANIFEST_NAME, "a") as f:
        f.write('{"output": "img04.png", "sta')
    progress_calls = []
    report = stylize_batch(tmp_path / "in", style_image_small, out, progress=progress_calls.append, **run)
    assert sorted(report.skipped) == sorted(finished)
    assert len(report.written) == 3 and report.ok
    for name, mtime in finished.items():
        assert (out / name).stat().st_mtime_ns == mtime  # not rewritten
    assert progress_calls[-1].done == progress_calls[-1].total == 5
    assert progress_calls[-1].skipped == 2
    records = read_manifest(out)
    assert sorted(records) == sorted(f"{p.stem}.png" for p in inputs)
    for name, record in records.items():
        assert record["status"] == "done"
        assert record["loss"]["total"] > 0 and record["steps"] == CFG.steps
        assert set(record["loss"]) == {"total", "content", "style", "tv"}
        assert record["settings"]["config"]["size"] == CFG.size and record["settings"]["weights"]["source"] == "random"
        assert images.load_image(out / name).shape == (11, 16, 3)

    # A truncated output listed as done is redone; nothing else is.
    victim = out / "img01.png"
    victim.write_bytes(victim.read_bytes()[:40])
    report = stylize_batch(tmp_path / "in", style_image_small, out, **run)
    assert [r["output"] for r in report.written] == ["img01.png"]
    assert len(report.skipped) == 4
    assert images.load_image(victim).shape == (11, 16, 3)

    # Different settings: everything is redone.
    report = stylize_batch(tmp_path / "in", style_image_small, out, **{**run, "config": CFG.replace(steps=2)})
    assert len(report.written) == 5 and not report.skipped
    assert all(r["steps"] == 2 for r in report.written)


# --------------------------------------------------------------------------- bad input


# The CLI flags that give CFG (for tests through `nstjax stylize-batch`).
CFG_FLAGS = [
    "--preset", "gatys", "--size", "16", "--steps", "3", "--optimizer", "adam", "--lr", "0.05",
    "--tolerance", "0", "--pooling", "max", "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1",
    "--weights", "random", "--batch-size", "2",
]  # fmt: skip


def run_cli(*args):
    from typer.testing import CliRunner

    from nstjax.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_flags_give_the_test_config():
    from nstjax.cli.nst import STYLE_OPTIONS, config_from_options

    options = {name: default for name, (_, default) in STYLE_OPTIONS.items()}
    options.update(preset="gatys", size=16, steps=3, optimizer="adam", lr=0.05, tolerance=0.0, pooling="max",
                   content_layers="relu2_1", style_layers="relu1_1,relu2_1")
    assert config_from_options(options) == CFG


def test_bad_images_fail_alone_and_exit_nonzero(tmp_path, random_weights, style_image_small):
    good = write_images(tmp_path / "in", [WIDE, WIDE, WIDE], seed=20)
    (tmp_path / "in" / "garbage.png").write_bytes(b"not a png")
    # A valid header with truncated data: passes the header probe, fails when decoded, so its
    # slot in the batch is taken by the next image.
    data = good[0].read_bytes()
    (tmp_path / "in" / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "in" / "notes.txt").write_text("not an input")
    style = tmp_path / "style.png"
    images.save_image(style, style_image_small)
    result = run_cli("stylize-batch", tmp_path / "in", style, "-o", tmp_path / "out", *CFG_FLAGS)
    assert result.exit_code == 1, (result.output, result.exception)
    log = result.stderr
    assert "garbage.png: not an image" in log and "cut.png: corrupt or truncated" in log
    assert "img/s" in log and "5/5" in log
    assert "wrote 3 images" in result.stdout and "2 failed" in result.stdout
    records = read_manifest(tmp_path / "out")
    assert {k: v["status"] for k, v in records.items()} == {
        "garbage.png": "failed", "cut.png": "failed", "img00.png": "done", "img01.png": "done", "img02.png": "done",
    }
    assert all("\n" not in r["error"] for r in records.values() if r["status"] == "failed")
    # A rerun retries only the failures (and fails again).
    result = run_cli("stylize-batch", tmp_path / "in", style, "-o", tmp_path / "out", *CFG_FLAGS, "--quiet")
    assert result.exit_code == 1
    assert "3 already done" in result.stdout
    assert len(read_manifest(tmp_path / "out")) == 5


def test_ctrl_c_exits_130_and_keeps_finished_batches(tmp_path, style_image_small, monkeypatch):
    from nstjax.cli import nst as cli_nst

    write_images(tmp_path / "in", [WIDE] * 3, seed=40)
    style = tmp_path / "style.png"
    images.save_image(style, style_image_small)

    def interrupt_after_first_batch(self, p):
        if p.batch_finished:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_nst.BatchBar, "__call__", interrupt_after_first_batch)
    result = run_cli("stylize-batch", tmp_path / "in", style, "-o", tmp_path / "out", *CFG_FLAGS)
    assert result.exit_code == 130, (result.output, result.exception)
    assert "rerun the same command to resume" in result.stderr
    assert sorted(read_manifest(tmp_path / "out")) == ["img00.png", "img01.png"]


def test_job_level_errors(tmp_path, random_weights, style_image_small):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NstjaxError, match="no images found"):
        stylize_batch(tmp_path / "empty", style_image_small, tmp_path / "out", weights=random_weights, config=CFG)
    (tmp_path / "file").write_text("x")
    write_images(tmp_path / "in", [TALL])  # one tall image, padded to a batch of 2: the bucket test's program
    with pytest.raises(NstjaxError, match="output directory is a file"):
        stylize_batch(tmp_path / "in", style_image_small, tmp_path / "file", weights=random_weights, config=CFG)
    a = write_images(tmp_path / "a", [WIDE])[0]
    b = write_images(tmp_path / "b", [WIDE], suffix=".jpg")[0]
    with pytest.raises(NstjaxError, match="would both be written"):
        stylize_batch([a, b], style_image_small, tmp_path / "out", weights=random_weights, config=CFG)
    with pytest.raises(NstjaxError, match="no such file or directory"):
        stylize_batch(tmp_path / "missing", style_image_small, tmp_path / "out", weights=random_weights, config=CFG)
    # Globs and created output directories.
    found = batch.collect_inputs(str(tmp_path / "*" / "img*.*"))
    assert [p.name for p in found] == ["img00.png", "img00.jpg", "img00.png"]
    assert not (tmp_path / "new" / "deep").exists()
    report = stylize_batch(str(tmp_path / "in" / "*.png"), style_image_small, tmp_path / "new" / "deep",
                           weights=random_weights, config=CFG, batch_size=2)
    assert report.ok and (tmp_path / "new" / "deep" / "img00.png").is_file()


# --------------------------------------------------------------------------- multiple devices


def test_multi_device_batch_matches_single_runs(multi_device_job):
    proc = multi_device_job["proc"]
    try:
        proc.wait(timeout=400)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    logs = multi_device_job["logs"]
    stdout = (logs / "stdout").read_text()
    assert proc.returncode == 0, (logs / "stderr").read_text()[-3000:]
    out = json.loads(stdout.strip().splitlines()[-1])
    print("multi-device run:", out)  # observed tolerances and timings (pytest -s)
    assert out["devices"] == 4
    # 8 images on 4 devices (2 each), own L-BFGS state and line search per image, against
    # run_stylize on each image alone: the same arithmetic, so the same pixels (observed: 0.0).
    assert out["max_diff"] <= 1e-5, out
    assert out["loss_rel"] <= 1e-5, out
    assert all(b == s for b, s in out["steps"]) and all(b == s for b, s in out["evaluations"])
    # With early stopping, images stop at different steps, and still match.
    assert out["early_max_diff"] <= 1e-5, out
    assert all(b == s and bs == ss for b, s, bs, ss in out["early_steps"]), out
    assert len({b for b, *_ in out["early_steps"]}) > 1, out  # they really stopped at different times
    assert out["traces"] == {"(8, 1, 16, 16, 3)": 1}  # one compile for both runs
    # Frozen images are bit-for-bit unchanged (every carry leaf), the others stepped.
    assert out["frozen_unchanged"] == [True, True]
    assert all(out["others_moved"])
    assert out["steps_after"] == [0, 3, 3, 3, 3, 0, 3, 3]
    assert out["frozen_history_nan"]
    assert out["image_spec"] is True  # sharded over the batch axis
    assert out["shard_shapes"] == [[2, 1, 16, 16, 3]] * 4
    assert out["traces_after"] == {"(8, 1, 16, 16, 3)": 1}



# --------------------------------------------------------------------------- several processes (jax.distributed)

# One process of a two-process job on this machine: jax.distributed over 127.0.0.1, started by
# stylize_batch itself from the JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID
# environment, as on a cluster. Prints one JSON line.
MULTI_PROCESS_CODE = r"""
import json, sys
import jax
from nstjax.nst import batch
from nstjax.nst.config import preset
from nstjax.weights import random_weights

kwargs = json.loads(sys.argv[4])
for key in ("content_layers", "style_layers"):
    kwargs[key] = tuple(tuple(pair) for pair in kwargs[key])
report = batch.stylize_batch(sys.argv[1], sys.argv[2], sys.argv[3], weights=random_weights(0),
                             config=preset("gatys", **kwargs))
print(json.dumps({"process_index": jax.process_index(), "process_count": jax.process_count(),
                  "written": len(report.written), "ok": report.ok}))
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_share_the_job(tmp_path, random_weights):
    """Two processes joined by jax.distributed split the inputs, write disjoint shares with
    one manifest each, and give the pixels of a one-process run."""
    write_images(tmp_path / "in", [WIDE] * 5)
    style = tmp_path / "style.png"
    images.save_image(style, smooth_image((16, 16), 9))
    out = tmp_path / "out"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}",
           "JAX_NUM_PROCESSES": "2"}
    env.pop("XLA_FLAGS", None)
    args = [sys.executable, "-c", MULTI_PROCESS_CODE, str(tmp_path / "in"), str(style), str(out),
            json.dumps(CFG_KWARGS)]
    procs = [subprocess.Popen(args, env={**env, "JAX_PROCESS_ID": str(i)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, stderr[-3000:]
            results.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert sorted(r["process_index"] for r in results) == [0, 1]
    assert all(r["process_count"] == 2 and r["ok"] for r in results)
    assert sorted(r["written"] for r in results) == [2, 3]  # sorted inputs [0::2] and [1::2]

    shares = []
    for index in (0, 1):
        lines = (out / f"manifest.p{index:03d}.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert all(r["status"] == "done" and r["process_index"] == index for r in records)
        shares.append({r["output"] for r in records})
    assert not shares[0] & shares[1]
    assert shares[0] | shares[1] == {f"img{i:02d}.png" for i in range(5)}
    assert not (out / MANIFEST_NAME).exists()

    # The same job in one process (this one) gives the same pixels.
    alone = tmp_path / "alone"
    assert stylize_batch(tmp_path / "in", style, alone, weights=random_weights, config=CFG).ok
    for name in shares[0] | shares[1]:
        a = images.load_image(out / name)
        b = images.load_image(alone / name)
        assert np.abs(a - b).max() <= 1 / 255 + 1e-6, name  # PNG levels; batches of 2-3 vs 5


def test_missing_style_is_reported_before_weights_load(tmp_path, monkeypatch):
    import nstjax.weights._resolve

    def no_weights(*args, **kwargs):
        raise AssertionError("weights were loaded before the inputs were checked")

    monkeypatch.setattr(nstjax.weights._resolve, "load_weights", no_weights)
    write_images(tmp_path / "in", [WIDE])
    with pytest.raises(NstjaxError, match="missing.png"):
        stylize_batch(tmp_path / "in", tmp_path / "missing.png", tmp_path / "out", weights="auto", config=CFG)
