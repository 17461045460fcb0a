"""The one exception type that the CLI turns into a one-line message."""

from __future__ import annotations

import os


class NstjaxError(Exception):
    """A user-facing error: bad input, a bad file, a refused setting.

    The message is one line. When ``path`` is given it is prefixed, so every
    error names the file it is about: ``"photo.jpg: not an image"``.
    """

    def __init__(self, problem: str, path: str | os.PathLike | None = None):
        self.problem = " ".join(str(problem).split())
        self.path = None if path is None else os.fspath(path)
        super().__init__(self.problem if self.path is None else f"{self.path}: {self.problem}")


class NstjaxWarning(UserWarning):
    """Base of nstjax's warnings: something the user should know that does not stop the run.

    The CLI prints each as one ``warning: …`` line as it happens.
    """
