"""``nstjax weights fetch|convert|list``: the ImageNet VGG-19 weights."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import DownloadBar, cli_errors, new_typer

app = new_typer("Download, convert and list the ImageNet VGG-19 weights.")

SOURCES = ("keras", "torchvision", "gatys")


@app.command("fetch")
def fetch_command(
    source: Annotated[str, typer.Argument(help="keras (default), torchvision or gatys.")] = "keras",
    url: Annotated[
        Optional[str], typer.Option("--url", help="Download from this URL instead (checksum still checked).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Download and convert again even if cached.")] = False,
) -> None:
    """Download, verify and convert weights into the cache; print the converted file's path."""
    from ..models import vgg_weights

    with cli_errors(), DownloadBar(f"downloading {source}") as bar:
        path = vgg_weights.fetch(source, url=url, force=force, progress=bar)
    typer.echo(str(path))


@app.command("convert")
def convert_command(
    file: Annotated[Path, typer.Argument(help="A Keras .h5, a PyTorch .pth, or an nstjax .npz.")],
    source: Annotated[
        Optional[str], typer.Option("--source", help="Expected source (default: detected from the file).")
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("-o", "--out", help="Output .npz (default: the cache, where 'auto' finds it).")
    ] = None,
) -> None:
    """Convert a local weights file (e.g. downloaded elsewhere); print the converted file's path."""
    from ..models import vgg_weights

    with cli_errors():
        path = vgg_weights.convert(file, source=source, out=out)
    typer.echo(str(path))


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


@app.command("list")
def list_command() -> None:
    """Show each weights source and its cache state."""
    from ..hub import cache_dir
    from ..models import vgg_weights

    with cli_errors():
        rows = [
            (
                s.name,
                s.convention,
                "yes" if s.cached else ("CORRUPT" if s.problem else "no"),
                _yes_no(s.verified),
                str(s.path),
            )
            for s in vgg_weights.list_sources()
        ]
    header = ("source", "convention", "cached", "verified", "path")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    typer.echo(f"cache: {cache_dir()}")
