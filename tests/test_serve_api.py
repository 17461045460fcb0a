"""`nstjax serve`'s API through FastAPI's TestClient: jobs, stop, limits, refusals, restarts.

Every job uses one shape (a 48x64 content, a 64x64 style, size 64, the CPU preset, random weights), so the
programs compile once (and are shared with tests/test_cli.py's 64 px run in the same session).
"""

from __future__ import annotations

import io
import json
import math
import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from _local_server import Recorder, wait_for_job
from conftest import smooth_image
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from nstjax.cli.nst import STYLE_OPTIONS, config_from_options
from nstjax.serve import LOCAL_HOSTS, ServeLimits, create_app
from nstjax.serve.jobs import Job
from nstjax.serve.kinds import SettingsError, StylizeKind

JOB = {"size": 64, "weights": "random", "tolerance": 0}
TIMEOUT = 60.0


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


CONTENT = png(smooth_image((48, 64), 5))
STYLE = png(np.random.default_rng(6).random((64, 64, 3)))


def files(content=("photo.png", CONTENT), styles=(("painting.png", STYLE),)):
    return [("content", (*content, "image/png"))] + [("styles", (*s, "image/png")) for s in styles]


def post(client, settings=None, **kwargs):
    return client.post("/api/jobs", files=files(**kwargs), data={"settings": json.dumps({**JOB, **(settings or {})})})


def wait(client, job_id, until, timeout=TIMEOUT):
    return wait_for_job(client, job_id, until, timeout)


def finished(job):
    return job["status"] in ("done", "stopped", "failed")


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def client(root):
    with TestClient(create_app(root=root)) as c:
        yield c


# ------------------------------------------------------------------ jobs


def test_full_job_at_64px(client, root):
    response = post(client, {"steps": 6})
    assert response.status_code == 201, response.text
    job = response.json()
    job_id = job["id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", job_id)  # secrets.token_urlsafe(16): 128 random bits
    assert response.headers["location"] == f"/api/jobs/{job_id}"
    assert job["status"] in ("queued", "running")
    assert job["inputs"] == {"content": "photo.png", "styles": ["painting.png"]}

    done = wait(client, job_id, finished)
    assert done["status"] == "done", done
    assert done["step"] == done["steps"] == 6
    assert np.isfinite(done["loss"]) and done["loss"] > 0
    assert set(done["terms"]) >= {"content", "style"}
    assert done["result"]["weights"] == "random" and done["result"]["size"] == [48, 64]
    assert done["plan"]["shapes"] == [[48, 64]] and done["plan"]["weights"] == "random"
    assert done["has_image"] and done["error"] is None and done["eta_seconds"] is None and done["phase"] is None
    # The plan's estimate (nstjax.nst.estimate.estimate_run, as the CLI's plan line): one scale, one compilation.
    plan = done["plan"]
    assert plan["compilations"] == 1 and 0 <= plan["compile_seconds"] <= plan["estimate_seconds"] < math.inf

    image = client.get(f"/api/jobs/{job_id}/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert decode(image.content).size == (64, 48)
    download = client.get(f"/api/jobs/{job_id}/image", params={"download": "true"})
    assert download.headers["content-disposition"] == f'attachment; filename="nstjax-stylize-{job_id[:8]}.png"'
    thumb = client.get(f"/api/jobs/{job_id}/inputs/1")
    assert thumb.status_code == 200 and decode(thumb.content).size == (64, 64)
    assert client.get(f"/api/jobs/{job_id}/inputs/2").status_code == 404

    listed = client.get("/api/jobs").json()["jobs"]
    assert job_id in [j["id"] for j in listed]

    # The job's directory: settings, state, inputs under the server's names, the result; no temp files.
    directory = root / job_id
    names = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    assert names == [
        "inputs/content.png", "inputs/content.thumb.png", "inputs/style-1.png", "inputs/style-1.thumb.png",
        "job.json", "result.png", "settings.json",
    ]  # fmt: skip
    saved = json.loads((directory / "settings.json").read_text())
    assert saved["settings"] == {**JOB, "steps": 6} and saved["mode"] == "stylize"
    assert json.loads((directory / "job.json").read_text())["status"] == "done"
    assert decode((directory / "result.png").read_bytes()).size == (64, 48)


def test_stop_keeps_the_best_image_and_a_queued_job_never_runs(client, root):
    long = post(client, {"steps": 5000}).json()
    queued = post(client, {"steps": 5}).json()
    assert queued["status"] == "queued" and queued["queue_position"] >= 1

    stopped = client.delete(f"/api/jobs/{queued['id']}").json()
    assert stopped["status"] == "stopped" and not stopped["has_image"]

    running = wait(client, long["id"], lambda j: j["status"] == "running" and j["has_image"] and j["step"] > 0)
    assert running["eta_seconds"] is not None and 0 < running["eta_seconds"] < math.inf
    assert running["phase"] == "running"  # one scale: nothing compiles after its first step
    assert running["steps"] == 5000 and running["loss"] is not None
    preview = client.get(f"/api/jobs/{long['id']}/image")
    assert preview.status_code == 200 and decode(preview.content).size == (64, 48)

    assert client.delete(f"/api/jobs/{long['id']}").status_code == 200
    stopped_long = wait(client, long["id"], finished, timeout=20)
    assert stopped_long["status"] == "stopped", stopped_long
    assert stopped_long["has_image"] and 0 < stopped_long["result"]["steps"] < 5000
    assert stopped_long["result"]["stopped"] == "interrupted"
    assert decode(client.get(f"/api/jobs/{long['id']}/image").content).size == (64, 48)
    assert (root / long["id"] / "result.png").is_file()

    never = client.get(f"/api/jobs/{queued['id']}").json()
    assert (
        never["status"] == "stopped" and never["started"] is None and not (root / queued["id"] / "result.png").exists()
    )
    # Stopping a finished job changes nothing.
    assert client.delete(f"/api/jobs/{long['id']}").json()["status"] == "stopped"


def test_a_failed_job_reports_its_error_and_the_next_job_runs(client, root):
    # A style shrunk to 6 px is too small for the deepest style layer: the job fails when it builds its targets.
    bad = post(client, {"steps": 5, "style_scale": 0.1}).json()
    good = post(client, {"steps": 4}).json()
    failed = wait(client, bad["id"], finished)
    assert failed["status"] == "failed"
    assert "too small for the deepest layer" in failed["error"]
    assert "\n" not in failed["error"] and str(root) not in failed["error"]
    assert not failed["has_image"]
    assert client.get(f"/api/jobs/{bad['id']}/image").status_code == 404

    done = wait(client, good["id"], finished)
    assert done["status"] == "done" and done["has_image"]


def test_a_crash_inside_a_job_is_reported_and_the_server_keeps_serving(client, monkeypatch):
    def explode(self, prepared, content, styles, context):
        raise RuntimeError("boom\nwith a second line")

    monkeypatch.setattr(StylizeKind, "run", explode)
    job = post(client, {"steps": 3}).json()
    failed = wait(client, job["id"], finished)
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: boom with a second line"
    monkeypatch.undo()
    assert client.get("/api/jobs").status_code == 200


def test_nothing_the_api_shows_names_a_server_path(client, root, monkeypatch):
    # A warning naming the weights cache and an error naming a file of the server reach the page as their last
    # parts only; a URL stays whole.
    def leaky(self, prepared, content, styles, context):
        context.warn("no ImageNet weights in /root/.cache/nstjax/weights (https://example.com/vgg/vgg16.npz: "
                     "[Errno -2] Name or service not known); using random weights")  # fmt: skip
        context.plan({"shapes": [[8, 8]], "steps": [1], "device": "cpu", "weights": f"{root}/weights/mine.npz",
                      "methods": {"photo": f"SPADE/pix2pix run {root}/runs/spade"}})  # fmt: skip
        raise RuntimeError(f"cannot open {root}/cache/x.npz or C:\\Users\\me\\y.npz")

    monkeypatch.setattr(StylizeKind, "run", leaky)
    job = post(client, {"steps": 3}).json()
    failed = wait(client, job["id"], finished)
    monkeypatch.undo()
    assert failed["error"] == "RuntimeError: cannot open x.npz or y.npz"
    assert failed["plan"]["weights"] == "mine.npz" and failed["plan"]["methods"] == {"photo": "SPADE/pix2pix run spade"}
    assert failed["notes"] == ["no ImageNet weights in weights (https://example.com/vgg/vgg16.npz: [Errno -2] Name "
                               "or service not known); using random weights"]  # fmt: skip
    for response in (client.get("/api/jobs"), client.get("/api/modes"), client.get(f"/api/jobs/{job['id']}")):
        assert str(root) not in response.text and "/root/" not in response.text and ".cache" not in response.text


def test_a_job_reports_its_estimate_then_compiling_then_the_librarys_eta(tmp_path):
    kind = StylizeKind()
    prepared = kind.prepare({**JOB, "steps": 4}, 1, ServeLimits())
    (tmp_path / "c.png").write_bytes(CONTENT)
    (tmp_path / "s.png").write_bytes(STYLE)
    recorder = Recorder(tmp_path)
    outcome = kind.run(prepared, tmp_path / "c.png", [tmp_path / "s.png"], recorder)
    assert outcome.summary["steps"] == 4
    [plan] = recorder.plans
    assert plan["compilations"] == 1 and 0 <= plan["compile_seconds"] <= plan["estimate_seconds"] < math.inf
    # At the plan, before the first step compiles: the whole estimate is the ETA.
    first, *steps = recorder.reports
    assert first == {"phase": "compiling", "scale": 1, "scales": 1, "step": 0, "steps": 4,
                     "eta_seconds": plan["estimate_seconds"]}  # fmt: skip
    assert steps and all(r["phase"] == "running" and 0 <= r["eta_seconds"] < math.inf for r in steps), steps
    assert steps[-1]["step"] == 4 and steps[-1]["eta_seconds"] == 0.0  # WorkEta: nothing left after the last step


def test_the_eta_counts_down_between_reports_and_the_phase_starts_as_loading(tmp_path):
    job = Job(id="A" * 22, mode="stylize", directory=tmp_path, settings={}, inputs={}, created="", status="running")
    assert job.public()["phase"] == "loading" and job.public()["eta_seconds"] is None  # weights, inputs
    job.progress = {"phase": "compiling", "step": 0, "steps": 4, "eta_seconds": 10.0}
    job.reported_at = time.monotonic() - 4.0  # reported at least 4 s ago: at most 6 s are left
    view = job.public()
    assert view["phase"] == "compiling" and 0 <= view["eta_seconds"] <= 6.0
    job.reported_at = time.monotonic() - 100.0
    assert job.public()["eta_seconds"] == 0.0  # late, never negative
    job.status = "done"
    assert job.public()["phase"] is None and job.public()["eta_seconds"] is None


@pytest.fixture(scope="module")
def done_job(client):
    """A job of this module's server that finished, whichever tests ran before."""
    job = post(client, {"steps": 2}).json()
    return wait(client, job["id"], finished)


def test_the_gallery_survives_a_restart(client, root, done_job):
    assert done_job["status"] == "done" and done_job["has_image"]
    done = [j for j in client.get("/api/jobs").json()["jobs"] if j["status"] == "done"]
    assert done_job["id"] in {j["id"] for j in done}
    # A job that was running when its server died comes back as lost, with the reason; its temporary files go.
    ghost = root / ("G" * 22)
    ghost.mkdir()
    (ghost / "job.json").write_text(json.dumps({**done_job, "id": ghost.name, "status": "running"}))
    (ghost / ".result.png.abc123.tmp.png").write_bytes(b"half")
    (root / "not-a-job").mkdir()
    unaccepted = root / ("U" * 22)  # killed while its request stored the uploads: no job.json, no 201 went out
    (unaccepted / "inputs").mkdir(parents=True)
    (unaccepted / "inputs" / "content.upload").write_bytes(b"half")

    again = TestClient(create_app(root=root))  # not started: only reads the directory
    listed = {j["id"]: j for j in again.get("/api/jobs").json()["jobs"]}
    assert {j["id"] for j in done} <= set(listed)
    assert listed[done_job["id"]]["has_image"]
    assert again.get(f"/api/jobs/{done_job['id']}/image").status_code == 200
    assert listed[ghost.name]["status"] == "lost" and "stopped before" in listed[ghost.name]["error"]
    assert not listed[ghost.name]["has_image"] and not list(ghost.glob(".*.tmp*"))
    assert json.loads((ghost / "job.json").read_text())["status"] == "lost"  # and stays lost at the next start
    assert "not-a-job" not in listed and (root / "not-a-job").is_dir()  # not ours: left alone
    assert unaccepted.name not in listed and not unaccepted.exists()


# ------------------------------------------------------------------ refusals


@pytest.fixture()
def small(tmp_path):
    # Not started: refusals never reach the worker.
    return TestClient(create_app(root=tmp_path, limits=ServeLimits(max_upload_bytes=60_000, max_pixels=300 * 300)))


def test_uploads_over_the_limit_get_413_without_a_job(small, tmp_path):
    big = png(np.random.default_rng(1).random((200, 200, 3)))  # ~120 KB of noise
    response = small.post("/api/jobs", files=files(content=("big.png", big)), data={"settings": "{}"})
    assert response.status_code == 413
    assert response.json()["detail"] == "the upload is larger than this server accepts (58.6 KB in all)"

    # Without a Content-Length (chunked), the body is counted while it is read.
    body = (
        b'--xyz\r\nContent-Disposition: form-data; name="content"; filename="big.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + big + b"\r\n--xyz--\r\n"
    )
    chunked = small.post(
        "/api/jobs",
        content=(body[i : i + 4096] for i in range(0, len(body), 4096)),
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert chunked.status_code == 413, chunked.text
    assert "larger than this server accepts" in chunked.json()["detail"]

    huge = png(np.zeros((400, 400, 3)))  # small file, too many pixels
    response = small.post("/api/jobs", files=files(content=("wide.png", huge)), data={"settings": "{}"})
    assert response.status_code == 413 and "wide.png: 400x400 pixels" in response.json()["detail"]
    assert [p.name for p in tmp_path.iterdir()] == []  # refused uploads leave nothing behind


def test_non_images_get_415_with_the_reason(small, tmp_path):
    response = small.post(
        "/api/jobs",
        files=[
            ("content", ("notes.txt", b"hello, not a picture", "text/plain")),
            ("styles", ("s.png", STYLE, "image/png")),
        ],
    )
    assert response.status_code == 415
    assert response.json()["detail"].startswith("notes.txt: not an image")
    truncated = small.post("/api/jobs", files=files(styles=(("half.png", STYLE[: len(STYLE) // 2]),)))
    assert truncated.status_code == 415
    assert truncated.json()["detail"].startswith("half.png: ") and "truncated" in truncated.json()["detail"]
    assert [p.name for p in tmp_path.iterdir()] == []


def test_path_traversal_is_refused(client, root):
    # File names are labels only: the files land under the server's names, inside the job's directory.
    sneaky = post(client, {"steps": 2}, content=("../../escape-probe.png", CONTENT),
                  styles=(("..\\..\\style-probe.png", STYLE),))
    assert sneaky.status_code == 201
    job = sneaky.json()
    assert job["inputs"] == {"content": "escape-probe.png", "styles": ["style-probe.png"]}
    stored = sorted(p.name for p in (root / job["id"] / "inputs").iterdir())
    assert stored == ["content.png", "content.thumb.png", "style-1.png", "style-1.thumb.png"]
    # (names no other test writes: root.parent holds every test's temporary folders)
    assert not list(root.parent.rglob("escape-probe.png")) and not list(root.parent.rglob("style-probe.png"))
    wait(client, job["id"], finished)

    # Ids: only ids the server made, looked up in memory; never joined to a path.
    secret = root.parent / "secret.png"
    secret.write_bytes(CONTENT)
    for bad in ("..%2F..%2Fsecret.png", "..%2Fsecret.png", "%2e%2e", "..", "A" * 22, "a/../../b", "A" * 80):
        for method, suffix in (("GET", ""), ("GET", "/image"), ("GET", "/inputs/0"), ("DELETE", "")):
            response = client.request(method, f"/api/jobs/{bad}{suffix}")
            assert response.status_code in (404, 405, 422), (bad, suffix, response.status_code)
            assert response.headers.get("content-type") != "image/png"
    # Settings cannot name a file either.
    for settings in ({"weights": "/etc/passwd"}, {"weights": "../weights.npz"}, {"init": "../../secret.png"}):
        response = post(client, settings)
        assert response.status_code == 422 and "cannot name a file" in response.json()["detail"], settings
    assert client.post("/api/jobs", files=files(), data={"mode": "../stylize"}).status_code == 422


def test_unknown_and_bad_settings_get_422_naming_them(client):
    response = post(client, {"sizee": 64, "foo": 1})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("unknown settings: foo, sizee; known: preset, size, steps")
    checks = {
        "quality": ({"quality": 90}, "CLI-only"),
        "type": ({"size": "big"}, "size must be an integer"),
        "choice": ({"optimizer": "sgd"}, "optimizer must be one of lbfgs, adam"),
        "config": ({"steps": 0}, "steps must be a positive integer"),
        "layer": ({"style_layers": "relu9_9"}, "relu9_9"),
        "limit": ({"size": 4096}, "larger than this server allows (2048 px)"),
        "blend": ({"style_blend": "0.5,0.5"}, "style_blend has 2 values for 1 style images"),
    }
    for name, (settings, fragment) in checks.items():
        response = post(client, settings)
        assert response.status_code == 422, name
        assert fragment in response.json()["detail"], (name, response.json())
    no_style = client.post("/api/jobs", files=files(styles=()), data={"settings": "{}"})
    assert no_style.status_code == 422 and no_style.json()["detail"] == "stylize takes 1 to 8 style images; got 0"
    for body in ("[1, 2]", "{not json"):
        response = client.post("/api/jobs", files=files(), data={"settings": body})
        assert response.status_code == 422


def test_settings_map_to_the_same_config_as_the_cli():
    kind = StylizeKind()
    given = {"preset": "gatys", "steps": 300, "content-weight": 2, "style_blend": [0.7, 0.3], "scales": 2}
    prepared = kind.prepare(given, 2, ServeLimits())
    options = {name: default for name, (_, default) in STYLE_OPTIONS.items()}
    options.update(preset="gatys", steps=300, content_weight=2.0, style_blend="0.7,0.3", scales="2")
    assert prepared.config == config_from_options(options)
    assert prepared.settings == {
        "preset": "gatys",
        "steps": 300,
        "content_weight": 2.0,
        "style_blend": "0.7,0.3",
        "scales": "2",
    }
    assert prepared.weights is None  # the server's default
    with pytest.raises(SettingsError, match="given twice"):
        kind.prepare({"tv_weight": 1, "tv-weight": 2}, 1, ServeLimits())


# ------------------------------------------------------------------ the page, docs and guards


def test_modes_describe_the_fields_and_presets(client):
    info = client.get("/api/modes").json()
    assert [m["name"] for m in info["modes"]] == ["stylize"]  # only what exists
    mode = info["modes"][0]
    fields = {f["key"]: f for f in mode["fields"]}
    assert set(fields) == set(STYLE_OPTIONS) - {"quality", "quiet"}
    assert fields["optimizer"]["choices"] == ["lbfgs", "adam"]
    assert fields["init"]["choices"] == ["content", "noise", "style", "grey"]
    assert "random" in fields["weights"]["choices"] and fields["size"]["max"] == 2048
    assert mode["presets"]["gatys"]["steps"] == 500 and mode["auto_preset"] == "cpu"
    assert info["limits"]["max_upload_bytes"] == 20 * 2**20


def test_page_and_docs_load_nothing_from_elsewhere(client):
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    for text in (page.text, client.get("/static/app.js").text, client.get("/static/style.css").text):
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", text)
        assert "https://" not in text and "http://" not in text
    docs = client.get("/docs")
    assert docs.status_code == 200
    assets = re.findall(r"(?:src|href)=['\"]([^'\"]+\.(?:js|css))['\"]", docs.text)
    assert assets and all(a.startswith("/") for a in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    spec = client.get("/openapi.json").json()
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/image", "/api/events"} <= set(spec["paths"])
    assert set(spec["paths"]["/api/jobs/{job_id}"]) == {"get", "delete"}


def test_loopback_server_refuses_other_hosts_and_cross_site_writes(tmp_path):
    guarded = TestClient(create_app(root=tmp_path, allowed_hosts=LOCAL_HOSTS), base_url="http://127.0.0.1:8000")
    assert guarded.get("/api/jobs").status_code == 200
    assert guarded.get("/api/jobs", headers={"host": "localhost:8000"}).status_code == 200
    assert guarded.get("/api/jobs", headers={"host": "evil.example:8000"}).status_code == 400  # DNS rebinding
    cross = guarded.post("/api/jobs", files=files(), headers={"origin": "http://evil.example"})
    assert cross.status_code == 403
    same = guarded.post(
        "/api/jobs", files=files(), data={"settings": '{"bogus": 1}'}, headers={"origin": "http://127.0.0.1:8000"}
    )
    assert same.status_code == 422  # got through to the settings check


# ------------------------------------------------------------------ the command


def cli():
    from nstjax.cli.serve import serve

    app = typer.Typer()
    app.command()(serve)
    return app


def test_command_refuses_a_busy_port_and_a_missing_weights_file(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli(), ["--port", str(port), "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert len(result.stderr.strip().splitlines()) == 1
    result = CliRunner().invoke(cli(), ["--weights", str(tmp_path / "missing.npz"), "--root", str(tmp_path)])
    assert result.exit_code == 2 and "no such weights file" in result.stderr
    help_text = CliRunner().invoke(cli(), ["--help"]).stdout
    for flag in ("--host", "--port", "--weights", "--max-upload-mb"):
        assert flag in help_text
    assert Path(tmp_path).is_dir()


def test_a_full_queue_answers_429_with_retry_after_and_keeps_nothing(tmp_path):
    # Load shedding: with room for one job, a second request while it runs is refused before its uploads are
    # stored (no job directory appears), with Retry-After; once the queue drains, jobs are accepted again.
    with TestClient(create_app(root=tmp_path, limits=ServeLimits(max_queue=1))) as c:
        first = post(c, {"steps": 5000})
        assert first.status_code == 201, first.text
        before = sorted(p.name for p in tmp_path.iterdir())
        refused = post(c, {"steps": 5})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert refused.json()["detail"].startswith("the queue is full (1 jobs waiting or running)")
        assert sorted(p.name for p in tmp_path.iterdir()) == before
        c.delete(f"/api/jobs/{first.json()['id']}")
        wait(c, first.json()["id"], finished)
        assert post(c, {"steps": 2}).status_code == 201


def test_ten_times_the_queue_every_accepted_job_ends(tmp_path):
    # --max-queue 2 and 20 submissions while a long job holds its place: exactly one more is accepted, the 18
    # others get 429 (from the middleware, their bodies unread: no directory appears for them); every accepted
    # job then ends, with its reason.
    with TestClient(create_app(root=tmp_path, limits=ServeLimits(max_queue=2))) as c:
        long = post(c, {"steps": 100_000}).json()
        answers = [post(c, {"steps": 2}) for _ in range(19)]
        accepted = [r.json()["id"] for r in answers if r.status_code == 201]
        assert len(accepted) == 1 and sum(r.status_code == 429 for r in answers) == 18
        assert all(r.headers["retry-after"] == "30" for r in answers if r.status_code == 429)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([long["id"], *accepted])
        wait(c, long["id"], lambda j: j["status"] == "running")
        c.delete(f"/api/jobs/{long['id']}")
        ends = {job_id: wait(c, job_id, finished)["status"] for job_id in (long["id"], *accepted)}
        assert ends == {long["id"]: "stopped", accepted[0]: "done"}
