"""Steps that start at once: a quick program runs while the planned one compiles.

On CPU the planner computes most VGG layers by Winograd (:mod:`nstjax.models.conv`),
which runs a step ~1.5x faster than XLA's convolutions but takes XLA:CPU ten times
longer to compile (a 256 px L-BFGS chunk: ~10 s against ~1 s on 2 cores;
docs/benchmarks.md, "Cold start"). With an empty compilation cache — a first run, or
the first run at a new size — that wait can exceed the whole optimisation. So, like a
JIT with tiers, :class:`TieredChunks` compiles the planned program in a background
thread and meanwhile runs the steps with XLA's convolutions
(:func:`nstjax.nst.engine.quick_spec`);
the planned program takes over as soon as it is ready, and at once where the
persistent cache already holds it. Both compute the same function up to float
rounding (tests/test_tiered.py).

Like a JIT, it also leaves cold code to the quick tier: a scale too short for the
planned program's compilation to pay (:func:`planned_pays`) runs on the quick program
alone unless an earlier run on this machine compiled its planned program (remembered
by :func:`nstjax.train.estimate.remember`: then it sits in the persistent cache and
loads in under a second). The compilation would cost more than its faster steps win
back, and on a small CPU it competes with those steps for the cores.

Only on a single CPU device with ``conv_impl="auto"``: elsewhere the two programs
are the same (accelerators always use XLA's convolutions) or the run is sharded.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from typing import Any

import jax

from ..models import vgg
from ..train.estimate import remember, remembered
from .engine import EngineSpec, quick_spec, run_chunk

__all__ = ["TieredChunks", "planned_pays", "planned_program_key", "tiering_applies"]

READY_WAIT_SECONDS = 1.0
"""How long a scale waits for the planned program before it starts with the quick one: a program in the
persistent compilation cache loads within it (0.1-0.5 s measured), a compilation does not."""

PLANNED_BREAK_EVEN_PIXELS = 256 * 170
"""Output pixels of the scale :data:`PLANNED_BREAK_EVEN_STEPS` is measured at: a 3:2 photo at ``--size 256``."""

PLANNED_BREAK_EVEN_STEPS = 200
"""Steps from which compiling the planned program pays within the run at :data:`PLANNED_BREAK_EVEN_PIXELS`
(see :func:`planned_pays`). Measured on the 2-core Xeon of docs/benchmarks.md ("Cold start"): compiling the
Winograd program costs ~5 s of wall time beside the steps; it then saves ~23 ms a step at 256x170 px."""

PLANNED_GAIN_EXPONENT = 1.8
"""How the planned program's saving per step grows with the pixels: 23 ms at 256x170, 277 ms at 512x341 (XLA's
convolutions slow down per pixel on large images, Winograd's do not), i.e. as pixels to the 1.8."""


def planned_pays(pixels: int, steps: float) -> bool:
    """Whether a scale of ``steps`` steps at ``pixels`` output pixels wins back its planned program's compilation:
    ``steps`` at least :data:`PLANNED_BREAK_EVEN_STEPS` x (:data:`PLANNED_BREAK_EVEN_PIXELS` / ``pixels``) ^
    :data:`PLANNED_GAIN_EXPONENT` (200 steps at 256x170 px, 96 at 256x256, 17 at 512x341, 8 at 512x512)."""
    ratio = PLANNED_BREAK_EVEN_PIXELS / max(pixels, 1)
    return steps >= PLANNED_BREAK_EVEN_STEPS * ratio**PLANNED_GAIN_EXPONENT


def planned_program_key(spec: EngineSpec, shapes: Any) -> str:
    """The name under which a compiled planned program is remembered: its spec and argument shapes, hashed."""
    digest = hashlib.sha256(repr((spec, jax.tree.leaves(shapes))).encode()).hexdigest()[:20]
    return f"tiered-planned:{digest}"


def tiering_applies(spec: EngineSpec) -> bool:
    """Whether :class:`TieredChunks` runs two programs for ``spec`` (one CPU device, ``conv_impl="auto"``;
    ``NSTJAX_TIERED=0`` turns it off, e.g. for benchmarks that time one program)."""
    if os.environ.get("NSTJAX_TIERED", "1") == "0":
        return False
    return spec.conv_impl == "auto" and jax.default_backend() == "cpu" and jax.device_count() == 1


class TieredChunks:
    """:func:`nstjax.nst.engine.run_chunk` for one run, in two tiers.

    ``params``: :func:`nstjax.nst.engine.device_params` without the Winograd forms (the
    quick program's); the planned program's (with :func:`nstjax.models.vgg.with_winograd_kernels`)
    are made in the background thread too. Per scale, :meth:`start` begins compiling the
    planned program for the scale's shapes; calls run whichever program is ready.
    """

    def __init__(self, spec: EngineSpec, params: Any):
        self.spec = spec
        self.quick = quick_spec(spec)
        self.params = params
        self.tiered = tiering_applies(spec)
        self._planned_params: Any = None if self.tiered else params
        self._compiled: Any = None
        self._thread: threading.Thread | None = None
        self._outcome: dict[str, Any] = {}
        self.skipped = False
        """Whether the current scale runs on the quick program alone (too little work to compile the planned one)."""

    @property
    def tier(self) -> str:
        """``"planned"`` once the planned program runs the steps, ``"quick"`` before."""
        return "planned" if not self.tiered or self._compiled is not None else "quick"

    def start(self, carry: Any, targets: Any, loss_weights: Any, n_steps: Any, stop: Any, *,
              steps: float = math.inf) -> None:  # fmt: skip
        """Begin a scale whose arguments have these shapes: compile its planned program in the background and
        wait up to :data:`READY_WAIT_SECONDS` for it (a cached program is ready by then).

        ``steps``: how many the scale will run. Where :func:`planned_pays` says no, the planned program is
        compiled only if an earlier run on this machine compiled it; otherwise the scale runs on the quick
        program alone (:attr:`skipped` is then True).
        """
        self.join()  # a previous scale's compilation, if still running, finishes first (it uses the same cores)
        self._compiled = None
        self.skipped = False
        if not self.tiered:
            return
        shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                              (carry, targets, loss_weights, n_steps, stop))  # fmt: skip
        key = planned_program_key(self.spec, shapes)
        pixels = carry.image.shape[1] * carry.image.shape[2]
        if not planned_pays(pixels, steps) and remembered(key, -1.0) < 0:
            self.skipped = True
            return
        self._outcome = {}

        def compile_planned() -> None:
            try:
                begun = time.perf_counter()
                if self._planned_params is None:
                    self._planned_params = vgg.with_winograd_kernels(
                        self.params, self.spec.layers, self.spec.conv_impl, dtype=self.spec.dtype
                    )
                c, t, w, n, s = shapes
                params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), self._planned_params)
                self._outcome["compiled"] = run_chunk.lower(c, params, t, w, n, s, spec=self.spec).compile()
                remember(key, time.perf_counter() - begun)  # in the persistent cache from now on
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread by _poll
                self._outcome["error"] = e

        # A daemon: Ctrl-C must not wait for a compilation (a finished run joins it, see join()).
        self._thread = threading.Thread(target=compile_planned, name="nstjax-compile", daemon=True)
        self._thread.start()
        self._thread.join(READY_WAIT_SECONDS)
        self._poll()

    def _poll(self) -> None:
        if self._thread is not None and not self._thread.is_alive():
            self._thread = None
            if "error" in self._outcome:
                raise self._outcome.pop("error")
            self._compiled = self._outcome.pop("compiled", None)

    def join(self) -> None:
        """Wait for a background compilation (at the end of a run: its program lands in the persistent cache)."""
        if self._thread is not None:
            self._thread.join()
        self._poll()

    def __call__(self, carry: Any, targets: Any, loss_weights: Any, n_steps: Any, stop: Any) -> tuple[Any, Any]:
        """``run_chunk(carry, params, targets, loss_weights, n_steps, stop, spec)`` on the best program ready."""
        self._poll()
        if not self.tiered:
            return run_chunk(carry, self.params, targets, loss_weights, n_steps, stop, self.spec)
        if self._compiled is not None:
            return self._compiled(carry, self._planned_params, targets, loss_weights, n_steps, stop)
        return run_chunk(carry, self.params, targets, loss_weights, n_steps, stop, self.quick)
