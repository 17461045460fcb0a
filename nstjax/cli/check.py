"""``nstjax check RUN``: is a training run's directory whole? One line per damaged file, exit 1 if any.

Works for every trained system (``cyclegan``, ``sketch2photo``, ``fast``, ``adain``): the checks are
:func:`nstjax.train.check.check_run`'s; this module only renders them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import cli_errors, say


def check(
    run: Annotated[Path, typer.Argument(help="A training run's directory (RUN of `<system> train --run RUN`).")],
) -> None:
    """Check a training run: its config, every checkpoint (read back whole) and its export.

    Prints one `error: FILE: problem` line per damaged file (a checkpoint's names its step) and exits 1;
    a sound run gets one summary line and exit 0.
    """
    with cli_errors():
        from ..train.check import check_run

        found = check_run(run)
        for note in found.notes:
            say(f"note: {note}")
        for problem in found.problems:
            say(f"error: {problem}")
        if not found.ok:
            raise typer.Exit(1)
        steps = ", ".join(map(str, found.steps)) or "none"
        export = "none" if found.export_step is None else f"step {found.export_step}"
        say(f"{found.path}: ok ({found.system or 'unknown system'}; checkpoints: {steps}; export: {export})")
