"""The ``nstjax`` console script: starts the process with transparent huge pages for large buffers, then runs the CLI.

XLA:CPU takes each run's temporary buffers fresh from ``malloc``, which maps large
ones with ``mmap`` and returns them with ``munmap``; every step then faults its
memory in again 4 KiB at a time. A CycleGAN train step at 256 px touched 1.2 million
fresh pages (4.8 GB) and spent 7-19 of its ~45 CPU seconds in the kernel (2-core AMD
EPYC, jax 0.10, glibc 2.36, THP mode ``madvise``). glibc's ``glibc.malloc.hugetlb=1``
tunable makes ``malloc`` ask for transparent huge pages (2 MiB) on those mappings:
about 3,000 faults a step and 2-3 s of kernel time; in two pairs of runs the step went from 21-25 s
to 17.4-20.7 s (128 px: 5.1-6.4 to 4.0-4.3 s in one pair, 5.4-5.7 to 5.1-5.5 s in another: this VM's
speed drifts between runs). PyTorch's caching allocator does not hit this.

Tunables are read when a process starts, so :func:`main` re-executes the same
command line once with ``GLIBC_TUNABLES`` extended, before anything heavy is
imported. It does nothing where it cannot help (not Linux with glibc, THP
``always`` or ``never``), where ``GLIBC_TUNABLES`` already says
``glibc.malloc.hugetlb``, or with ``NSTJAX_HUGE_PAGES=0``. Library users get the
same by starting Python with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``; the
benchmark scripts call :func:`reexec_with_huge_pages` themselves.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping

__all__ = ["huge_page_environment", "main", "reexec_with_huge_pages", "thp_mode"]

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT = "NSTJAX_HUGE_PAGES"
THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"


def thp_mode(path: str = THP_ENABLED) -> str | None:
    """The kernel's transparent-huge-page mode (``"always"``, ``"madvise"``, ``"never"``), or None if unknown."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def huge_page_environment(environ: Mapping[str, str], *, system: str, libc: str, mode: str | None) -> dict[str, str] | None:
    """The environment to re-execute with so ``malloc`` uses huge pages, or None when there is nothing to do.

    ``system``: ``platform.system()``; ``libc``: ``platform.libc_ver()[0]``; ``mode``: :func:`thp_mode`.
    Only ``madvise`` mode needs the tunable (``always`` gives huge pages anyway,
    ``never`` refuses them). An explicit ``glibc.malloc.hugetlb`` setting, or
    ``NSTJAX_HUGE_PAGES=0``, is left alone.
    """
    if environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if system != "Linux" or libc != "glibc" or mode != "madvise":
        return None
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:
        return None
    return {**environ, "GLIBC_TUNABLES": f"{tunables}:{TUNABLE}" if tunables else TUNABLE}


def reexec_with_huge_pages() -> None:
    """Replace this process by the same command line under :func:`huge_page_environment`, when it says so.

    Call it first thing in a ``__main__`` (before JAX is imported: the work done so
    far is repeated). Returns normally when there is nothing to do or exec fails.
    """
    env = huge_page_environment(os.environ, system=platform.system(), libc=platform.libc_ver()[0], mode=thp_mode())
    if env is None:
        return
    argv = [sys.executable, *sys.orig_argv[1:]]
    try:
        os.execve(sys.executable, argv, env)
    except OSError:
        return  # carry on without huge pages


def main() -> None:
    """Console-script entry point: :func:`reexec_with_huge_pages`, then :func:`nstjax.cli.main`."""
    reexec_with_huge_pages()
    from nstjax.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
