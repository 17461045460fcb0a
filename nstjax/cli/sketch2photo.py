"""``nstjax sketch2photo train|render|convert-ade20k|split-facades``: label map -> photo (:mod:`nstjax.sketch2photo`)."""

from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from ..sketch2photo.settings import SKETCH2PHOTO_TRAIN_SETTINGS
from .common import (
    TRAIN_OPTIONS,
    TrainBar,
    cli_errors,
    new_typer,
    options_from,
    say,
    train_settings_from_options,
    training_job,
    with_options,
)
from .progress import CountBar

app = new_typer("SPADE (GauGAN) and pix2pix: learn to turn colour-coded sketches into photos.")

AdeSplit = Literal["training", "validation"]
FacadesSplit = Literal["train", "val", "test"]
Direction = Literal["BtoA", "AtoB"]


@app.command("train")
@with_options(options_from(SKETCH2PHOTO_TRAIN_SETTINGS), TRAIN_OPTIONS)
def train_command(
    labels_dir: Annotated[Path, typer.Argument(help="Folder of label maps (colour sketches or index PNGs).")],
    photos_dir: Annotated[Path, typer.Argument(help="Folder of the matching photos (same file stems).")],
    **options: Any,
) -> None:
    """Train SPADE or pix2pix on LABELS_DIR -> PHOTOS_DIR pairs into --run (default length: 200 epochs).

    Prints the run directory; the trained generator is in RUN/export (use `nstjax sketch2photo render`).
    """
    from ..sketch2photo import Pix2PixConfig, Sketch2PhotoConfig, SpadeConfig, train

    o = options
    run_dir: Path = o["run"]
    with training_job(run_dir, resume=o["resume"], quiet=o["quiet"]), TrainBar(o["model"]) as bar:
        config = Sketch2PhotoConfig(
            model=o["model"],
            size=o["size"],
            palette=o["palette"],
            spade=SpadeConfig(ngf=o["ngf"], ndf=o["ndf"], hidden=o["hidden"], use_vae=o["vae"], norm=o["norm"],
                              lambda_vgg=o["lambda_vgg"], vgg_input=o["vgg_input"]),
            pix2pix=Pix2PixConfig(ngf=o["ngf"], ndf=o["ndf"], input=o["input_kind"]),
            train=train_settings_from_options(o, epochs=200),
            dtype=o["dtype"],
        )  # fmt: skip
        train(labels_dir, photos_dir, run_dir, config, weights=o["weights"], resume=o["resume"],
              progress=None if o["quiet"] else bar, distributed=o["distributed"])  # fmt: skip
    typer.echo(str(run_dir.expanduser().resolve()))


@app.command("render")
def render_command(
    run_dir: Annotated[Path, typer.Argument(help="A sketch2photo run directory (or its export/ folder).")],
    sketches: Annotated[list[Path], typer.Argument(help="Sketch files (colour PNGs or index PNGs) and/or folders.")],
    out: Annotated[Path, typer.Option("-o", "--output", "--out", help="Output file for one sketch, else a folder (one <name>.png per sketch).")],
    style_image: Annotated[
        Optional[Path], typer.Option(help="A photo whose look the result takes (SPADE trained with --vae).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the latent (SPADE --vae) or of pix2pix's dropout.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Render sketches into photos with a trained run; print each output path."""
    from ..sketch2photo import render

    with cli_errors(), CountBar("render", quiet=quiet) as bar:
        written = render(run_dir, sketches, out, style_image=style_image, seed=seed, progress=bar)
    for path in written:
        typer.echo(str(path))


@app.command("convert-ade20k")
def convert_ade20k_command(
    root: Annotated[Path, typer.Argument(help="Extracted ADEChallengeData2016 (from `nstjax data fetch ade20k`).")],
    out: Annotated[Path, typer.Argument(help="Output folder: OUT/labels and OUT/photos.")],
    split: Annotated[AdeSplit, typer.Option(help="Which ADE20K split.")] = "training",
    min_fraction: Annotated[
        Optional[float], typer.Option(help="Keep images with at least this share of landscape pixels (default 0.85).")
    ] = None,
    limit: Annotated[Optional[int], typer.Option(help="Look at only the first N images (a trial).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Turn ADE20K's outdoor landscapes into landscape-palette (label map, photo) pairs for SPADE."""
    from ..sketch2photo import convert_ade20k

    with cli_errors(), CountBar("convert", quiet=quiet) as bar:
        report = convert_ade20k(root, out, split=split, min_fraction=min_fraction, limit=limit, progress=bar)
    typer.echo(f"kept {len(report.kept)} of {len(report.kept) + len(report.skipped)} images: "
               f"{report.labels_dir} and {report.photos_dir}")  # fmt: skip


@app.command("split-facades")
def split_facades_command(
    root: Annotated[Path, typer.Argument(help="Extracted pix2pix facades folder (train/ val/ test/), or one split.")],
    out: Annotated[Path, typer.Argument(help="Output folder: OUT/labels (inputs) and OUT/photos.")],
    split: Annotated[FacadesSplit, typer.Option(help="Which split.")] = "train",
    direction: Annotated[Direction, typer.Option(help="BtoA: right half (labels) -> left (photo), pix2pix's.")] = "BtoA",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Cut pix2pix's side-by-side facades images into paired folders (train with --model pix2pix --input image)."""
    from ..sketch2photo import split_facades

    with cli_errors(), CountBar("split", quiet=quiet) as bar:
        report = split_facades(root, out, split=split, direction=direction, progress=bar)
    typer.echo(f"wrote {len(report.kept)} pairs: {report.labels_dir} and {report.photos_dir}")
    if not quiet:
        say("train: nstjax sketch2photo train OUT/labels OUT/photos --model pix2pix --input image --run RUN")
