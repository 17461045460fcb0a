"""The job queue: jobs run one at a time, in order, in one worker thread.

Each job lives in its own directory ``<root>/<id>`` (``root`` defaults to
``nstjax.hub.cache_dir() / "serve"``)::

    settings.json        the mode, the settings as given, the inputs' labels (written at submission)
    job.json             the job's state as the API shows it (rewritten at each change of status)
    inputs/content.png   the uploads, under the server's names (see nstjax.serve.uploads)
    inputs/style-1.jpg
    inputs/*.thumb.png   their thumbnails
    result.png           the finished (or stopped) image
    stages/              a recreate job's stage images and sheet, each written as it is done

Every file is written atomically. Ids come from :func:`secrets.token_urlsafe`
and are the only names a request can use to reach a job; they are looked up
in memory, never joined to a path. Jobs are read back from ``root`` when the
server starts, so the gallery survives a restart: a job that was queued or
running when the server died (``job.json`` says so) comes back ``lost``, with
the reason, its temporary files removed and no image; a directory without a
``job.json`` is a submission that was never accepted (no 201 went out) and is
removed. A job that fails because the disk is full loses its partial files
(stage images, temporary files); its inputs and ``job.json`` stay.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import queue
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import NstjaxError
from ..io.atomic import NoSpaceLeft, atomic_path, exception_chain, leftover_temporaries, no_space_left
from ..io.images import save_image
from .kinds import KINDS, Outcome, ServeLimits
from .public import one_line, public_text, public_value

__all__ = [
    "DISK_FULL",
    "FINAL",
    "LOST",
    "STATUSES",
    "Job",
    "JobQueue",
    "QueueFull",
    "disk_full",
    "is_job_id",
    "new_job_id",
]

STATUSES = ("queued", "running", "done", "stopped", "failed", "lost")
FINAL = ("done", "stopped", "failed", "lost")
"""``lost``: queued or running when the server died (read back at the next start); it never runs again."""

LOST = "the server stopped before this job finished; submit it again"
DISK_FULL = "no space left on the server's disk; the job's partial files were removed"

PREVIEW_INTERVAL = 0.25
"""Seconds between preview frames of a running job: a few frames a second at most."""

_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


def new_job_id() -> str:
    """An unguessable id: 128 random bits, URL-safe base64 (22 characters)."""
    return secrets.token_urlsafe(16)


def is_job_id(text: str) -> bool:
    """True when ``text`` has the shape of an id this server makes (letters, digits, ``-`` and ``_``)."""
    return bool(_ID.fullmatch(text))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def disk_full(error: BaseException | None) -> bool:
    """Whether ``error`` (or one it was raised from) is a full file system."""
    return any(isinstance(e, NoSpaceLeft) or no_space_left(e) for e in exception_chain(error))


def _png(image: np.ndarray) -> bytes:
    pixels = np.rint(np.clip(np.nan_to_num(image, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)  # fast: previews are throwaway
    return buffer.getvalue()


@dataclasses.dataclass
class Job:
    """One job. Mutated by the worker thread under :attr:`JobQueue.lock`; read through :meth:`JobQueue.view`."""

    id: str
    mode: str
    directory: Path
    settings: dict[str, Any]
    inputs: dict[str, Any]
    """Labels only: ``{"content": "photo.jpg", "styles": ["a.jpg", ...]}`` (the clients' names, never paths)."""
    created: str
    prepared: Any = None
    status: str = "queued"
    started: str | None = None
    finished: str | None = None
    error: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    plan: dict[str, Any] | None = None
    progress: dict[str, Any] = dataclasses.field(default_factory=dict)
    result: dict[str, Any] | None = None
    stages: list[str] = dataclasses.field(default_factory=list)
    """Names of the finished stages whose images the job wrote (recreate: ``sketch``, ``photo``, ..., ``sheet``)."""
    has_result: bool = False
    preview: int = 0
    """Counts image updates: clients refetch the image when it changes."""
    version: int = 0
    """Counts every change: the event stream sends a job again when this moves."""
    started_at: float | None = None
    reported_at: float = 0.0  # time.monotonic() of the last progress report: the ETA counts down from it
    stop_requested: threading.Event = dataclasses.field(default_factory=threading.Event)
    preview_png: bytes | None = None
    last_preview: float = 0.0

    @property
    def result_path(self) -> Path:
        return self.directory / "result.png"

    def input_path(self, index: int, thumb: bool = False) -> Path | None:
        """Input ``index`` (0 = content, 1.. = styles), or its thumbnail; None when there is no such input."""
        role = "content" if index == 0 else f"style-{index}"
        folder = self.directory / "inputs"
        if thumb:
            path = folder / f"{role}.thumb.png"
            return path if path.is_file() else None
        found = [p for p in folder.glob(f"{role}.*") if not p.name.endswith((".thumb.png", ".upload"))]
        return found[0] if found else None

    def public(self, position: int | None = None) -> dict[str, Any]:
        """The job as the API shows it (JSON-ready)."""
        progress = self.progress
        running = self.status == "running"
        eta = progress.get("eta_seconds") if running else None
        if eta is not None:  # as reported, less the time since (a compilation reports nothing for a while)
            eta = round(max(0.0, eta - (time.monotonic() - self.reported_at)), 1)
        seconds = None
        if self.started_at is not None and self.status == "running":
            seconds = round(time.time() - self.started_at, 1)
        elif self.result:
            seconds = self.result.get("seconds")
        return {
            "id": self.id,
            "mode": self.mode,
            "status": self.status,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "queue_position": position,
            "settings": self.settings,
            "inputs": self.inputs,
            "step": progress.get("step", 0),
            "steps": progress.get("steps", sum(self.plan["steps"]) if self.plan else None),
            "scale": progress.get("scale"),
            "scales": progress.get("scales"),
            "stage": progress.get("stage") if running else None,
            "phase": progress.get("phase", "running" if progress else "loading") if running else None,
            "stages": list(self.stages),
            "loss": progress.get("loss"),
            "terms": progress.get("terms", {}),
            "eta_seconds": eta,
            "seconds": seconds,
            "plan": self.plan,
            "result": self.result,
            "error": self.error,
            "notes": list(self.notes),
            "has_image": self.has_result or self.preview_png is not None,
            "preview": self.preview,
            "version": self.version,
        }


class _Context:
    """The :class:`~nstjax.serve.kinds.JobContext` of one running job."""

    def __init__(self, owner: JobQueue, job: Job):
        self.owner, self.job = owner, job

    @property
    def directory(self) -> Path:
        """The job's own directory: a kind writes its extra images there (recreate: ``stages/``)."""
        return self.job.directory

    def stage(self, name: str) -> None:
        """Record that stage ``name``'s image is written (shown by the page, served by fixed name)."""
        with self.owner.changed(self.job):
            if name not in self.job.stages:
                self.job.stages.append(name)

    def should_stop(self) -> bool:
        return self.job.stop_requested.is_set() or self.owner.closing.is_set()

    def plan(self, plan: Mapping[str, Any]) -> None:
        with self.owner.changed(self.job):
            self.job.plan = public_value(dict(plan))  # e.g. a stage's method names a run directory

    def progress(self, progress: Mapping[str, Any], image: Callable[[], np.ndarray] | None = None) -> None:
        png = None
        now = time.monotonic()
        if image is not None and now - self.job.last_preview >= PREVIEW_INTERVAL:
            png = _png(image())  # outside the lock: a device->host copy and an encode
            self.job.last_preview = now
        with self.owner.changed(self.job):
            self.job.progress, self.job.reported_at = dict(progress), time.monotonic()
            if png is not None:
                self.job.preview_png = png
                self.job.preview += 1

    def warn(self, message: str) -> None:
        with self.owner.changed(self.job):
            self.job.notes.append(public_text(message))

    def weights(self, spec: str | None, seed: int) -> Any:
        return self.owner.weights(self.job, spec, seed)


class QueueFull(RuntimeError):
    """The queue holds :attr:`ServeLimits.max_queue` jobs already; the request should come back later."""


class JobQueue:
    """Runs jobs one at a time in a worker thread, keeps their state, and writes their directories.

    Args:
      root: where job directories go (created, mode 0700).
      weights: the default weights spec for jobs that name none (a source name,
        ``random``, ``auto``, a file chosen by whoever started the server, or
        ``None`` for ``$NSTJAX_WEIGHTS``/``auto``).
      limits: the server's limits.
      kinds: the job kinds (default :data:`~nstjax.serve.kinds.KINDS`).
      load: read finished jobs back from ``root``.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        weights: Any = None,
        limits: ServeLimits | None = None,
        kinds: Mapping[str, Any] | None = None,
        load: bool = True,
    ):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.default_weights = weights
        self.limits = limits or ServeLimits()
        self.kinds = dict(KINDS if kinds is None else kinds)
        self.lock = threading.RLock()
        self.closing = threading.Event()
        self.version = 0
        self._jobs: dict[str, Job] = {}
        self._pending: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._weights: dict[tuple[Any, int], Any] = {}
        if load:
            self._load()

    # ------------------------------------------------------------------ state

    @contextlib.contextmanager
    def changed(self, job: Job):
        """Change ``job`` under the lock; its version (and the queue's) moves on."""
        with self.lock:
            yield job
            self.version += 1
            job.version = self.version

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None (ids that do not look like ours are never looked up)."""
        if not isinstance(job_id, str) or not is_job_id(job_id):
            return None
        with self.lock:
            return self._jobs.get(job_id)

    def view(self, job: Job) -> dict[str, Any]:
        """``job.public()`` with its queue position, read consistently."""
        with self.lock:
            return job.public(self._position(job))

    def views(self, since: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
        """Every job (oldest first), or only those whose version differs from ``since[id]``."""
        with self.lock:
            jobs = list(self._jobs.values())
            if since is not None:
                jobs = [j for j in jobs if since.get(j.id) != j.version]
            return [j.public(self._position(j)) for j in jobs]

    def full(self) -> str | None:
        """Why a new job is refused now (the queue holds ``limits.max_queue`` jobs), or None when there is room."""
        if self.waiting() >= self.limits.max_queue:
            return f"the queue is full ({self.limits.max_queue} jobs waiting or running); try again later"
        return None

    def waiting(self) -> int:
        """Jobs queued or running."""
        with self.lock:
            return sum(j.status in ("queued", "running") for j in self._jobs.values())

    def _position(self, job: Job) -> int | None:
        if job.status != "queued":
            return None
        queued = [j for j in self._jobs.values() if j.status in ("queued", "running")]
        return queued.index(job)

    def preview(self, job: Job) -> bytes | Path | None:
        """The job's current image: its result file when it has one, else the latest preview PNG."""
        with self.lock:
            if job.has_result:
                return job.result_path
            return job.preview_png

    # ------------------------------------------------------------------ submitting and stopping

    def new_directory(self) -> tuple[str, Path]:
        """A fresh id and its (new, empty) directory."""
        while True:
            job_id = new_job_id()
            directory = self.root / job_id
            try:
                directory.mkdir(mode=0o700)
            except FileExistsError:  # 2**-128 odds, but never reuse a directory
                continue
            return job_id, directory

    def submit(
        self,
        job_id: str,
        directory: Path,
        mode: str,
        prepared: Any,
        settings: Mapping[str, Any],
        inputs: Mapping[str, Any],
    ) -> Job:
        """Queue a job whose inputs are already stored in ``directory/inputs``."""
        if self.closing.is_set():
            raise RuntimeError("the server is shutting down")
        reason = self.full()
        if reason is not None:
            raise QueueFull(reason)
        job = Job(
            id=job_id,
            mode=mode,
            directory=directory,
            settings=dict(settings),
            inputs=dict(inputs),
            created=_now(),
            prepared=prepared,
        )
        self._write_json(directory / "settings.json", {"mode": mode, "settings": job.settings, "inputs": job.inputs})
        with self.changed(job):
            self._jobs[job_id] = job
        self._save(job)
        self.start()
        self._pending.put(job_id)
        return job

    def stop(self, job: Job) -> None:
        """Stop ``job``: a queued one never runs; a running one stops at its next progress report and keeps its
        best image. A finished job is left as it is."""
        with self.changed(job):
            if job.status == "queued":
                job.status, job.finished = "stopped", _now()
                job.stop_requested.set()
            elif job.status == "running":
                job.stop_requested.set()
        if job.status == "stopped" and not job.has_result:
            self._save(job)

    # ------------------------------------------------------------------ the worker

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        with self.lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="nstjax-serve-worker", daemon=True)
                self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the running job (keeping its best image), mark queued ones stopped, end the worker."""
        self.closing.set()
        with self.lock:
            for job in self._jobs.values():
                if job.status in ("queued", "running"):
                    job.stop_requested.set()
        self._pending.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
        with self.lock:
            leftovers = [j for j in self._jobs.values() if j.status == "queued"]
        for job in leftovers:
            with self.changed(job):
                job.status, job.finished, job.error = "stopped", _now(), "the server shut down before it ran"
            self._save(job)

    def _work(self) -> None:
        while True:
            job_id = self._pending.get()
            if job_id is None:
                return
            job = self._jobs.get(job_id)
            if job is None or job.status != "queued" or self.closing.is_set():
                continue
            try:
                self._run(job)
            except BaseException as e:  # noqa: BLE001 - the job ends with a reason; the worker goes on
                with self.changed(job):
                    if job.status not in FINAL:
                        job.status, job.error, job.finished = "failed", one_line(e), _now()
                        job.preview_png, job.prepared = None, None
                self._save(job)

    def _run(self, job: Job) -> None:
        with self.lock:
            if job.status != "queued":  # stopped between the queue and here
                return
            with self.changed(job):
                job.status, job.started, job.started_at = "running", _now(), time.time()
        self._save(job)
        content = job.input_path(0)
        styles = [job.input_path(i) for i in range(1, len(job.inputs.get("styles", ())) + 1)]
        outcome: Outcome | None = None
        error: str | None = None
        full = False
        try:
            if content is None or any(s is None for s in styles):
                raise NstjaxError("an input file of this job is missing")
            outcome = self.kinds[job.mode].run(job.prepared, content, styles, _Context(self, job))
        except NstjaxError as e:
            error, full = self._label_paths(job, e), disk_full(e)
        except Exception as e:  # noqa: BLE001 - a crashed job is reported; the server keeps serving
            error, full = one_line(e), disk_full(e)
        saved = False
        if outcome is not None and outcome.image is not None and not full:
            try:
                save_image(job.result_path, outcome.image)
                saved = True
            except (NstjaxError, OSError, ValueError) as e:
                error, full = error or f"could not save the image: {one_line(e)}", disk_full(e)
        if full:  # the disk is full: what the job wrote is partial; free it, keep the inputs
            self._remove_partial_files(job)
            error = DISK_FULL
        elif outcome is not None and outcome.error:
            outcome.error = public_text(outcome.error)
        with self.changed(job):
            job.finished = _now()
            job.has_result = saved
            job.preview_png = None
            if saved:
                job.preview += 1
            if outcome is not None:
                job.result = outcome.summary or None
            if error is not None or (outcome is not None and outcome.error):
                job.status, job.error = "failed", error or outcome.error
            elif outcome is not None and outcome.stopped:
                job.status = "stopped"
            else:
                job.status = "done"
            job.prepared = None  # configs and arrays are not needed any more
        self._save(job)

    def _label_paths(self, job: Job, error: NstjaxError) -> str:
        """An error about one of the job's files names the upload ("style image 1 (a.jpg)"), not a server path."""
        if error.path is None:
            return public_text(str(error))
        labels = {0: f"content image ({job.inputs.get('content')})"}
        for i, name in enumerate(job.inputs.get("styles", ()), start=1):
            labels[i] = f"style image {i} ({name})"
        for index, label in labels.items():
            if str(job.input_path(index)) == error.path:
                return public_text(f"{label}: {error.problem}")
        return public_text(error.problem)

    def _remove_partial_files(self, job: Job) -> None:
        """Delete what a job wrote besides its inputs and state: stage images, the result, temporary files."""
        shutil.rmtree(job.directory / "stages", ignore_errors=True)
        job.result_path.unlink(missing_ok=True)
        for leftover in leftover_temporaries(job.directory):
            leftover.unlink(missing_ok=True)
        with self.changed(job):
            job.stages = []

    def weights(self, job: Job, spec: str | None, seed: int) -> Any:
        """Weights for ``spec`` (``None`` = the server's default), loaded once and kept.

        A random fallback (``auto`` with no ImageNet weights cached or downloadable) is not kept, so weights
        fetched while the server runs are used from the next job on.
        """
        from ..weights import load_weights

        chosen = self.default_weights if spec is None else spec
        key = (chosen if chosen is None or isinstance(chosen, str) else str(chosen), seed)
        if key in self._weights:
            return self._weights[key]
        notes: list[str] = []
        weights = load_weights(chosen, seed=seed, warn=notes.append)
        context = _Context(self, job)
        for note in notes:
            context.warn(note)
        fallback = weights.is_random and str(chosen).strip().lower() != "random"
        if not fallback:
            self._weights[key] = weights
            if len(self._weights) > 3:  # a few sets at most (80 MB each on the host)
                del self._weights[next(iter(self._weights))]
        return weights

    # ------------------------------------------------------------------ files

    @staticmethod
    def _write_json(path: Path, data: Any) -> None:
        with atomic_path(path, mode=0o600) as tmp:
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")

    def _save(self, job: Job) -> None:
        with self.lock:
            data = job.public()
        # The state in memory stays right (a full disk included); the file is for restarts.
        with contextlib.suppress(OSError, NstjaxError):
            self._write_json(job.directory / "job.json", data)

    def _load(self) -> None:
        found, lost = [], []
        for directory in self.root.iterdir():
            if not (directory.is_dir() and is_job_id(directory.name)):
                continue
            if not (directory / "job.json").exists():  # killed while its request stored the uploads: never accepted
                shutil.rmtree(directory, ignore_errors=True)
                continue
            for leftover in [*leftover_temporaries(directory), *directory.glob("inputs/*.upload")]:
                leftover.unlink(missing_ok=True)  # files a killed write left behind
            try:
                data = json.loads((directory / "job.json").read_text(encoding="utf-8"))
                mode = data["mode"]
                job = Job(
                    id=directory.name,
                    mode=mode,
                    directory=directory,
                    settings=dict(data.get("settings") or {}),
                    inputs=dict(data.get("inputs") or {}),
                    created=str(data["created"]),
                    status=data["status"],
                    started=data.get("started"),
                    finished=data.get("finished"),
                    error=data.get("error"),
                    notes=list(data.get("notes") or []),
                    plan=data.get("plan"),
                    result=data.get("result"),
                    stages=[str(n) for n in data.get("stages") or []],
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not one of ours, or half-made: leave it alone
            if job.status not in STATUSES:
                continue
            if job.status not in FINAL:  # queued or running when the server died
                job.status, job.error = "lost", LOST
                job.finished = job.finished or job.created
                lost.append(job)
            # A lost job shows no image: a result written just before the kill was never reported done.
            job.has_result = job.status != "lost" and job.result_path.is_file()
            job.preview = int(job.has_result)
            submitted = directory / "settings.json"  # written once, at submission
            found.append((job.created, submitted.stat().st_mtime_ns if submitted.is_file() else 0, job))
        # `created` has whole seconds: settings.json's time (ns) keeps the jobs of one second in their order.
        for *_, job in sorted(found, key=lambda entry: entry[:2]):
            with self.changed(job):
                self._jobs[job.id] = job
        for job in lost:
            self._save(job)  # so the next start reads it as lost too

    def remove_directory(self, directory: Path) -> None:
        """Delete a directory this queue made for a job that was refused before it was queued."""
        if directory.parent == self.root and is_job_id(directory.name):
            shutil.rmtree(directory, ignore_errors=True)
