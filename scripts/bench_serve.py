"""`nstjax serve` under load, on loopback: latency of the page's polls while a job computes, and shedding.

Starts a real ``nstjax serve`` (127.0.0.1, a free port, a temporary --root, random VGG weights: speed of the
jobs is not the point) and drives it from ``--clients`` threads, each with its own HTTP connection:

1. **Polls while a job computes.** One long job runs (``--job-size`` px, optimisation steps without end);
   once it is past compilation, every client polls ``GET /api/jobs/{id}`` (with a ``GET /api/jobs`` and a
   fetch of the preview image every few polls) for ``--poll-seconds``. Reported: requests/s, p50/p99.
2. **Mixed load.** Every client submits tiny jobs (two 96 px noise uploads, 32 px, a few steps), polls them,
   fetches their images and deletes one in four, until ``10 x --max-queue`` submissions have been made (or
   ``--load-seconds`` passed). A full queue answers 429; the clients go straight on (no back-off: load).
3. **Drain.** Every accepted job must end (done, stopped or failed with a reason); one that has not after
   ``--drain-seconds`` counts as lost, and so does any that the server forgot.

Prints the clients, requests, 429s, latencies, requests/s, the server's peak RSS (VmHWM) and the jobs lost
(must be 0), with the CPU model, its flags of note and the load average. Bounded in time: about two minutes
with the defaults. Run: ``python scripts/bench_serve.py`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

FINAL = {"done", "stopped", "failed", "lost"}
TINY = {"size": 32, "steps": 4, "weights": "random", "tolerance": 0, "optimizer": "adam", "lr": 0.05}


def noise_png(side: int, seed: int) -> bytes:
    pixels = (np.random.default_rng(seed).random((side, side, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def cpu_line() -> str:
    model, flags = "unknown CPU", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.+)", text).group(1).strip()
        family = re.search(r"cpu family\s*:\s*(\d+)", text).group(1)
        number = re.search(r"^model\s*:\s*(\d+)", text, re.M).group(1)
        flags = set(re.search(r"flags\s*:\s*(.+)", text).group(1).split())
        model = f"{model} (family/model {family}/{number})"
    except (OSError, AttributeError):
        pass
    noted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{model}, {os.cpu_count()} cores, flags {' '.join(noted) or 'none of note'}; load average {load}"


def start_server(root: Path, max_queue: int) -> tuple[subprocess.Popen, str]:
    nstjax = str(Path(sys.executable).with_name("nstjax"))
    command = [nstjax, "serve", "--host", "127.0.0.1", "--port", "0", "--root", str(root), "--weights", "random",
               "--max-queue", str(max_queue)]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 120
    while True:
        line = process.stderr.readline()
        found = re.search(r"nstjax serve: (http://127\.0\.0\.1:\d+)/", line)
        if found:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, found.group(1)
        if (not line and process.poll() is not None) or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"nstjax serve did not start: {line.strip()}")


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """The process's peak (``VmHWM``) or current (``VmRSS``) resident memory, in MiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s*(\d+) kB", text).group(1)) / 1024


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)
    submissions: int = 0

    def record(self, kind: str, seconds: float, status: int) -> None:
        with self.lock:
            self.latencies.setdefault(kind, []).append(seconds)
            self.latencies.setdefault(f"{kind} {status}", []).append(seconds)  # e.g. "submit 429"
            self.statuses[status] = self.statuses.get(status, 0) + 1


def timed(tally: Tally, kind: str, client: httpx.Client, method: str, url: str, **kwargs) -> httpx.Response | None:
    start = time.perf_counter()
    try:
        response = client.request(method, url, **kwargs)
    except httpx.HTTPError as e:
        with tally.lock:
            tally.errors.append(f"{kind}: {type(e).__name__}: {e}")
        return None
    tally.record(kind, time.perf_counter() - start, response.status_code)
    return response


def files(content: bytes, style: bytes) -> list:
    return [("content", ("photo.png", content, "image/png")), ("styles", ("painting.png", style, "image/png"))]


def in_threads(client, count: int) -> float:
    """Run ``client(i)`` for i in 0..count-1, each in a thread of its own; wall seconds until all have ended."""
    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - start


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (threads, one connection each)")
    parser.add_argument("--max-queue", type=int, default=4, help="the server's --max-queue")
    parser.add_argument("--job-size", type=int, default=128, help="px of the long job computing during the polls")
    parser.add_argument("--poll-seconds", type=float, default=20.0)
    parser.add_argument("--load-seconds", type=float, default=45.0)
    parser.add_argument("--drain-seconds", type=float, default=45.0)
    args = parser.parse_args()

    content, style = noise_png(96, 1), noise_png(96, 2)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        began = time.monotonic()
        process, url = start_server(Path(tmp) / "jobs", args.max_queue)
        try:
            httpx.get(f"{url}/api/modes", timeout=60)  # the page's first request (imports JAX)
            idle = rss_mb(process.pid, "VmRSS")
            report = run(args, url, content, style)
            report["idle_rss_mb"] = idle
            report["peak_rss_mb"] = rss_mb(process.pid)
            report["server_alive"] = process.poll() is None
        finally:
            process.kill()
            process.wait(30)
        report["wall_seconds"] = time.monotonic() - began
    show(args, report)


def run(args, url: str, content: bytes, style: bytes) -> dict:
    report: dict = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        # 1. polls while a long job computes (after its compilation: the steady state the page sees)
        long = client.post("/api/jobs", files=files(content, style), data={"settings": json.dumps(
            {**TINY, "size": args.job_size, "steps": 10**7, "optimizer": "lbfgs"})}).json()  # fmt: skip
        deadline = time.monotonic() + 120
        while (job := client.get(f"/api/jobs/{long['id']}").json())["step"] < 2:
            if time.monotonic() > deadline or job["status"] in FINAL:
                raise SystemExit(f"the long job did not start computing: {job['status']} {job.get('error')}")
            time.sleep(0.2)
        polls = Tally()
        stop_at = time.monotonic() + args.poll_seconds

        def poller(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=url, timeout=60) as own:
                n = 0
                while time.monotonic() < stop_at:
                    timed(polls, "poll", own, "GET", f"/api/jobs/{long['id']}")
                    n += 1
                    if n % 5 == 0:
                        timed(polls, "list", own, "GET", "/api/jobs")
                    if n % 7 == 0:
                        timed(polls, "image", own, "GET", f"/api/jobs/{long['id']}/image")
                    time.sleep(rng.uniform(0, 0.02))

        steps_before = client.get(f"/api/jobs/{long['id']}").json()["step"]
        elapsed = in_threads(poller, args.clients)
        after = client.get(f"/api/jobs/{long['id']}").json()
        report["polls"] = polls
        report["poll_seconds"] = elapsed
        report["long_job_steps_per_second"] = (after["step"] - steps_before) / elapsed
        client.delete(f"/api/jobs/{long['id']}")

        # 2. mixed load: 10x more submissions than the queue holds
        load = Tally()
        target = 10 * args.max_queue
        mine: dict[int, list[str]] = {i: [] for i in range(args.clients)}
        end_at = time.monotonic() + args.load_seconds

        def loader(i: int) -> None:
            rng = random.Random(100 + i)
            with httpx.Client(base_url=url, timeout=60) as own:
                while time.monotonic() < end_at:
                    with load.lock:
                        submit = load.submissions < target
                        load.submissions += submit
                    response = None
                    if submit:
                        response = timed(load, "submit", own, "POST", "/api/jobs", files=files(content, style),
                                         data={"settings": json.dumps(TINY)})  # fmt: skip
                    if response is not None and response.status_code == 201:
                        job_id = response.json()["id"]
                        with load.lock:
                            load.accepted.add(job_id)
                        mine[i].append(job_id)
                        if rng.random() < 0.25:
                            timed(load, "delete", own, "DELETE", f"/api/jobs/{job_id}")
                    elif response is not None and response.status_code != 429:
                        with load.lock:
                            load.errors.append(f"submit: {response.status_code} {response.text[:200]}")
                    still_open = False
                    for job_id in mine[i][-3:]:  # follow my latest jobs, as a page would
                        polled = timed(load, "poll", own, "GET", f"/api/jobs/{job_id}")
                        if polled is not None and polled.status_code == 200:
                            still_open |= polled.json()["status"] not in FINAL
                            if polled.json()["has_image"]:
                                timed(load, "image", own, "GET", f"/api/jobs/{job_id}/image")
                    if not submit and not still_open:
                        break  # my submissions are made and my jobs have ended
                    time.sleep(rng.uniform(0.05, 0.15))

        report["load"] = load
        report["load_seconds"] = in_threads(loader, args.clients)

        # 3. drain: every accepted job ends, with a reason when it failed
        deadline = time.monotonic() + args.drain_seconds
        while True:
            listed = {j["id"]: j for j in client.get("/api/jobs").json()["jobs"]}
            open_jobs = [i for i in load.accepted if listed.get(i, {}).get("status") not in FINAL]
            if not open_jobs or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        ends: dict[str, int] = {}
        lost = []
        for job_id in load.accepted:
            job = listed.get(job_id)
            status = job["status"] if job else "missing"
            ends[status] = ends.get(status, 0) + 1
            if status not in FINAL or status == "lost" or (status == "failed" and not job.get("error")):
                lost.append(job_id)
        report["ends"], report["lost"] = ends, lost
        report["failed_reasons"] = sorted({listed[i]["error"] for i in load.accepted if listed.get(i, {}).get("error")})
    return report


def show(args, report: dict) -> None:
    polls: Tally = report["polls"]
    load: Tally = report["load"]
    poll_count = sum(len(v) for k, v in polls.latencies.items() if " " not in k)  # not the per-status copies
    load_count = sum(len(v) for k, v in load.latencies.items() if " " not in k)
    print(f"nstjax serve under load, loopback only; {cpu_line()}")
    print("random VGG weights and tiny jobs (speed of the jobs is not the point)")
    print(f"concurrent clients          {args.clients} (threads, one HTTP/1.1 connection each); --max-queue "
          f"{args.max_queue}")  # fmt: skip
    print(f"1. polls while a {args.job_size} px job computes ({report['long_job_steps_per_second']:.2f} steps/s "
          f"during them), {report['poll_seconds']:.1f} s")  # fmt: skip
    for kind in ("poll", "list", "image"):
        values = polls.latencies.get(kind, [])
        print(f"   GET {kind:<6} {len(values):6d} requests  p50 {percentile(values, 50):7.1f} ms  "
              f"p99 {percentile(values, 99):7.1f} ms  max {1000 * max(values, default=float('nan')):7.1f} ms")
    print(f"   requests/s (all kinds)   {poll_count / report['poll_seconds']:.0f}; errors {len(polls.errors)}")
    print(f"2. mixed load, {report['load_seconds']:.1f} s: {load.submissions} submissions "
          f"({load.submissions / args.max_queue:.0f}x the queue), {len(load.accepted)} accepted, "
          f"{load.statuses.get(429, 0)} answered 429")  # fmt: skip
    for kind in ("submit 201", "submit 429", "poll", "image", "delete"):
        values = load.latencies.get(kind, [])
        print(f"   {kind:<10} {len(values):6d} requests  p50 {percentile(values, 50):7.1f} ms  "
              f"p99 {percentile(values, 99):7.1f} ms")
    print(f"   requests {load_count}, {load_count / report['load_seconds']:.0f}/s; statuses "
          f"{dict(sorted(load.statuses.items()))}; errors {len(load.errors)}")  # fmt: skip
    for error in load.errors[:5] + polls.errors[:5]:
        print(f"   error: {error}")
    print(f"3. accepted jobs ended as   {dict(sorted(report['ends'].items()))}")
    for reason in report["failed_reasons"]:
        print(f"   reason: {reason}")
    print(f"server RSS                  {report['idle_rss_mb']:.0f} MB idle (JAX loaded), peak "
          f"{report['peak_rss_mb']:.0f} MB (VmHWM); still serving: {report['server_alive']}")
    print(f"jobs lost                   {len(report['lost'])}")
    print(f"wall time                   {report['wall_seconds']:.0f} s")
    if report["lost"] or not report["server_alive"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
