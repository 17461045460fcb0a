"""SIGKILL at chosen points of real `nstjax` processes, then --resume / a rerun: nothing torn is ever used.

Each case runs the console script in a subprocess with ``NSTJAX_TEST_KILL_AT=POINT:N``
(:mod:`nstjax.faults`): the process kills itself the N-th time it reaches POINT, as a
power cut would. Training: a tiny `fast train` (random VGG weights, 32 px, 6 steps,
a checkpoint every 2) killed during a step, inside a checkpoint save and inside the
export; the resumed run must start from the last complete checkpoint, say so, and end
at step 6 with one metrics record per step. stylize-batch: killed inside a result's
write and inside a manifest line; the rerun must leave every output whole, done once.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_photos_and_style
from PIL import Image

NSTJAX = [str(Path(sys.executable).with_name("nstjax"))]  # the console script of this environment
TRAIN = ["--checkpoint-every", "2", "--log-every", "1", "--sample-every", "0", "--size", "32",
         "--style-weight", "1e5", "--lr", "1e-2", "--content-layer", "relu2_1", "--style-layers", "relu1_1,relu2_1",
         "--weights", "random", "--batch-size", "2", "--steps", "6", "--quiet"]  # fmt: skip
BATCH = ["--preset", "gatys", "--size", "16", "--steps", "3", "--optimizer", "adam", "--lr", "0.05",
         "--tolerance", "0", "--pooling", "max", "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1",
         "--weights", "random", "--batch-size", "2", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_photos_and_style(tmp_path_factory.mktemp("crash"))


def nstjax(files: Path, *args, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "NSTJAX_CACHE": str(files / "cache"), "JAX_PLATFORMS": "cpu"}
    env.pop("NSTJAX_TEST_KILL_AT", None)
    if kill_at:
        env["NSTJAX_TEST_KILL_AT"] = kill_at
    return subprocess.run([*NSTJAX, *map(str, args)], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("kill_at, complete", [
    ("train-step:3", {2}),         # during step 3: checkpoint 2 is the last complete one
    ("checkpoint-save:2", {2}),    # inside the save of step 4: its temporary folder is left, unfinished
    ("export:2", {2, 4}),          # inside the export of step 4 (checkpoint 4 may or may not have finished)
])  # fmt: skip
def test_killed_training_resumes_from_the_last_complete_checkpoint(files, tmp_path, kill_at, complete):
    from nstjax.train.checkpoint import latest_checkpoint, load_export

    run = tmp_path / "run"
    args = ["fast", "train", "--style", files / "style.png", "--data", files / "photos", "--run", run, *TRAIN]
    killed = nstjax(files, *args, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    step = latest_checkpoint(run)
    assert step in complete
    if (run / "export").exists():  # the export in place is a whole one: the previous, never the torn one
        assert load_export(run)[1]["step"] <= step

    resumed = nstjax(files, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from step {step}" in resumed.stderr.splitlines()
    assert latest_checkpoint(run) == 6
    assert load_export(run)[1]["step"] == 6
    assert not list((run / "checkpoints").glob("*tmp*"))  # the torn save was cleaned away
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]  # as an uninterrupted run logs them
    assert all(np.isfinite(r["loss"]) for r in records)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("kill_at", ["atomic-write:3", "manifest:3"])
def test_killed_stylize_batch_rerun_finishes_each_output_once(files, tmp_path, kill_at):
    out = tmp_path / "out"
    args = ["stylize-batch", files / "photos", files / "style.png", "-o", out, *BATCH]
    killed = nstjax(files, *args, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    before = {r["output"]: _digest(out / r["output"]) for r in _done(out)}  # complete before the kill
    assert len(before) < 4

    rerun = nstjax(files, *args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    done = _done(out)
    names = [r["output"] for r in done]
    assert sorted(names) == [f"p{i}.png" for i in range(4)]  # each output done once: finished ones skipped
    for record in done:
        path = out / record["output"]
        assert path.stat().st_size == record["output_bytes"] and _digest(path) == record["output_sha256"]
        Image.open(path).load()  # whole
    for name, digest in before.items():
        assert _digest(out / name) == digest


def _done(out: Path) -> list[dict]:
    """The manifest's ``done`` records (a line torn by the kill is not one)."""
    records = []
    for line in (out / "manifest.jsonl").read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return [r for r in records if r.get("status") == "done"]
