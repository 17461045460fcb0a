"""Where the cache is, and how writes into it fail: locations, timestamps, the I/O block size."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import NstjaxError

CHUNK_BYTES = 1 << 20
"""Block size for hashing, downloading and extracting cached files (1 MiB)."""


def cache_dir() -> Path:
    """Cache directory: ``$NSTJAX_CACHE``, else ``$XDG_CACHE_HOME/nstjax``, else ``~/.cache/nstjax``.

    Not created here; writers create it on demand.
    """
    if os.environ.get("NSTJAX_CACHE"):
        return Path(os.environ["NSTJAX_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore relative values
        return Path(xdg) / "nstjax"
    return Path.home() / ".cache" / "nstjax"


def downloads_dir() -> Path:
    """Where verified upstream files (and ``.part`` partial downloads) are kept: ``<cache>/downloads``."""
    return cache_dir() / "downloads"


def trust_path() -> Path:
    """The trust-on-first-use record: ``<cache>/trust.json``."""
    return cache_dir() / "trust.json"


def timestamp() -> str:
    """Now, UTC, ISO 8601 to the second (``2024-05-01T12:00:00+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@contextlib.contextmanager
def writing_to(path: str | os.PathLike) -> Iterator[None]:
    """Report a failed write (full disk, read-only cache, permissions) as an NstjaxError on ``path``."""
    try:
        yield
    except OSError as e:
        raise NstjaxError(f"cannot write ({e.strerror or e})", path) from None
