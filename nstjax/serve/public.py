"""Text the page and the API show: one line, and never a path of the server's file system.

Errors and warnings of the library name files (``no space left on device: /srv/jobs/…/result.png``, the
weights cache ``/root/.cache/nstjax``); a web client has no use for them and should not learn the server's
layout. :func:`public_text` keeps each path's last part (``result.png``, ``nstjax``) and drops the folders.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import NstjaxError

__all__ = ["MAX_CHARS", "one_line", "public_text", "public_value"]

MAX_CHARS = 500
"""The longest text a job's ``error`` or note may be, in characters."""

# An absolute POSIX path (not the "//host/x" of a URL: no ':' '/' or word character just before the first '/'),
# or a Windows one (C:\x or C:/x), or a home-relative one (~/x).
_PATH = re.compile(
    r"(?<![\w:/.~-])(?:/[^\s/'\"(),;]+)+/?"
    r"|\b[A-Za-z]:[\\/][^\s'\"(),;]*"
    r"|~/[^\s'\"(),;]*"
)


def _last_part(match: re.Match) -> str:
    parts = [p for p in re.split(r"[\\/]", match.group(0)) if p]
    return parts[-1] if parts else "…"


def public_text(text: str) -> str:
    """``text`` on one line, with every file-system path cut to its last part, at most :data:`MAX_CHARS`."""
    return _PATH.sub(_last_part, " ".join(str(text).split()))[:MAX_CHARS]


def public_value(value: Any) -> Any:
    """A JSON-ready value with :func:`public_text` applied to every string in it (keys included)."""
    if isinstance(value, str):
        return public_text(value)
    if isinstance(value, dict):
        return {public_value(k): public_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [public_value(v) for v in value]
    return value


def one_line(error: BaseException) -> str:
    """An exception as one public line; the type is named for anything but an :class:`NstjaxError`."""
    text = " ".join(str(error).split()) or type(error).__name__
    if not isinstance(error, NstjaxError):
        text = f"{type(error).__name__}: {text}"
    return public_text(text)
