"""Training over several processes (hosts) joined by jax.distributed, on this machine.

Two processes, two virtual CPU devices each, train the tiny CycleGAN of
tests/test_cyclegan.py (batch 4: one image per device of the global mesh) on the
same synthetic domains. The processes talk over 127.0.0.1 (gloo collectives), as
hosts of a cluster would over their network; the run directory is shared.

What must hold: one process asking to stop stops both at the same step; only the
primary process writes the run's plain files (no doubled metrics); the resumed
two-process run ends with the parameters of a one-process run; every process holds
the same state.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import test_cyclegan as cg  # the tiny model, its synthetic domains and config
from nstjax.cyclegan import train
from nstjax.train import load_export

# One process of the job. argv: tests dir, dir A, dir B, run dir, steps, resume (0/1).
# Process 1 asks to stop at once (as if it alone got Ctrl-C); with steps > 1 both must stop after step 1.
PROCESS = r"""
import json, sys
import jax
sys.path.insert(0, sys.argv[1])
import test_cyclegan as t
from nstjax.train import TrainingInterrupted, to_host
from nstjax.cyclegan import train

steps, resume = int(sys.argv[5]), sys.argv[6] == "1"
config = t.tiny_config(steps, log_every=1, sample_every=1, checkpoint_every=1)
interrupted = None
with jax.default_matmul_precision("highest"):
    try:
        state = train(sys.argv[2], sys.argv[3], sys.argv[4], config, resume=resume, threads=1,
                      stop=(lambda: jax.process_index() == 1) if not resume else None)
    except TrainingInterrupted as e:
        interrupted, state = e.step, None
out = {"process_index": jax.process_index(), "process_count": jax.process_count(),
       "devices": len(jax.devices()), "local_devices": len(jax.local_devices()), "interrupted": interrupted}
if state is not None:
    out["state"] = [np.tolist() for np in jax.tree.leaves(to_host(state))]
print(json.dumps(out))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(domains: dict[str, Path], run: Path, steps: int, resume: bool) -> list[dict]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}", "JAX_NUM_PROCESSES": "2"}  # fmt: skip
    args = [sys.executable, "-c", PROCESS, str(Path(__file__).parent), str(domains["a"]), str(domains["b"]), str(run),
            str(steps), "1" if resume else "0"]  # fmt: skip
    # Output to files, not pipes: a process blocked on a full pipe would stall the other at jax's shutdown barrier.
    logs = [(run.parent / f"{run.name}.p{i}.out", run.parent / f"{run.name}.p{i}.err") for i in range(2)]
    procs = []
    for i, (out, err) in enumerate(logs):
        with open(out, "w") as stdout, open(err, "w") as stderr:
            procs.append(subprocess.Popen(args, env={**env, "JAX_PROCESS_ID": str(i)}, stdout=stdout, stderr=stderr))
    results = []
    try:
        for proc, (out, err) in zip(procs, logs, strict=True):
            proc.wait(timeout=600)
            assert proc.returncode == 0, err.read_text()[-3000:]
            results.append(json.loads(out.read_text().strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return sorted(results, key=lambda r: r["process_index"])


@pytest.fixture(scope="module")
def domains(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("domains")
    cg.write_domain(root / "a", cg.warm_smooth, 12, seed=0)
    cg.write_domain(root / "b", cg.cool_striped, 12, seed=1)
    return {"a": root / "a", "b": root / "b"}


def test_two_processes_stop_together_resume_and_match_one(domains, tmp_path):
    run = tmp_path / "run"
    # 1. Three steps asked; process 1 requests a stop after the first: both stop and checkpoint step 1.
    first = run_two_processes(domains, run, steps=3, resume=False)
    assert [(r["process_index"], r["process_count"], r["devices"], r["local_devices"]) for r in first] == [
        (0, 2, 4, 2), (1, 2, 4, 2)]  # fmt: skip
    assert [r["interrupted"] for r in first] == [1, 1]
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == ["1"]

    # 2. Resumed by both processes to two steps (a run may be made shorter or longer on resume).
    second = run_two_processes(domains, run, steps=2, resume=True)
    assert [r["interrupted"] for r in second] == [None, None]
    assert second[0]["state"] == second[1]["state"]  # every process holds the same (replicated) state

    # The primary alone wrote the plain files: one metrics record per logged step, not one per process.
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_0000001.png", "step_0000002.png"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == ["1", "2"]
    assert (run / "loss_curve.png").exists() and json.loads((run / "config.json").read_text())["train"]["steps"] == 2

    # 3. The same two steps in this one process, on one device: the same training (test_cyclegan's rule for
    # another device layout: Adam's moments to 1e-2 of each array's peak, parameters to 1e-6 wherever step 1's
    # gradient is above that, within 2 lr elsewhere; pools to 1e-3 of their largest pixel).
    with jax.default_matmul_precision("highest"):
        first = train(domains["a"], domains["b"], tmp_path / "step1", cg.tiny_config(1), threads=1)
        one = train(domains["a"], domains["b"], tmp_path / "one", cg.tiny_config(2), threads=1)
    cg.assert_same_training(first, one, second[0]["state"])

    # The export (written by the primary alone) holds the two-process run's final generators.
    exported, config = load_export(run)
    assert config["system"] == "cyclegan"
    final = jax.tree.unflatten(jax.tree.structure(jax.device_get(one)),
                               [np.asarray(x, np.asarray(y).dtype) for x, y in zip(second[0]["state"], cg.leaves(one))])
    for x, y in zip(jax.tree.leaves(exported["g_ab"]), jax.tree.leaves(final.g.params["g_ab"]), strict=True):
        np.testing.assert_array_equal(x, y)
