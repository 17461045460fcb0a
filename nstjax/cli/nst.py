"""``nstjax stylize`` and ``nstjax stylize-batch``: Gatys style transfer from the command line.

The options both commands share are generated from the settings declared once in
:mod:`nstjax.nst.settings` (:data:`STYLE_OPTIONS`) and turned into a
:class:`~nstjax.nst.config.StylizeConfig` by one function (:func:`config_from_options`). The jobs themselves are
:func:`nstjax.nst.run.stylize_to_file` and :func:`nstjax.nst.batch.stylize_batch`;
this module renders their progress and results.
"""

from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from ..nst.settings import STYLIZE_SETTINGS, config_from_settings
from .common import (
    DISTRIBUTED_OPTION,
    cli_errors,
    estimate_text,
    options_from,
    say,
    with_options,
)
from .progress import COMPILING, Bars, Row

FormatName = Literal["png", "jpg", "jpeg", "tif", "tiff", "webp", "bmp"]

# Options shared by `stylize` and `stylize-batch`, generated from the settings declared once in
# nstjax.nst.settings (the web page's form reads the same table): name -> (annotation, default).
STYLE_OPTIONS: dict[str, tuple[Any, Any]] = options_from(STYLIZE_SETTINGS)


def config_from_options(options: dict[str, Any], **extra: Any):
    """The :class:`~nstjax.nst.config.StylizeConfig` the options ask for: the preset, then each
    option that was given (:func:`nstjax.nst.settings.config_from_settings`).

    ``extra`` holds config fields of one command only (``save_every``).
    """
    return config_from_settings(options, **extra)


# --------------------------------------------------------------------------- rendering


def plan_line(plan) -> str:
    """``stylize 96x72 → 192x144 px: L-BFGS 100+100 steps … on cpu (2 cores): about 3:40 + 2 compilations ~0:24 (estimate)``."""
    c = plan.config
    scales = " → ".join(f"{w}x{h}" for h, w in plan.shapes)
    steps = "+".join(str(s) for s in plan.steps)
    optimizer = "L-BFGS" if c.optimizer == "lbfgs" else f"Adam (lr {c.learning_rate:g})"
    return (
        f"stylize {scales} px: {optimizer} {steps} steps, {c.dtype}, weights {plan.weights_source}, "
        f"on {plan.device}: {estimate_text(plan.estimate.seconds, len(plan.shapes), plan.estimate.compile_total)}"
    )


class StepBar(Bars):
    """Renders :class:`~nstjax.nst.run.Progress` events: a bar per scale with loss terms and evals/s.

    Given the :class:`~nstjax.nst.run.RunPlan` (:meth:`start`), it prints the plan line and shows each
    scale's bar as compiling until its first steps are done. The ETA is the run's (every later scale at
    its own cost).
    """

    plan = None

    def start(self, plan) -> None:
        """Print ``plan``'s line and show the first scale compiling."""
        self.plan = plan
        self.note(plan_line(plan))
        self._compiling(1, plan.estimate.seconds + plan.estimate.compile_total)

    def _label(self, scale: int, scales: int, size) -> str:
        return f"scale {scale}/{scales} {size[1]}x{size[0]}" if scales > 1 else "step"

    def _compiling(self, scale: int, eta: float | None = None) -> None:
        plan = self.plan
        if plan is None or self.quiet or scale > len(plan.shapes):
            return
        label = self._label(scale, len(plan.shapes), plan.shapes[scale - 1])
        self.show(Row(scale, label, 0, plan.steps[scale - 1], COMPILING, eta))

    def row(self, p) -> Row:
        terms = " ".join(f"{k} {v:.3g}" for k, v in p.terms.items())
        label = self._label(p.scale, p.scales, p.size)
        info = f"loss {p.loss:.4g} ({terms}) {p.evals_per_second:.2f} evals/s"
        return Row(p.scale, label, p.step, p.steps, info, getattr(p, "eta", None))

    def __call__(self, p) -> None:
        super().__call__(p)
        if p.step >= p.steps and p.scale < p.scales:  # the next scale compiles its own programs
            self._compiling(p.scale + 1, getattr(p, "eta", None))


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
                on_start=None if quiet else bar.start,
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


def batch_plan_line(plan) -> str:
    """``stylize-batch 12 images in 3 batches of up to 4, 2 sizes, 100+100 steps … : about 5:00 + …``."""
    done = f" ({plan.skipped} done already)" if plan.skipped else ""
    sizes = f"{plan.buckets} size{'s' if plan.buckets != 1 else ''}"
    return (
        f"stylize-batch {plan.images} images{done} in {plan.batches} batches of up to {plan.batch_size}, {sizes}, "
        f"{'+'.join(str(s) for s in plan.steps)} steps, weights {plan.weights_source}, on {plan.device}: "
        f"{estimate_text(plan.seconds, plan.compilations, plan.compile_seconds)}"
    )


class BatchBar(Bars):
    """Renders :class:`~nstjax.nst.batch.BatchProgress` events: images done, images/s, ETA, batch step."""

    def start(self, plan) -> None:
        """Print ``plan``'s line (:class:`~nstjax.nst.batch.BatchPlan`) and show the first batch compiling."""
        self.note(batch_plan_line(plan))
        if plan.batches and not self.quiet:
            total = plan.images + plan.skipped
            self.show(Row("images", "images", plan.skipped, total, COMPILING, plan.seconds + plan.compile_seconds))

    def row(self, p) -> Row:
        extra = ", ".join(s for s in (f"{p.skipped} skipped" if p.skipped else "", f"{p.failed} failed" if p.failed else "") if s)
        scale = f" scale {p.scale}/{p.scales}" if p.scales > 1 else ""
        info = (
            f"{f'({extra}) ' if extra else ''}{p.images_per_second:.2f} img/s | batch {p.batch}/{p.batches} "
            f"{p.bucket[1]}x{p.bucket[0]}{scale} step {p.step}/{p.steps}"
        )
        return Row("images", "images", p.done, p.total, info, p.eta)


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
                log=lambda message: bar.log(f"error: {message}"),
                on_start=None if quiet else bar.start,
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

