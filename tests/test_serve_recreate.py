"""`nstjax serve`'s Recreate mode through the JSON API: the sketch as the content upload, the painting (and its
label map) as the style uploads, every stage served by fixed name, refusals in one line.

Jobs are tiny: a 48x64 sky/mountain/grass sketch at size 64, random VGG weights, the engine tests' shallow
layers (tests/test_recreate.py) and 10 steps per stage, two synthetic exemplars.
"""

from __future__ import annotations

import base64
import io
import json
import math

import numpy as np
import pytest
from _local_server import wait_for_job
from fastapi.testclient import TestClient
from PIL import Image

from nstjax.errors import NstjaxError
from nstjax.labels import load_palette, read_label_map, save_label_map, write_synth_dataset
from nstjax.nst.config import preset
from nstjax.serve import KINDS, RecreateKind, create_app

PAL = load_palette("landscape")
SKY, MOUNTAIN, GRASS = (PAL.index(n) for n in ("sky", "mountain", "grass"))
JOB = {"size": 64, "steps": 10, "weights": "random", "max_exemplars": 1}
# tests/test_recreate.py's shallow NST (a few layers, max pooling): the server operator's base config here.
SHALLOW = preset("gatys", tolerance=0.0, pooling="max", content_layers=(("relu2_2", 1.0),),
                 style_layers=(("relu1_1", 1.0), ("relu2_1", 1.0), ("relu3_1", 0.5)))  # fmt: skip


def scene(shape=(48, 64)) -> np.ndarray:
    labels = np.full(shape, GRASS, np.int32)
    labels[: shape[0] // 2] = SKY
    labels[shape[0] // 3 : shape[0] // 2, shape[1] // 4 : 3 * shape[1] // 4] = MOUNTAIN
    return labels


def label_png(labels: np.ndarray, tmp_path, name="sketch.png") -> bytes:
    save_label_map(tmp_path / name, labels, PAL, kind="color")
    return (tmp_path / name).read_bytes()


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(out, format="PNG")
    return out.getvalue()


def painting() -> bytes:
    rng = np.random.default_rng(3)
    image = np.zeros((48, 48, 3), np.float32)
    image[:24] = (0.95, 0.8, 0.2)
    image[24:] = (0.2, 0.15, 0.5)
    return png(np.clip(image + 0.1 * rng.standard_normal(image.shape), 0, 1) * 255)


def post(client, sketch: bytes, labels: bytes | None = None, settings=None, name="sketch.png"):
    files = [("content", (name, sketch, "image/png")), ("styles", ("painting.png", painting(), "image/png"))]
    if labels is not None:
        files.append(("styles", ("painting_labels.png", labels, "image/png")))
    data = {"mode": "recreate", "settings": json.dumps({**JOB, **(settings or {})})}
    return client.post("/api/jobs", files=files, data=data)


def wait(client, job_id, until, timeout=240.0):
    return wait_for_job(client, job_id, until, timeout)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recreate-serve")
    exemplars = write_synth_dataset(folder / "exemplars", 2, 48).directory
    kind = RecreateKind(exemplars=exemplars, nst_config=SHALLOW)
    with TestClient(create_app(root=folder / "jobs", kinds={**KINDS, "recreate": kind})) as client:
        yield client, folder


def test_the_mode_is_described_from_the_schema(setup):
    client, _ = setup
    mode = {m["name"]: m for m in client.get("/api/modes").json()["modes"]}["recreate"]
    assert [f["key"] for f in mode["fields"]] == ["painter", "size", "steps", "weights", "seed", "max_exemplars"]
    painter = next(f for f in mode["fields"] if f["key"] == "painter")
    assert painter["choices"] == ["auto", "nst", "semantic-nst"]  # no CycleGAN run on this server
    assert mode["inputs"]["content"]["max"] == 1 and mode["inputs"]["styles"] == {
        "min": 1, "max": 2, "titles": ["Painting", "Painting label map"]}
    assert len(mode["palette"]) == len(PAL)
    assert mode["palette"][SKY] == {"id": SKY, "name": "sky", "color": "#759edf"}


def test_a_job_runs_every_stage_and_serves_them_by_name(setup, tmp_path):
    client, folder = setup
    plabels = np.full((48, 48), GRASS, np.int32)
    plabels[:24] = SKY
    answer = post(client, label_png(scene(), tmp_path), label_png(plabels, tmp_path, "p.png"))
    assert answer.status_code == 201, answer.text
    job = wait(client, answer.json()["id"], lambda j: j["status"] in ("done", "failed", "stopped"))
    assert job["status"] == "done", job
    assert job["stages"] == ["sketch", "photo", "plain", "semantic", "final", "sheet"]
    assert job["plan"]["stages"] == ["photo", "plain", "semantic"] and job["plan"]["final"] == "semantic"
    # The estimate (RecreatePlan.seconds + compile_seconds) counts every stage: three NST stages of one scale
    # each at size 64 (the exemplar stage's coarser passes start at 64 px), so three compilations, and work.
    plan = job["plan"]
    assert plan["compilations"] == 3 and 0 <= plan["compile_seconds"] < plan["estimate_seconds"] < math.inf
    assert set(job["result"]["scores"]) == {"photo", "plain", "semantic"}
    assert all(0 <= v <= 1 for v in job["result"]["scores"].values())
    assert job["result"]["classes"] == ["sky", "mountain", "grass"]
    for name in job["stages"]:
        got = client.get(f"/api/jobs/{job['id']}/stages/{name}")
        assert got.status_code == 200 and got.headers["content-type"] == "image/png", name
    sheet = client.get(f"/api/jobs/{job['id']}/sheet?download=true")
    assert sheet.status_code == 200 and "attachment" in sheet.headers["content-disposition"]
    assert Image.open(io.BytesIO(sheet.content)).width > 64 * 4
    sketch = client.get(f"/api/jobs/{job['id']}/stages/sketch")
    (tmp_path / "back.png").write_bytes(sketch.content)
    assert set(np.unique(read_label_map(tmp_path / "back.png", PAL))) == {SKY, MOUNTAIN, GRASS}

    # Fixed names only: anything else is refused, whatever it looks like.
    for bad in ("bogus", "result", "%2e%2e", "sheet.png", "photo.png", "%2e%2e%2fjob.json"):
        assert client.get(f"/api/jobs/{job['id']}/stages/{bad}").status_code == 404, bad
    assert client.get(f"/api/jobs/{job['id']}/stages/cyclegan").status_code == 404  # not a stage of this job
    # Another job's id reaches that job's stages only: one stopped at once has none of these.
    other = post(client, label_png(scene(), tmp_path), settings={"steps": 1000}).json()["id"]
    client.delete(f"/api/jobs/{other}")
    assert wait(client, other, lambda j: j["status"] in ("done", "failed", "stopped"))["status"] == "stopped"
    for name in ("photo", "plain", "semantic", "final"):
        assert client.get(f"/api/jobs/{other}/stages/{name}").status_code == 404
    for unknown in ("A" * 22, "not-an-id", "../" + job["id"]):
        assert client.get(f"/api/jobs/{unknown}/stages/photo").status_code == 404
        assert client.get(f"/api/jobs/{unknown}/sheet").status_code == 404
    assert (folder / "jobs" / job["id"] / "stages" / "sheet.png").is_file()


def test_stop_keeps_the_finished_stages(setup, tmp_path):
    client, _ = setup
    answer = post(client, label_png(scene(), tmp_path), settings={"steps": 150, "painter": "nst"})  # ~10 s a stage
    job_id = answer.json()["id"]
    running = wait(client, job_id, lambda j: "photo" in j["stages"] or j["status"] in ("done", "failed", "stopped"))
    assert running["status"] == "running", running
    # The library's ETA (StageProgress.eta), counted down between its reports; the next stage compiles or runs.
    assert running["eta_seconds"] is not None and 0 <= running["eta_seconds"] < math.inf
    assert running["phase"] in ("compiling", "running") and running["plan"]["compilations"] == 2
    client.delete(f"/api/jobs/{job_id}")
    job = wait(client, job_id, lambda j: j["status"] in ("done", "failed", "stopped"))
    assert job["status"] == "stopped", job
    assert job["stages"][:2] == ["sketch", "photo"] and job["stages"][-1] == "sheet"
    assert client.get(f"/api/jobs/{job_id}/stages/photo").status_code == 200
    assert client.get(f"/api/jobs/{job_id}/sheet").status_code == 200
    assert client.get(f"/api/jobs/{job_id}/image").status_code == 200  # the last finished stage


def test_a_sketch_colour_outside_the_palette_is_refused_in_one_line(setup, tmp_path):
    client, folder = setup
    rgb = PAL.colors[scene()].astype(np.uint8)
    rgb[5:15, 5:15] = (255, 0, 255)  # magenta: no class
    (tmp_path / "bad.png").write_bytes(png(rgb))
    with pytest.raises(NstjaxError) as expected:
        read_label_map(tmp_path / "bad.png", PAL)
    before = set((folder / "jobs").iterdir())
    answer = post(client, png(rgb), name="bad.png")
    assert answer.status_code == 422
    assert answer.json()["detail"] == f"sketch (bad.png): {expected.value.problem}"
    assert "\n" not in answer.json()["detail"] and str(tmp_path) not in answer.json()["detail"]
    assert set((folder / "jobs").iterdir()) == before  # nothing kept
    # The painting's label map is read the same way.
    answer = post(client, label_png(scene(), tmp_path), png(rgb))
    assert answer.status_code == 422 and answer.json()["detail"].startswith("painting labels (painting_labels.png): ")


def test_settings_are_checked_and_files_are_never_named(setup, tmp_path):
    client, _ = setup
    sketch = label_png(scene(), tmp_path)
    for settings, words in (
        ({"exemplars": "/etc"}, "set by the server"),
        ({"photo_model": "/tmp/run"}, "set by the server"),
        ({"painter": "cyclegan:/tmp/run"}, "painter must be one of"),
        ({"painter": "semantic-nst"}, "needs the painting's label map"),
        ({"size": 100000}, "larger than this server allows"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"weights": "/etc/passwd"}, "weights must be one of"),
        ({"frobnicate": 1}, "unknown settings: frobnicate"),
    ):
        answer = post(client, sketch, settings=settings)
        assert answer.status_code == 422 and words in answer.json()["detail"], (settings, answer.text)


def test_label_maps_open_as_class_ids(setup, tmp_path):
    client, _ = setup
    labels = scene()
    answer = client.post("/api/label-maps", files={"file": ("s.png", label_png(labels, tmp_path), "image/png")})
    assert answer.status_code == 200, answer.text
    got = answer.json()
    ids = np.frombuffer(base64.b64decode(got["ids"]), np.uint8).reshape(got["height"], got["width"])
    np.testing.assert_array_equal(ids, labels)
    assert got["classes"] == ["sky", "mountain", "grass"]
    index = client.post("/api/label-maps", files={"file": ("i.png", png(labels.astype(np.uint8)), "image/png")})
    assert index.status_code == 200 and index.json()["ids"] == got["ids"]  # an index PNG reads the same
    rgb = PAL.colors[labels].astype(np.uint8)
    rgb[5:15, 5:15] = (255, 0, 255)
    bad = client.post("/api/label-maps", files={"file": ("bad.png", png(rgb), "image/png")})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("bad.png: ")
    junk = client.post("/api/label-maps", files={"file": ("x.png", b"not an image", "image/png")})
    assert junk.status_code == 415
