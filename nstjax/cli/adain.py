"""``nstjax adain train|apply``: arbitrary style transfer with adaptive instance normalisation.

The jobs are :func:`nstjax.adain.train.train_adain` and
:func:`nstjax.adain.apply.apply_adain`; the options are generated from
:mod:`nstjax.adain.settings` (the media ones are ``fast apply``'s), the progress bar
is ``fast apply``'s (:mod:`nstjax.cli.fast`).
"""

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer

from ..adain.settings import ADAIN_APPLY_SETTINGS, ADAIN_TRAIN_SETTINGS
from .common import TRAIN_OPTIONS, TrainBar, cli_errors, new_typer, options_from, say, train_settings_from_options
from .common import training_job, with_options
from .fast import MediaBar, report_results

__all__ = ["app"]

app = new_typer("AdaIN (Huang & Belongie): one trained decoder, any style image, in real time.")

# `adain train`'s own options, then the shared training options with its batch size (8, the reference's) in place.
_TRAIN = options_from(ADAIN_TRAIN_SETTINGS)
ADAIN_OPTIONS = {name: option for name, option in _TRAIN.items() if name not in TRAIN_OPTIONS}
ADAIN_TRAIN_OPTIONS = {name: _TRAIN.get(name, option) for name, option in TRAIN_OPTIONS.items()}


@app.command("train")
@with_options(ADAIN_OPTIONS, ADAIN_TRAIN_OPTIONS)
def train_command(
    content: Annotated[Path, typer.Option(help="Folder of content photos (e.g. COCO 2014 train).", show_default=False)],
    styles: Annotated[Path, typer.Option(help="Folder of style images (e.g. WikiArt).", show_default=False)],
    **options: Any,
) -> None:
    """Train a decoder on CONTENT photos and STYLES paintings (default 160000 steps of 8, as the reference)."""
    from ..adain.config import AdaINConfig
    from ..adain.train import train_adain

    o = options
    with training_job(o["run"], resume=o["resume"], quiet=o["quiet"]):
        settings = train_settings_from_options(o, steps=160_000, decay_fraction=0.0)
        config = AdaINConfig(size=o["size"], load_size=o["load_size"], content_weight=o["content_weight"],
                             style_weight=o["style_weight"], learning_rate=o["lr"], lr_decay=o["lr_decay"],
                             dtype=o["dtype"], encoder=o["encoder"])
        with TrainBar("adain train") if not o["quiet"] else contextlib.nullcontext() as bar:
            result = train_adain(content, styles, o["run"], config=config, settings=settings, weights=o["weights"],
                                 resume=o["resume"], progress=bar, distributed=o["distributed"])
    losses = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if k != "steps_per_second")
    say(f"trained {result.step} steps ({losses}); VGG weights: {result.vgg_source}")
    typer.echo(str(result.run_dir))  # the run directory, as every `… train` prints (apply takes it)


@app.command("apply")
@with_options(options_from(ADAIN_APPLY_SETTINGS))
def apply_command(
    run: Annotated[Path, typer.Argument(help="An `adain train` run directory (or its export/).", show_default=False)],
    content: Annotated[Path, typer.Argument(help="Content image, folder, or video (.mp4, .webm, .gif).",
                                            show_default=False)],
    styles: Annotated[list[Path], typer.Argument(help="One or more style images.", show_default=False)],
    **options: Any,
) -> None:
    """Stylise CONTENT with any STYLE images (blended when several); prints each output."""
    from ..adain.apply import apply_adain
    from ..nst.config import parse_floats

    o = options
    with cli_errors(), (MediaBar() if not o["quiet"] else contextlib.nullcontext()) as bar:
        blend = None if o["style_blend"] is None else parse_floats(o["style_blend"], "--style-blend")
        results = apply_adain(
            run, [content], styles, o["output"], alpha=o["alpha"], blend=blend, preserve_color=o["preserve_color"],
            style_size=o["style_size"] or None, size=o["size"] or None, batch_size=o["batch_size"],
            blend_frames=o["blend"], motion=o["motion"], quality=o["quality"], video_quality=o["crf"],
            dtype=o["dtype"], weights=o["weights"], progress=bar,
        )  # fmt: skip
    report_results(results)
