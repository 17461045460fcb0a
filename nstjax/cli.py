"""The ``nstjax`` command line: parses flags and delegates to the Python API."""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import config as _config
from . import weights as _weights
from .errors import NstjaxError

app = typer.Typer(
    name="nstjax",
    help="Neural style transfer in JAX (Gatys et al.): a from-scratch Flax VGG-19 optimised with Optax.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


weights_app = typer.Typer(
    help="Download, convert and list the ImageNet VGG-19 weights.",
    no_args_is_help=True,
    add_completion=False,
)


@contextlib.contextmanager
def _cli_errors() -> Iterator[None]:
    """Turn NstjaxError into a one-line message and exit status 2; show nstjax warnings as notes.

    Warnings from nstjax (weights, masks) are printed as they happen, as one
    ``warning: …`` line each; others are shown the usual way.
    """

    def show(message, category, filename, lineno, file=None, line=None):
        if category.__module__.startswith("nstjax"):
            typer.echo(f"warning: {message}", err=True)
        else:
            default_show(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        default_show = warnings.showwarning
        warnings.showwarning = show  # restored by catch_warnings on exit
        warnings.simplefilter("always", _weights.WeightsWarning)
        try:
            yield
        except NstjaxError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None


class _ProgressBar:
    """A download progress bar on stderr: ``[#####.....]  42%  33.6/80.1 MB``."""

    def __init__(self, label: str, width: int = 30):
        self.label = label
        self.width = width
        self._last = 0.0
        self._shown = False

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last < 0.1:
            return  # redraw at most ten times a second
        self._last = now
        mb = f"{done / 1e6:.1f}" + (f"/{total / 1e6:.1f} MB" if total else " MB")
        if total:
            filled = int(self.width * min(done, total) / total)
            bar = f"[{'#' * filled}{'.' * (self.width - filled)}] {100 * done // total:3d}%"
        else:
            bar = "[" + "?" * self.width + "]"
        sys.stderr.write(f"\r{self.label} {bar} {mb}")
        sys.stderr.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


@weights_app.command("fetch")
def fetch_command(
    source: Annotated[
        str, typer.Argument(help="keras (default), torchvision or gatys.")
    ] = _weights.DEFAULT_SOURCE,
    url: Annotated[
        Optional[str], typer.Option("--url", help="Download from this URL instead (checksum still checked).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Download and convert again even if cached.")] = False,
) -> None:
    """Download, verify and convert weights into the cache; print the converted file's path."""
    bar = _ProgressBar(f"downloading {source}")
    with _cli_errors():
        try:
            path = _weights.fetch(source, url=url, force=force, progress=bar)
        finally:
            bar.close()
    typer.echo(str(path))


@weights_app.command("convert")
def convert_command(
    file: Annotated[Path, typer.Argument(help="A Keras .h5, a PyTorch .pth, or an nstjax .npz.")],
    source: Annotated[
        Optional[str], typer.Option("--source", help="Expected source (default: detected from the file).")
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("-o", "--out", help="Output .npz (default: the cache, where 'auto' finds it).")
    ] = None,
) -> None:
    """Convert a local weights file (e.g. downloaded elsewhere); print the converted file's path."""
    with _cli_errors():
        path = _weights.convert(file, source=source, out=out)
    typer.echo(str(path))


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


@weights_app.command("list")
def list_command() -> None:
    """Show each weights source and its cache state."""
    with _cli_errors():
        rows = [
            (
                s.name,
                s.convention,
                "yes" if s.cached else ("CORRUPT" if s.problem else "no"),
                _yes_no(s.verified),
                str(s.path),
            )
            for s in _weights.list_sources()
        ]
    header = ("source", "convention", "cached", "verified", "path")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    typer.echo(f"cache: {_weights.cache_dir()}")

app.add_typer(weights_app, name="weights")


def _floats(text: Optional[str], what: str) -> Optional[tuple[float, ...]]:
    return None if text is None else _config.parse_floats(text, what)


def _layers(text: Optional[str], what: str) -> Optional[tuple[tuple[str, float], ...]]:
    return None if text is None else _config.parse_layer_weights(text, what)


# Options shared by `stylize` and `stylize-batch`, declared once. `None` means "not given":
# the preset's value stays.
Preset = Annotated[str, typer.Option(help="Starting settings: gatys, neural-style or fast.")]
Size = Annotated[Optional[int], typer.Option(help="Longest side of the output in pixels.")]
Steps = Annotated[Optional[int], typer.Option(help="Optimiser steps (at the final scale).")]
Optimizer = Annotated[Optional[str], typer.Option(help="lbfgs or adam.")]
LearningRate = Annotated[Optional[float], typer.Option("--lr", help="Adam learning rate ([0, 1] pixel units).")]
ContentWeight = Annotated[Optional[float], typer.Option(help="Weight of the content loss.")]
StyleWeight = Annotated[Optional[float], typer.Option(help="Weight of the style loss.")]
TvWeight = Annotated[Optional[float], typer.Option(help="Weight of the total-variation loss.")]
ContentLayers = Annotated[
    Optional[str], typer.Option(help="Content layers with optional weights, e.g. relu4_2 or relu4_2:1,relu5_2:0.5.")
]
StyleLayers = Annotated[
    Optional[str], typer.Option(help="Style layers with optional weights, e.g. relu1_1:1,relu2_1:0.5,relu3_1.")
]
Pooling = Annotated[Optional[str], typer.Option(help="max or avg.")]
Padding = Annotated[Optional[str], typer.Option(help="zero, reflect or replicate.")]
Init = Annotated[Optional[str], typer.Option(help="content, noise, style, grey, or an image file.")]
Scales = Annotated[
    Optional[str], typer.Option(help="Coarse-to-fine: a count (3 = size/4, size/2, size) or sizes, e.g. 256,512.")
]
ScaleSteps = Annotated[Optional[str], typer.Option(help="Steps at each coarser scale, e.g. 300,200.")]
Seed = Annotated[Optional[int], typer.Option(help="Random seed (noise init, random weights).")]
Weights = Annotated[Optional[str], typer.Option(help="auto, keras, torchvision, gatys, random, or a weights file.")]
Dtype = Annotated[Optional[str], typer.Option(help="Compute dtype: float32 or bfloat16.")]
Remat = Annotated[Optional[str], typer.Option(help="Rematerialisation: auto, none, conv, block.")]
Tolerance = Annotated[Optional[float], typer.Option(help="Early-stop relative improvement (0 = off).")]
StyleBlend = Annotated[Optional[str], typer.Option(help="Weights of several styles, e.g. 0.7,0.3.")]
StyleScale = Annotated[
    Optional[str], typer.Option(help="Style size relative to the output, one value or one per style.")
]
PreserveColor = Annotated[Optional[str], typer.Option(help="none, luminance or histogram.")]
ColorMatch = Annotated[Optional[str], typer.Option(help="Histogram matching: cholesky or eigen.")]
Quality = Annotated[int, typer.Option(help="JPEG/WebP quality.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress line.")]


# Flags passed to StylizeConfig as they are (the rest are parsed in _settings).
_PLAIN_FLAGS = (
    "size", "steps", "optimizer", "content_weight", "style_weight", "tv_weight", "pooling", "padding",
    "init", "seed", "dtype", "remat", "tolerance", "save_every", "preserve_color", "color_match",
)  # fmt: skip


def _settings(flags: dict):
    """A StylizeConfig from a command's parameters (``locals()``): preset, then the flags given."""
    return _config.from_flags(
        flags["preset"],
        scales=flags["scales"],
        scale_steps=flags["scale_steps"],
        learning_rate=flags["lr"],
        content_layers=_layers(flags["content_layers"], "content layer"),
        style_layers=_layers(flags["style_layers"], "style layer"),
        style_blend=_floats(flags["style_blend"], "--style-blend"),
        style_scale=_floats(flags["style_scale"], "--style-scale"),
        **{name: flags[name] for name in _PLAIN_FLAGS if name in flags},
    )


@app.command()
def stylize(
    content: Annotated[Path, typer.Argument(help="Content photo.", show_default=False)],
    styles: Annotated[list[Path], typer.Argument(help="One or more style images.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image (.png, .jpg, .tif, .webp).")],
    preset: Preset = "gatys",
    size: Size = None,
    steps: Steps = None,
    optimizer: Optimizer = None,
    lr: LearningRate = None,
    content_weight: ContentWeight = None,
    style_weight: StyleWeight = None,
    tv_weight: TvWeight = None,
    content_layers: ContentLayers = None,
    style_layers: StyleLayers = None,
    pooling: Pooling = None,
    padding: Padding = None,
    init: Init = None,
    scales: Scales = None,
    scale_steps: ScaleSteps = None,
    seed: Seed = None,
    weights: Weights = None,
    dtype: Dtype = None,
    remat: Remat = None,
    tolerance: Tolerance = None,
    save_every: Annotated[Optional[int], typer.Option(help="Save the best image every N steps (OUT_stepN).")] = None,
    style_blend: StyleBlend = None,
    style_scale: StyleScale = None,
    preserve_color: PreserveColor = None,
    color_match: ColorMatch = None,
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
    quality: Quality = 95,
    quiet: Quiet = False,
) -> None:
    """Stylise CONTENT with one or more STYLE images and write the result to OUTPUT."""
    from .images import check_output_path
    from .stylize import stylize_to_file

    with _cli_errors():
        output = check_output_path(output)  # before any work: a bad path must not cost a long run
        settings = _settings(locals())
        code = stylize_to_file(
            content,
            styles,
            output,
            config=settings,
            weights=weights,
            content_mask=content_mask,
            style_masks=style_mask,
            region_styles=region_styles,
            allow_unmatched=allow_unmatched,
            quality=quality,
            quiet=quiet,
        )
    raise typer.Exit(code)


@app.command("stylize-batch")
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
    format: Annotated[str, typer.Option(help="Output format: png, jpg, tif, webp.")] = "png",
    distributed: Annotated[
        Optional[bool], typer.Option(help="Call jax.distributed.initialize() (default: when a cluster is detected).")
    ] = None,
    preset: Preset = "gatys",
    size: Size = None,
    steps: Steps = None,
    optimizer: Optimizer = None,
    lr: LearningRate = None,
    content_weight: ContentWeight = None,
    style_weight: StyleWeight = None,
    tv_weight: TvWeight = None,
    content_layers: ContentLayers = None,
    style_layers: StyleLayers = None,
    pooling: Pooling = None,
    padding: Padding = None,
    init: Init = None,
    scales: Scales = None,
    scale_steps: ScaleSteps = None,
    seed: Seed = None,
    weights: Weights = None,
    dtype: Dtype = None,
    remat: Remat = None,
    tolerance: Tolerance = None,
    style_blend: StyleBlend = None,
    style_scale: StyleScale = None,
    preserve_color: PreserveColor = None,
    color_match: ColorMatch = None,
    quality: Quality = 95,
    quiet: Quiet = False,
) -> None:
    """Stylise every image in INPUTS with STYLE(s): batched, sharded over devices, resumable."""
    from .batch import stylize_batch_to_dir

    with _cli_errors():
        settings = _settings(locals())
        code = stylize_batch_to_dir(
            inputs,
            styles,
            output_dir,
            config=settings,
            weights=weights,
            batch_size=batch_size,
            bucket_multiple=bucket_multiple,
            format=format,
            quality=quality,
            distributed=distributed,
            quiet=quiet,
        )
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        # Reached only outside a stylisation (which saves and exits 130 itself).
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
