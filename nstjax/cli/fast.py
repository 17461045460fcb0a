"""``nstjax fast train|apply|import-torch``: feed-forward style networks (Johnson et al. 2016).

The jobs are :func:`nstjax.fast.train.train_fast` and :func:`nstjax.fast.apply.apply_fast`;
this module parses options and renders their progress. Its options are generated
from :mod:`nstjax.fast.settings`; those ``fast apply`` and ``adain apply`` share
(size, batch, video flicker, quality) are :data:`APPLY_OPTIONS`. The progress bar
over files and frames (:class:`MediaBar`) and the summary of a result
(:func:`result_line`) are shared here too.
"""

import contextlib
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..fast.settings import FAST_TRAIN_SETTINGS, MEDIA_APPLY_SETTINGS
from .common import TRAIN_OPTIONS, TrainBar, cli_errors, new_typer, options_from, say, train_settings_from_options
from .common import training_job, with_options
from .progress import Bars, Row

__all__ = ["APPLY_OPTIONS", "MediaBar", "app", "report_results", "result_line"]

app = new_typer("Feed-forward style networks (Johnson et al.): train one per style, then stylise in milliseconds.")

# `fast train`'s own options, then the shared training options with its batch size (4, the paper's) in place.
_TRAIN = options_from(FAST_TRAIN_SETTINGS)
FAST_OPTIONS = {name: option for name, option in _TRAIN.items() if name not in TRAIN_OPTIONS}
FAST_TRAIN_OPTIONS = {name: _TRAIN.get(name, option) for name, option in TRAIN_OPTIONS.items()}

# Options of `fast apply` and `adain apply`, generated from nstjax.fast.settings: name -> (annotation, default).
APPLY_OPTIONS: dict[str, tuple[Any, Any]] = options_from(MEDIA_APPLY_SETTINGS)


class MediaBar(Bars):
    """Renders :class:`~nstjax.io.media.MediaProgress`: one bar per file, counting a video's frames
    (``1/1 image`` for a still image)."""

    def row(self, p) -> Row:
        from ..io.media import is_video

        return Row(p.index, f"[{p.index}/{p.count}] {p.source.name}", p.done, p.total,
                   "frames" if is_video(p.source) else "image")  # fmt: skip


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
@with_options(FAST_OPTIONS, FAST_TRAIN_OPTIONS)
def train_command(
    style: Annotated[Path, typer.Option(help="The style image.", show_default=False)],
    data: Annotated[Path, typer.Option(help="Folder of content photos (e.g. COCO 2014 train).", show_default=False)],
    **options: Any,
) -> None:
    """Train a network for one STYLE on the photos in DATA (default 2 epochs, batches of 4, 256 px)."""
    from ..fast.config import FastConfig
    from ..fast.train import train_fast
    from ..nst.config import parse_layer_weights

    o = options
    with training_job(o["run"], resume=o["resume"], quiet=o["quiet"]):
        settings = train_settings_from_options(o, epochs=2, decay_fraction=0.0)
        style_layers = o["style_layers"]
        config = FastConfig(
            size=o["size"], style_size=o["style_size"], content_weight=o["content_weight"],
            style_weight=o["style_weight"], tv_weight=o["tv_weight"], content_layer=o["content_layer"],
            learning_rate=o["lr"], output=o["output"], pooling=o["pooling"], dtype=o["dtype"],
            **({} if style_layers is None else {"style_layers": parse_layer_weights(style_layers, "style layer")}),
        )  # fmt: skip
        with TrainBar("fast train") if not o["quiet"] else contextlib.nullcontext() as bar:
            result = train_fast(style, data, o["run"], config=config, settings=settings, weights=o["weights"],
                                resume=o["resume"], progress=bar, distributed=o["distributed"])
    losses = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if k != "steps_per_second")
    say(f"trained {result.step} steps ({losses}); VGG weights: {result.vgg_source}")
    typer.echo(str(result.run_dir))  # the run directory, as every `… train` prints (apply takes it)


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
