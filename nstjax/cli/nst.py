"""``nstjax stylize`` and ``nstjax stylize-batch``: Gatys style transfer from the command line.

The options both commands share are declared once (:data:`STYLE_OPTIONS`) and
turned into a :class:`~nstjax.nst.config.StylizeConfig` by one function
(:func:`config_from_options`). The jobs themselves are
:func:`nstjax.nst.run.stylize_to_file` and :func:`nstjax.nst.batch.stylize_batch`;
this module renders their progress and results.
"""

from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .common import DISTRIBUTED_OPTION, cli_errors, duration, err_console, say, step_columns, with_options

PresetName = Literal["auto", "gatys", "neural-style", "cpu", "fast"]
OptimizerName = Literal["lbfgs", "adam"]
PoolingName = Literal["max", "avg"]
PaddingName = Literal["zero", "reflect", "replicate"]
DtypeName = Literal["float32", "bfloat16"]
RematName = Literal["auto", "none", "conv", "block"]
ConvImplName = Literal["auto", "xla", "gemm", "winograd"]
PreserveColorName = Literal["none", "luminance", "histogram"]
ColorMatchName = Literal["cholesky", "eigen"]
FormatName = Literal["png", "jpg", "jpeg", "tif", "tiff", "webp", "bmp"]

# Options shared by `stylize` and `stylize-batch`, declared once: name -> (annotation, default).
# `None` means "not given": the preset's value stays.
STYLE_OPTIONS: dict[str, tuple[Any, Any]] = {
    "preset": (
        Annotated[
            PresetName,
            typer.Option(help="Starting settings. auto: gatys on a GPU/TPU, cpu (a few minutes) on a CPU."),
        ],
        "auto",
    ),
    "size": (Annotated[Optional[int], typer.Option(help="Longest side of the output in pixels.")], None),
    "steps": (Annotated[Optional[int], typer.Option(help="Optimiser steps (at the final scale).")], None),
    "optimizer": (Annotated[Optional[OptimizerName], typer.Option(help="Optimiser.")], None),
    "lr": (Annotated[Optional[float], typer.Option("--lr", help="Adam learning rate ([0, 1] pixel units).")], None),
    "content_weight": (Annotated[Optional[float], typer.Option(help="Weight of the content loss.")], None),
    "style_weight": (Annotated[Optional[float], typer.Option(help="Weight of the style loss.")], None),
    "tv_weight": (Annotated[Optional[float], typer.Option(help="Weight of the total-variation loss.")], None),
    "content_layers": (
        Annotated[
            Optional[str],
            typer.Option(help="Content layers with optional weights, e.g. relu4_2 or relu4_2:1,relu5_2:0.5."),
        ],
        None,
    ),
    "style_layers": (
        Annotated[
            Optional[str], typer.Option(help="Style layers with optional weights, e.g. relu1_1:1,relu2_1:0.5,relu3_1.")
        ],
        None,
    ),
    "pooling": (Annotated[Optional[PoolingName], typer.Option(help="VGG pooling.")], None),
    "padding": (Annotated[Optional[PaddingName], typer.Option(help="VGG convolution padding.")], None),
    "init": (
        Annotated[Optional[str], typer.Option(help="Start image: content, noise, style, grey, or an image file.")],
        None,
    ),
    "scales": (
        Annotated[
            Optional[str],
            typer.Option(help="Coarse-to-fine: a count (3 = size/4, size/2, size) or sizes, e.g. 256,512."),
        ],
        None,
    ),
    "scale_steps": (
        Annotated[Optional[str], typer.Option(help="Steps at each coarser scale, e.g. 300,200.")],
        None,
    ),
    "seed": (Annotated[Optional[int], typer.Option(help="Random seed (noise init, random weights).")], None),
    "weights": (
        Annotated[
            Optional[str], typer.Option(help="VGG-19/16 weights: auto, random, a name from `nstjax weights list`, or a file.")
        ],
        None,
    ),
    "dtype": (Annotated[Optional[DtypeName], typer.Option(help="Compute dtype.")], None),
    "remat": (Annotated[Optional[RematName], typer.Option(help="Rematerialisation (memory for compute).")], None),
    "conv_impl": (
        Annotated[
            Optional[ConvImplName],
            typer.Option(
                help="How convolutions are computed: xla, gemm (matrix products), winograd (Winograd's F(2x2, 3x3): "
                "2.25x fewer multiply-adds), or auto (per layer, from the device, the CPU's bfloat16 support and "
                "the layer's size). Same result up to float rounding, different speed."
            ),
        ],
        None,
    ),
    "tolerance": (
        Annotated[Optional[float], typer.Option(help="Early-stop relative improvement (0 = off).")],
        None,
    ),
    "style_blend": (Annotated[Optional[str], typer.Option(help="Weights of several styles, e.g. 0.7,0.3.")], None),
    "style_scale": (
        Annotated[Optional[str], typer.Option(help="Style size relative to the output, one value or one per style.")],
        None,
    ),
    "preserve_color": (
        Annotated[Optional[PreserveColorName], typer.Option(help="Keep the content's colours.")],
        None,
    ),
    "color_match": (
        Annotated[Optional[ColorMatchName], typer.Option(help="Histogram matching method.")],
        None,
    ),
    "quality": (Annotated[int, typer.Option(help="JPEG/WebP quality.", min=1, max=100)], 95),
    "quiet": (Annotated[bool, typer.Option("--quiet", "-q", help="No plan or progress bar.")], False),
}

# Options passed to the config unchanged (the rest need parsing).
_CONFIG_FIELDS = (
    "size", "steps", "optimizer", "content_weight", "style_weight", "tv_weight", "pooling", "padding",
    "init", "seed", "dtype", "remat", "conv_impl", "tolerance", "preserve_color", "color_match",
)  # fmt: skip


def config_from_options(options: dict[str, Any], **extra: Any):
    """The :class:`~nstjax.nst.config.StylizeConfig` the options ask for: the preset, then each
    option that was given.

    ``extra`` holds config fields of one command only (``save_every``).
    """
    from ..nst import config as nst_config

    def parsed(name: str, parse, *args):
        return None if options[name] is None else parse(options[name], *args)

    return nst_config.from_flags(
        options["preset"],
        scales=options["scales"],
        scale_steps=options["scale_steps"],
        learning_rate=options["lr"],
        content_layers=parsed("content_layers", nst_config.parse_layer_weights, "content layer"),
        style_layers=parsed("style_layers", nst_config.parse_layer_weights, "style layer"),
        style_blend=parsed("style_blend", nst_config.parse_floats, "--style-blend"),
        style_scale=parsed("style_scale", nst_config.parse_floats, "--style-scale"),
        **{name: options[name] for name in _CONFIG_FIELDS},
        **extra,
    )


# --------------------------------------------------------------------------- rendering


def plan_line(plan) -> str:
    """``stylize 384x256 px, L-BFGS 100 steps … on cpu (2 cores): about 3:40 (estimate)``."""
    c = plan.config
    scales = " → ".join(f"{w}x{h}" for h, w in plan.shapes)
    steps = "+".join(str(s) for s in plan.steps)
    optimizer = "L-BFGS" if c.optimizer == "lbfgs" else f"Adam (lr {c.learning_rate:g})"
    eta = duration(plan.estimate.seconds)
    return (
        f"stylize {scales} px: {optimizer} {steps} steps, {c.dtype}, weights {plan.weights_source}, "
        f"on {plan.device}: about {eta} (estimate, plus compilation on a first run)"
    )


class StepBar:
    """Renders :class:`~nstjax.nst.run.Progress` events: a bar per scale with loss terms and evals/s."""

    def __init__(self, console=err_console):
        self._progress = Progress(*step_columns(), console=console)
        self._tasks: dict[int, Any] = {}

    def __call__(self, p) -> None:
        terms = " ".join(f"{k} {v:.3g}" for k, v in p.terms.items())
        info = f"loss {p.loss:.4g} ({terms}) {p.evals_per_second:.2f} evals/s"
        if p.scale not in self._tasks:
            if not self._tasks:
                self._progress.start()
            label = f"scale {p.scale}/{p.scales} {p.size[1]}x{p.size[0]}" if p.scales > 1 else "step"
            self._tasks[p.scale] = self._progress.add_task(label, total=p.steps, info=info)
        self._progress.update(self._tasks[p.scale], completed=p.step, info=info)

    def close(self) -> None:
        if self._tasks:
            self._progress.stop()
            self._tasks.clear()


def _summary(output: Path, result) -> str:
    h, w = result.image.shape[:2]
    terms = ", ".join(f"{k} {v:.4g}" for k, v in result.terms.items())
    return (
        f"wrote {output} ({w}x{h}) in {result.seconds:.1f} s: loss {result.loss:.5g} ({terms}); "
        f"{result.steps} steps, {result.evaluations} evaluations, stopped: {result.stopped}, "
        f"weights: {result.weights_source}"
    )


# --------------------------------------------------------------------------- commands


@with_options(STYLE_OPTIONS)
def stylize(
    content: Annotated[Path, typer.Argument(help="Content photo.", show_default=False)],
    styles: Annotated[list[Path], typer.Argument(help="One or more style images.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image (.png, .jpg, .tif, .webp).")],
    save_every: Annotated[
        Optional[int], typer.Option(help="Save the best image every N steps (OUT_stepN).")
    ] = None,
    content_mask: Annotated[
        Optional[Path], typer.Option(help="Colour-coded segmentation of the content (semantic control).")
    ] = None,
    style_mask: Annotated[
        Optional[list[Path]],
        typer.Option(help="Per style: its segmentation (with --content-mask) or a grayscale mask of the content."),
    ] = None,
    region_styles: Annotated[
        Optional[str], typer.Option(help="Which style each region takes, e.g. '#87ceeb:0,#228b22:1'.")
    ] = None,
    allow_unmatched: Annotated[
        bool, typer.Option(help="Content regions missing from every style mask get no style loss instead of an error.")
    ] = False,
    **options: Any,
) -> None:
    """Stylise CONTENT with one or more STYLE images and write the result to OUTPUT."""
    from ..io.images import check_output_path
    from ..nst.run import StylizeInterrupted, stylize_to_file

    quiet = options["quiet"]
    bar = None if quiet else StepBar()
    with cli_errors():
        output = check_output_path(output)  # before any work: a bad path must not cost a long run
        config = config_from_options(options, save_every=save_every)
        try:
            result = stylize_to_file(
                content,
                styles,
                output,
                config=config,
                weights=options["weights"],
                content_mask=content_mask,
                style_masks=style_mask,
                region_styles=region_styles,
                allow_unmatched=allow_unmatched,
                quality=options["quality"],
                progress=bar,
                on_start=None if quiet else lambda plan: say(plan_line(plan)),
            )
        except StylizeInterrupted as interrupted:
            if bar is not None:
                bar.close()  # the bar's last line stays above the message
            say(f"interrupted after {interrupted.result.steps} steps: saved the best image so far to {output}")
            raise typer.Exit(130) from None
        finally:
            if bar is not None:
                bar.close()
    if result.stopped == "nonfinite":
        say(
            f"error: the loss became NaN or infinite after {result.steps} steps (try smaller weights or "
            f"learning rate); saved the last finite image to {output}"
        )
        raise typer.Exit(1)
    typer.echo(_summary(output, result))


class BatchBar:
    """Renders :class:`~nstjax.nst.batch.BatchProgress` events: images done, images/s, ETA, batch step."""

    def __init__(self, console=err_console):
        self._progress = Progress(
            TextColumn("images"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self._task = None

    def __call__(self, p) -> None:
        extra = ", ".join(s for s in (f"{p.skipped} skipped" if p.skipped else "", f"{p.failed} failed" if p.failed else "") if s)
        scale = f" scale {p.scale}/{p.scales}" if p.scales > 1 else ""
        info = (
            f"{f'({extra}) ' if extra else ''}{p.images_per_second:.2f} img/s | batch {p.batch}/{p.batches} "
            f"{p.bucket[1]}x{p.bucket[0]}{scale} step {p.step}/{p.steps}"
        )
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task("images", total=p.total, info=info)
        self._progress.update(self._task, completed=p.done, total=p.total, info=info)

    def log(self, message: str) -> None:
        self._progress.console.print(f"error: {message}", soft_wrap=True, markup=False, highlight=False)

    def close(self) -> None:
        if self._task is not None:
            self._progress.stop()
            self._task = None


@with_options(STYLE_OPTIONS)
def stylize_batch(
    inputs: Annotated[str, typer.Argument(help="A directory or a glob of content images.", show_default=False)],
    styles: Annotated[list[Path], typer.Argument(help="One or more style images.", show_default=False)],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where outputs and manifest.jsonl go.")],
    batch_size: Annotated[
        Optional[int], typer.Option(help="Images per compiled batch (rounded up to the device count).")
    ] = None,
    bucket_multiple: Annotated[
        int, typer.Option(help="Round the short side to a multiple of this so near aspects share a program.")
    ] = 0,
    format: Annotated[FormatName, typer.Option(help="Output format.")] = "png",
    distributed: DISTRIBUTED_OPTION = None,
    **options: Any,
) -> None:
    """Stylise every image in INPUTS with STYLE(s): batched, sharded over devices, resumable.

    Exit status: 0 when every image is done, 1 when any failed (the others are
    written), 130 on Ctrl-C (rerun the same command to resume).
    """
    from ..nst.batch import stylize_batch as run_batch

    quiet = options["quiet"]
    bar = BatchBar()
    with cli_errors():
        config = config_from_options(options)
        try:
            report = run_batch(
                inputs,
                styles,
                output_dir,
                config=config,
                weights=options["weights"],
                batch_size=batch_size,
                bucket_multiple=bucket_multiple,
                format=format,
                quality=options["quality"],
                distributed=distributed,
                progress=None if quiet else bar,
                log=bar.log,
            )
        except KeyboardInterrupt:
            bar.close()
            say(f"interrupted: finished batches are saved in {output_dir}; rerun the same command to resume")
            raise typer.Exit(130) from None
        finally:
            bar.close()
    parts = [f"wrote {len(report.written)} images to {report.out_dir} in {report.seconds:.1f} s"]
    if report.skipped:
        parts.append(f"{len(report.skipped)} already done")
    if report.failed:
        parts.append(f"{len(report.failed)} failed")
    typer.echo("; ".join(parts) + f"; manifest: {report.manifest}")
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``stylize`` and ``stylize-batch`` to the top-level app."""
    app.command("stylize")(stylize)
    app.command("stylize-batch")(stylize_batch)

