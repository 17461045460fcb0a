"""``nstjax serve``: the local web page for style transfer (:mod:`nstjax.serve`).

Parses the flags, binds the socket (so a busy port is one ``error:`` line),
warns once when the server is reachable from other machines, and runs uvicorn.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from .common import cli_errors, say

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: any free port)."""
    from ..errors import NstjaxError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise NstjaxError(f"cannot resolve host {host!r} ({e.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise NstjaxError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.set_inheritable(True)
    return sock


def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on. Anything but loopback exposes the page to others.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).", min=0, max=65535)] = 8000,
    weights: Annotated[
        str | None,
        typer.Option(help="Default VGG weights for jobs: auto, random, a name from `nstjax weights list`, or a file."),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option(help="Largest upload per job (all its images together), in MB.", min=0.01)
    ] = 20.0,
    max_size: Annotated[
        int, typer.Option(help="Largest output size (longest side, px) a job may ask for.", min=64)
    ] = 2048,
    root: Annotated[
        Path | None, typer.Option(help="Where jobs and results are kept (default: <nstjax cache>/serve).")
    ] = None,
    max_queue: Annotated[
        int, typer.Option(help="Jobs waiting or running at once; more are refused with 429 and Retry-After.", min=1)
    ] = 16,
    fast_run: Annotated[
        Path | None, typer.Option(help="A `fast train` run: adds the Fast style mode (one painting, ~1 s).")
    ] = None,
    adain_run: Annotated[
        Path | None, typer.Option(help="An `adain train` run: adds the AdaIN mode (any painting, ~1 s).")
    ] = None,
    photo_model: Annotated[
        Path | None,
        typer.Option(help="Recreate mode, stage 1: a trained SPADE/pix2pix run (default: exemplar-guided NST)."),
    ] = None,
    exemplars: Annotated[
        Path | None,
        typer.Option(help="Recreate mode, stage 1: exemplar pairs DIR/labels/*.png + DIR/photos/*.png (default: "
                     "synthetic pairs written once into --root)."),
    ] = None,
    cyclegan_run: Annotated[
        Path | None, typer.Option(help="Recreate mode: a CycleGAN run, offered as the `cyclegan` painter.")
    ] = None,
) -> None:
    """Serve a local web page for style transfer: choose a photo and paintings, watch the image change.

    Jobs run one at a time on this machine's accelerator (or CPU). The API is documented at /docs.
    """
    with cli_errors():
        from ..errors import NstjaxError

        try:
            import uvicorn

            from ..serve import LOCAL_HOSTS, ServeLimits, create_app
        except ImportError as e:
            raise NstjaxError(f"nstjax serve needs the serve extra: pip install 'nstjax[serve]' ({e})") from None
        if weights is not None:
            from ..weights import imported_path, sources

            name = weights.strip().lower()
            known = name in ("auto", "random", *sources()) or imported_path(weights.strip()).is_file()
            if not known and not Path(weights).expanduser().exists():
                raise NstjaxError("no such weights file, and not a weights name (nstjax weights list)", weights)
        from ..hub import cache_dir
        from ..serve import KINDS
        from ..serve.feedforward import AdaINKind, FastKind
        from ..serve.recreate_kind import RecreateKind

        if photo_model is not None and exemplars is not None:
            raise NstjaxError("give --photo-model or --exemplars, not both")
        for folder in (photo_model, exemplars, cyclegan_run):
            if folder is not None and not folder.is_dir():
                raise NstjaxError("no such folder", folder)
        root = root if root is not None else cache_dir() / "serve"

        kinds = dict(KINDS)
        for run, make in ((fast_run, FastKind), (adain_run, AdaINKind)):
            if run is not None:
                kind = make(run)
                kind.model()  # a run that does not load is an error now, not at the first job
                kinds[kind.name] = kind
        recreate = RecreateKind(photo_model=photo_model, exemplars=exemplars, synthetic_root=root,
                                cyclegan_run=cyclegan_run)  # fmt: skip
        kinds[recreate.name] = recreate
        local = host in LOOPBACK
        limits = ServeLimits(max_upload_bytes=int(max_upload_mb * 2**20), max_size=max_size, max_queue=max_queue)
        app = create_app(root=root, weights=weights, limits=limits, allowed_hosts=LOCAL_HOSTS if local else None,
                         kinds=kinds)
        sock = bind(host, port)
        bound = sock.getsockname()[1]
        if not local:
            say(f"warning: listening on {host}: anyone who can reach it can upload images and run jobs (no login)")
        shown = f"[{host}]" if ":" in host else host
        say(f"nstjax serve: http://{shown}:{bound}/ (API docs at /docs; Ctrl-C to stop)")
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="on")
        uvicorn.Server(config).run(sockets=[sock])
