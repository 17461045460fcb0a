"""``nstjax data fetch|list|synth``: the published datasets (CycleGAN, pix2pix facades, ADE20K, COCO) and synthetic pairs.

One command per function of :mod:`nstjax.data.registry`; more commands (e.g.
synthetic data) are added to :data:`app` the same way.
"""

from pathlib import Path
from typing import Annotated

import typer
from .common import DownloadBar, cli_errors, new_typer
from .progress import Bars, CountBar

app = new_typer("Download and list the datasets the generative systems train on.")


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return "?"  # unreachable


@app.command("fetch")
def fetch_command(
    name: Annotated[str, typer.Argument(help="A dataset of `nstjax data list`, e.g. vangogh2photo.")],
    force: Annotated[bool, typer.Option("--force", help="Download and extract again even if cached.")] = False,
    keep_archive: Annotated[
        bool, typer.Option("--keep-archive", help="Keep the downloaded archive in the cache after extracting it.")
    ] = False,
) -> None:
    """Download, verify and extract a dataset into the cache; print its folder."""
    from ..data import registry

    with cli_errors(), DownloadBar(f"downloading {name}") as bar, Bars(f"extracting {name}") as extract:

        def extracting(done: int, total: int | None) -> None:
            bar.close()  # one live display at a time: the download is over
            extract(done, total)

        path = registry.fetch_dataset(
            name, progress=bar, force=force, extract_progress=extracting, keep_archive=keep_archive
        )
    typer.echo(str(path))


@app.command("list")
def list_command() -> None:
    """Show each dataset: who uses it, its download size and whether it is cached."""
    from ..data import registry

    with cli_errors():
        statuses = registry.list_datasets()
        folder = registry.datasets_dir()
    rows = []
    for s in statuses:
        if s.cached:
            cached = "yes"
        elif s.problem:
            cached = "STALE"
        elif s.partial_bytes:
            cached = f"partial ({_size(s.partial_bytes)})"
        else:
            cached = "no"
        rows.append((s.name, ",".join(s.dataset.used_by), _size(s.dataset.size), cached, s.dataset.description))
    header = ("dataset", "used by", "size", "cached", "description")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    typer.echo(f"folder: {folder}")


@app.command("synth")
def synth_command(
    directory: Annotated[Path, typer.Argument(help="Folder to write DIR/labels and DIR/photos into.")],
    count: Annotated[int, typer.Option(help="Number of (label map, photo) pairs.", min=1)] = 100,
    size: Annotated[int, typer.Option(help="Side of the square scenes in pixels (16-4096).")] = 256,
    seed: Annotated[int, typer.Option(help="Pair i is scene seed + i.", min=0)] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Write SYNTHETIC landscape pairs (labels in the landscape palette, photos) for tests and demos.

    Sky with clouds, ridged mountains with snow, hills, grass with flowers, trees and water, each class
    with its own colour and texture statistics. They are procedural, not photographs.
    """
    from ..labels import write_synth_dataset

    with cli_errors(), CountBar("synth", quiet=quiet) as bar:
        dataset = write_synth_dataset(directory, count, size, seed=seed, progress=bar)
    typer.echo(f"wrote {len(dataset.stems)} synthetic pairs to {dataset.labels_dir} and {dataset.photos_dir}")
