"""Convolution choices measured on this machine, like cuDNN's benchmark mode.

Which way of computing a layer is fastest depends on the CPU more than any fixed
threshold can say: on a Xeon with AMX, Winograd with bfloat16 products runs VGG's
256-channel layers 2-4x faster than float32 Winograd, while XLA's float32 convolution
wins on some 64-channel layers; on an AVX512-BF16 EPYC the balance differs again.
So for the layers where it matters (see :func:`nstjax.models.conv.plan`) each
candidate is timed once per *shape class* on first use, and the fastest is kept in
``<nstjax cache>/conv_choices.json``, keyed by the machine (CPU model, the flags that
matter, core count, jax version): later runs, and other layers of the class, reuse it.

The choosing logic (:func:`fastest`) and the cache are pure and testable with injected
timings; the timing itself (:func:`time_candidates`) runs in a worker thread, because
:func:`~nstjax.models.conv.plan` is called while a caller traces its jitted function,
and JAX's trace state is per thread.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import runtime
from ..hub import cache_dir
from ..io.atomic import atomic_path
from ._winograd import split_winograd_kernel, transposed_kernel, winograd_kernel

__all__ = [
    "CHOICES_FILE",
    "Candidate",
    "ChoiceCache",
    "fastest",
    "machine_key",
    "shape_class",
    "time_candidates",
    "vgg_layer_call",
]

CHOICES_FILE = "conv_choices.json"
_VERSION = 3
# 3: oneDNN's candidate is timed with bfloat16 kernels, as VGG stores them (a cast per call made it lose more
# classes to Winograd). 2: the Winograd candidates are timed with their forms stored as VGG stores them (split,
# in the compute dtype); version 1 timed a conversion of every form per call and favoured float32 XLA wrongly.

Candidate = tuple[str, str]
"""(method, compute dtype name), e.g. ``("winograd", "bfloat16")``."""

PREFER_MARGIN = 0.05
"""A later candidate must be this much faster (relative) to beat an earlier one: measurements of a few
milliseconds vary by a few per cent, and the earlier candidates compile faster."""


def shape_class(height: int, width: int, in_channels: int, out_channels: int) -> str:
    """The class of a 3x3 stride-1 layer whose output is ``height`` x ``width`` pixels.

    Channels exactly, pixels to the nearest power of two (a 4:3 image shares its
    square neighbour's choice): ``"256x256@p12"`` is 256 -> 256 channels at ~64x64 px.
    """
    return f"{in_channels}x{out_channels}@p{round(math.log2(max(height * width, 1)))}"


def class_shape(key: str) -> tuple[int, int, int, int]:
    """A representative ``(height, width, in_channels, out_channels)`` of a :func:`shape_class`."""
    channels, _, pixels = key.partition("@p")
    c_in, c_out = (int(c) for c in channels.split("x"))
    p = int(pixels)
    return 2 ** ((p + 1) // 2), 2 ** (p // 2), c_in, c_out


def machine_key(flags: Sequence[str] | None = None) -> str:
    """What a measurement holds for: jax version, CPU model, bfloat16/AVX flags, CPU count."""
    import jax

    wanted = sorted(f for f in (runtime.cpu_flags() if flags is None else flags)
                    if f in runtime.FAST_BFLOAT16_FLAGS or f in ("avx2", "avx512f", "amx_tile", "fma"))  # fmt: skip
    return f"{jax.__version__}|{runtime.cpu_model()}|{' '.join(wanted)}|{os.cpu_count()}"


def fastest(seconds: dict[Candidate, float], order: Sequence[Candidate]) -> Candidate:
    """The candidate with the least time, preferring earlier ones in ``order`` unless a later one is
    :data:`PREFER_MARGIN` faster. Candidates missing from ``seconds`` (or timed as inf, e.g. failed) lose."""
    best: Candidate | None = None
    for candidate in order:
        t = seconds.get(candidate, math.inf)
        if not math.isfinite(t):
            continue
        if best is None or t < seconds[best] * (1.0 - PREFER_MARGIN):
            best = candidate
    if best is None:
        raise ValueError(f"no candidate was timed: {seconds}")
    return best


class ChoiceCache:
    """The measured choices of one machine: ``{shape_class: {"choice": [method, dtype], "ms": {...}}}``.

    Read from ``path`` (default ``<nstjax cache>/conv_choices.json``) on first use; each
    new choice is written back at once, atomically (a damaged or foreign file is
    ignored and replaced, costing only a new measurement).
    """

    def __init__(self, path: str | os.PathLike | None = None, key: str | None = None):
        self.path = Path(path) if path is not None else cache_dir() / CHOICES_FILE
        self._key = key
        self._entries: dict | None = None
        self._lock = threading.Lock()

    @property
    def key(self) -> str:
        if self._key is None:
            self._key = machine_key()
        return self._key

    def _load(self) -> dict:
        if self._entries is None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                machines = data.get("machines", {}) if data.get("version") == _VERSION else {}
                self._entries = dict(machines.get(self.key, {}))
            except (OSError, ValueError, AttributeError):
                self._entries = {}
        return self._entries

    def get(self, key: str) -> Candidate | None:
        with self._lock:
            entry = self._load().get(key)
        try:
            method, dtype = entry["choice"]
            return str(method), str(dtype)
        except (TypeError, KeyError, ValueError):
            return None

    def put(self, key: str, choice: Candidate, seconds: dict[Candidate, float]) -> None:
        record = {"choice": list(choice),
                  "ms": {f"{m}/{d}": round(t * 1e3, 4) for (m, d), t in seconds.items() if math.isfinite(t)}}  # fmt: skip
        with self._lock:
            self._load()[key] = record
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if data.get("version") != _VERSION or not isinstance(data.get("machines"), dict):
                    raise ValueError
            except (OSError, ValueError, AttributeError):
                data = {"version": _VERSION, "machines": {}}
            data["machines"].setdefault(self.key, {})[key] = record
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(self.path) as tmp:
                    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
            except OSError:
                pass  # an unwritable cache only costs measuring again next time


def time_candidates(run: Callable[[Candidate], Callable[[], object]], candidates: Sequence[Candidate], *,
                    repeats: int = 3) -> dict[Candidate, float]:
    """Seconds per call of each candidate: ``run(candidate)`` builds and compiles a callable
    (block until ready inside it); its first call is not timed, then the least of ``repeats``
    interleaved calls counts (machine noise only adds time). A candidate that raises times as inf.

    Runs in a worker thread, so that it works while the calling thread is tracing.
    """
    result: dict[Candidate, float] = {}
    failure: list[BaseException] = []

    def work() -> None:
        try:
            calls = {}
            for candidate in candidates:
                try:
                    call = run(candidate)
                    call()  # compile and warm up
                    calls[candidate] = call
                except Exception:  # a candidate this backend cannot compile simply loses
                    result[candidate] = math.inf
            best = dict.fromkeys(calls, math.inf)
            for r in range(repeats):
                for candidate in calls if r % 2 == 0 else list(calls)[::-1]:
                    start = time.perf_counter()
                    calls[candidate]()
                    best[candidate] = min(best[candidate], time.perf_counter() - start)
            result.update(best)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(e)

    worker = threading.Thread(target=work, name="nstjax-conv-tuning")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result


def vgg_layer_call(conv3x3: Callable, shape: tuple[int, int, int, int], dtype: str, candidate: Candidate):
    """A compiled value-and-input-gradient of one VGG layer computed by ``conv3x3``
    (:func:`nstjax.models.conv.conv3x3`) as ``candidate``: ``shape`` (output height, width, input and
    output channels), ``dtype`` activations, float32 parameters with their transposed form (bfloat16 copies
    for oneDNN's bfloat16 convolution) and their Winograd forms split and in the compute dtype given, as
    :mod:`nstjax.models.vgg` has them.
    For :func:`time_candidates`."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    h, w, c_in, c_out = shape
    method, compute = candidate
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((1, h, w, c_in)), dtype)
    g = jnp.asarray(rng.standard_normal((1, h, w, c_out)), dtype)
    k = np.asarray(rng.standard_normal((3, 3, c_in, c_out)) * np.sqrt(2.0 / (9 * c_in)), np.float32)
    kt = transposed_kernel(k)
    # The kernels in bfloat16 for oneDNN's (vgg.with_bfloat16_kernels), and the Winograd forms split and in the
    # dtype they are multiplied in, as vgg.with_winograd_kernels stores them.
    stored = jnp.bfloat16 if method == "onednn" and compute == "bfloat16" else jnp.float32
    forms = {"kernel": jnp.asarray(k, stored), "kernel_t": jnp.asarray(kt, stored),
             **{name: split_winograd_kernel(jnp.asarray(winograd_kernel(v), compute))
                for name, v in (("kernel_w", k), ("kernel_t_w", kt))}}  # fmt: skip

    def value(image, p):
        c = jnp.dtype(compute)
        given = {n: jax.tree.map(lambda a: a.astype(c), v) for n, v in p.items()} if method == "winograd" else {}
        y = conv3x3(image.astype(c), p["kernel"].astype(c), ((1, 1), (1, 1)), p["kernel_t"].astype(c), method,
                    given.get("kernel_w"), given.get("kernel_t_w"))  # fmt: skip
        return jnp.vdot(y.astype(jnp.float32), g.astype(jnp.float32))

    step = jax.jit(jax.value_and_grad(value))
    return lambda: jax.block_until_ready(step(x, forms))
