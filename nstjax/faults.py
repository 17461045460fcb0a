"""A test hook: kill this process at a named point, to test what a crash there leaves behind.

The crash-safety tests (``tests/test_crash_safety.py``) run real commands with
``NSTJAX_TEST_KILL_AT=POINT:N`` in their environment; the process then sends
itself SIGKILL the ``N``-th time (1-based) it reaches :func:`point` ``POINT``,
as a power cut or the kernel's OOM killer would: no ``finally``, no flush. Unset
(always, outside those tests), :func:`point` does nothing but read the
environment variable once per call.

The points (each named where it is called):

- ``train-step``: a training step was dispatched, not yet logged or checkpointed;
- ``checkpoint-save``: a checkpoint's write started (orbax's temporary folder), not finished;
- ``export``: the export's new parameters written, not yet renamed into place;
- ``atomic-write``: a file's temporary copy written, not yet renamed over the destination;
- ``manifest``: half of a stylize-batch manifest line written and flushed.
"""

from __future__ import annotations

import os
import signal

__all__ = ["KILL_AT_VARIABLE", "point"]

KILL_AT_VARIABLE = "NSTJAX_TEST_KILL_AT"

_reached: dict[str, int] = {}


def point(name: str) -> None:
    """Count one arrival at ``name``; SIGKILL this process if ``NSTJAX_TEST_KILL_AT`` asks for this one."""
    spec = os.environ.get(KILL_AT_VARIABLE)
    if not spec:
        return
    target, _, nth = spec.rpartition(":")
    if target != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if nth.isdigit() and _reached[name] == int(nth):
        os.kill(os.getpid(), signal.SIGKILL)
