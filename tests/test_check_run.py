"""`nstjax check RUN`: a damaged run directory gives one line per damaged file, naming the step and the file.

One tiny `fast train` run (random VGG weights, 32 px, 6 steps, a checkpoint every 2) is made once; each case
damages a copy of it as a disk error or a hand edit would, and checks what `check` prints and its exit status.
The same checks guard `--resume`: a checkpoint edited by hand is refused with one line, never restored.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from conftest import write_photos_and_style
from typer.testing import CliRunner

NSTJAX = str(Path(sys.executable).with_name("nstjax"))
TRAIN = ["--checkpoint-every", "2", "--log-every", "1", "--sample-every", "0", "--size", "32",
         "--style-weight", "1e5", "--lr", "1e-2", "--content-layer", "relu2_1", "--style-layers", "relu1_1,relu2_1",
         "--weights", "random", "--batch-size", "2", "--steps", "6", "--quiet"]  # fmt: skip


def nstjax(files: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "NSTJAX_CACHE": str(files / "cache"), "JAX_PLATFORMS": "cpu"}
    env.pop("NSTJAX_TEST_KILL_AT", None)
    return subprocess.run([NSTJAX, *map(str, args)], env=env, capture_output=True, text=True, timeout=300)


def train_args(files: Path, run: Path) -> list:
    return ["fast", "train", "--style", files / "style.png", "--data", files / "photos", "--run", run, *TRAIN]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    files = write_photos_and_style(tmp_path_factory.mktemp("check"))
    done = nstjax(files, *train_args(files, files / "run"))
    assert done.returncode == 0, done.stderr[-2000:]
    return files


@pytest.fixture()
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained / "run", copy)
    return copy


def check(run: Path):
    from nstjax.cli.check import check as command

    app = typer.Typer()
    app.command()(command)
    result = CliRunner().invoke(app, [str(run)])
    return result.exit_code, [line for line in result.stderr.splitlines() if line.strip()]


def largest_data_file(step_dir: Path) -> Path:
    """The biggest array file of a checkpoint (orbax's OCDBT data): where most of the parameters are."""
    return max((p for p in step_dir.rglob("d/*") if p.is_file()), key=lambda p: p.stat().st_size)


def test_a_sound_run_passes_with_one_summary_line(run):
    status, lines = check(run)
    assert status == 0, lines
    assert lines == [f"{run}: ok (fast; checkpoints: 2, 4, 6; export: step 6)"]
    for step in (2, 4, 6):  # each finished checkpoint has its digest list, listing its array files
        listing = (run / "checkpoints" / str(step) / "nstjax.sha256").read_text()
        assert largest_data_file(run / "checkpoints" / str(step)).name in listing
    assert (run / "export" / "params.sha256").is_file()


def test_a_truncated_checkpoint_names_its_step_and_file(run):
    damaged = largest_data_file(run / "checkpoints" / "4")
    os.truncate(damaged, damaged.stat().st_size // 2)
    status, lines = check(run)
    assert status == 1
    assert lines == [f"error: {damaged.resolve()}: checkpoint of step 4: does not match the digest written when "
                     "it was saved (truncated or edited)"]  # fmt: skip


def test_a_hand_edited_checkpoint_names_its_step_and_file(run):
    # One changed byte in the middle of an array: orbax alone would read it back without a complaint.
    damaged = largest_data_file(run / "checkpoints" / "6")
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    metadata = run / "checkpoints" / "2" / "default" / "_METADATA"
    metadata.write_text(metadata.read_text().replace("{", "{ ", 1))  # a harmless-looking edit is an edit too
    status, lines = check(run)
    assert status == 1 and len(lines) == 2, lines
    assert lines[0].startswith(f"error: {metadata.resolve()}: checkpoint of step 2: does not match")
    assert lines[1].startswith(f"error: {damaged.resolve()}: checkpoint of step 6: does not match")


def test_a_damaged_config_and_export_are_named(run):
    (run / "config.json").write_text('{"system": "fast",')
    params = run / "export" / "params"
    damaged = largest_data_file(params)
    os.truncate(damaged, 10)
    status, lines = check(run)
    assert status == 1 and len(lines) == 2, lines
    assert lines[0].startswith(f"error: {run / 'config.json'}: unreadable JSON")
    assert lines[1] == f"error: {damaged.resolve()}: exported parameters: does not match the digest written when " \
                       "it was saved (truncated or edited)"  # fmt: skip


def test_not_a_run_is_one_error_line(tmp_path):
    status, lines = check(tmp_path)
    assert status == 2 and lines == [f"error: {tmp_path}: holds no training run (no config.json, no checkpoints/)"]


def test_resume_refuses_an_edited_checkpoint_in_one_line(trained, run):
    damaged = largest_data_file(run / "checkpoints" / "6")
    data = bytearray(damaged.read_bytes())
    data[100] ^= 0x01
    damaged.write_bytes(bytes(data))
    config = json.loads((run / "config.json").read_text())
    assert config["system"] == "fast"
    resumed = nstjax(trained, *train_args(trained, run), "--steps", "8", "--resume")
    assert resumed.returncode == 2
    errors = [line for line in resumed.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, resumed.stderr[-2000:]
    assert errors[0].startswith(f"error: {damaged.resolve()}: checkpoint of step 6: does not match"), errors[0]
