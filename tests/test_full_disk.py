"""A full file system: one line naming the path and "no space left", exit non-zero, nothing partial;
the web server fails the job (its partial files removed), answers 507 to uploads, and keeps serving.

Each test mounts its own small tmpfs (root only; CI runs as root) and fills it. Skipped
with the reason when not root or when the mount is refused (e.g. an unprivileged container).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_photos_and_style

NSTJAX = str(Path(sys.executable).with_name("nstjax"))
STYLIZE = ["--preset", "gatys", "--size", "16", "--steps", "3", "--optimizer", "adam", "--lr", "0.05",
           "--tolerance", "0", "--pooling", "max", "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1",
           "--weights", "random", "--quiet"]  # fmt: skip
TRAIN = ["--checkpoint-every", "2", "--log-every", "1", "--sample-every", "0", "--size", "32",
         "--style-weight", "1e5", "--lr", "1e-2", "--content-layer", "relu2_1", "--style-layers", "relu1_1,relu2_1",
         "--weights", "random", "--batch-size", "2", "--quiet"]  # fmt: skip


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs these tests as root)")
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path, leave: int = 0) -> Path:
    """Fill the file system of ``directory`` up to ``leave`` bytes free; returns the filler file."""
    filler = directory / "filler"
    with open(filler, "wb") as f:
        with contextlib.suppress(OSError):
            while True:
                free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
                if free <= leave:
                    break
                f.write(b"\0" * min(free - leave, 1 << 20))
                f.flush()
    return filler


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_photos_and_style(tmp_path_factory.mktemp("disk"))


def nstjax(files: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "NSTJAX_CACHE": str(files / "cache"), "JAX_PLATFORMS": "cpu"}
    env.pop("NSTJAX_TEST_KILL_AT", None)
    return subprocess.run([NSTJAX, *map(str, args)], env=env, capture_output=True, text=True, timeout=300)


def one_error_line(result: subprocess.CompletedProcess, path: Path, *, alone: bool = True) -> str:
    """The one ``error: …`` line (``alone``: the only line on stderr). Not ``alone``: orbax's writer threads
    and asyncio log their own tracebacks, before or even after ours (seen in CI: "Event loop is closed")."""
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and (lines == errors or not alone), result.stderr[-3000:]
    assert str(path) in errors[0] and "no space left" in errors[0].lower(), errors[0]
    return errors[0]


def test_stylize_onto_a_full_disk(files, tmp_path):
    with tmpfs(tmp_path / "disk", "256k") as disk:
        fill(disk)
        out = disk / "out.png"
        result = nstjax(files, "stylize", files / "photos" / "p0.png", files / "style.png", "-o", out, *STYLIZE)
        one_error_line(result, out)
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no partial file, no temporary one


def test_training_checkpoint_on_a_full_disk_keeps_the_earlier_ones(files, tmp_path):
    from nstjax.train.checkpoint import latest_checkpoint

    with tmpfs(tmp_path / "disk", "160m") as disk:
        run = disk / "run"
        args = ["fast", "train", "--style", files / "style.png", "--data", files / "photos", "--run", run, *TRAIN]
        assert nstjax(files, *args, "--steps", "2").returncode == 0
        filler = fill(disk, leave=64 << 10)
        result = nstjax(files, *args, "--steps", "4", "--resume")
        # orbax's writer threads still log their own tracebacks above the line (not silenced yet)
        one_error_line(result, run, alone=False)
        assert latest_checkpoint(run) == 2
        assert not list(run.glob(".export.new"))  # a failed export leaves none of its files
        filler.unlink()
        resumed = nstjax(files, *args, "--steps", "4", "--resume")  # checkpoint 2 is intact: it continues
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert "resumed from step 2" in resumed.stderr.splitlines()
        assert latest_checkpoint(run) == 4


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # the worker thread lives on
def test_the_web_server_on_a_full_disk_fails_the_job_and_keeps_serving(tmp_path):
    # The job root on a full 8 MB tmpfs: a running job that cannot write its result ends `failed` with the
    # reason, its partial files removed and no server path shown; a new upload gets 507 and leaves nothing;
    # once there is room again, jobs run as before.
    import time

    from fastapi.testclient import TestClient
    from test_serve_api import finished, post, wait

    from nstjax.serve import create_app

    with tmpfs(tmp_path / "disk", "8m") as disk, TestClient(create_app(root=disk / "jobs")) as client:
        long = post(client, {"steps": 100_000}).json()
        wait(client, long["id"], lambda j: j["status"] == "running" and j["step"] > 0)
        filler = fill(disk)
        client.delete(f"/api/jobs/{long['id']}")  # stop: the best image is written now, onto a full disk
        failed = wait(client, long["id"], finished)
        assert failed["status"] == "failed" and not failed["has_image"], failed
        assert failed["error"] == "no space left on the server's disk; the job's partial files were removed"
        directory = disk / "jobs" / long["id"]
        left = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
        assert left == ["inputs/content.png", "inputs/content.thumb.png", "inputs/style-1.png",
                        "inputs/style-1.thumb.png", "job.json", "settings.json"]  # fmt: skip

        before = sorted(p.name for p in (disk / "jobs").iterdir())
        refused = post(client, {"steps": 2})
        assert refused.status_code == 507, refused.text
        assert refused.json()["detail"] == "no space left on the server's disk for the uploads; try again later"
        assert sorted(p.name for p in (disk / "jobs").iterdir()) == before
        assert client.get("/api/jobs").status_code == 200 and client.get(f"/api/jobs/{long['id']}").json() == failed

        filler.unlink()
        time.sleep(0.1)
        again = post(client, {"steps": 2})
        assert again.status_code == 201, again.text
        assert wait(client, again.json()["id"], finished)["status"] == "done"
