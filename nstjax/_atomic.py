"""Atomic file writes: a temp file in the destination directory, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it over on success.

    On any exception the temporary file is removed and ``destination`` is left
    untouched, so readers never see a half-written file. The suffix of the
    destination is kept so that writers which pick a format from the extension
    (Pillow, NumPy) behave the same.
    """
    destination = Path(destination)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=f".tmp{destination.suffix}", dir=destination.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
