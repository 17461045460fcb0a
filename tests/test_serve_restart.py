"""A server killed with jobs in flight: after a restart on the same --root, nothing is shown half-written.

A real `nstjax serve` process (random weights, 64 px jobs) finishes one job, starts a long one and queues a
third, and is killed with SIGKILL (no shutdown, as a power cut or the OOM killer would). A new server on the
same directory lists the finished job as it was (image and inputs served), and the running and the queued job
as `lost` with the reason, without an image; nothing temporary is left in their directories, and the state is
written back, so a third start says the same.
"""

from __future__ import annotations

import json
import signal

import httpx
import numpy as np
from _local_server import nstjax_serve, wait_for_job
from conftest import smooth_image
from test_serve_api import JOB, png

CONTENT = png(smooth_image((48, 64), 5))
STYLE = png(np.random.default_rng(6).random((64, 64, 3)))


def submit(client: httpx.Client, steps: int) -> dict:
    files = [("content", ("photo.png", CONTENT, "image/png")), ("styles", ("painting.png", STYLE, "image/png"))]
    response = client.post("/api/jobs", files=files, data={"settings": json.dumps({**JOB, "steps": steps})})
    assert response.status_code == 201, response.text
    return response.json()


def wait(client: httpx.Client, job_id: str, until, timeout: float = 180.0) -> dict:
    return wait_for_job(client, job_id, until, timeout, poll=0.1)


def test_jobs_in_flight_are_reported_lost_after_a_kill_and_a_restart(tmp_path):
    root = tmp_path / "jobs"
    with nstjax_serve(root, "--weights", "random") as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            done = submit(client, 2)
            done = wait(client, done["id"], lambda j: j["status"] == "done")
            running = submit(client, 100_000)
            queued = submit(client, 2)
            wait(client, running["id"], lambda j: j["status"] == "running" and j["step"] > 0 and j["has_image"])
            assert client.get(f"/api/jobs/{queued['id']}").json()["status"] == "queued"
        server.process.send_signal(signal.SIGKILL)
        assert server.process.wait(30) == -signal.SIGKILL

    for start in (1, 2):  # the second start reads what the first wrote back
        with nstjax_serve(root, "--weights", "random") as server, httpx.Client(base_url=server.url) as client:
            jobs = {j["id"]: j for j in client.get("/api/jobs").json()["jobs"]}
            assert list(jobs) == [done["id"], running["id"], queued["id"]], start  # oldest first, none missing
            again = jobs[done["id"]]
            assert again["status"] == "done" and again["has_image"] and again["result"] == done["result"]
            image = client.get(f"/api/jobs/{done['id']}/image")
            assert image.status_code == 200 and image.headers["content-type"] == "image/png"
            for job_id in (running["id"], queued["id"]):
                lost = jobs[job_id]
                assert lost["status"] == "lost" and "server stopped before this job finished" in lost["error"]
                assert not lost["has_image"] and lost["eta_seconds"] is None and lost["queue_position"] is None
                assert client.get(f"/api/jobs/{job_id}/image").status_code == 404
                assert client.get(f"/api/jobs/{job_id}/inputs/1").status_code == 200  # its uploads are kept
                assert json.loads((root / job_id / "job.json").read_text())["status"] == "lost"
                assert not [p.name for p in (root / job_id).rglob(".*tmp*")]
            # A lost job is final: stopping it changes nothing, and the queue is free for new jobs.
            assert client.delete(f"/api/jobs/{running['id']}").json()["status"] == "lost"
