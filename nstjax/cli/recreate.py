"""``nstjax recreate`` (sketch → photo → painting) and ``nstjax label-painting`` (a painting's label map).

The jobs are :func:`nstjax.recreate.recreate` and
:func:`nstjax.recreate.labeller.write_painting_labels`; this module parses the
options, renders the plan line and one progress bar per stage, and prints the
results. ``label-painting`` is a top-level command rather than a subcommand of
``recreate``: ``recreate`` takes a positional SKETCH, and a Typer group with a
positional argument and subcommands would read ``label-painting`` as a sketch.
"""

from pathlib import Path
from typing import Annotated, Any, Optional

import math

import typer
from ..recreate.settings import RECREATE_SETTINGS
from .common import cli_errors, estimate_text, options_from, say, with_options
from .progress import COMPILING, Bars, Row

__all__ = ["label_painting", "recreate", "register"]

def plan_line(plan) -> str:
    """``recreate 384x512 px, classes …: photo (exemplar-guided NST …, 100+100+100 steps at 96x128 → 192x256 →
    384x512) → …; weights …, on cpu: about 9:40 + 9 compilations ~1:48 (estimate)``."""
    parts = []
    for stage in plan.stages:
        steps = f", {'+'.join(str(s) for s in stage.steps)} steps" if stage.steps else ""
        estimate = getattr(stage, "estimate", None)
        if estimate is not None and len(estimate.shapes) > 1:
            steps += " at " + " → ".join(f"{w}x{h}" for h, w in estimate.shapes)
        parts.append(f"{stage.name} ({stage.method}{steps})")
    weights = f"weights {plan.weights_source}" if plan.weights_source else "no VGG"
    h, w = plan.shape
    line = (
        f"recreate {w}x{h} px, classes {', '.join(plan.classes)}: {' → '.join(parts)}; final: {plan.final}; "
        f"{weights}, on {plan.device}"
    )
    seconds = getattr(plan, "seconds", math.nan)
    if math.isfinite(seconds):
        line += ": " + estimate_text(seconds, plan.compilations, plan.compile_seconds)
    return line


class StageBars(Bars):
    """Renders the stage events of :func:`nstjax.recreate.recreate`: one bar per stage, compiling until
    its first steps (and again at each new scale), with the whole recreation's ETA."""

    def row(self, event) -> Row | None:
        kind = type(event).__name__
        if kind == "StageStart":
            return Row(event.name, event.name, 0, event.steps or 1, f"{COMPILING} {event.method}")
        if kind == "StageProgress":
            p = event.progress
            info = f"loss {p.loss:.4g} {p.evals_per_second:.2f} evals/s"
            if p.scales > 1:
                scale = f"scale {p.scale}/{p.scales} {p.size[1]}x{p.size[0]}"
                # The last chunk of a scale: the next one (4x the pixels) compiles its programs now.
                info = f"{scale} done, {COMPILING}" if p.step >= p.steps and p.scale < p.scales else f"{scale} {info}"
            return Row(event.name, event.name, event.step, None, info, getattr(event, "eta", None))
        if kind == "StageDone":
            return Row(event.name, event.name, None, None, f"done in {event.seconds:.1f} s {event.detail}".strip())
        return None


def interrupted_line(stop, stages: Optional[Path], output: Path) -> str:
    """What a Ctrl-C kept (:class:`~nstjax.recreate.events.RecreateInterrupted`), in one line."""
    kept = list(stop.finished) + ([f"{stop.partial} (best so far)"] if stop.partial else [])
    where = f"interrupted{f' in stage {stop.stage}' if stop.stage else ''}"
    if stages is not None and kept:
        where += f": kept {', '.join(kept)} in {stages}"
    elif stages is None:
        where += " (--stages DIR keeps every stage)"
    if stop.output is not None:
        label = f"{stop.image_stage}, best so far" if stop.image_stage == stop.partial else stop.image_stage
        return f"{where}; wrote the latest image ({label}) to {output}"
    return f"{where}; nothing written to {output}"


@with_options(options_from(RECREATE_SETTINGS))
def recreate(
    sketch: Annotated[Path, typer.Argument(help="Colour-coded sketch (landscape palette) or index PNG.", show_default=False)],
    painting: Annotated[Path, typer.Option("--painting", help="The painting whose style to take.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image (.png, .jpg, .tif, .webp).", show_default=False)],
    painting_labels: Annotated[
        Optional[Path], typer.Option(help="The painting's label map (make one with `nstjax label-painting`).")
    ] = None,
    **options: Any,
) -> None:
    """Recreate a painting from a SKETCH: sketch → photo (exemplars or a SPADE run) → painting (semantic NST,
    plain NST or CycleGAN).

    Exit status: 0 done, 2 bad input (one error line), 130 interrupted.
    """
    from ..recreate import recreate as run_recreate

    quiet, stages = options["quiet"], options["stages"]
    bars = None if quiet else StageBars()
    with cli_errors():
        try:
            result = run_recreate(
                sketch,
                painting,
                output,
                painting_labels=painting_labels,
                **{name: options[name] for name in RECREATE_SETTINGS.names if name != "quiet"},
                progress=bars,
                on_start=None if quiet else lambda plan: bars.note(plan_line(plan)),
            )
        except KeyboardInterrupt as stop:  # RecreateInterrupted: what was kept
            if bars is not None:
                bars.close()
            if hasattr(stop, "finished"):
                say(interrupted_line(stop, stages, output))
            else:  # before the first stage
                say(f"interrupted before the first stage: nothing written to {output}")
            raise typer.Exit(130) from None
        finally:
            if bars is not None:
                bars.close()
    h, w = result.image.shape[:2]
    scores = ", ".join(f"{name} {100 * s:.1f}%" for name, s in result.scores.items())
    line = f"wrote {output} ({w}x{h}, {result.final}) in {result.seconds:.1f} s"
    if scores:
        line += f"; sky on ground: {scores}"
    if result.stages_dir is not None:
        line += f"; stages, sheet.png and recreate.json in {result.stages_dir}"
    source = result.record["weights"]["source"]
    if source == "random":
        line += "; random VGG features: not real style transfer"
    typer.echo(line)


def label_painting(
    painting: Annotated[Path, typer.Argument(help="The painting to label.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Label map to write (.png, landscape palette colours).", show_default=False)],
    clusters: Annotated[int, typer.Option(help="Colour clusters (k-means in CIELAB).", min=2, max=32)] = 6,
    classes: Annotated[
        Optional[str], typer.Option(help="Classes the clusters may become, e.g. sky,cloud,mountain,hill,grass.")
    ] = None,
    assign: Annotated[
        Optional[str], typer.Option(help="Override the class of clusters: 0=sky,3=hill (ids as in the preview).")
    ] = None,
    position_weight: Annotated[
        float, typer.Option(help="Weight of the pixel position beside colour in the clustering (0 = colour only).")
    ] = 0.5,
    smooth: Annotated[int, typer.Option(help="Mode-filter radius in pixels that cleans speckle (0 = off).", min=0)] = 3,
    min_area: Annotated[
        float, typer.Option(help="Regions under this share of the picture take the class around them (0 = off).")
    ] = 0.02,
    fix: Annotated[
        Optional[list[str]],
        typer.Option(help="Hand correction FROM>TO@x0,y0,x1,y1 (box in fractions): in the box, FROM pixels become TO. Repeatable."),
    ] = None,
    size: Annotated[int, typer.Option(help="Longest side the clustering works at (the map is written at full size).", min=16)] = 256,
    preview: Annotated[
        Optional[Path], typer.Option(help="Preview overlay to write (default OUTPUT_preview.png).")
    ] = None,
    seed: Annotated[int, typer.Option(help="k-means seed.")] = 0,
) -> None:
    """Make a label map for PAINTING: k-means colour clusters in CIELAB, a class per cluster by position and
    colour (overridable with --assign), written with a preview overlay to check it."""
    from ..recreate.labeller import write_painting_labels

    with cli_errors():
        result = write_painting_labels(
            painting, output, clusters=clusters, classes=classes, assign=assign, position_weight=position_weight,
            smooth=smooth, min_area=min_area, fixes=fix or (), work_size=size, preview=preview, seed=seed,
        )  # fmt: skip
    table = ", ".join(f"{i}={name}" for i, name in enumerate(result.cluster_classes))
    areas = ", ".join(f"{name} {100 * a:.0f}%" for name, a in result.areas.items() if a > 0)
    typer.echo(f"wrote {result.path} and {result.preview_path}: clusters {table}; areas {areas}")


def register(app: typer.Typer) -> None:
    """Add ``recreate`` and ``label-painting`` to the top-level app."""
    app.command("recreate")(recreate)
    app.command("label-painting")(label_painting)
