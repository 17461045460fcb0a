"""An exclusive ``flock`` between processes fetching or recording the same file."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import NstjaxError

try:  # POSIX; elsewhere fetches are not locked against each other
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def file_lock(target: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<target>.lock`` (created, and removed on release).

    Another process (or thread) asking for the same lock waits until this one
    is released. The holder removes the lock file before releasing it, so a
    waiter that then wins the lock on the removed file notices (the path no
    longer names its file) and locks afresh. Not re-entrant: do not take the
    same lock twice in one thread.

    Where the lock file cannot be created (a read-only cache, copied from
    another machine) nothing can be written there either, so the caller goes
    on unlocked and only reads.
    """
    lock = Path(os.fspath(target) + ".lock")
    fd = _acquire(lock) if fcntl is not None else None
    try:
        yield
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(lock)
            os.close(fd)  # releases the flock


def _acquire(lock: Path) -> int | None:
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                return None
            raise NstjaxError(f"cannot create lock file ({e.strerror or e})", lock) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            mine = os.fstat(fd)
            try:
                now = os.stat(lock)
            except FileNotFoundError:
                now = None
        except BaseException:
            os.close(fd)
            raise
        if now is not None and (now.st_ino, now.st_dev) == (mine.st_ino, mine.st_dev):
            return fd
        os.close(fd)  # the previous holder removed this file: lock the current one
