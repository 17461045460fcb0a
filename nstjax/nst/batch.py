"""Batch stylisation of files: the job behind ``nstjax stylize-batch``.

:func:`stylize_batch` collects the content images (:func:`collect_inputs`),
skips those the manifest says are complete, and runs the rest through the batch
engine (:mod:`nstjax.nst.batch_engine`: size buckets, vmapped optimisers,
devices), writing each output atomically and appending its manifest line
(:mod:`nstjax.nst.batch_manifest`) as soon as its batch finishes; it reports
:class:`BatchProgress` events and returns a :class:`BatchReport`.

**Multi-host.** With ``distributed=True`` — or, by default, when the
environment names a coordinator (``JAX_COORDINATOR_ADDRESS``, with
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` where the cluster is not
auto-detected) or a multi-host Cloud TPU slice (``TPU_WORKER_HOSTNAMES`` listing
several hosts) — ``jax.distributed.initialize()`` runs first (it also detects
Slurm, Open MPI and Kubernetes jobs when called with ``distributed=True``).
Each process then takes ``sorted_inputs[process_index::process_count]`` and runs
it on its local devices; processes never wait for each other.

**Resuming.** See :mod:`nstjax.nst.batch_manifest`: a rerun skips every output
whose latest manifest record says it is done with the same settings and input,
and whose file still matches; a crash loses at most the batch in flight. A full disk
stops the job with one line (:class:`~nstjax.io.atomic.NoSpaceLeft`); the outputs
finished before stay complete.
"""

from __future__ import annotations

import dataclasses
import glob as _glob
import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import NstjaxError
from ..hub import sha256_file
from ..io import images as _images
from ..io.atomic import NoSpaceLeft
from ..runtime import enable_compilation_cache, init_distributed
from ..weights import resolve_weights
# The engine's names stay reachable here too (tests and scripts/bench_scale.py use nst.batch.X).
from .batch_engine import (  # noqa: F401 - re-exported
    TRACE_COUNTS,
    BatchEngine,
    batch_config,
    batch_evaluate,
    batch_init_carry,
    batch_run_chunk,
    bucket_key,
    stylize_images,
)
from .batch_manifest import (
    MANIFEST_NAME,
    ManifestWriter,
    is_complete,
    job_settings,
    manifest_path,
    read_manifest,
    settings_hash,
    style_hashes,
)
from ..models.vgg import network_of
from ..train.estimate import Phase, total_seconds
from .config import StylizeConfig
from .estimate import estimate_run, nst_eta
from .problem import Problem, check_size
from .run import StylizeResult, describe_device

__all__ = [
    "BatchPlan",
    "BatchProgress",
    "BatchReport",
    "INPUT_SUFFIXES",
    "MANIFEST_NAME",
    "bucket_key",
    "collect_inputs",
    "read_manifest",
    "stylize_batch",
    "stylize_images",
]

INPUT_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif"})
"""File extensions (lower case) taken as images when the input is a directory."""


# --------------------------------------------------------------------------- inputs


def collect_inputs(
    inputs: str | os.PathLike | Sequence[str | os.PathLike], out_dir: str | os.PathLike | None = None
) -> list[Path]:
    """The content images of a job, sorted by path (the order processes split them in).

    ``inputs`` is a directory (its image files, by :data:`INPUT_SUFFIXES`, not
    recursive, hidden files skipped), a glob pattern (``"photos/**/*.jpg"``, ``**``
    recursive), a single file, or a list of paths (kept even if missing or not
    images: those fail one by one later). Files inside ``out_dir`` are never inputs.

    Raises:
      NstjaxError: nothing found, or a path that is neither a file, directory nor pattern.
    """
    out = Path(out_dir).resolve() if out_dir is not None else None
    if isinstance(inputs, str | os.PathLike):
        text = os.fspath(inputs)
        path = Path(text)
        if path.is_dir():
            found = [
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES and not p.name.startswith(".")
            ]
            where = f"directory {text}"
        elif path.is_file():
            found = [path]
            where = text
        elif any(ch in text for ch in "*?["):
            found = [Path(p) for p in _glob.glob(text, recursive=True) if Path(p).is_file()]
            where = f"pattern {text!r}"
        else:
            raise NstjaxError("no such file or directory", text)
    else:
        found = [Path(p) for p in inputs]
        where = "the input list"
    if out is not None:
        found = [p for p in found if p.resolve().parent != out]
    found = sorted(set(found), key=lambda p: os.fspath(p))
    if not found:
        extra = " (files in the output directory are not inputs)" if out is not None else ""
        raise NstjaxError(f"no images found in {where}{extra}")
    return found


# --------------------------------------------------------------------------- progress and report


@dataclasses.dataclass
class BatchProgress:
    """What a batch progress callback sees: after every chunk of steps and after each batch.

    Counts are images of this process's share of the job. ``images_per_second``
    counts images stylised in this run (skipped ones excluded), partial batches
    included pro rata; ``eta`` is the seconds left, each remaining batch and scale at its own cost per
    step, compilations included (:class:`~nstjax.train.estimate.WorkEta`).
    """

    done: int
    """Images finished: written, failed or skipped as already complete."""
    total: int
    written: int
    failed: int
    skipped: int
    bucket: tuple[int, int]
    """Final (height, width) of the batch in flight."""
    batch: int
    batches: int
    """Batch in flight (1-based) and the planned number (may shrink if images fail to load)."""
    scale: int
    scales: int
    step: int
    steps: int
    elapsed: float
    images_per_second: float
    eta: float
    batch_finished: bool
    """True on the call made right after a batch's outputs and manifest lines were written."""


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """What :func:`stylize_batch` is about to do, reported once before the first batch compiles.

    images: images to stylise in this run (this process's share); skipped: already complete.
    batches: planned batches; buckets: distinct image sizes (each compiles its programs, once per scale).
    seconds: expected optimisation time; compile_seconds: expected compilation, ``compilations`` of them.
    """

    images: int
    skipped: int
    batches: int
    batch_size: int
    buckets: int
    steps: tuple[int, ...]
    seconds: float
    compile_seconds: float
    compilations: int
    weights_source: str
    device: str


def batch_phases(config: StylizeConfig, plans: Sequence[tuple[tuple, int, int]], network: str,
                 flops_per_second: float | None = None) -> list[Phase]:  # fmt: skip
    """The work of a batch job as :class:`~nstjax.train.estimate.Phase` s: each batch's scales in order.

    ``plans`` holds ``(bucket key, images, batch size)`` per bucket: the key is (h, w) per scale. A
    bucket's first batch compiles each scale's programs; its later batches reuse them.
    """
    phases = []
    for key, count, size in plans:
        estimate = estimate_run(config, key, images=size, network=network, flops_per_second=flops_per_second)
        for b in range(-(-count // size)):
            for scale, (steps, seconds) in enumerate(zip(estimate.steps, estimate.step_seconds)):
                compile_s = estimate.compile_seconds if b == 0 else 0.0
                phases.append(Phase(f"{key[-1]} batch {b + 1} scale {scale + 1}", steps, seconds, compile_s))
    return phases


@dataclasses.dataclass
class BatchReport:
    """The outcome of :func:`stylize_batch` for this process."""

    out_dir: Path
    manifest: Path
    total: int
    """Images in this process's share of the job."""
    written: list[dict[str, Any]]
    """Manifest records of the images stylised and written in this run."""
    skipped: list[str]
    """Output file names that were already complete."""
    failed: list[dict[str, Any]]
    """Manifest records with status ``failed`` (with an ``error``) or ``nonfinite``."""
    seconds: float
    process_index: int = 0
    process_count: int = 1

    @property
    def ok(self) -> bool:
        return not self.failed


# --------------------------------------------------------------------------- the job


@dataclasses.dataclass
class _Pending:
    input: Path
    output: Path
    input_sha256: str
    key: tuple[tuple[int, int], ...]


def stylize_batch(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    styles: Any,
    out_dir: str | os.PathLike,
    *,
    weights: Any = None,
    config: StylizeConfig | None = None,
    batch_size: int | None = None,
    bucket_multiple: int = 0,
    format: str = "png",  # noqa: A002 - the CLI flag's name
    quality: int = 95,
    distributed: bool | None = None,
    progress: Callable[[BatchProgress], None] | None = None,
    log: Callable[[str], None] | None = None,
    on_start: Callable[[BatchPlan], None] | None = None,
    **overrides: Any,
) -> BatchReport:
    """Stylise every content image of ``inputs`` with ``styles``; write ``OUT_DIR/<stem>.<format>``.

    Resumable: outputs already complete (see :mod:`~nstjax.nst.batch_manifest`) are skipped;
    each batch's outputs and manifest lines are written as soon as it finishes.

    Args:
      inputs: a directory, a glob pattern, a file, or a list of paths (see :func:`collect_inputs`).
      styles: one or several style paths/arrays, shared by every image.
      out_dir: output directory; created (with parents) if missing; an error if it is a file.
      weights, config, overrides: as for :func:`~nstjax.nst.run.run_stylize`.
      batch_size: images per compiled program, rounded up to a multiple of the local device
        count; ``None``: up to 4 per device when memory allows without more remat.
      bucket_multiple: round the short side to this multiple so near-equal aspect ratios
        share a program (see :func:`bucket_key`); 0 = exact shapes.
      format: output extension without the dot (``png``, ``jpg``, ``tif``, ``webp``, ``bmp``).
      quality: JPEG/WebP quality.
      distributed: ``True``: call ``jax.distributed.initialize()`` first; ``None``: only when
        the environment names a coordinator or multi-host TPU; ``False``: never. Must run
        before anything else in the process touched a JAX device.
      progress: called with a :class:`BatchProgress` after every chunk of steps.
      log: called with a one-line message for each image that fails.
      on_start: called once with the :class:`BatchPlan` (images, batches, time estimate) before the
        first batch compiles.

    Returns:
      A :class:`BatchReport`; images that failed to load or went non-finite are in
      ``failed`` (and in the manifest), the others were still processed.

    Raises:
      NstjaxError: job-level problems (no images, two inputs with the same stem, bad
        style, output directory is a file, settings that cannot run).
      KeyboardInterrupt: on Ctrl-C; finished batches are kept and a rerun resumes.
    """
    # jax.distributed must start before anything touches a device (weights, configs' arrays).
    process_index, process_count = init_distributed(distributed)
    config = batch_config(config, overrides)
    fmt = format.lower().lstrip(".")
    suffix = f".{fmt}"
    if suffix not in _images.SUPPORTED_SUFFIXES:
        choices = ", ".join(s[1:] for s in _images.SUPPORTED_SUFFIXES)
        raise NstjaxError(f"unsupported output format {format!r}; choose one of {choices}")
    if bucket_multiple < 0:
        raise NstjaxError(f"bucket multiple must be 0 or a positive integer, got {bucket_multiple}")
    if batch_size is not None and batch_size < 1:
        raise NstjaxError(f"batch size must be a positive integer, got {batch_size}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NstjaxError("output directory is a file", out)
    out.mkdir(parents=True, exist_ok=True)
    _images.check_output_path(out / f"probe{suffix}")  # writable, format available

    every = collect_inputs(inputs, out)
    stems: dict[str, Path] = {}
    for path in every:
        name = path.stem + suffix
        if name in stems:
            raise NstjaxError(f"{stems[name]} and {path} would both be written to {out / name}; rename one")
        stems[name] = path
    mine = every[process_index::process_count]

    enable_compilation_cache()
    style_list = _images.as_list(styles)
    style_arrays = [_images.image_array(s, f"style image {i + 1}") for i, s in enumerate(style_list)]
    if not style_arrays:
        raise NstjaxError("at least one style image is needed")
    weights = resolve_weights(weights, config.seed)  # after the inputs' checks, as in run_stylize
    settings = job_settings(config, weights, style_hashes(style_list, style_arrays), bucket_multiple, quality, fmt)
    settings_sha = settings_hash(settings)

    manifest = manifest_path(out, process_index, process_count)
    previous = read_manifest(out)
    writer = ManifestWriter(manifest)
    start = time.perf_counter()
    written: list[dict] = []
    failed: list[dict] = []
    skipped: list[str] = []

    def base_record(item_input: Path, output: Path) -> dict[str, Any]:
        return {
            "input": os.fspath(item_input.resolve()) if item_input.exists() else os.fspath(item_input),
            "output": output.name,
            "settings_hash": settings_sha,
            "process_index": process_index,
        }

    def fail(item_input: Path, output: Path, reason: str, extra: dict | None = None) -> None:
        record = {**base_record(item_input, output), "status": "failed", **(extra or {}), "error": reason}
        failed.append(writer.append(record))
        if log is not None:
            log(f"{item_input}: {reason}")

    def write_result(item: _Pending, result: StylizeResult, key: tuple, size: int) -> None:
        # Save atomically first, then append the manifest line: a "done" line is only ever
        # written for a file that is completely on disk.
        record = {
            **base_record(item.input, item.output),
            "input_sha256": item.input_sha256,
            "shape": list(key[-1]),
            "loss": {"total": result.loss, **result.terms},
            "steps": result.steps,
            "evaluations": result.evaluations,
            "stopped": result.stopped,
            "seconds": round(result.seconds, 3),
            "batch_size": size,
        }
        try:
            _images.save_image(item.output, result.image, quality=quality)
            data = item.output.read_bytes()
        except NoSpaceLeft:
            raise  # the job's problem, not this image's: stop with one line; finished outputs stay
        except (NstjaxError, OSError) as exc:
            reason = exc.problem if isinstance(exc, NstjaxError) else f"cannot write output: {exc}"
            fail(item.input, item.output, reason, record)
            return
        record.update(
            output_sha256=hashlib.sha256(data).hexdigest(),
            output_bytes=len(data),
            settings=settings,
        )
        if result.stopped == "nonfinite":
            reason = f"the loss became NaN or infinite after {result.steps} steps; wrote the last finite image"
            fail(item.input, item.output, reason, {**record, "status": "nonfinite"})
            return
        record.update(status="done")
        written.append(writer.append(record))

    try:
        # Plan: skip complete outputs, probe the rest for their shapes.
        pending: list[_Pending] = []
        for path in mine:
            output = out / (path.stem + suffix)
            try:
                input_sha = sha256_file(path)
            except OSError as exc:
                fail(path, output, f"cannot read file: {exc.strerror or exc}")
                continue
            record = previous.get(output.name)
            if record is not None and is_complete(record, output, settings_sha, input_sha):
                skipped.append(output.name)
                continue
            try:
                key = bucket_key(_images.probe_image_shape(path), config, bucket_multiple)
                for shape in key:
                    check_size(shape, config, "output")
            except NstjaxError as exc:
                fail(path, output, exc.problem)
                continue
            pending.append(_Pending(path, output, input_sha, key))

        engine = BatchEngine.create(config, weights, style_arrays, bucket_multiple)
        buckets: dict[tuple, list[_Pending]] = {}
        for item in pending:
            buckets.setdefault(item.key, []).append(item)
        plans = []
        for key, items in sorted(buckets.items()):
            try:
                size, remat = engine.batch_size(batch_size, key[-1], len(items))
            except NstjaxError as exc:  # too large for the device even one at a time
                for item in items:
                    fail(item.input, item.output, exc.problem)
                continue
            plans.append((key, items, size, engine.spec(remat)))
        n_batches = sum(-(-len(items) // size) for _, items, size, _ in plans)
        eta = None
        if progress is not None or on_start is not None:
            phases = batch_phases(config, [(k, len(i), n) for k, i, n, _ in plans], network_of(weights.params))
            eta = nst_eta(phases)
            work, compiling = total_seconds(phases)
            if on_start is not None:
                on_start(BatchPlan(
                    images=len(pending), skipped=len(skipped), batches=n_batches,
                    batch_size=max((n for _, _, n, _ in plans), default=0), buckets=len(plans),
                    steps=tuple(s for _, s in config.schedule), seconds=work, compile_seconds=compiling,
                    compilations=sum(1 for p in phases if p.compile_seconds > 0),
                    weights_source=getattr(weights, "label", weights.source), device=describe_device(),
                ))  # fmt: skip
        scales = len(config.schedule)

        total = len(mine)
        batch_index = 0
        stylised = 0.0  # images stylised in this run, the batch in flight pro rata

        def report_progress(key, real, scale, scales, step, steps, fraction, finished):
            elapsed = time.perf_counter() - start
            partial = stylised + (0 if finished else real * fraction)
            rate = partial / elapsed if elapsed > 0 else 0.0
            done = len(written) + len(failed) + len(skipped)
            if eta is not None:  # cost-weighted: later scales and sizes at their own cost per step
                left = eta.update(min((batch_index - 1) * scales + scale - 1, len(eta.phases) - 1), step)
            else:
                remaining = total - done - (0 if finished else real * fraction)
                left = remaining / rate if rate > 0 else math.inf
            if progress is not None:
                progress(
                    BatchProgress(
                        done=done, total=total, written=len(written), failed=len(failed), skipped=len(skipped),
                        bucket=key[-1], batch=batch_index, batches=n_batches, scale=scale, scales=scales,
                        step=step, steps=steps, elapsed=elapsed, images_per_second=rate, eta=left,
                        batch_finished=finished,
                    )
                )

        all_steps = sum(steps for _, steps in config.schedule)
        for key, items, size, spec in plans:
            queue = list(items)
            while queue:
                # Fill a batch with images that load; a bad file fails alone and is replaced.
                batch: list[tuple[_Pending, Problem]] = []
                while queue and len(batch) < size:
                    item = queue.pop(0)
                    try:
                        problem = Problem(_images.load_image(item.input), style_arrays, config, weights)
                    except NstjaxError as exc:
                        fail(item.input, item.output, exc.problem)
                        continue
                    batch.append((item, problem))
                if not batch:
                    break
                batch_index += 1
                real = len(batch)
                if eta is not None and eta.phases:
                    eta.start(min((batch_index - 1) * scales, len(eta.phases) - 1))
                padded = [p for _, p in batch] + [batch[0][1]] * (size - real)

                def on_chunk(scale, scales, step, steps, steps_done, _key=key, _real=real):
                    report_progress(_key, _real, scale, scales, step, steps, steps_done / all_steps, False)

                results = engine.run(padded, key, spec, on_chunk if progress is not None else None)
                for (item, _), result in zip(batch, results[:real]):
                    write_result(item, result, key, size)
                stylised += real
                report_progress(key, real, len(config.schedule), len(config.schedule), config.steps,
                                config.steps, 1.0, True)
            # Shrink the batch count if images failed to load along the way.
            n_batches = batch_index + sum(-(-len(i) // s) for k, i, s, _ in plans if k > key)
    finally:
        writer.close()
    return BatchReport(
        out_dir=out,
        manifest=manifest,
        total=len(mine),
        written=written,
        skipped=skipped,
        failed=failed,
        seconds=time.perf_counter() - start,
        process_index=process_index,
        process_count=process_count,
    )
