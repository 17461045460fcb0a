"""What every ``nstjax`` command shares: error handling, options declared once, progress rendering.

The library reports through callbacks and :mod:`warnings`; this module turns
those into terminal output: one ``error: …`` line (exit 2) for an
:class:`~nstjax.errors.NstjaxError`, one ``warning: …`` line per nstjax
warning, and ``rich`` progress bars on stderr. Nothing here computes anything.
"""

import contextlib
import functools
import inspect
import math
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..errors import NstjaxError, NstjaxWarning

__all__ = [
    "DownloadBar",
    "OneLineErrors",
    "cli_errors",
    "duration",
    "err_console",
    "new_typer",
    "say",
    "with_options",
]

err_console = Console(stderr=True)
"""Progress bars and notes go to stderr, so stdout carries only results (paths, summaries)."""


def say(message: str) -> None:
    """Write one line to stderr as is (never wrapped: an error must stay one line)."""
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()


class OneLineErrors(typer.core.TyperGroup):
    """A Typer group whose bad option values end in one ``error: …`` line and exit status 2.

    Click's own usage errors draw a multi-line box; an invalid value (a choice
    not in the list, a number that is not one) is reported here like every
    other bad input of nstjax. Other usage errors keep click's plain message.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            # Non-standalone, click returns a command's return value or typer.Exit's code.
            status = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.BadParameter as e:
            say(f"error: {' '.join(e.format_message().split())}")
            sys.exit(e.exit_code)
        except typer.TyperException as e:  # click's ClickException and its usage errors
            e.show()
            sys.exit(e.exit_code)
        except typer.Abort:
            say("aborted")
            sys.exit(1)
        sys.exit(status if isinstance(status, int) else 0)


def new_typer(help: str, **kwargs: Any) -> typer.Typer:
    """A Typer app or sub-app with nstjax's conventions (no completion flags, no tracebacks)."""
    return typer.Typer(
        help=help,
        cls=OneLineErrors,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        **kwargs,
    )


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn NstjaxError into ``error: …`` and exit status 2; show nstjax warnings as ``warning: …`` lines.

    Warnings from nstjax (weights, masks) are printed as they happen, one line
    each; others are shown the usual way.
    """

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, NstjaxWarning):
            say(f"warning: {' '.join(str(message).split())}")
        else:
            default_show(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        default_show = warnings.showwarning
        warnings.showwarning = show  # restored by catch_warnings on exit
        warnings.simplefilter("always", NstjaxWarning)
        try:
            yield
        except NstjaxError as e:
            say(f"error: {e}")
            raise typer.Exit(2) from None


def with_options(*groups: Mapping[str, tuple[Any, Any]]) -> Callable[[Callable], Callable]:
    """Add option groups, declared once, to a command's signature.

    Each group maps a parameter name to ``(Annotated[type, typer.Option(...)], default)``.
    The command declares its own parameters plus ``**options`` and receives the
    groups' values there. Typer reads the combined signature, so ``--help``
    lists every option and each is parsed and checked as usual.
    """

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
            for group in groups
            for name, (annotation, default) in group.items()
        ]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return command(*args, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {
            **command.__annotations__,
            **{name: annotation for group in groups for name, (annotation, _) in group.items()},
        }
        return wrapper

    return decorate


def duration(seconds: float) -> str:
    """``75`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``; ``"?"`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class DownloadBar:
    """Renders ``progress(bytes_done, total_or_None)`` download callbacks as a rich bar on stderr."""

    def __init__(self, label: str, console: Console = err_console):
        self.label = label
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._task = None

    def __call__(self, done: int, total: int | None) -> None:
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=total)
        self._progress.update(self._task, completed=done, total=total)

    def close(self) -> None:
        if self._task is not None:
            self._progress.stop()

    def __enter__(self) -> "DownloadBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def step_columns() -> tuple:
    """Columns of a bar counting optimiser or training steps: ``step 40/100 [bar] … elapsed ETA``."""
    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
