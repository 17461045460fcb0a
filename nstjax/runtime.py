"""Process-wide JAX settings nstjax relies on: the compilation cache and multi-host start-up.

Every system that compiles (style transfer, training, inference) calls
:func:`enable_compilation_cache` before its first jitted call, so a second run
with the same shapes skips most of the compile time. Jobs that may span several
hosts call :func:`init_distributed` before anything touches a device.

:func:`cpu_flags` and :func:`fast_bfloat16` tell what the CPU can do (read once
from ``/proc/cpuinfo``); :func:`nstjax.models.vgg.conv_plan` picks how to
compute convolutions from them.
"""

from __future__ import annotations

import functools
import gc
import os
import signal
import threading
from collections.abc import Iterable
from typing import Any

import jax

from .errors import NstjaxError
from .hub import cache_dir

__all__ = [
    "FAST_BFLOAT16_FLAGS",
    "Interrupts",
    "cpu_flags",
    "cpu_model",
    "enable_compilation_cache",
    "fast_bfloat16",
    "init_distributed",
    "wants_distributed",
]

FAST_BFLOAT16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
"""``/proc/cpuinfo`` flags of x86 CPUs with bfloat16 matrix instructions (AMX, AVX512-BF16)."""

_COMPILATION_CACHE_READY = False


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> None:
    """Turn on JAX's persistent compilation cache (default: ``<nstjax cache>/jax``).

    Leaves a cache directory the user configured alone. Set
    ``NSTJAX_COMPILATION_CACHE=0`` to leave JAX's settings alone entirely.
    """
    global _COMPILATION_CACHE_READY
    if _COMPILATION_CACHE_READY or os.environ.get("NSTJAX_COMPILATION_CACHE", "1") == "0":
        return
    if jax.config.jax_compilation_cache_dir is None:
        path = os.fspath(directory or cache_dir() / "jax")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:
            return  # an unwritable cache only costs compile time
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    _COMPILATION_CACHE_READY = True


def wants_distributed(distributed: bool | None = None) -> bool:
    """Whether to start ``jax.distributed``: as asked, or (``None``) when the environment names a
    coordinator (``JAX_COORDINATOR_ADDRESS``) or a multi-host Cloud TPU slice."""
    if distributed is not None:
        return bool(distributed)
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES") or os.environ.get("TPU_PROCESS_ADDRESSES") or ""
    return "," in hosts


def init_distributed(distributed: bool | None = None) -> tuple[int, int]:
    """Start ``jax.distributed`` when asked (or the environment says so); (process index, count).

    ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID`` are passed on when set (jax itself reads
    only ``JAX_COORDINATOR_ADDRESS``; Slurm, Open MPI, Cloud TPU and Kubernetes jobs are
    detected by jax). Must run before anything in the process touched a JAX device.
    """
    if wants_distributed(distributed) and not jax.distributed.is_initialized():
        kwargs: dict[str, Any] = {}
        if os.environ.get("JAX_NUM_PROCESSES"):
            kwargs["num_processes"] = int(os.environ["JAX_NUM_PROCESSES"])
        if os.environ.get("JAX_PROCESS_ID"):
            kwargs["process_id"] = int(os.environ["JAX_PROCESS_ID"])
        if jax.config.jax_cpu_collectives_implementation in (None, "none"):
            # CPU devices of different processes talk over gloo (TCP); without it a
            # multi-process CPU job cannot run one jitted step across processes.
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        try:
            jax.distributed.initialize(**kwargs)
        except (RuntimeError, ValueError) as exc:
            raise NstjaxError(f"cannot start jax.distributed: {' '.join(str(exc).split())}") from None
    return jax.process_index(), jax.process_count()


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of this machine's CPU (``/proc/cpuinfo`` ``flags``, Linux x86).

    Empty where the file or the line is missing (macOS, Windows, ARM's ``Features``
    line is read as well). Read once per process.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


@functools.cache
def cpu_model() -> str:
    """This machine's CPU model (``/proc/cpuinfo`` ``model name``; ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown"


def fast_bfloat16(flags: Iterable[str] | None = None) -> bool:
    """Whether a CPU with these flags (default: this one's) multiplies bfloat16 matrices natively.

    True for AMX (``amx_bf16``) or AVX512-BF16 (``avx512_bf16``). Elsewhere XLA:CPU
    emulates bfloat16 arithmetic in float32.
    """
    return bool(FAST_BFLOAT16_FLAGS & frozenset(cpu_flags() if flags is None else flags))


# --------------------------------------------------------------------------- Ctrl-C


def _in_gc_callback(frame: Any) -> bool:
    """Whether ``frame`` runs inside a garbage-collection callback (``gc.callbacks``), where Python prints an
    exception and drops it: JAX registers one, so a Ctrl-C raised there would be lost."""
    codes = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


class Interrupts:
    """SIGINT (Ctrl-C) while a long job runs, noted so that none is lost (a context manager, main thread only,
    and not where SIGINT is ignored; elsewhere it installs nothing and :attr:`requested` stays False).

    Each SIGINT sets :attr:`requested`. With ``immediate`` the first one also raises ``KeyboardInterrupt`` at
    once (a stylization stops mid-chunk), else only a second one does (training stops after its step). It is
    never raised inside a garbage-collection callback, which would print and drop it; the job's loop calls
    :meth:`check` between chunks or steps, which raises it then.
    """

    def __init__(self, *, immediate: bool):
        self.immediate = immediate
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        again, self.requested = self.requested, True
        if (self.immediate or again) and not _in_gc_callback(frame):
            raise KeyboardInterrupt

    def __enter__(self) -> Interrupts:
        # A process started with SIGINT ignored (nohup, a background job) keeps ignoring it.
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not signal.SIG_IGN:
                self._previous = previous
                signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def check(self) -> None:
        """Raise the ``KeyboardInterrupt`` an immediate SIGINT asked for, if it has not reached the caller."""
        if self.immediate and self.requested:
            raise KeyboardInterrupt
