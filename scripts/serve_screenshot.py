"""Screenshots of `nstjax serve` for docs/serve.md: the page mid-run, in headless Chromium.

    .venv/bin/python scripts/serve_screenshot.py --content ../shared/images/chelsea.png \
        --style ../shared/images/shipwreck.jpg --out docs/img/serve.png

Starts the app on a free localhost port (jobs in a temporary directory), runs one short job so the gallery
has a card, starts a second, and takes the screenshot once the preview has changed a few times. Needs
Debian's chromium and Playwright for Python (never `playwright install`). Prints what it ran.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from nstjax.serve import LOCAL_HOSTS, create_app

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def start_server(root: Path) -> tuple[str, uvicorn.Server, threading.Thread]:
    return start_server_with(root, None)


def start_server_with(root: Path, kinds: dict | None) -> tuple[str, uvicorn.Server, threading.Thread]:
    """(base URL, server, thread): the app with ``kinds`` (None: the registered ones) on a free localhost port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    app = create_app(root=root, allowed_hosts=LOCAL_HOSTS, kinds=kinds)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


def run_job(page, size: int, steps: int, weights: str) -> None:
    page.fill("#f-size", str(size))
    page.fill("#f-steps", str(steps))
    page.select_option("#f-weights", weights)
    page.click("#start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--content", type=Path, required=True)
    parser.add_argument("--style", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, default=Path("docs/img/serve.png"))
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--weights", default="random", help="weights for the jobs (random: no download needed)")
    parser.add_argument("--frames", type=int, default=8, help="preview frames to wait for before the screenshot")
    parser.add_argument("--scheme", choices=("dark", "light"), default="dark")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        base, server, thread = start_server(Path(tmp) / "jobs")
        try:
            with sync_playwright() as p:
                context = p.chromium.launch_persistent_context(
                    str(Path(tmp) / "profile"), executable_path="/usr/bin/chromium", headless=True, args=FLAGS,
                    viewport={"width": 1360, "height": 1180}, color_scheme=args.scheme, device_scale_factor=1,
                )  # fmt: skip
                page = context.new_page()
                page.goto(base)
                page.wait_for_selector("body[data-ready=true]")
                page.set_input_files("#content-input", str(args.content))
                page.set_input_files("#styles-input", [str(s) for s in args.style])

                # A short first job, so the gallery shows a finished card.
                run_job(page, max(64, args.size // 2), max(10, args.steps // 10), args.weights)
                page.locator("#gallery li.card").first.wait_for(timeout=300_000)

                run_job(page, args.size, args.steps, args.weights)
                page.wait_for_function("() => document.querySelector('#stage-status').textContent === 'running'")
                page.wait_for_function(
                    "() => document.querySelector('#preview').dataset.job !== undefined", timeout=300_000
                )
                first = int(page.get_attribute("#preview", "data-preview") or 0)
                page.wait_for_function(
                    f"() => Number(document.querySelector('#preview').dataset.preview) >= {first + args.frames}"
                    " || document.querySelector('#stage-status').textContent !== 'running'",
                    timeout=300_000,
                )
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.locator("header.top").scroll_into_view_if_needed()
                page.mouse.wheel(0, -10_000)
                time.sleep(0.3)
                page.screenshot(path=str(args.out))
                stats = page.locator("#stats").inner_text()
                plan = page.locator("#plan").inner_text()
                context.close()
        finally:
            server.should_exit = True
            thread.join(20)
    print(f"wrote {args.out}: {stats} | {plan}")


if __name__ == "__main__":
    main()
