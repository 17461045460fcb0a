"""The one progress renderer of the ``nstjax`` command: rich bars on stderr for the library's events.

The library reports progress through callbacks that receive event dataclasses
(:class:`~nstjax.nst.run.Progress`, :class:`~nstjax.train.loop.TrainProgress`,
download ``(done, total)`` pairs, …). :class:`Bars` draws them: one bar per key
(a scale, a stage, a file), started at the first event and stopped by
:meth:`Bars.close`. A command's display is a subclass that says, in
:meth:`Bars.row`, what one event shows: a label, a count and a short
``info`` text (losses, rates).

Columns fit an 80-column terminal: the label, a 16-cell bar, ``done/total``, the
info text (cut with an ellipsis when the line is too narrow, so the count and
the ETA always stay readable), elapsed time and ETA. The ETA is the library's
when the event carries one (:attr:`Row.eta`: the whole run's remaining time,
weighted by cost, compilations included), else rich's from the bar's own rate.
While a program compiles, a bar shows :data:`COMPILING` as its info.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable
from typing import Any

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
from rich.table import Column
from rich.text import Text

__all__ = ["COMPILING", "Bars", "CountBar", "Row", "err_console"]

COMPILING = "compiling"
"""The info text of a bar whose first step is compiling (tens of seconds on a CPU: not a hang)."""

err_console = Console(stderr=True)
"""Progress bars and notes go to stderr, so stdout carries only results (paths, summaries)."""


@dataclasses.dataclass(frozen=True)
class Row:
    """What one event shows on its bar.

    key: which bar (a new key adds a bar below the others); label: the text before the bar;
    done, total: the count (``total`` ``None`` = unknown; ``done`` ``None`` = finished: the bar fills);
    info: a short text after the count.
    eta: seconds left, from the library's estimate (``None`` or NaN: rich's, from this bar's rate).
    """

    key: Hashable
    label: str
    done: float | None
    total: float | None = None
    info: str = ""
    eta: float | None = None


class EtaColumn(TimeRemainingColumn):
    """The task's ``eta`` field (seconds, the library's estimate) when set, else rich's estimate."""

    def render(self, task: Any) -> Text:
        eta = task.fields.get("eta")
        if eta is None or not math.isfinite(eta) or task.finished:
            return super().render(task)
        minutes, seconds = divmod(int(round(max(eta, 0.0))), 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"{hours}:{minutes:02d}:{seconds:02d}", style="progress.remaining")


class Bars:
    """Rich progress bars on stderr, one per :attr:`Row.key`; a callable progress callback.

    Subclasses implement :meth:`row` for their event type. ``transfer=True`` counts bytes (percent, size
    and speed instead of ``done/total``). ``quiet=True`` draws nothing. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(self, label: str = "", *, transfer: bool = False, quiet: bool = False, console: Console = err_console):
        self.label = label
        self.quiet = quiet
        counts = (TaskProgressColumn(), DownloadColumn(), TransferSpeedColumn()) if transfer else (MofNCompleteColumn(),)
        self._progress = Progress(
            TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis", max_width=28)),
            BarColumn(bar_width=16),
            *counts,
            TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            EtaColumn(),
            console=console,
            expand=True,
        )
        self._tasks: dict[Hashable, Any] = {}

    def row(self, *event: Any) -> Row | None:
        """What ``event`` shows (``None``: nothing). The default takes ``(done, total)`` pairs."""
        done, total = event
        return Row(self.label, self.label, done, total)

    def __call__(self, *event: Any) -> None:
        if self.quiet:
            return
        row = self.row(*event)
        if row is not None:
            self.show(row)

    def show(self, row: Row) -> None:
        """Draw ``row`` on its bar (adding the bar at its first row)."""
        if not self._tasks:
            self._progress.start()
        task = self._tasks.get(row.key)
        if task is None:
            task = self._tasks[row.key] = self._progress.add_task(row.label, total=row.total, info=row.info, eta=row.eta)
            fresh = True
        else:
            fresh = False
        total = row.total if row.total is not None else self._progress.tasks[self._index(task)].total
        done = total if row.done is None else row.done
        self._progress.update(task, description=row.label, completed=done, total=total, info=row.info, eta=row.eta)
        if fresh:  # a bar's first state (e.g. "compiling") is drawn at once, not at the next refresh tick
            self._progress.refresh()

    def log(self, message: str) -> None:
        """A line above the bars (they stay drawn below it)."""
        self._progress.console.print(message, soft_wrap=True, markup=False, highlight=False)

    def note(self, message: str) -> None:
        """A line above the bars, or on stderr when none is drawn (a plan line before the first bar)."""
        if self.quiet:
            return
        self.log(message)

    def close(self) -> None:
        if self._tasks:
            self._progress.stop()
            self._tasks.clear()

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _index(self, task: Any) -> int:
        return [t.id for t in self._progress.tasks].index(task)


class CountBar(Bars):
    """One bar for events with ``done`` and ``total`` attributes (translated images, extracted members)."""

    def row(self, p: Any) -> Row:
        return Row(self.label, self.label, p.done, p.total)
