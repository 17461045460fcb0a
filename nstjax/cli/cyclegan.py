"""``nstjax cyclegan train|translate``: unpaired image-to-image translation (:mod:`nstjax.cyclegan`)."""

from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from .common import TRAIN_OPTIONS, TrainBar, cli_errors, new_typer, say, train_settings_from_options, training_job, with_options
from .progress import CountBar

app = new_typer("CycleGAN: learn to translate between two image folders without pairs (photo <-> painting).")

GeneratorName = Literal["resnet", "unet"]
UpsampleName = Literal["transpose", "resize"]
DtypeName = Literal["float32", "bfloat16"]
DirectionName = Literal["a2b", "b2a"]


@app.command("train")
@with_options(TRAIN_OPTIONS)
def train_command(
    dir_a: Annotated[Path, typer.Argument(help="Folder of domain A images (e.g. photos).")],
    dir_b: Annotated[Path, typer.Argument(help="Folder of domain B images (e.g. paintings).")],
    size: Annotated[int, typer.Option(help="Side of the square training crops in pixels.")] = 256,
    generator: Annotated[GeneratorName, typer.Option(help="Generator: resnet (the paper's) or unet (GDL_code's).")] = "resnet",
    ngf: Annotated[int, typer.Option(help="Channels of the generators' first layer.")] = 64,
    ndf: Annotated[int, typer.Option(help="Channels of the discriminators' first layer.")] = 64,
    blocks: Annotated[int, typer.Option(help="Residual blocks of the resnet generator (9 at 256 px, 6 at 128 px).")] = 9,
    upsample: Annotated[
        Optional[UpsampleName],
        typer.Option(help="Upsampling: transpose (default for resnet) or resize (nearest + conv; default for unet)."),
    ] = None,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (then linear decay to 0 over the second half).")] = 2e-4,
    lambda_cycle: Annotated[float, typer.Option(help="Weight of the cycle-consistency L1 losses.")] = 10.0,
    lambda_identity: Annotated[float, typer.Option(help="Identity L1 weight, as a fraction of --lambda-cycle.")] = 0.5,
    pool_size: Annotated[int, typer.Option(help="Fake images kept for the discriminators (0 = no pool).")] = 50,
    dtype: Annotated[DtypeName, typer.Option(help="Compute dtype (bfloat16: GPUs/TPUs).")] = "float32",
    **options: Any,
) -> None:
    """Train a CycleGAN between DIR_A and DIR_B into --run (default length: the paper's 200 epochs).

    Prints the run directory; the trained generators are in RUN/export (use `nstjax cyclegan translate`).
    """
    from ..cyclegan import CycleGANConfig, LossConfig, ModelConfig, OptimConfig, train

    run_dir: Path = options["run"]
    with training_job(run_dir), TrainBar("cyclegan") as bar:
        config = CycleGANConfig(
            model=ModelConfig(generator=generator, ngf=ngf, ndf=ndf, blocks=blocks, upsample=upsample, size=size),
            loss=LossConfig(lambda_cycle=lambda_cycle, lambda_identity=lambda_identity, pool_size=pool_size),
            optim=OptimConfig(lr=lr),
            train=train_settings_from_options(options, epochs=200),
            dtype=dtype,
        )
        train(dir_a, dir_b, run_dir, config, resume=options["resume"], progress=None if options["quiet"] else bar,
              distributed=options["distributed"])
    typer.echo(str(run_dir.expanduser().resolve()))


@app.command("translate")
def translate_command(
    run_dir: Annotated[Path, typer.Argument(help="A CycleGAN run directory (or its export/ folder).")],
    inputs: Annotated[list[Path], typer.Argument(help="Image files and/or folders of images.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder (one <name>.png per input).")],
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
