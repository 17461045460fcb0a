"""The ``nstjax`` console script: starts the process with a memory allocator that keeps freed memory, then runs the CLI.

XLA:CPU takes each run's temporary buffers fresh from ``malloc``: one block per
program run (1.6 GB for a CycleGAN train step at 128 px), which glibc maps with
``mmap`` and returns with ``munmap``, plus the per-thread heaps glibc creates and
deletes around it. Every step then faults its memory in again: 4 KiB at a time
(a 256 px CycleGAN step spent 7-19 of its ~45 CPU seconds in the kernel, 2-core AMD
EPYC), or 2 MiB at a time with glibc's ``glibc.malloc.hugetlb=1`` tunable, which
still cost 1-4 s of kernel time per 128 px step whenever another program had run
in between (the kernel zeroes and compacts fresh huge pages; 2-core Xeon, glibc
2.36, THP ``madvise``). A caching allocator that keeps what was freed for reuse
(tcmalloc; jemalloc) takes the faults once: 0-3 faults and 0.02 s of kernel time a
step, the 128 px step 2.3-2.6 s instead of 2.7-4.9 s (docs/benchmarks.md).
PyTorch's allocation pattern (many smaller blocks, reused from glibc's heap) does
not hit this.

So, on Linux, :func:`main` re-executes the same command line once before anything
heavy is imported, with

* ``LD_PRELOAD`` naming the first caching allocator installed (:data:`ALLOCATORS`:
  Debian/Ubuntu ``libtcmalloc-minimal4``, ``libgoogle-perftools4``, ``libjemalloc2``),
  or the library ``NSTJAX_ALLOCATOR`` names (a path or soname; ``system`` keeps
  glibc's ``malloc``);
* else, with glibc and THP in ``madvise`` mode, ``GLIBC_TUNABLES`` extended by
  ``glibc.malloc.hugetlb=1`` (``NSTJAX_HUGE_PAGES=0`` turns that off; an explicit
  ``glibc.malloc.hugetlb`` setting is kept).

Nothing is done where nothing helps, or where ``LD_PRELOAD`` already names an
allocator. Library users get the same by starting Python with those variables;
the benchmark scripts call :func:`reexec_with_memory_settings` themselves (so the
PyTorch references they start inherit the same allocator).
"""

from __future__ import annotations

import ctypes.util
import os
import platform
import sys
from collections.abc import Callable, Mapping

__all__ = [
    "ALLOCATORS",
    "allocator_environment",
    "find_allocator",
    "huge_page_environment",
    "launch_environment",
    "main",
    "reexec_with_memory_settings",
    "thp_mode",
]

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT = "NSTJAX_HUGE_PAGES"
ALLOCATOR_VARIABLE = "NSTJAX_ALLOCATOR"
THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"
# Caching allocators, best first (the names ctypes.util.find_library takes). tcmalloc kept every page
# (0 faults a step); jemalloc returned idle pages after its decay time (400k faults, 0.6 s a step).
ALLOCATORS = ("tcmalloc_minimal", "tcmalloc", "jemalloc")
_ALLOCATOR_WORDS = ("tcmalloc", "jemalloc", "mimalloc")
# gperftools reports every allocation over 1 GiB on stderr; XLA's step buffers are that large.
_QUIET_TCMALLOC = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 40)}


def _off(value: str) -> bool:
    return value.strip().lower() in ("0", "false", "no", "off", "system")


def thp_mode(path: str = THP_ENABLED) -> str | None:
    """The kernel's transparent-huge-page mode (``"always"``, ``"madvise"``, ``"never"``), or None if unknown."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def find_allocator(environ: Mapping[str, str], *,
                   finder: Callable[[str], str | None] = ctypes.util.find_library) -> str | None:  # fmt: skip
    """The caching allocator to preload: what ``NSTJAX_ALLOCATOR`` names (a path or soname), none for
    ``system`` (or ``0``/``off``), else (unset or ``auto``) the first of :data:`ALLOCATORS` that ``finder``
    (default: ``ctypes.util.find_library``) finds installed, as its soname."""
    choice = environ.get(ALLOCATOR_VARIABLE, "auto").strip()
    if _off(choice):
        return None
    if choice and choice != "auto":
        return choice
    for name in ALLOCATORS:
        found = finder(name)
        if found:
            return found
    return None


def _preloaded(environ: Mapping[str, str], allocator: str | None = None) -> bool:
    """Whether ``LD_PRELOAD`` already names a caching allocator (or ``allocator``)."""
    entries = environ.get("LD_PRELOAD", "").replace(":", " ").split()
    return any(word in entry for entry in entries for word in _ALLOCATOR_WORDS) or (allocator in entries)


def allocator_environment(environ: Mapping[str, str], *, system: str, allocator: str | None) -> dict[str, str] | None:
    """The environment to re-execute with so ``allocator`` (:func:`find_allocator`) replaces ``malloc``, or None
    when there is nothing to do (no allocator, not Linux, or one already preloaded).

    ``allocator`` goes first in ``LD_PRELOAD`` (other entries are kept); tcmalloc's report of every
    allocation over 1 GiB is silenced unless ``TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD`` is set.
    """
    if system != "Linux" or allocator is None or _preloaded(environ, allocator):
        return None
    preload = environ.get("LD_PRELOAD", "").strip()
    return {**_QUIET_TCMALLOC, **environ, "LD_PRELOAD": f"{allocator} {preload}" if preload else allocator}


def huge_page_environment(environ: Mapping[str, str], *, system: str, libc: str, mode: str | None) -> dict[str, str] | None:
    """The environment to re-execute with so glibc's ``malloc`` uses huge pages, or None when there is nothing to do.

    ``system``: ``platform.system()``; ``libc``: ``platform.libc_ver()[0]``; ``mode``: :func:`thp_mode`.
    Only ``madvise`` mode needs the tunable (``always`` gives huge pages anyway,
    ``never`` refuses them). An explicit ``glibc.malloc.hugetlb`` setting, or
    ``NSTJAX_HUGE_PAGES=0``, is left alone.
    """
    if _off(environ.get(OPT_OUT, "1")):
        return None
    if system != "Linux" or libc != "glibc" or mode != "madvise":
        return None
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:
        return None
    return {**environ, "GLIBC_TUNABLES": f"{tunables}:{TUNABLE}" if tunables else TUNABLE}


def launch_environment(environ: Mapping[str, str], *, system: str, libc: str, mode: str | None,
                       allocator: str | None) -> dict[str, str] | None:  # fmt: skip
    """The environment :func:`main` re-executes with, or None to run as it is: ``allocator`` preloaded
    (:func:`allocator_environment`), else, where glibc's ``malloc`` stays, its huge pages
    (:func:`huge_page_environment`)."""
    env = allocator_environment(environ, system=system, allocator=allocator)
    if env is not None or _preloaded(environ, allocator):
        return env
    return huge_page_environment(environ, system=system, libc=libc, mode=mode)


def reexec_with_memory_settings() -> None:
    """Replace this process by the same command line under :func:`launch_environment`, when it says so.

    Call it first thing in a ``__main__`` (before JAX is imported: the work done so
    far is repeated). Returns normally when there is nothing to do or exec fails.
    """
    allocator = None if _preloaded(os.environ) else find_allocator(os.environ)  # no library search when preloaded
    env = launch_environment(os.environ, system=platform.system(), libc=platform.libc_ver()[0], mode=thp_mode(),
                             allocator=allocator)  # fmt: skip
    if env is None:
        return
    argv = [sys.executable, *sys.orig_argv[1:]]
    try:
        os.execve(sys.executable, argv, env)
    except OSError:
        return  # carry on as we are


def main() -> None:
    """Console-script entry point: :func:`reexec_with_memory_settings`, then :func:`nstjax.cli.main`."""
    reexec_with_memory_settings()
    from nstjax.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
