"""Atomic file writes: a temp file in the destination directory, fsynced, then renamed.

Readers never see a half-written file, and a crash or Ctrl-C leaves the old
file (or nothing) in place. Files get the permissions a plain ``open()``
would give them (``0o666`` minus the umask), not ``mkstemp``'s private 0600.
A full file system ends the write with :class:`NoSpaceLeft`, a one-line error
naming the destination, and no file left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from .. import faults
from ..errors import NstjaxError

__all__ = ["NoSpaceLeft", "atomic_path", "exception_chain", "leftover_temporaries", "new_file_mode", "no_space_left"]

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


class NoSpaceLeft(NstjaxError):
    """A write failed because the file system is full (ENOSPC) or over quota (EDQUOT)."""

    def __init__(self, path: str | os.PathLike):
        super().__init__("no space left on device; nothing was written", path)


def no_space_left(exc: BaseException) -> bool:
    """Whether ``exc`` is an OSError of a full file system or an exhausted quota."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def exception_chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, then each exception it was raised from (``__cause__``, else ``__context__``), each once.

    Writers wrap the file system's errors (Pillow, NumPy, orbax, tensorstore): a full disk is found by
    looking down this chain."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def leftover_temporaries(folder: str | os.PathLike) -> list[Path]:
    """The temporary files :func:`atomic_path` left under ``folder`` (a process killed before its rename)."""
    return list(Path(folder).rglob(".*.tmp*"))


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
    ``destination`` is left untouched; a full file system raises :class:`NoSpaceLeft`
    (an :class:`~nstjax.errors.NstjaxError` naming ``destination``) instead of the OSError. The suffix of the destination is kept so
    that writers which pick a format from the extension (Pillow, NumPy) behave
    the same.

    Args:
      destination: the file to write; its directory must exist.
      mode: permission bits of the result; default :func:`new_file_mode`.
    """
    destination = Path(destination)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{destination.name}.", suffix=f".tmp{destination.suffix}", dir=destination.parent
        )
    except OSError as exc:
        if no_space_left(exc):
            raise NoSpaceLeft(destination) from None
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, new_file_mode() if mode is None else mode)
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        faults.point("atomic-write")
        os.replace(tmp_path, destination)
        _fsync_directory(destination.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if any(no_space_left(cause) for cause in exception_chain(exc)):
            raise NoSpaceLeft(destination) from None
        raise
