"""``nstjax fast train|apply|import-torch``: feed-forward style networks (Johnson et al. 2016).

The jobs are :func:`nstjax.fast.train.train_fast` and :func:`nstjax.fast.apply.apply_fast`;
this module parses options and renders their progress. The options that
``fast apply`` and ``adain apply`` share (size, batch, video flicker, quality)
are declared once here (:data:`APPLY_OPTIONS`), as is the progress bar over
files and frames (:class:`MediaBar`) and the summary of a result
(:func:`result_line`).
"""

import contextlib
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from .common import TRAIN_OPTIONS, TrainBar, cli_errors, new_typer, say, train_settings_from_options
from .common import training_job, with_options
from .progress import Bars, Row

__all__ = ["APPLY_OPTIONS", "MediaBar", "app", "report_results", "result_line"]

app = new_typer("Feed-forward style networks (Johnson et al.): train one per style, then stylise in milliseconds.")

OutputName = Literal["linear", "tanh"]
PoolingName = Literal["max", "avg"]
DtypeName = Literal["float32", "bfloat16"]

# `fast train` trains with batches of 4 (the paper's) unless told otherwise.
FAST_TRAIN_OPTIONS = {
    **TRAIN_OPTIONS,
    "batch_size": (Annotated[int, typer.Option(help="Global batch size (a multiple of the device count).")], 4),
}

# Options of `fast apply` and `adain apply`, declared once: name -> (annotation, default).
APPLY_OPTIONS: dict[str, tuple[Any, Any]] = {
    "output": (
        Annotated[Path, typer.Option("--output", "-o", help="Output file, or a folder for several inputs.")],
        ...,
    ),
    "size": (
        Annotated[
            Optional[int], typer.Option(help="Resize inputs (images and frames) to this longest side first.", min=16)
        ],
        None,
    ),
    "batch_size": (Annotated[int, typer.Option(help="Video frames stylised at a time.", min=1)], 4),
    "blend": (
        Annotated[
            float,
            typer.Option(help="Video: temporal blending of still regions with the previous frame, 0 (off) to <1; "
                              "lowers flicker, adds ghosting.", min=0.0, max=0.99),
        ],
        0.0,
    ),
    "motion": (
        Annotated[float, typer.Option(help="Video: input change (0-1) above which a pixel is not blended.", min=0.001)],
        0.1,
    ),
    "quality": (Annotated[int, typer.Option(help="JPEG/WebP quality of images.", min=1, max=100)], 95),
    "crf": (Annotated[int, typer.Option(help="Video quality: H.264 CRF (lower is better; VP9 adds 13).", min=0,
                                        max=50)], 18),
    "dtype": (Annotated[DtypeName, typer.Option(help="Compute dtype.")], "float32"),
    "quiet": (Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")], False),
}


class MediaBar(Bars):
    """Renders :class:`~nstjax.io.media.MediaProgress`: one bar per file, counting frames."""

    def row(self, p) -> Row:
        return Row(p.index, f"[{p.index}/{p.count}] {p.source.name}", p.done, p.total, "frames")


def result_line(result) -> str:
    """One line for a written output: path, size, time; frames, rate and flicker for videos."""
    h, w = result.shape
    line = f"{result.job.dest} ({w}x{h}, {result.seconds:.2f} s)"
    v = result.video
    if v is not None:
        flicker = "n/a (still input)" if v.flicker is None else f"{v.flicker:.2f}"
        line += (
            f": {v.frames} frames at {v.fps:.3g} fps ({v.frames / max(result.seconds, 1e-9):.2f} frames/s); "
            f"flicker {flicker} (output change {v.output_change:.4f} / input change {v.input_change:.4f} per frame)"
        )
        if v.lag:
            line += f", blend lag {v.lag:.4f}"
    return line


def report_results(results) -> None:
    for result in results:
        typer.echo(result_line(result))
        if result.video is not None and result.video.audio_dropped:
            say(f"note: {result.job.dest} has no audio (the input's audio track was dropped)")


# --------------------------------------------------------------------------- commands


@app.command("train")
@with_options(FAST_TRAIN_OPTIONS)
def train_command(
    style: Annotated[Path, typer.Option(help="The style image.", show_default=False)],
    data: Annotated[Path, typer.Option(help="Folder of content photos (e.g. COCO 2014 train).", show_default=False)],
    size: Annotated[int, typer.Option(help="Side of the square training crops.", min=16)] = 256,
    style_size: Annotated[Optional[int], typer.Option(help="Longest side of the style image (default: --size).",
                                                      min=16)] = None,
    content_weight: Annotated[float, typer.Option(help="Weight of the content (feature) loss.", min=0.0)] = 1.0,
    style_weight: Annotated[
        Optional[float], typer.Option(help="Weight of the style loss (default by weights: 120 keras, 4e5 others).",
                                      min=0.0)
    ] = None,
    tv_weight: Annotated[float, typer.Option(help="Weight of the total-variation loss.", min=0.0)] = 0.0,
    content_layer: Annotated[str, typer.Option(help="VGG layer of the content loss.")] = "relu2_2",
    style_layers: Annotated[
        Optional[str], typer.Option(help="Style layers with optional weights (default relu1_1,…,relu5_1).")
    ] = None,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (constant).", min=0.0)] = 1e-3,
    output: Annotated[
        OutputName, typer.Option(help="Last layer: linear (PyTorch example) or tanh (paper).")
    ] = "linear",
    pooling: Annotated[PoolingName, typer.Option(help="Pooling of the loss network.")] = "max",
    dtype: Annotated[DtypeName, typer.Option(help="Compute dtype.")] = "float32",
    weights: Annotated[
        Optional[str], typer.Option(help="VGG-19/16 weights of the loss: auto, random, a name (nstjax weights list), a file.")
    ] = None,
    **options: Any,
) -> None:
    """Train a network for one STYLE on the photos in DATA (default 2 epochs, batches of 4, 256 px)."""
    from ..fast.config import FastConfig
    from ..fast.train import train_fast
    from ..nst.config import parse_layer_weights

    with training_job(options["run"]):
        settings = train_settings_from_options(options, epochs=2, decay_fraction=0.0)
        config = FastConfig(
            size=size, style_size=style_size, content_weight=content_weight, style_weight=style_weight,
            tv_weight=tv_weight, content_layer=content_layer, learning_rate=lr, output=output, pooling=pooling,
            dtype=dtype,
            **({} if style_layers is None else {"style_layers": parse_layer_weights(style_layers, "style layer")}),
        )  # fmt: skip
        with TrainBar("fast train") if not options["quiet"] else contextlib.nullcontext() as bar:
            result = train_fast(style, data, options["run"], config=config, settings=settings, weights=weights,
                                resume=options["resume"], progress=bar, distributed=options["distributed"])
    losses = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if k != "steps_per_second")
    say(f"trained {result.step} steps ({losses}); VGG weights: {result.vgg_source}")
    typer.echo(str(result.run_dir / "export"))


@app.command("apply")
@with_options(APPLY_OPTIONS)
def apply_command(
    run: Annotated[Path, typer.Argument(help="A `fast train` run directory (or its export/).", show_default=False)],
    inputs: Annotated[list[Path], typer.Argument(help="Images, folders of images, or videos (.mp4, .webm, .gif).",
                                                 show_default=False)],
    **options: Any,
) -> None:
    """Stylise images, folders and videos with a trained network; prints each output (and a video's flicker)."""
    from ..fast.apply import apply_fast

    with cli_errors(), (MediaBar() if not options["quiet"] else contextlib.nullcontext()) as bar:
        results = apply_fast(
            run, inputs, options["output"], size=options["size"], batch_size=options["batch_size"],
            blend=options["blend"], motion=options["motion"], quality=options["quality"],
            video_quality=options["crf"], dtype=options["dtype"], progress=bar,
        )  # fmt: skip
    report_results(results)


@app.command("import-torch")
def import_torch_command(
    checkpoint: Annotated[Path, typer.Argument(help="A PyTorch fast_neural_style checkpoint (.pth / .model).",
                                               show_default=False)],
    run: Annotated[Path, typer.Option("--run", help="New run directory to hold the converted network.")],
    name: Annotated[Optional[str], typer.Option(help="Style name to record (default: the file's stem).")] = None,
) -> None:
    """Convert a PyTorch example network (e.g. its published mosaic.pth) for `nstjax fast apply`."""
    from ..fast.apply import import_torch_model

    with cli_errors():
        export = import_torch_model(checkpoint, run, name=name)
    typer.echo(str(export))
