"""Local servers for tests: an HTTP file server for download tests, and a real `nstjax serve` process.

The file server (:func:`serving`, 127.0.0.1, ephemeral port, a thread) answers ``Range`` requests with 206,
counts every request, and can hold a response until the test releases it (to make two clients overlap).
:func:`nstjax_serve` starts the ``nstjax serve`` command in a subprocess, for tests that kill it.
"""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


@dataclass
class State:
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)  # held responses wait for it

    def __post_init__(self) -> None:
        self.release.set()  # nothing held unless a test clears it


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        state: State = self.server.state
        state.requests.append((self.path, self.headers.get("Range")))
        data = state.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        state.release.wait(timeout=30)
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and int(match.group(1)) < len(data):
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@contextmanager
def serving() -> Iterator[tuple[str, State]]:
    """Yield (base URL, state) of a running server; shut down afterwards."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = State()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.state
    finally:
        httpd.state.release.set()
        httpd.shutdown()
        httpd.server_close()


# ------------------------------------------------------------------ a real `nstjax serve` process


@dataclass
class ServeProcess:
    """A running ``nstjax serve``: its base URL and its process (to kill or stop)."""

    url: str
    process: "subprocess.Popen[str]"  # noqa: F821 - imported where the process starts


@contextmanager
def nstjax_serve(root, *args, timeout: float = 120.0, env: dict | None = None) -> Iterator[ServeProcess]:
    """Start ``nstjax serve --port 0 --root ROOT ARGS`` on 127.0.0.1 and yield it once it listens.

    The port is read from the line the command prints (``nstjax serve: http://127.0.0.1:PORT/``). The
    process is killed afterwards if the test has not ended it.
    """
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    command = [str(Path(sys.executable).with_name("nstjax")), "serve", "--port", "0", "--root", str(root), *map(str, args)]
    # A cache of its own beside root: a server the test kills mid-job may be writing a compiled program, and
    # JAX writes its cache entries in place (not atomically), so a torn entry must not reach the user's cache.
    cache = {"NSTJAX_CACHE": str(Path(root).parent / "nstjax-cache")}
    environment = {**os.environ, "JAX_PLATFORMS": "cpu", **cache, **(env or {})}
    environment.pop("NSTJAX_TEST_KILL_AT", None)
    process = subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + timeout
        url = None
        seen = []
        while url is None:
            line = process.stderr.readline()
            if not line and process.poll() is not None:
                raise AssertionError(f"nstjax serve exited ({process.returncode}): {''.join(seen)[-2000:]}")
            seen.append(line)
            found = re.search(r"nstjax serve: (http://127\.0\.0\.1:\d+)/", line)
            url = found.group(1) if found else None
            assert time.monotonic() < deadline, f"nstjax serve did not start: {''.join(seen)[-2000:]}"
        # stderr is not read any more: send it nowhere, so a chatty server can never block on a full pipe
        threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
        yield ServeProcess(url, process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def wait_for_job(client, job_id: str, until, timeout: float = 180.0, poll: float = 0.05) -> dict:
    """Poll ``GET /api/jobs/ID`` on an httpx/TestClient ``client`` until ``until(job)``; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if until(job):
            return job
        assert time.monotonic() < deadline, f"timed out waiting; last state {job}"
        time.sleep(poll)


class Recorder:
    """A :class:`~nstjax.serve.kinds.JobContext` that keeps what a kind reports (no queue, no server)."""

    def __init__(self, directory=None):
        self.directory, self.plans, self.reports, self.notes = directory, [], [], []

    def should_stop(self):
        return False

    def plan(self, plan):
        self.plans.append(dict(plan))

    def progress(self, progress, image=None):
        self.reports.append(dict(progress))

    def warn(self, message):
        self.notes.append(message)

    def stage(self, name):
        pass

    def weights(self, spec, seed):
        from nstjax.weights import load_weights

        return load_weights(spec, seed=seed)
