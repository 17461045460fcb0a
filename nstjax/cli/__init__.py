"""The ``nstjax`` command line: parses flags, delegates to the library, renders what it reports.

One Typer sub-app per system (``nstjax weights …``); Gatys style transfer keeps
its top-level commands (``nstjax stylize``, ``nstjax stylize-batch``). Library
modules are imported inside the commands, so ``nstjax --help`` and
``nstjax --version`` start without loading JAX.
"""

import sys
from typing import Annotated, Optional

import typer

from . import adain, check, cyclegan, data, fast, nst, serve, sketch2photo, weights
from . import recreate as recreate_cli
from .common import new_typer

__all__ = ["app", "main"]

app = new_typer("Neural style transfer in JAX: Gatys et al. on a from-scratch Flax VGG-19, and its generative cousins.")


def _show_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"nstjax {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the installed version and exit."),
    ] = None,
) -> None:
    """Neural style transfer in JAX: Gatys et al. on a from-scratch Flax VGG-19, and its generative cousins."""


nst.register(app)
recreate_cli.register(app)
app.add_typer(weights.app, name="weights")
app.add_typer(data.app, name="data")
app.add_typer(cyclegan.app, name="cyclegan")
app.add_typer(fast.app, name="fast")
app.add_typer(adain.app, name="adain")
app.add_typer(sketch2photo.app, name="sketch2photo")
app.command("serve")(serve.serve)
app.command("check")(check.check)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        # Reached only outside a job (jobs save what they have and exit 130 themselves).
        sys.stderr.write("interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
