"""Atomic file writes: a temp file in the destination directory, fsynced, then renamed.

Readers never see a half-written file, and a crash or Ctrl-C leaves the old
file (or nothing) in place. Files get the permissions a plain ``open()``
would give them (``0o666`` minus the umask), not ``mkstemp``'s private 0600.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "new_file_mode"]

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc/self/status``)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _UMASK_LOCK:  # elsewhere: set and restore, under a lock against our own threads
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """Permission bits a newly created regular file gets here: ``0o666 & ~umask`` (e.g. 0o644)."""
    return 0o666 & ~_umask()


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform or file system lets a directory be opened.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike, *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; on success fsync it and rename it over.

    On any exception (Ctrl-C included) the temporary file is removed and
    ``destination`` is left untouched. The suffix of the destination is kept so
    that writers which pick a format from the extension (Pillow, NumPy) behave
    the same.

    Args:
      destination: the file to write; its directory must exist.
      mode: permission bits of the result; default :func:`new_file_mode`.
    """
    destination = Path(destination)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=f".tmp{destination.suffix}", dir=destination.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, new_file_mode() if mode is None else mode)
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, destination)
        _fsync_directory(destination.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
