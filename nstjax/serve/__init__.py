"""``nstjax serve``: a local web page for style transfer, and the JSON API behind it.

:func:`create_app` builds the ASGI app (FastAPI); :class:`JobQueue` runs jobs
one at a time in a worker thread; :data:`KINDS` is the registry of job kinds
(the page's modes: ``stylize``; ``nstjax serve`` adds ``recreate``, :class:`RecreateKind`, and the trained
feed-forward ones it is given). Needs the ``serve`` extra
(``pip install 'nstjax[serve]'``). See ``docs/serve.md``.
"""

from __future__ import annotations

from .app import LOCAL_HOSTS, create_app
from .jobs import Job, JobQueue
from .kinds import KINDS, JobKind, ServeLimits, SettingsError, register_kind
from .recreate_kind import RecreateKind

__all__ = [
    "KINDS",
    "LOCAL_HOSTS",
    "Job",
    "JobKind",
    "JobQueue",
    "RecreateKind",
    "ServeLimits",
    "SettingsError",
    "create_app",
    "register_kind",
]
