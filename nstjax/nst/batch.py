"""Batch stylisation: many content photos, one style, one compiled program per image size.

The job behind ``nstjax stylize-batch``. Every content image gets the same
treatment as :func:`nstjax.nst.run.run_stylize` with the same config; only how
the work is laid out differs:

**Size buckets.** An image's output shape is ``fit_longest_side((h, w), size)``
(the longest side becomes ``config.size``, the aspect ratio is kept, the short
side is rounded). Images are grouped by that exact output shape (by the shapes
at every scale of ``config.schedule`` with ``--scales``), and each group — a
*bucket* — is run by one compiled program: the same shapes hit the same ``jit``
cache entry. Nothing is padded spatially and nothing is cropped. With
``bucket_multiple=m > 1`` the short side is instead rounded to the nearest
multiple of ``m`` (at least ``m``, at most the long side) and the image is
resized to that shape: its aspect ratio changes by at most ``m / 2`` pixels on
the short side (e.g. ≤ 1.6 % for m = 8 on a 256-px short side), so photos of
nearly equal aspect share one program. Coarser scales then derive from the
bucket's shape.

**Batches.** A bucket is cut into batches of ``batch_size`` images (rounded up
to a multiple of the local device count). The last batch of a bucket is padded
to the full size with repeats of one of its real images whose results are
dropped, so every batch of a bucket has the same program shape (so does a
resumed job with only a few images left). Without ``batch_size``, up to 4 images
per device, no more than the bucket needs.

**Per-image optimisation under vmap.** :func:`nstjax.nst.engine.run_steps` is
``jax.vmap``-ed over an outer batch axis: images ``[N, 1, H, W, 3]`` (the inner
axis of 1 is what the engine always sees), carry and content targets batched,
VGG parameters and style Grams shared. Each image therefore keeps its own
L-BFGS memory, its own line search and its own early stop. The batched
``while_loop`` runs until every image's loop is done; jax runs the body for all
images and *selects* the old state for those whose condition is already false,
so an image that stopped early (converged or non-finite) is frozen bit for bit
(``tests/test_batch.py`` checks this).

**Sharding.** The batch axis is sharded over all local devices
(``Mesh(local_devices, ("batch",))``, ``NamedSharding(mesh, P("batch"))`` for
the carry, content targets and loss histories; parameters and shared style
Grams replicated).

**Multi-host.** With ``distributed=True`` — or, by default, when the
environment names a coordinator (``JAX_COORDINATOR_ADDRESS``, with
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` where the cluster is not
auto-detected) or a multi-host Cloud TPU slice (``TPU_WORKER_HOSTNAMES`` listing
several hosts) — ``jax.distributed.initialize()`` runs first (it also detects
Slurm, Open MPI and Kubernetes jobs when called with ``distributed=True``).
Each process then takes ``sorted_inputs[process_index::process_count]`` and runs
it on its local devices; processes never wait for each other.

**Resuming.** ``OUT_DIR/manifest.jsonl`` (``manifest.p<k>.jsonl`` per process
when there are several processes; all are read) gets one JSON line per image,
appended, flushed and fsync'd as soon as the image's output has been written
atomically. An output counts as complete, and is skipped by a rerun, when the
manifest's latest record for it says ``"status": "done"`` with the same
settings hash and input SHA-256, and the file exists with the recorded size and
SHA-256. A crash therefore loses at most the batch in flight; a truncated or
edited output is redone.

A manifest record (one JSON object per line; the latest line for an output wins):
``input`` (absolute path), ``output`` (file name inside OUT_DIR), ``status``
(``done``, ``failed`` with a one-line ``error``, or ``nonfinite``: the loss became
NaN/inf and the last finite image was written; failed and non-finite images are
retried by a rerun), ``settings`` (the config as a dict, weights source and
checksum, style SHA-256s, bucket multiple, format, quality) and its
``settings_hash``, ``input_sha256``, ``output_sha256``, ``output_bytes``,
``shape`` ([h, w] of the output), ``loss`` (``total``, ``content``, ``style``,
``tv``: weighted terms of the final image, as ``run_stylize`` reports them),
``steps``, ``evaluations``, ``stopped``, ``seconds`` (wall time of the batch the
image was in), ``batch_size``, ``timestamp`` (UTC, ISO 8601), ``process_index``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import glob as _glob
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..errors import NstjaxError
from ..hub import sha256_file
from ..io import images as _images
from ..models.vgg import network_of
from ..weights import resolve_weights
from ..runtime import enable_compilation_cache, init_distributed
from .config import StylizeConfig, preset
from .engine import (
    HISTORY_LEN,
    EngineSpec,
    Targets,
    content_targets,
    device_params,
    init_carry,
    make_spec,
    objective,
    run_steps,
    traced_settings,
)
from .memory import choose_remat
from .problem import Problem, check_size, upsample
from .run import StylizeResult

__all__ = [
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

MANIFEST_NAME = "manifest.jsonl"
"""The manifest of a single-process job, inside the output directory."""

INPUT_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif"})
"""File extensions (lower case) taken as images when the input is a directory."""

AXIS = "batch"
"""Mesh axis name of the image batch."""


# --------------------------------------------------------------------------- buckets


def bucket_key(hw: tuple[int, int], config: StylizeConfig, multiple: int = 0) -> tuple[tuple[int, int], ...]:
    """The shapes ``((h, w) per scale, …)`` an image of shape ``hw`` is optimised at.

    Images with equal keys share a compiled program. Without ``multiple`` this is
    exactly what :func:`~nstjax.nst.run.run_stylize` uses: ``fit_longest_side(hw, s)``
    for each longest side ``s`` of ``config.schedule``. With ``multiple > 1`` the
    final short side is rounded to the nearest multiple (halves up, clamped to
    [multiple, long side]) and coarser scales are fitted to that final shape.
    """
    if not multiple or multiple <= 1:
        return tuple(_images.fit_longest_side(hw, longest) for longest, _ in config.schedule)
    h, w = _images.fit_longest_side(hw, config.size)
    m = int(multiple)

    def snap(v: int, cap: int) -> int:
        return min(cap, max(m, (2 * v + m) // (2 * m) * m))

    final = (snap(h, w), w) if h <= w else (h, snap(w, h))
    return tuple(_images.fit_longest_side(final, longest) for longest, _ in config.schedule[:-1]) + (final,)


# --------------------------------------------------------------------------- jitted programs


TRACE_COUNTS: dict[tuple, int] = {}
"""How often the batched optimiser chunk was traced, by image batch shape ``(N, 1, H, W, 3)``.

A trace happens once per compiled program: one per bucket (and per spec).
"""


def _target_axes(style_batched: bool) -> Targets:
    # vmap in_axes for Targets: content always per image; style Grams per image only when
    # colour preservation made each image's style different; term weights are shared.
    return Targets(content=0, style=0 if style_batched else None, masks=None, term_weights=None)


@functools.partial(jax.jit, static_argnames=("spec", "sharding"))
def batch_init_carry(images: jax.Array, frozen: jax.Array, spec: EngineSpec, sharding: NamedSharding):
    """Optimiser state for images [N, 1, H, W, 3]; ``frozen`` [N] bool marks images not to step."""
    carry = jax.vmap(lambda x: init_carry(x, spec))(images)
    # An image already stopped by a non-finite loss at a coarser scale stays put (the loop's
    # condition checks `nonfinite`), as run_stylize stops its schedule there.
    carry = carry._replace(nonfinite=frozen)
    return jax.lax.with_sharding_constraint(carry, sharding)


@functools.partial(
    jax.jit, static_argnames=("spec", "style_batched", "sharding"), donate_argnums=(0,)
)
def batch_run_chunk(carry, params, targets, loss_weights, n_steps, stop, spec, style_batched, sharding):
    """Up to ``n_steps`` steps of every image's own optimiser: vmapped :func:`run_steps`.

    Returns (carry with a leading [N] axis on every leaf, float32 [N, HISTORY_LEN] losses).
    """
    key = tuple(carry.image.shape)
    TRACE_COUNTS[key] = TRACE_COUNTS.get(key, 0) + 1  # runs at trace time only

    def one(c, t):
        return run_steps(c, params, t, loss_weights, n_steps, stop, spec, HISTORY_LEN)

    out = jax.vmap(one, in_axes=(0, _target_axes(style_batched)))(carry, targets)
    return jax.lax.with_sharding_constraint(out, sharding)


@functools.partial(jax.jit, static_argnames=("spec", "style_batched"))
def batch_evaluate(images, params, targets, loss_weights, spec, style_batched):
    """Total [N] and weighted terms ``{"content", "style", "tv": [N, 1]}`` of images [N, 1, H, W, 3]."""
    return jax.vmap(
        lambda x, t: objective(x, params, t, loss_weights, spec), in_axes=(0, _target_axes(style_batched))
    )(images, targets)


# --------------------------------------------------------------------------- engine on arrays


@dataclasses.dataclass
class BatchEngine:
    """Everything shared by all batches of a job: weights, settings, devices."""

    config: StylizeConfig
    weights: Any
    styles: list[np.ndarray]
    mesh: Mesh
    params: Any  # replicated on the mesh
    loss_weights: dict[str, jax.Array]
    stop: dict[str, jax.Array]
    multiple: int = 0
    _style_cache: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def create(cls, config: StylizeConfig, weights: Any, styles: list[np.ndarray], multiple: int) -> BatchEngine:
        mesh = Mesh(np.array(jax.local_devices()), (AXIS,))
        spec = make_spec(config, weights.preprocessing, guided=False)
        params = device_params(weights.params, NamedSharding(mesh, P()), spec)
        loss_weights, stop = traced_settings(config, weights.style_weight_scale)
        return cls(config, weights, styles, mesh, params, loss_weights, stop, multiple)

    def spec(self, remat: str) -> EngineSpec:
        """The engine spec of this job's batches with rematerialisation ``remat``."""
        return make_spec(self.config, self.weights.preprocessing, guided=False, remat=remat)

    @property
    def devices(self) -> int:
        return self.mesh.devices.size

    @property
    def style_batched(self) -> bool:
        # Colour preservation adapts the style image to each content image, so each image has
        # its own Gram targets; otherwise one set of Grams serves the whole bucket.
        return self.config.preserve_color != "none"

    def batched(self) -> NamedSharding:
        return NamedSharding(self.mesh, P(AXIS))

    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def batch_size(self, requested: int | None, shape: tuple[int, int], count: int) -> tuple[int, str]:
        """(images per program, remat) for a bucket of ``count`` images of final ``shape``.

        ``requested`` is rounded up to a multiple of the device count and used as is, even
        for a bucket that needs less (padding is cheaper than compiling another program,
        and a resumed job with a few images left reuses the first run's compiled program,
        from JAX's persistent cache). ``None`` picks the largest of 4, 2, 1 images per device
        that the bucket needs and that fits in memory without more remat than one image.
        """
        d = self.devices
        need = -(-count // d)  # per device
        if requested is None:
            base = choose_remat(shape, self.config, batch=1, network=network_of(self.weights.params))
            per_device = 1
            for k in (4, 2):
                if k > need:
                    continue
                try:
                    if choose_remat(shape, self.config, batch=k, network=network_of(self.weights.params)) == base:
                        per_device = k
                        break
                except NstjaxError:
                    continue
        else:
            per_device = -(-int(requested) // d)
        remat = choose_remat(shape, self.config, batch=per_device, network=network_of(self.weights.params))
        return per_device * d, remat

    def shared_style(self, problem: Problem, shape: tuple[int, int], spec: EngineSpec) -> Targets:
        """Style Grams for outputs of ``shape`` (the same for every image without colour preservation)."""
        key = (shape, spec)
        if key not in self._style_cache:
            targets, _ = problem.targets(shape, spec)
            if len(self._style_cache) >= 8:  # a few buckets' scales; Grams of deep layers are MBs
                self._style_cache.pop(next(iter(self._style_cache)))
            self._style_cache[key] = targets
        return self._style_cache[key]

    def targets(self, problems: list[Problem], shape: tuple[int, int], spec: EngineSpec) -> Targets:
        """Targets with content ``{layer: [N, 1, h, w, C]}`` and style shared or [N, T, C, C]."""
        # Content features of the whole batch in one sharded call, each device its own images.
        contents = np.stack([_images.resize_image(p.net_content, shape) for p in problems])
        feats = content_targets(self.params, jax.device_put(contents, self.batched()), spec)
        content = {k: jnp.expand_dims(v, 1) for k, v in feats.items()}
        if self.style_batched:
            each = [p.targets(shape, spec)[0] for p in problems]
            style = {k: jnp.stack([t.style[k] for t in each]) for k in each[0].style}
            term_weights = each[0].term_weights
        else:
            shared = self.shared_style(problems[0], shape, spec)
            style, term_weights = shared.style, shared.term_weights
        targets = Targets(content, style, None, term_weights)
        shardings = Targets(
            {k: self.batched() for k in content},
            {k: (self.batched() if self.style_batched else self.replicated()) for k in style},
            None,
            self.replicated(),
        )
        return jax.device_put(targets, shardings)

    def run(
        self,
        problems: list[Problem],
        shapes: tuple[tuple[int, int], ...],
        spec: EngineSpec,
        on_chunk: Callable[[int, int, int, int, int], None] | None = None,
    ) -> list[StylizeResult]:
        """Stylise one full batch (``len(problems)`` = program batch size, padding included).

        ``shapes`` is the bucket key: (h, w) per scale. ``on_chunk(scale, scales, step,
        steps, steps_done_in_all_scales)`` is called after every chunk of steps.
        Returns one :class:`StylizeResult` per problem (``history`` per scale, ``seconds``
        the batch's wall-clock time).
        """
        config = self.config
        n = len(problems)
        schedule = config.schedule
        start = time.perf_counter()
        histories: list[list[np.ndarray]] = [[] for _ in range(n)]
        total_steps = np.zeros(n, np.int64)
        total_evals = np.zeros(n, np.int64)
        stopped = ["steps"] * n
        frozen = np.zeros(n, bool)  # went non-finite at an earlier scale
        images: list[np.ndarray] | None = None
        steps_before = 0
        for scale_index, ((longest, steps), shape) in enumerate(zip(schedule, shapes)):
            targets = self.targets(problems, shape, spec)
            if images is None:
                init = [p.initial_image(shape) for p in problems]
            else:
                init = [upsample(im, shape) for im in images]
            batch = jax.device_put(np.stack(init)[:, None], self.batched())
            carry = batch_init_carry(batch, jax.device_put(frozen, self.batched()), spec, self.batched())
            active = ~frozen
            history = [[] for _ in range(n)]
            done = 0
            chunk = 1  # the first chunk also pays for compilation; then aim for ~1 s per chunk
            while done < steps and active.any():
                k = min(chunk, steps - done, HISTORY_LEN)
                t0 = time.perf_counter()
                carry, hist = batch_run_chunk(
                    carry, self.params, targets, self.loss_weights, jnp.int32(k), self.stop,
                    spec, self.style_batched, self.batched(),
                )
                hist, step, nonfinite = np.asarray(hist), np.asarray(carry.step), np.asarray(carry.nonfinite)
                dt = time.perf_counter() - t0
                ran = 0
                # Every image still active at the start of this chunk has made exactly `done`
                # steps; it either ran all `k` or stopped inside the chunk.
                for i in np.flatnonzero(active):
                    r = int(step[i]) - done
                    ran = max(ran, r)
                    history[i].append(hist[i, :r])
                    if nonfinite[i]:
                        stopped[i], active[i] = "nonfinite", False
                    elif r < k:
                        stopped[i], active[i] = "converged", False
                done += k
                if ran and dt > 0:
                    chunk = max(1, min(HISTORY_LEN, int(ran / dt)))
                if on_chunk is not None:
                    on_chunk(scale_index + 1, len(schedule), min(done, steps), steps, steps_before + min(done, steps))
            steps_before += steps
            step, evals = np.asarray(carry.step), np.asarray(carry.evaluations)
            best = np.asarray(carry.best_image)[:, 0]
            for i in range(n):
                if not frozen[i]:
                    histories[i].append(np.concatenate(history[i]) if history[i] else np.zeros((0,), np.float32))
                    total_steps[i] += int(step[i])
                    total_evals[i] += int(evals[i])
            # A frozen image's best is its (upsampled) start: its optimiser did not move.
            images = [best[i] for i in range(n)]
            frozen = frozen | np.array([s == "nonfinite" for s in stopped])
            for i in range(n):
                if stopped[i] != "nonfinite" and scale_index + 1 < len(schedule):
                    stopped[i] = "steps"  # a new scale starts afresh, as in run_stylize

        final_targets = self.targets(problems, shapes[-1], spec)
        stack = jax.device_put(np.stack(images)[:, None], self.batched())
        total, terms = batch_evaluate(stack, self.params, final_targets, self.loss_weights, spec, self.style_batched)
        total, terms = np.asarray(total), {k: np.asarray(v)[:, 0] for k, v in terms.items()}
        seconds = time.perf_counter() - start
        return [
            StylizeResult(
                image=problems[i].finish(images[i]),
                loss=float(total[i]),
                terms={k: float(v[i]) for k, v in terms.items()},
                steps=int(total_steps[i]),
                evaluations=int(total_evals[i]),
                stopped=stopped[i],
                history=histories[i],
                seconds=seconds,
                config=config,
                weights_source=getattr(self.weights, "label", self.weights.source),
            )
            for i in range(n)
        ]


def _batches(items: list, size: int) -> Iterable[tuple[list, int]]:
    """Cut ``items`` into lists of exactly ``size``: (padded batch, number of real items)."""
    for start in range(0, len(items), size):
        real = items[start : start + size]
        # Padding repeats a real item so the program shape stays fixed; its result is dropped.
        yield real + [real[0]] * (size - len(real)), len(real)


def _prepare(config: StylizeConfig | None, overrides: dict[str, Any]) -> StylizeConfig:
    config = config or preset(None)
    config = config.replace(**overrides) if overrides else config
    if config.save_every:
        raise NstjaxError("save_every (intermediate images) is not supported in batch mode")
    return config


def stylize_images(
    contents: Sequence[Any],
    styles: Any,
    *,
    weights: Any = None,
    config: StylizeConfig | None = None,
    batch_size: int | None = None,
    bucket_multiple: int = 0,
    **overrides: Any,
) -> list[StylizeResult]:
    """Stylise several content images at once, in memory; results in input order.

    Args:
      contents: paths or float [H, W, 3] RGB arrays in [0, 1].
      styles: one or several paths/arrays (shared by every content image).
      weights, config, overrides: as for :func:`~nstjax.nst.run.run_stylize`.
      batch_size: images per compiled program (rounded up to a multiple of the local
        device count); ``None``: up to 4 per device when memory allows.
      bucket_multiple: see :func:`bucket_key`.

    Returns:
      One :class:`~nstjax.nst.run.StylizeResult` per content image; ``image`` is float32
      [h, w, 3] in [0, 1] with the bucket's final shape, ``seconds`` the wall time of
      the batch the image was in. Same pixels as ``run_stylize`` on each image alone,
      up to float rounding (see ``tests/test_batch.py``).

    Raises:
      NstjaxError: bad input or settings (a bad content image fails the whole call).
    """
    config = _prepare(config, overrides)
    enable_compilation_cache()
    weights = resolve_weights(weights, config.seed)
    style_list = _images.as_list(styles)
    style_arrays = [_images.image_array(s, f"style image {i + 1}") for i, s in enumerate(style_list)]
    engine = BatchEngine.create(config, weights, style_arrays, bucket_multiple)
    problems = [Problem(c, style_arrays, config, weights) for c in contents]
    buckets: dict[tuple, list[int]] = {}
    for index, problem in enumerate(problems):
        key = bucket_key(problem.content.shape[:2], config, bucket_multiple)
        for shape in key:
            check_size(shape, config, "output")
        buckets.setdefault(key, []).append(index)
    results: list[StylizeResult | None] = [None] * len(problems)
    for key, indices in sorted(buckets.items()):
        size, remat = engine.batch_size(batch_size, key[-1], len(indices))
        spec = engine.spec(remat)
        for batch, real in _batches(indices, size):
            for index, result in zip(batch[:real], engine.run([problems[i] for i in batch], key, spec)):
                results[index] = result
    return results  # type: ignore[return-value]


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


def _sha256_array(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, np.float32).tobytes()).hexdigest()


# --------------------------------------------------------------------------- manifest


def _manifest_path(out_dir: Path, process_index: int, process_count: int) -> Path:
    # Several processes append to their own file: O_APPEND writes are not atomic on network
    # file systems, and per-process files need no locking.
    return out_dir / (MANIFEST_NAME if process_count == 1 else f"manifest.p{process_index:03d}.jsonl")


def read_manifest(out_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The latest manifest record per output file name, from every manifest in ``out_dir``.

    Lines that are not valid JSON (a crash in the middle of a write) are ignored.
    """
    records: list[tuple[str, int, dict]] = []
    for path in sorted(Path(out_dir).glob("manifest*.jsonl")):
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("output"), str):
                records.append((record.get("timestamp", ""), len(records), record))
    latest: dict[str, dict[str, Any]] = {}
    for _, _, record in sorted(records, key=lambda r: (r[0], r[1])):
        latest[record["output"]] = record
    return latest


class _ManifestWriter:
    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "a+b")  # noqa: SIM115 - kept open for the whole job
        # A crash mid-write can leave a last line without its newline; start on a fresh line
        # so the next record is not glued onto the broken one.
        self.file.seek(0, os.SEEK_END)
        if self.file.tell() > 0:
            self.file.seek(-1, os.SEEK_END)
            if self.file.read(1) != b"\n":
                self.file.write(b"\n")

    def append(self, record: dict[str, Any]) -> None:
        self.file.write((json.dumps(record, sort_keys=True) + "\n").encode())
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def _settings(
    config: StylizeConfig, weights: Any, style_hashes: list[str], multiple: int, quality: int, fmt: str
) -> dict:
    """Everything that changes an output's pixels (or bytes), as JSON data."""
    meta = getattr(weights, "metadata", {}) or {}
    return {
        "config": dataclasses.asdict(config),
        "weights": {
            "source": weights.source,
            **{k: meta[k] for k in ("params_sha256", "upstream_sha256", "seed") if k in meta},
        },
        "styles_sha256": style_hashes,
        "bucket_multiple": int(multiple),
        "format": fmt,
        "quality": int(quality),
    }


def _hash_settings(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- progress and report


@dataclasses.dataclass
class BatchProgress:
    """What a batch progress callback sees: after every chunk of steps and after each batch.

    Counts are images of this process's share of the job. ``images_per_second``
    counts images stylised in this run (skipped ones excluded), partial batches
    included pro rata; ``eta`` is in seconds (``inf`` until known).
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
    **overrides: Any,
) -> BatchReport:
    """Stylise every content image of ``inputs`` with ``styles``; write ``OUT_DIR/<stem>.<format>``.

    Resumable: outputs already complete (see the module docstring) are skipped;
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
    config = _prepare(config, overrides)
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
    style_hashes = [
        sha256_file(Path(s)) if isinstance(s, str | os.PathLike) else _sha256_array(a)
        for s, a in zip(style_list, style_arrays)
    ]
    settings = _settings(config, weights, style_hashes, bucket_multiple, quality, fmt)
    settings_hash = _hash_settings(settings)

    manifest_path = _manifest_path(out, process_index, process_count)
    previous = read_manifest(out)
    writer = _ManifestWriter(manifest_path)
    start = time.perf_counter()
    written: list[dict] = []
    failed: list[dict] = []
    skipped: list[str] = []

    def base_record(item_input: Path, output: Path) -> dict[str, Any]:
        return {
            "input": os.fspath(item_input.resolve()) if item_input.exists() else os.fspath(item_input),
            "output": output.name,
            "settings_hash": settings_hash,
            "process_index": process_index,
        }

    def fail(item_input: Path, output: Path, reason: str, extra: dict | None = None) -> None:
        record = {**base_record(item_input, output), "status": "failed", **(extra or {}), "error": reason,
                  "timestamp": _now()}
        writer.append(record)
        failed.append(record)
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
        record.update(status="done", timestamp=_now())
        writer.append(record)
        written.append(record)

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
            if record is not None and _is_complete(record, output, settings_hash, input_sha):
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

        total = len(mine)
        batch_index = 0
        stylised = 0.0  # images stylised in this run, the batch in flight pro rata

        def report_progress(key, real, scale, scales, step, steps, fraction, finished):
            elapsed = time.perf_counter() - start
            partial = stylised + (0 if finished else real * fraction)
            rate = partial / elapsed if elapsed > 0 else 0.0
            done = len(written) + len(failed) + len(skipped)
            remaining = total - done - (0 if finished else real * fraction)
            eta = remaining / rate if rate > 0 else math.inf
            if progress is not None:
                progress(
                    BatchProgress(
                        done=done, total=total, written=len(written), failed=len(failed), skipped=len(skipped),
                        bucket=key[-1], batch=batch_index, batches=n_batches, scale=scale, scales=scales,
                        step=step, steps=steps, elapsed=elapsed, images_per_second=rate, eta=eta,
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
        manifest=manifest_path,
        total=len(mine),
        written=written,
        skipped=skipped,
        failed=failed,
        seconds=time.perf_counter() - start,
        process_index=process_index,
        process_count=process_count,
    )


def _is_complete(record: dict, output: Path, settings_hash: str, input_sha: str) -> bool:
    if record.get("status") != "done" or record.get("settings_hash") != settings_hash:
        return False
    if record.get("input_sha256") != input_sha:
        return False
    try:
        if not output.is_file() or output.stat().st_size != record.get("output_bytes"):
            return False
        return sha256_file(output) == record.get("output_sha256")
    except OSError:
        return False
