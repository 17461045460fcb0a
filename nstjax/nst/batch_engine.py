"""The batch engine: many content images of one style, vmapped and sharded, one compiled program per size.

What :func:`stylize_images` (arrays in memory) and :func:`nstjax.nst.batch.stylize_batch`
(files, resumable) share. Every content image gets the same treatment as
:func:`nstjax.nst.run.run_stylize` with the same config; only how the work is
laid out differs:

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
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..errors import NstjaxError
from ..io import images as _images
from ..models.vgg import network_of
from ..runtime import enable_compilation_cache
from ..weights import resolve_weights
from .config import StylizeConfig, preset
from .engine import (
    HISTORY_LEN,
    EngineSpec,
    Targets,
    content_targets,
    device_params,
    quick_spec,
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
    "AXIS",
    "TRACE_COUNTS",
    "BatchEngine",
    "batch_config",
    "batch_evaluate",
    "batch_init_carry",
    "batch_run_chunk",
    "bucket_key",
    "stylize_images",
]

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
        total, terms = batch_evaluate(stack, self.params, final_targets, self.loss_weights, quick_spec(spec),
                                      self.style_batched)
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


# --------------------------------------------------------------------------- images in memory


def _batches(items: list, size: int) -> Iterable[tuple[list, int]]:
    """Cut ``items`` into lists of exactly ``size``: (padded batch, number of real items)."""
    for start in range(0, len(items), size):
        real = items[start : start + size]
        # Padding repeats a real item so the program shape stays fixed; its result is dropped.
        yield real + [real[0]] * (size - len(real)), len(real)


def batch_config(config: StylizeConfig | None, overrides: dict[str, Any]) -> StylizeConfig:
    """The config of a batch: ``config`` (default preset if None) with ``overrides`` applied.

    Raises:
      NstjaxError: ``save_every`` is set (batches write final images only).
    """
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
    config = batch_config(config, overrides)
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
