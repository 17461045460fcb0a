"""The ASGI app behind ``nstjax serve``: a page, a JSON API, and a server-sent event stream.

Endpoints (documented at ``/docs``, served offline)::

    GET    /                          the page
    GET    /api/modes                 job kinds with their fields and presets, and the server's limits
    POST   /api/jobs                  multipart: content, styles (one or more), settings (JSON), mode
    GET    /api/jobs                  every job, oldest first
    GET    /api/jobs/{id}             one job: status, step, loss terms, ETA, result
    GET    /api/jobs/{id}/image       the current best image (PNG); ?download=true to save it
    GET    /api/jobs/{id}/inputs/{i}  a thumbnail of input i (0 = content, 1.. = styles)
    GET    /api/jobs/{id}/stages/{s}  a recreate job's stage image (sketch, photo, plain, semantic, cyclegan, final)
    GET    /api/jobs/{id}/sheet       a recreate job's contact sheet of its stages
    DELETE /api/jobs/{id}             stop the job and keep its best image
    POST   /api/label-maps            read a sketch or label map (multipart: file) as class ids of the palette
    GET    /api/events                server-sent events: jobs whose state changed, a few times a second at most

Under load: a submission while the queue is full is answered 429 (``Retry-After``) before its body is read;
the state endpoints (``/api/jobs``, ``/api/jobs/{id}``, its image, the event stream) run on the event loop
and only read memory under a short lock, so they answer while uploads, image decoding and file writes (in
the thread pool) and the running job (in the worker thread) go on.
"""

import asyncio
import contextlib
import json
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from .jobs import JobQueue, QueueFull, disk_full, is_job_id
from .kinds import ServeLimits, SettingsError
from .recreate_kind import STAGE_NAMES, read_label_upload
from .uploads import BodyLimit, UploadError, display_name, store_image

__all__ = ["EVENT_INTERVAL", "LOCAL_HOSTS", "create_app"]

EVENT_INTERVAL = 0.25
"""Seconds between checks for changes on an event stream (so 4 updates a second at most)."""

RETRY_AFTER_SECONDS = 30
"""What a 429 (queue full) tells a client to wait before it tries again."""

DISK_FULL_UPLOAD = "no space left on the server's disk for the uploads; try again later"

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
"""Host names a loopback-only server answers to (a guard against DNS rebinding)."""

_PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

_API_DESCRIPTION = """\
Style transfer jobs for the nstjax web page, and for scripts.

* **Create**: `POST /api/jobs` with multipart fields `content` (one image), `styles` (one or more images),
  `settings` (a JSON object keyed by the `nstjax stylize` option names, e.g.
  `{"size": 512, "steps": 300, "weights": "auto"}`; `content-weight` and `content_weight` both work) and
  `mode` (default `stylize`). Unknown settings are refused (422) by name; `weights` and `init` take names
  only, never a file.
* **Follow**: `GET /api/jobs/{id}` (status `queued`, `running`, `done`, `stopped`, `failed`, or `lost`: it was
  queued or running when the server died; step, loss terms, ETA), `GET /api/jobs/{id}/image` (PNG of the best
  image so far), or the event stream `GET /api/events`.
* **Stop**: `DELETE /api/jobs/{id}` stops at the next progress report (about a second) and keeps the best image.

* **Recreate** (`mode=recreate`, when the server offers it): `content` is the sketch (a colour sketch or index
  PNG in the `landscape` palette), `styles` the painting and, optionally, its label map as a second file. A
  sketch colour outside the palette is refused (422) at once. Each stage's image is at
  `GET /api/jobs/{id}/stages/{name}` as soon as it is done, the contact sheet at `GET /api/jobs/{id}/sheet`.

Jobs run one at a time, in the order they came; when the queue is full a new one gets 429 with `Retry-After`.
Uploads over the server's limit get 413; files that are not images get 415 with the reason; a full disk 507.
"""


class _Guard:
    """ASGI middleware: answer only to allowed Host names, and refuse cross-site writes.

    ``hosts`` (lower-case names, no port) guards a loopback server against DNS
    rebinding; ``None`` allows any. A POST or DELETE whose ``Origin`` is not
    this server is refused (403): another web site cannot start or stop jobs.
    """

    def __init__(self, app: Any, hosts: tuple[str, ...] | None):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        host = headers.get("host", "")
        if self.hosts is not None and _host_name(host) not in self.hosts:
            await _plain(send, 400, f"this server answers to {', '.join(self.hosts)} only")
            return
        origin = headers.get("origin")
        if scope["method"] in ("POST", "PUT", "PATCH", "DELETE") and origin is not None:
            parts = urlsplit(origin)
            if parts.netloc.lower() != host.lower():
                await _plain(send, 403, "cross-site requests are refused")
                return

        async def send_no_sniff(message: dict) -> None:
            if message["type"] == "http.response.start":  # browsers must not guess types of served files
                message = {**message, "headers": [*message.get("headers", ()), (b"x-content-type-options", b"nosniff")]}
            await send(message)

        await self.app(scope, receive, send_no_sniff)


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class _ShedLoad:
    """ASGI middleware: a job submission while the queue is full gets 429 at once, its body never read."""

    def __init__(self, app: Any, jobs: JobQueue):
        self.app, self.jobs = app, jobs

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/api/jobs":
            reason = self.jobs.full()
            if reason is not None:
                await _plain(send, 429, reason, [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())])
                return
        await self.app(scope, receive, send)


async def _plain(send: Any, status: int, detail: str, extra: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _megabytes(count: int) -> str:
    return f"{count / 2**20:.3g} MB" if count >= 2**20 else f"{count / 2**10:.3g} KB"


def _static_text(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def _new_fastapi(**kwargs: Any) -> FastAPI:
    """FastAPI with ``/docs`` and ``/redoc`` that load nothing from a CDN.

    fastapi-offline (in the ``serve`` extra) ships Swagger UI and ReDoc; without
    it ``/docs`` is a plain local page listing the endpoints.
    """
    try:
        from fastapi_offline import FastAPIOffline
    except ImportError:
        app = FastAPI(docs_url=None, redoc_url=None, **kwargs)

        @app.get("/docs", include_in_schema=False)
        def plain_docs() -> HTMLResponse:
            rows = []
            for path, methods in app.openapi()["paths"].items():
                for method, op in methods.items():
                    rows.append(f"<li><code>{method.upper()} {path}</code>: {op.get('summary', '')}</li>")
            return HTMLResponse(
                f"<!doctype html><title>{app.title}</title><h1>{app.title}</h1>"
                f"<p><a href='/openapi.json'>OpenAPI JSON</a></p><ul>{''.join(rows)}</ul>"
            )

        return app
    return FastAPIOffline(**kwargs)


def create_app(
    *,
    root: str | Path | None = None,
    weights: Any = None,
    limits: ServeLimits | None = None,
    allowed_hosts: tuple[str, ...] | None = None,
    kinds: dict[str, Any] | None = None,
) -> FastAPI:
    """The ``nstjax serve`` app.

    Args:
      root: where job directories go; default ``nstjax.hub.cache_dir() / "serve"``.
      weights: default VGG weights spec for jobs that name none (the server's
        operator may give a file; requests may name only sources or ``random``).
      limits: upload size, pixels, output size and style count limits.
      allowed_hosts: Host names to answer to (e.g. :data:`LOCAL_HOSTS` for a
        loopback server); ``None`` answers to any.
      kinds: job kinds (default: every registered one).

    The worker thread starts with the app (or with its first job) and stops
    with it: the running job stops and keeps its best image.
    """
    from .. import __version__
    from ..hub import cache_dir

    limits = limits or ServeLimits()
    job_queue = JobQueue(
        Path(root) if root is not None else cache_dir() / "serve", weights=weights, limits=limits, kinds=kinds
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        job_queue.start()
        try:
            yield
        finally:
            await asyncio.to_thread(job_queue.close, 15.0)

    app = _new_fastapi(
        title="nstjax serve",
        version=__version__,
        description=_API_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.jobs = job_queue
    app.state.limits = limits
    app.add_middleware(
        BodyLimit, limit=limits.max_upload_bytes, describe=f"{_megabytes(limits.max_upload_bytes)} in all"
    )
    app.add_middleware(_ShedLoad, jobs=job_queue)  # before the body is read
    app.add_middleware(_Guard, hosts=allowed_hosts)  # outermost: checked before anything is read
    app.mount("/static", StaticFiles(packages=[(__package__, "static")]), name="static")

    def find(job_id: str):
        job = job_queue.get(job_id) if is_job_id(job_id) else None
        if job is None:
            raise HTTPException(404, "no such job")
        return job

    JobId = Annotated[str, PathParam(description="A job id from POST /api/jobs.", max_length=64)]

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(_static_text("index.html"), headers={"Content-Security-Policy": _PAGE_POLICY})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(_static_text("favicon.svg"), media_type="image/svg+xml")

    @app.get("/api/modes", summary="Job kinds, their settings and presets, and the server's limits")
    def modes() -> dict[str, Any]:
        from ..nst.run import describe_device

        default = job_queue.default_weights
        if default is not None and not isinstance(default, str):
            default = Path(default).name
        elif isinstance(default, str) and ("/" in default or "\\" in default):
            default = Path(default).name
        return {
            "modes": [kind.describe(limits) for kind in job_queue.kinds.values()],
            "limits": {
                "max_upload_bytes": limits.max_upload_bytes,
                "max_pixels": limits.max_pixels,
                "max_size": limits.max_size,
                "max_styles": limits.max_styles,
            },
            "default_weights": default or "auto",
            "device": describe_device(),
            "version": __version__,
        }

    @app.post("/api/jobs", status_code=201, summary="Start a job (queued behind earlier ones)")
    def create_job(
        content: Annotated[UploadFile, File(description="The content photo.")],
        styles: Annotated[
            list[UploadFile] | None, File(description="Style images (paintings): one or more for stylize.")
        ] = None,
        settings: Annotated[
            str,
            Form(description='JSON object keyed by the CLI\'s option names, e.g. {"size": 512, "steps": 300}.'),
        ] = "{}",
        mode: Annotated[str, Form(description="Job kind; see GET /api/modes.")] = "stylize",
    ) -> JSONResponse:
        """Queue a job; answers with the job (its ``id`` among its fields)."""
        kind = job_queue.kinds.get(mode)
        if kind is None:
            raise HTTPException(422, f"unknown mode {mode!r}; available: {', '.join(job_queue.kinds)}")
        try:
            given = json.loads(settings or "{}")
        except ValueError as e:
            raise HTTPException(422, f"settings is not valid JSON ({e})") from None
        if not isinstance(given, dict):
            raise HTTPException(422, "settings must be a JSON object keyed by option names")
        styles = styles or []
        wanted = kind.describe(limits)["inputs"]["styles"]
        if not wanted["min"] <= len(styles) <= wanted["max"]:
            raise HTTPException(422, f"{mode} takes {wanted['min']} to {wanted['max']} style images; got {len(styles)}")
        try:
            prepared = kind.prepare(given, len(styles), limits)
        except SettingsError as e:
            raise HTTPException(422, str(e)) from None
        full = job_queue.full()
        if full is not None:  # shed load before the uploads are stored (filled while this body was read)
            raise HTTPException(429, full, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        try:
            job_id, directory = job_queue.new_directory()
        except OSError as e:
            if disk_full(e):
                raise HTTPException(507, DISK_FULL_UPLOAD) from None
            raise
        try:
            inputs = directory / "inputs"
            stored = [store_image(content.file, inputs, "content", display_name(content.filename, "content"),
                                  limits.max_pixels)]  # fmt: skip
            for i, style in enumerate(styles, start=1):
                label = display_name(style.filename, f"style {i}")
                stored.append(store_image(style.file, inputs, f"style-{i}", label, limits.max_pixels))
            labels = {"content": stored[0].label, "styles": [s.label for s in stored[1:]]}
            check_inputs = getattr(kind, "check_inputs", None)  # a kind that reads its inputs before queueing
            if check_inputs is not None:
                check_inputs(prepared, stored[0].path, [s.path for s in stored[1:]], labels)
            job = job_queue.submit(job_id, directory, mode, prepared, getattr(prepared, "settings", given), labels)
        except QueueFull as e:  # filled while this request stored its uploads
            job_queue.remove_directory(directory)
            raise HTTPException(429, str(e), headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        except UploadError as e:
            job_queue.remove_directory(directory)
            raise HTTPException(e.status, e.message) from None
        except SettingsError as e:
            job_queue.remove_directory(directory)
            raise HTTPException(422, str(e)) from None
        except BaseException as e:
            job_queue.remove_directory(directory)
            if disk_full(e):  # nothing of this job is kept; the server goes on
                raise HTTPException(507, DISK_FULL_UPLOAD) from None
            raise
        return JSONResponse(job_queue.view(job), status_code=201, headers={"Location": f"/api/jobs/{job.id}"})

    # The state endpoints are coroutines: they read memory under a short lock, never wait for a thread.
    @app.get("/api/jobs", summary="Every job, oldest first")
    async def list_jobs() -> dict[str, Any]:
        return {"jobs": job_queue.views()}

    @app.get("/api/jobs/{job_id}", summary="One job: status, step, loss terms, ETA, result")
    async def get_job(job_id: JobId) -> dict[str, Any]:
        return job_queue.view(find(job_id))

    @app.get(
        "/api/jobs/{job_id}/image",
        summary="The job's current best image (PNG)",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, 404: {"description": "no such job, or no image yet"}},
    )
    async def job_image(
        job_id: JobId,
        download: Annotated[bool, Query(description="Send as an attachment (a file to save).")] = False,
    ) -> Response:
        job = find(job_id)
        current = job_queue.preview(job)
        if current is None:
            raise HTTPException(404, f"no image yet (the job is {job.status})")
        headers = {"Cache-Control": "no-store"}
        if download:
            headers["Content-Disposition"] = f'attachment; filename="nstjax-{job.mode}-{job.id[:8]}.png"'
        if isinstance(current, Path):
            return FileResponse(current, media_type="image/png", headers=headers)
        return Response(current, media_type="image/png", headers=headers)

    @app.get(
        "/api/jobs/{job_id}/inputs/{index}",
        summary="A thumbnail of one input (0 = content, 1.. = styles)",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    def job_input(job_id: JobId, index: Annotated[int, PathParam(ge=0, le=64)]) -> Response:
        job = find(job_id)
        path = job.input_path(index, thumb=True) if index <= len(job.inputs.get("styles", ())) else None
        if path is None:
            raise HTTPException(404, "no such input")
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})

    def stage_response(job_id: str, name: str, download: bool) -> FileResponse:
        from .recreate_kind import stage_file

        job = find(job_id)
        path = stage_file(job.directory, name)  # a fixed name -> a fixed file; None for any other name
        if path is None:
            raise HTTPException(404, f"no stage {name[:40]!r}; stages: {', '.join(STAGE_NAMES)}")
        if name not in job.stages or not path.is_file():
            raise HTTPException(404, f"this job has no {name} image (yet)")
        headers = {"Cache-Control": "no-store"}
        if download:
            headers["Content-Disposition"] = f'attachment; filename="nstjax-{job.mode}-{job.id[:8]}-{name}.png"'
        return FileResponse(path, media_type="image/png", headers=headers)

    Download = Annotated[bool, Query(description="Send as an attachment (a file to save).")]
    png_only = {200: {"content": {"image/png": {}}}, 404: {"description": "no such job or stage, or not done yet"}}

    @app.get("/api/jobs/{job_id}/stages/{stage}", summary="A recreate job's stage image (PNG), once it is done",
             response_class=Response, responses=png_only)  # fmt: skip
    def job_stage(
        job_id: JobId,
        stage: Annotated[str, PathParam(description=f"One of {', '.join(STAGE_NAMES)}.", max_length=40)],
        download: Download = False,
    ) -> Response:
        return stage_response(job_id, stage, download)

    @app.get("/api/jobs/{job_id}/sheet", summary="A recreate job's contact sheet (PNG)", response_class=Response,
             responses=png_only)  # fmt: skip
    def job_sheet(job_id: JobId, download: Download = False) -> Response:
        return stage_response(job_id, "sheet", download)

    @app.post("/api/label-maps", summary="Read a sketch or label map as class ids of the landscape palette")
    def read_labels(file: Annotated[UploadFile, File(description="A colour sketch or an index PNG.")]) -> dict:
        """``{"width", "height", "ids" (base64 of uint8 class ids, row by row), "classes"}``; a colour outside
        the palette is refused (422) with one line. A longest side over 1024 px is scaled down
        (nearest neighbour). Nothing is kept."""
        try:
            return read_label_upload(file.file, display_name(file.filename, "label map"), job_queue.root,
                                     limits.max_pixels)  # fmt: skip
        except UploadError as e:
            raise HTTPException(e.status, e.message) from None

    @app.delete("/api/jobs/{job_id}", summary="Stop a job; it keeps its best image")
    def stop_job(job_id: JobId) -> dict[str, Any]:
        """A queued job never runs; a running one stops at its next progress report (about a second)."""
        job = find(job_id)
        job_queue.stop(job)
        return job_queue.view(job)

    @app.get("/api/events", summary="Server-sent events: jobs whose state changed", response_class=StreamingResponse)
    async def events() -> StreamingResponse:
        """``event: jobs`` with a JSON list of the jobs that changed since the last event (all of them first),
        at most every 0.25 s; a comment line every 15 s keeps the connection open."""

        async def stream():
            sent: dict[str, int] = {}
            yield "retry: 2000\n\n"
            first, quiet_since = True, time.monotonic()
            while not job_queue.closing.is_set():
                changed = job_queue.views(since=sent)
                if changed or first:
                    for view in changed:
                        sent[view["id"]] = view["version"]
                    yield f"event: jobs\ndata: {json.dumps(changed)}\n\n"
                    first, quiet_since = False, time.monotonic()
                elif time.monotonic() - quiet_since > 15:
                    yield ": keep-alive\n\n"
                    quiet_since = time.monotonic()
                await asyncio.sleep(EVENT_INTERVAL)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )

    return app
