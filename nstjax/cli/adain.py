"""``nstjax adain train|apply``: arbitrary style transfer with adaptive instance normalisation.

The jobs are :func:`nstjax.adain.train.train_adain` and
:func:`nstjax.adain.apply.apply_adain`; the apply options and progress bar are
those of ``fast apply`` (:mod:`nstjax.cli.fast`).
"""

import contextlib
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from .common import TRAIN_OPTIONS, TrainBar, cli_errors, new_typer, say, train_settings_from_options, training_job
from .common import with_options
from .fast import APPLY_OPTIONS, MediaBar, report_results

__all__ = ["app"]

app = new_typer("AdaIN (Huang & Belongie): one trained decoder, any style image, in real time.")

DtypeName = Literal["float32", "bfloat16"]

# `adain train` trains with batches of 8 (the reference's) unless told otherwise.
ADAIN_TRAIN_OPTIONS = {
    **TRAIN_OPTIONS,
    "batch_size": (Annotated[int, typer.Option(help="Global batch size (a multiple of the device count).")], 8),
}

# AdaIN works at 512 px unless told otherwise (the reference's content and style size).
ADAIN_APPLY_OPTIONS = {
    **APPLY_OPTIONS,
    "size": (
        Annotated[Optional[int], typer.Option(help="Longest side contents (images, frames) are resized to; 0 keeps "
                                                   "their size.", min=0)],
        512,
    ),
}


@app.command("train")
@with_options(ADAIN_TRAIN_OPTIONS)
def train_command(
    content: Annotated[Path, typer.Option(help="Folder of content photos (e.g. COCO 2014 train).", show_default=False)],
    styles: Annotated[Path, typer.Option(help="Folder of style images (e.g. WikiArt).", show_default=False)],
    size: Annotated[int, typer.Option(help="Side of the square training crops (a multiple of 8).", min=16)] = 256,
    load_size: Annotated[int, typer.Option(help="Short side images are resized to before cropping.", min=16)] = 512,
    content_weight: Annotated[float, typer.Option(help="Weight of the content loss.", min=0.0)] = 1.0,
    style_weight: Annotated[float, typer.Option(help="Weight of the style loss (the paper's lambda).", min=0.0)] = 10.0,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (decays as lr / (1 + decay * step)).",
                                      min=0.0)] = 1e-4,
    lr_decay: Annotated[float, typer.Option(help="Learning-rate decay per step.", min=0.0)] = 5e-5,
    dtype: Annotated[DtypeName, typer.Option(help="Compute dtype.")] = "float32",
    weights: Annotated[
        Optional[str],
        typer.Option(help="VGG-19/16 weights of the encoder: auto, random, a name (nstjax weights list), a file."),
    ] = None,
    **options: Any,
) -> None:
    """Train a decoder on CONTENT photos and STYLES paintings (default 160000 steps of 8, as the reference)."""
    from ..adain.config import AdaINConfig
    from ..adain.train import train_adain

    with training_job(options["run"]):
        settings = train_settings_from_options(options, steps=160_000, decay_fraction=0.0)
        config = AdaINConfig(size=size, load_size=load_size, content_weight=content_weight, style_weight=style_weight,
                             learning_rate=lr, lr_decay=lr_decay, dtype=dtype)
        with TrainBar("adain train") if not options["quiet"] else contextlib.nullcontext() as bar:
            result = train_adain(content, styles, options["run"], config=config, settings=settings, weights=weights,
                                 resume=options["resume"], progress=bar,
                                 distributed=options["distributed"])
    losses = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if k != "steps_per_second")
    say(f"trained {result.step} steps ({losses}); VGG weights: {result.vgg_source}")
    typer.echo(str(result.run_dir / "export"))


@app.command("apply")
@with_options(ADAIN_APPLY_OPTIONS)
def apply_command(
    run: Annotated[Path, typer.Argument(help="An `adain train` run directory (or its export/).", show_default=False)],
    content: Annotated[Path, typer.Argument(help="Content image, folder, or video (.mp4, .webm, .gif).",
                                            show_default=False)],
    styles: Annotated[list[Path], typer.Argument(help="One or more style images.", show_default=False)],
    alpha: Annotated[float, typer.Option(help="Style strength: 0 gives the content back, 1 full style.", min=0.0,
                                         max=1.0)] = 1.0,
    style_blend: Annotated[Optional[str], typer.Option(help="Weights of several styles, e.g. 0.7,0.3.")] = None,
    preserve_color: Annotated[bool, typer.Option("--preserve-color", help="Keep the content's colours.")] = False,
    style_size: Annotated[int, typer.Option(help="Longest side of the style images; 0 keeps their size.", min=0)] = 512,
    weights: Annotated[
        Optional[str], typer.Option(help="VGG-19 weights (default: those the decoder was trained on).")
    ] = None,
    **options: Any,
) -> None:
    """Stylise CONTENT with any STYLE images (blended when several); prints each output."""
    from ..adain.apply import apply_adain
    from ..nst.config import parse_floats

    with cli_errors(), (MediaBar() if not options["quiet"] else contextlib.nullcontext()) as bar:
        blend = None if style_blend is None else parse_floats(style_blend, "--style-blend")
        results = apply_adain(
            run, [content], styles, options["output"], alpha=alpha, blend=blend, preserve_color=preserve_color,
            style_size=style_size or None, size=options["size"] or None, batch_size=options["batch_size"],
            blend_frames=options["blend"], motion=options["motion"], quality=options["quality"],
            video_quality=options["crf"], dtype=options["dtype"], weights=weights, progress=bar,
        )  # fmt: skip
    report_results(results)
