"""Downloads and the cache: where nstjax keeps what it fetches.

Everything fetched or converted lives under :func:`cache_dir`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


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
