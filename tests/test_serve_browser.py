"""The page in a real browser: Debian's headless Chromium, driven by Playwright, against uvicorn on localhost.

Uploads a photo and a painting, starts a 64 px job, watches the preview change while the job runs, finds the
result in the gallery and downloads it; the API docs render offline too. The page is usable before
``/api/modes`` answers (a loading state, then a retry), and a finished job's preview is its result.
Skipped only when the browser (``/usr/bin/chromium``, Debian's ``chromium`` package) or Playwright is absent;
CI installs both.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import uvicorn
from conftest import smooth_image
from PIL import Image

from nstjax.serve import LOCAL_HOSTS, create_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# What works on an offline machine: no sandbox (root), no GPU, and none of Chromium's own network chatter.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_missing() -> str | None:
    if not shutil.which("chromium") and not shutil.which("/usr/bin/chromium"):
        return "no Chromium at /usr/bin/chromium (apt-get install -y chromium chromium-driver)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright; never `playwright install`)"
    return None


def save_png(path, array):
    Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8)).save(path)
    return path


@contextlib.contextmanager
def serving(app):
    """uvicorn serving ``app`` on a free port of 127.0.0.1 in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """uvicorn on a free port of 127.0.0.1 in a thread; yields (base URL, job root)."""
    root = tmp_path_factory.mktemp("serve-root")
    with serving(create_app(root=root, allowed_hosts=LOCAL_HOSTS)) as base:
        yield base, root


def test_event_stream_sends_the_jobs_as_they_change(server):
    base, _ = server
    with httpx.stream("GET", f"{base}/api/events", timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        event = next(line for line in lines if line.startswith("event:"))
        data = next(lines)
    assert event == "event: jobs" and data.startswith("data: ")
    assert isinstance(json.loads(data[len("data: ") :]), list)


def test_page_runs_a_job_with_a_live_preview(server, tmp_path):
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    base, root = server
    content = save_png(tmp_path / "photo.png", smooth_image((48, 64), 5))
    style = save_png(tmp_path / "painting.png", np.random.default_rng(6).random((64, 64, 3)))

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh profile for every run
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.new_page()
            outside: list[str] = []
            errors: list[str] = []
            page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:")) else outside.append(r.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            # Before /api/modes answers (here: its first try gets 503), the page says it is loading and retries.
            modes_calls: list[int] = []

            def slow_modes(route):
                modes_calls.append(1)
                if len(modes_calls) == 1:
                    route.fulfill(status=503, body='{"detail": "starting"}', content_type="application/json")
                else:
                    route.continue_()

            page.route("**/api/modes", slow_modes)
            page.goto(f"{base}/")
            page.wait_for_function("() => document.querySelector('#modes-status').textContent.length > 0")
            assert page.locator("#mode option").all_inner_texts() == ["Loading…"]
            assert page.locator("#start").is_disabled() and page.locator("#start").inner_text() == "Loading…"
            waiting = page.locator("#modes-status").inner_text()
            assert waiting.startswith("Waiting for the server (the server said 503)")
            page.wait_for_selector("body[data-ready=true]", timeout=15_000)
            assert len(modes_calls) == 2 and page.locator("#modes-status").inner_text() == ""
            assert page.locator("#start").is_enabled() and page.locator("#start").inner_text() == "Start"
            errors.remove("Failed to load resource: the server responded with a status of 503 (Service Unavailable)")
            assert page.locator("#mode option").all_inner_texts() == ["Style transfer (Gatys, optimisation)"]

            # Pictures: chosen through the (keyboard-reachable) file inputs; thumbnails appear.
            page.set_input_files("#content-input", str(content))
            page.set_input_files("#styles-input", str(style))
            assert page.locator("#content-thumbs img").get_attribute("alt") == "Content photo: photo.png"
            assert page.locator("#styles-thumbs img").get_attribute("alt") == "Style image 1: painting.png"

            # Settings: a long 64 px run with random weights and no early stop (stopped below, so machine speed
            # cannot end it before the page has seen it run).
            page.fill("#f-size", "64")
            page.fill("#f-steps", "5000")
            page.select_option("#f-weights", "random")
            page.click("#advanced summary")
            page.fill("#f-tolerance", "0")
            assert page.locator('.field[data-key="size"] .edited').is_visible()
            page.click("#start")

            # The preview shows the running job's image, then a newer one.
            # (Predicates are functions, not strings: the page's Content-Security-Policy forbids eval.)
            page.wait_for_function(
                "() => document.querySelector('#stage-status').textContent === 'running'"
                " && document.querySelector('#preview').dataset.preview !== undefined",
                timeout=40_000,
            )
            first = int(page.get_attribute("#preview", "data-preview"))
            page.wait_for_function(
                f"() => Number(document.querySelector('#preview').dataset.preview) > {first}"
                " && document.querySelector('#stage-status').textContent === 'running'",
                timeout=30_000,
            )
            assert page.locator("#progress").get_attribute("aria-valuetext").startswith("step ")
            assert "left" in page.locator("#stats").inner_text()  # the ETA
            page.screenshot(path=str(tmp_path / "running.png"))

            # Stop keeps the best image: it lands in the gallery as "stopped".
            page.click("#stop")
            stopped = page.locator("#gallery li.card[data-status=stopped]")
            stopped.wait_for(timeout=20_000)
            assert page.locator("#announce").inner_text() == "Stopped: kept the best image"
            assert stopped.locator(".art img").count() == 1

            # A short job runs to the end; the result appears in the gallery with its settings and a download.
            page.fill("#f-steps", "8")
            page.click("#start")
            card = page.locator("#gallery li.card[data-status=done]")
            card.wait_for(timeout=40_000)
            page.wait_for_function(
                "() => { const i = document.querySelector('#gallery li.card[data-status=done] .art img');"
                " return i && i.complete && i.naturalWidth === 64 && i.naturalHeight === 48; }",
                timeout=10_000,
            )
            chips = card.locator(".chips").inner_text()
            assert "size" in chips and "64×48" in chips and "weights" in chips and "random" in chips
            href = card.get_by_text("Download PNG").get_attribute("href")
            download = page.request.get(f"{base}{href}")
            assert download.ok and download.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(download.body())).size == (64, 48)
            page.wait_for_function("() => document.querySelector('#announce').textContent.startsWith('Done in')")
            # Under the DONE badge the stage shows the result, never the placeholder.
            page.wait_for_function("() => !document.querySelector('#preview').hidden", timeout=10_000)
            assert page.locator("#stage-status").inner_text().lower() == "done"
            assert page.locator("#empty").is_hidden()
            assert page.locator("#gallery li.card").count() == 2  # newest first
            assert page.locator("#gallery li.card").first.get_attribute("data-status") == "done"
            page.screenshot(path=str(tmp_path / "done.png"), full_page=True)

            # The job the page made is the server's: its files are under the job root.
            job_id = card.get_attribute("data-job")
            assert (root / job_id / "result.png").is_file()

            # The API docs render without a CDN.
            page.goto(f"{base}/docs")
            page.get_by_text("/api/jobs/{job_id}/image", exact=True).wait_for(timeout=20_000)
            assert not outside, outside
            assert not errors, errors
        finally:
            context.close()
    assert (tmp_path / "running.png").stat().st_size > 10_000


# ------------------------------------------------------------------ the Recreate mode: draw, paint, every stage


@pytest.fixture(scope="module")
def recreate_server(tmp_path_factory):
    """A server with the Recreate mode: two synthetic exemplars, the recreate tests' shallow NST layers."""
    from test_serve_recreate import SHALLOW

    from nstjax.labels import write_synth_dataset
    from nstjax.serve import KINDS, RecreateKind

    root = tmp_path_factory.mktemp("serve-recreate")
    exemplars = write_synth_dataset(root / "exemplars", 2, 48).directory
    kinds = {**KINDS, "recreate": RecreateKind(exemplars=exemplars, nst_config=SHALLOW)}
    with serving(create_app(root=root / "jobs", allowed_hosts=LOCAL_HOSTS, kinds=kinds)) as base:
        yield base, root / "jobs"


def stroke(page, box, points, steps=8):
    """Drag the mouse through ``points`` given as fractions (x, y) of the board."""
    at = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for point in at[1:]:
        page.mouse.move(*point, steps=steps)
    page.mouse.up()


def test_recreate_mode_draws_a_sketch_and_gets_every_stage(recreate_server, tmp_path):
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    from nstjax.labels import load_palette, read_label_map

    pal = load_palette("landscape")
    base, root = recreate_server
    painting = save_png(tmp_path / "painting.png", np.concatenate(
        [np.full((32, 64, 3), (0.95, 0.8, 0.2)), np.full((32, 64, 3), (0.2, 0.15, 0.5))]))  # fmt: skip
    classes = "() => document.querySelector('#board-canvas').dataset.classes"

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 1000}, accept_downloads=True,
        )  # fmt: skip
        try:
            page = context.new_page()
            outside: list[str] = []
            errors: list[str] = []
            page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:")) else outside.append(r.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/")
            page.wait_for_selector("body[data-ready=true]", timeout=15_000)
            page.select_option("#mode", "recreate")
            assert page.locator("#sketcher").is_visible() and not page.locator("#content-drop").is_visible()
            # The palette as named swatches; a new sketch is all sky.
            assert page.locator("#swatches .swatch").count() == len(pal)
            assert page.evaluate(classes) == "sky"

            # Draw: a mountain band across the middle, grass along the bottom, a sky stroke into the mountain.
            board = page.locator("#board-canvas").bounding_box()
            page.fill("#brush-size", "40")
            page.click('#swatches .swatch[data-class="mountain"]')
            stroke(page, board, [(0.05, 0.5), (0.5, 0.45), (0.95, 0.5)])
            page.click('#swatches .swatch[data-class="grass"]')
            stroke(page, board, [(0.02, 0.9), (0.98, 0.9)])
            assert page.evaluate(classes) == "sky,mountain,grass"
            page.click("#undo")
            assert page.evaluate(classes) == "sky,mountain"
            page.click("#redo")
            page.fill("#brush-size", "6")
            page.click('#swatches .swatch[data-class="sky"]')
            stroke(page, board, [(0.3, 0.5), (0.4, 0.5)])
            assert page.evaluate(classes) == "sky,mountain,grass"

            # The sketch downloads as a PNG that `nstjax recreate` reads: exact palette colours, the drawn classes.
            with page.expect_download() as got:
                page.click("#sketch-download")
            sketch = tmp_path / "drawn.png"
            got.value.save_as(sketch)
            ids = read_label_map(sketch, pal, tolerance=0, edge_width=0)  # exact colours only
            assert ids.shape == (256, 384)
            assert [pal.names[i] for i in np.unique(ids)] == ["sky", "mountain", "grass"]
            assert pal.names[ids[128, 30]] == "mountain" and pal.names[ids[230, 200]] == "grass"
            assert pal.names[ids[10, 200]] == "sky" and pal.names[ids[128, 135]] == "sky"  # the sky stroke

            # The painting, and its label map drawn over it: fill it all with sky, then grass over the bottom.
            page.set_input_files("#styles-input", str(painting))
            page.click("#labels-draw")
            page.wait_for_function("() => document.querySelector('#board-canvas').width === 64")
            page.click("#tool-fill")
            page.click('#swatches .swatch[data-class="sky"]')
            board = page.locator("#board-canvas").bounding_box()
            page.mouse.click(board["x"] + board["width"] / 2, board["y"] + 5)
            page.click("#tool-brush")
            page.click('#swatches .swatch[data-class="grass"]')
            page.fill("#brush-size", "64")
            stroke(page, board, [(0.02, 0.85), (0.98, 0.85)])
            assert page.evaluate(classes) == "sky,grass"
            assert page.locator("#labels-status").inner_text().startswith("Drawn: sky, grass")

            # A tiny job: 64 px, 10 steps a stage, random weights.
            page.fill("#f-size", "64")
            page.fill("#f-steps", "10")
            page.select_option("#f-weights", "random")
            page.click("#advanced summary")
            page.fill("#f-max_exemplars", "1")
            page.click("#start")
            card = page.locator("#gallery li.card[data-status=done]")
            card.wait_for(timeout=180_000)
            for name in ("sketch", "photo", "plain", "semantic", "final"):
                page.wait_for_function(
                    f"() => {{ const i = document.querySelector('#stage-list li[data-stage={name}] img');"
                    " return i && i.complete && i.naturalWidth > 0; }", timeout=10_000)  # fmt: skip
            assert page.locator("#scores").inner_text().startswith("Sky-on-ground score")
            assert page.locator("#stage-list li[data-stage=semantic] .score").inner_text().startswith("sky on ground")
            sheet = page.locator("#sheet-link")
            assert sheet.is_visible()
            response = page.request.get(f"{base}{sheet.get_attribute('href')}")
            assert response.ok and response.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(response.body())).width > 64 * 4
            for name in ("photo", "final"):
                link = page.locator(f"#stage-list li[data-stage={name}] a").get_attribute("href")
                assert page.request.get(f"{base}{link}").headers["content-type"] == "image/png"
            page.screenshot(path=str(tmp_path / "recreate.png"), full_page=True)

            # What the server ran is what was drawn.
            job_id = card.get_attribute("data-job")
            served = read_label_map(root / job_id / "inputs" / "content.png", pal, tolerance=0, edge_width=0)
            np.testing.assert_array_equal(served, ids)
            assert not outside, outside
            assert not errors, errors
        finally:
            context.close()
