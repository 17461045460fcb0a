"""`nstjax serve --fast-run RUN --adain-run RUN`: trained feed-forward styles as modes of the page and the API."""

import io
import json
import time

import numpy as np
import pytest
from _local_server import Recorder
from fastapi.testclient import TestClient
from PIL import Image

from nstjax.adain import AdaINConfig, train_adain
from nstjax.fast import FAST_STYLE_LAYERS, FastConfig, train_fast
from nstjax.serve import KINDS, create_app
from nstjax.serve.feedforward import AdaINKind, FastKind
from nstjax.serve.kinds import ServeLimits
from nstjax.train import TrainSettings
from nstjax.weights import random_weights


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.rint(array * 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-step fast network and a 2-step AdaIN decoder (random VGG weights: plumbing, not quality)."""
    root = tmp_path_factory.mktemp("ff")
    rng = np.random.default_rng(0)
    for folder in ("photos", "styles"):
        (root / folder).mkdir()
        for i in range(2):
            Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(root / folder / f"{i}.png")
    settings = TrainSettings(steps=2, batch_size=2, log_every=1, sample_every=0, checkpoint_every=2)
    weights = random_weights(0)
    fast = train_fast(root / "styles" / "0.png", root / "photos", root / "fast", settings=settings, weights=weights,
                      config=FastConfig(size=32, style_layers=FAST_STYLE_LAYERS)).run_dir  # fmt: skip
    adain = train_adain(root / "photos", root / "styles", root / "adain", settings=settings, weights=weights,
                        config=AdaINConfig(size=32, load_size=32)).run_dir  # fmt: skip
    return fast, adain


@pytest.fixture(scope="module")
def client(runs, tmp_path_factory):
    kinds = {**KINDS, "fast": FastKind(runs[0]), "adain": AdaINKind(runs[1], weights=random_weights(0))}
    with TestClient(create_app(root=tmp_path_factory.mktemp("jobs"), kinds=kinds)) as c:
        yield c


def finish(client, job_id):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "stopped", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError("the job did not finish")


def test_modes_are_listed_with_their_schema_fields(client):
    modes = {m["name"]: m for m in client.get("/api/modes").json()["modes"]}
    assert list(modes) == ["stylize", "fast", "adain"]
    fast, adain = modes["fast"], modes["adain"]
    assert fast["inputs"]["styles"] == {"min": 0, "max": 0} and adain["inputs"]["styles"]["min"] == 1
    assert {f["key"] for f in fast["fields"]} == {"size", "dtype"}
    assert {f["key"] for f in adain["fields"]} == {"alpha", "style_blend", "preserve_color", "style_size", "size",
                                                    "dtype"}  # fmt: skip
    alpha = next(f for f in adain["fields"] if f["key"] == "alpha")
    assert alpha["default"] == 1.0 and alpha["min"] == 0.0 and alpha["max"] == 1.0


def test_fast_and_adain_jobs_give_an_image_of_the_asked_size(client):
    photo = png(np.random.default_rng(1).random((48, 64, 3)))
    painting = png(np.random.default_rng(2).random((40, 40, 3)))
    fast = client.post("/api/jobs", files={"content": ("p.png", photo)},
                       data={"mode": "fast", "settings": json.dumps({"size": 40})})  # fmt: skip
    assert fast.status_code == 201, fast.text
    done = finish(client, fast.json()["id"])
    assert done["status"] == "done" and done["result"]["size"] == [30, 40], done
    assert Image.open(io.BytesIO(client.get(f"/api/jobs/{done['id']}/image").content)).size == (40, 30)

    adain = client.post("/api/jobs", files=[("content", ("p.png", photo)), ("styles", ("s.png", painting)),
                                            ("styles", ("t.png", painting))],
                        data={"mode": "adain", "settings": json.dumps({"alpha": 0.5, "style_blend": "3,1"})})  # fmt: skip
    assert adain.status_code == 201, adain.text
    done = finish(client, adain.json()["id"])
    assert done["status"] == "done" and done["result"]["alpha"] == 0.5, done


def test_the_first_pass_at_a_size_is_reported_as_compiling(runs, tmp_path):
    kind = FastKind(runs[0])  # a fresh kind: nothing ran at any size yet
    (tmp_path / "p.png").write_bytes(png(np.random.default_rng(1).random((48, 64, 3))))
    phases = []
    for size in (40, 40, 48):
        recorder = Recorder()
        outcome = kind.run(kind.prepare({"size": size}, 0, ServeLimits()), tmp_path / "p.png", [], recorder)
        assert outcome.image.shape[1] == size and recorder.plans[0]["device"]
        phases.append([r["phase"] for r in recorder.reports])
    assert phases == [["compiling", "running"], ["running", "running"], ["compiling", "running"]]


def test_requests_are_checked_against_the_schemas(client):
    photo = png(np.zeros((16, 16, 3)))
    for mode, settings, styles, message in (
        ("fast", {"alpha": 1}, 0, "unknown settings: alpha"),
        ("fast", {"size": 99999}, 0, "larger than this server allows"),
        ("fast", {}, 1, "fast takes 0 to 0 style images; got 1"),
        ("adain", {"alpha": 2}, 1, "alpha must be at most 1, got 2"),
        ("adain", {"style_blend": "1,2"}, 1, "style_blend has 2 values for 1 style images"),
        ("adain", {}, 0, "adain takes 1 to 8 style images; got 0"),
    ):
        files = [("content", ("p.png", photo))] + [("styles", ("s.png", photo))] * styles
        response = client.post("/api/jobs", files=files, data={"mode": mode, "settings": json.dumps(settings)})
        assert response.status_code == 422 and message in response.json()["detail"], (mode, response.json())
