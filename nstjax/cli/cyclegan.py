"""``nstjax cyclegan train|translate``: unpaired image-to-image translation (:mod:`nstjax.cyclegan`)."""

from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from ..cyclegan.settings import CYCLEGAN_TRAIN_SETTINGS
from .common import TRAIN_OPTIONS, TrainBar, cli_errors, new_typer, options_from, say, train_settings_from_options
from .common import training_job, with_options
from .progress import CountBar

app = new_typer("CycleGAN: learn to translate between two image folders without pairs (photo <-> painting).")

DirectionName = Literal["a2b", "b2a"]


@app.command("train")
@with_options(options_from(CYCLEGAN_TRAIN_SETTINGS), TRAIN_OPTIONS)
def train_command(
    dir_a: Annotated[Path, typer.Argument(help="Folder of domain A images (e.g. photos).")],
    dir_b: Annotated[Path, typer.Argument(help="Folder of domain B images (e.g. paintings).")],
    **options: Any,
) -> None:
    """Train a CycleGAN between DIR_A and DIR_B into --run (default length: the paper's 200 epochs).

    Prints the run directory; the trained generators are in RUN/export (use `nstjax cyclegan translate`).
    """
    from ..cyclegan import CycleGANConfig, LossConfig, ModelConfig, OptimConfig, train

    o = options
    run_dir: Path = o["run"]
    with training_job(run_dir, resume=o["resume"], quiet=o["quiet"]), TrainBar("cyclegan") as bar:
        config = CycleGANConfig(
            model=ModelConfig(generator=o["generator"], ngf=o["ngf"], ndf=o["ndf"], blocks=o["blocks"],
                              upsample=o["upsample"], size=o["size"]),
            loss=LossConfig(lambda_cycle=o["lambda_cycle"], lambda_identity=o["lambda_identity"],
                            pool_size=o["pool_size"]),
            optim=OptimConfig(lr=o["lr"]),
            train=train_settings_from_options(o, epochs=200),
            dtype=o["dtype"],
        )  # fmt: skip
        train(dir_a, dir_b, run_dir, config, resume=o["resume"], progress=None if o["quiet"] else bar,
              distributed=o["distributed"])
    typer.echo(str(run_dir.expanduser().resolve()))


@app.command("translate")
def translate_command(
    run_dir: Annotated[Path, typer.Argument(help="A CycleGAN run directory (or its export/ folder).")],
    inputs: Annotated[list[Path], typer.Argument(help="Image files and/or folders of images.")],
    out: Annotated[Path, typer.Option("-o", "--output", "--out", help="Output file for one input image, else a folder (one <name>.png per input).")],
    direction: Annotated[DirectionName, typer.Option(help="a2b: domain A to B (G_AB); b2a: B to A.")] = "a2b",
    size: Annotated[Optional[int], typer.Option(help="Resize each input so its longest side is this first.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Translate images of any size with a trained CycleGAN; print each output path."""
    from ..cyclegan import translate

    with cli_errors(), CountBar("translate") as bar:
        written = translate(run_dir, inputs, out, direction=direction, size=size, progress=None if quiet else bar)
    for path in written:
        typer.echo(str(path))
    if not quiet:
        say(f"translated {len(written)} images ({direction}) into {out}")
