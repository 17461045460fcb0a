"""What every ``nstjax`` command shares: error handling, options declared once, progress rendering.

The library reports through callbacks and :mod:`warnings`; this module turns
those into terminal output: one ``error: …`` line (exit 2) for an
:class:`~nstjax.errors.NstjaxError`, one ``warning: …`` line per nstjax
warning, and ``rich`` progress bars on stderr. Nothing here computes anything.
"""

import contextlib
import functools
import inspect
import math
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer
from rich.console import Console

from ..errors import NstjaxError, NstjaxWarning
from ..train.settings import TRAIN_SETTINGS, train_settings_from
from .progress import COMPILING, Bars, Row, err_console

__all__ = [
    "DISTRIBUTED_OPTION",
    "TRAIN_OPTIONS",
    "DownloadBar",
    "OneLineErrors",
    "TrainBar",
    "cli_errors",
    "duration",
    "err_console",
    "estimate_text",
    "new_typer",
    "options_from",
    "say",
    "train_plan_line",
    "train_settings_from_options",
    "training_job",
    "with_options",
]



def _without_flag_types(display_type_rich: Callable) -> Callable:
    """Typer's help shows a value type beside every option, ``<bool>`` beside flags (``--quiet``, ``--help``)
    too, although a flag takes no value; this drops it for flags."""

    @functools.wraps(display_type_rich)
    def display(self, ctx):
        return None if getattr(self, "is_flag", False) else display_type_rich(self, ctx)

    return display


typer.core.TyperOption.display_type_rich = _without_flag_types(typer.core.TyperOption.display_type_rich)


def say(message: str) -> None:
    """Write one line to stderr as is (never wrapped: an error must stay one line)."""
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()


class OneLineErrors(typer.core.TyperGroup):
    """A Typer group whose bad option values end in one ``error: …`` line and exit status 2.

    Click's own usage errors draw a multi-line box; an invalid value (a choice
    not in the list, a number that is not one) is reported here like every
    other bad input of nstjax. Other usage errors keep click's plain message.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            # Non-standalone, click returns a command's return value or typer.Exit's code.
            status = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.BadParameter as e:
            say(f"error: {' '.join(e.format_message().split())}")
            sys.exit(e.exit_code)
        except typer.TyperException as e:  # click's ClickException and its usage errors
            e.show()
            sys.exit(e.exit_code)
        except typer.Abort:
            say("aborted")
            sys.exit(1)
        sys.exit(status if isinstance(status, int) else 0)


def new_typer(help: str, **kwargs: Any) -> typer.Typer:
    """A Typer app or sub-app with nstjax's conventions (no completion flags, no tracebacks)."""
    return typer.Typer(
        help=help,
        cls=OneLineErrors,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        **kwargs,
    )


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn NstjaxError into ``error: …`` and exit status 2; show nstjax warnings as ``warning: …`` lines.

    Warnings from nstjax (weights, masks) are printed as they happen, one line
    each; others are shown the usual way.
    """

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, NstjaxWarning):
            say(f"warning: {' '.join(str(message).split())}")
        else:
            default_show(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        default_show = warnings.showwarning
        warnings.showwarning = show  # restored by catch_warnings on exit
        warnings.simplefilter("always", NstjaxWarning)
        try:
            yield
        except NstjaxError as e:
            say(f"error: {e}")
            raise typer.Exit(2) from None


def with_options(*groups: Mapping[str, tuple[Any, Any]]) -> Callable[[Callable], Callable]:
    """Add option groups, declared once, to a command's signature.

    Each group maps a parameter name to ``(Annotated[type, typer.Option(...)], default)``.
    The command declares its own parameters plus ``**options`` and receives the
    groups' values there. Typer reads the combined signature, so ``--help``
    lists every option and each is parsed and checked as usual.
    """

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
            for group in groups
            for name, (annotation, default) in group.items()
        ]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return command(*args, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {
            **command.__annotations__,
            **{name: annotation for group in groups for name, (annotation, _) in group.items()},
        }
        return wrapper

    return decorate


def options_from(schema, without: tuple[str, ...] = ()) -> dict[str, tuple[Any, Any]]:
    """Typer options generated from a settings :class:`~nstjax.schema.Schema`, for :func:`with_options`.

    Each setting becomes ``--name`` (or its ``flags``) with its help, its choices (a ``Literal``), its
    bounds (``min``/``max``) and its default; a ``None`` default means "not given" (``Optional``), and a
    ``required`` setting has none (Typer's ``...``).
    """
    options: dict[str, tuple[Any, Any]] = {}
    for setting in schema:
        if setting.name in without:
            continue
        kind: Any = Literal.__getitem__(setting.choices) if setting.choices else setting.type
        if setting.default is None and not setting.required:
            kind = Optional[kind]
        bounds = {k: v for k, v in (("min", setting.minimum), ("max", setting.maximum)) if v is not None}
        option = typer.Option(*setting.cli_flags, help=setting.help, show_default=setting.default is not None, **bounds)
        options[setting.name] = (Annotated[kind, option], ... if setting.required else setting.default)
    return options


def duration(seconds: float) -> str:
    """``75`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``; ``"?"`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def estimate_text(seconds: float, compilations: int, compile_seconds: float) -> str:
    """``about 3:40 + 3 compilations ~0:36 (estimate)``: a plan's work and its compilations."""
    n = f"{compilations} compilation{'s' if compilations != 1 else ''}"
    return f"about {duration(seconds)} + {n} ~{duration(compile_seconds)} (estimate)"


class DownloadBar(Bars):
    """Renders ``progress(bytes_done, total_or_None)`` download callbacks: size, speed and ETA."""

    def __init__(self, label: str, console: Console = err_console):
        super().__init__(label, transfer=True, console=console)


# --------------------------------------------------------------------------- training commands

# --distributed/--no-distributed of every command that may span hosts (stylize-batch, training).
DISTRIBUTED_OPTION = Annotated[
    Optional[bool],
    typer.Option(help="Call jax.distributed.initialize() (default: when a cluster is detected); run the same "
                      "command on every host."),
]

# Options every `… train` command shares: the run directory and job control declared here, the training
# settings generated from their schema (nstjax.train.settings), in --help's order: name -> (annotation, default).
_SETTINGS = list(options_from(TRAIN_SETTINGS).items())
_AT_RESUME = TRAIN_SETTINGS.names.index("seed") + 1  # --resume has always followed --seed in --help
TRAIN_OPTIONS: dict[str, tuple[Any, Any]] = {
    "run": (Annotated[Path, typer.Option("--run", help="Run directory: checkpoints, samples, metrics, export.")], ...),
    **dict(_SETTINGS[:_AT_RESUME]),
    "resume": (Annotated[bool, typer.Option("--resume", help="Continue the run in --run from its last checkpoint.")], False),
    **dict(_SETTINGS[_AT_RESUME:]),
    "quiet": (Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")], False),
    "distributed": (DISTRIBUTED_OPTION, None),
}


def train_settings_from_options(options: Mapping[str, Any], **extra: Any):
    """The :class:`~nstjax.train.settings.TrainSettings` of the shared training options.

    With neither ``--steps`` nor ``--epochs`` given, a command's default length comes in ``extra``
    (:func:`nstjax.train.settings.train_settings_from`).
    """
    return train_settings_from(options, **extra)


def train_plan_line(plan) -> str:
    """``fast train: 4000 steps, batch 4x256x256, 41.2 GFLOP/step, on cpu (2 cores): about 1:10:00 + 1
    compilation ~0:30 (estimate)``, from a :class:`~nstjax.train.loop.TrainPlan`."""
    batch = max(plan.batch.values(), key=len, default=())
    shape = "x".join(str(n) for n in batch[:3]) if batch else "?"
    flops = f", {plan.flops_per_step / 1e9:.3g} GFLOP/step" if plan.flops_per_step else ""
    resumed = f" (from step {plan.start})" if plan.start else ""
    return (
        f"{plan.system} train: {plan.steps} steps{resumed}, batch {shape}{flops}, on {plan.device}: "
        f"{estimate_text(plan.seconds, 1, plan.compile_seconds)}"
    )


class TrainBar(Bars):
    """Renders :class:`~nstjax.train.loop.TrainProgress` events: the plan line, then a step bar with
    losses, steps/s and the ETA (from the measured time per step after compilation)."""

    def __init__(self, label: str = "train", console: Console = err_console, max_metrics: int = 6):
        super().__init__(label, console=console)
        self.max_metrics = max_metrics

    def row(self, p) -> Row:
        shown = list(p.metrics.items())[: self.max_metrics]
        info = " ".join(f"{k} {v:.3g}" for k, v in shown)
        info += f" {p.steps_per_second:.2f} steps/s" if p.steps_per_second else ""
        if p.skipped_files:
            info += f" ({p.skipped_files} unreadable files skipped)"
        if p.event == "start":  # the first step compiles (tens of seconds on a CPU): say so, not a frozen bar
            if getattr(p, "plan", None) is not None and not self._tasks:
                self.note(train_plan_line(p.plan))
            info = f"{COMPILING} step 1"
        elif p.event == "compiled":
            info = f"compiled in {duration(p.elapsed)}, training"
        if getattr(p, "resumed_from", None) is not None and not self._tasks:
            self.log(f"resumed from step {p.resumed_from}")
        eta = getattr(p, "eta", None)
        return Row(self.label, self.label, p.step, p.total, info, eta if isinstance(eta, int | float) else None)


@contextlib.contextmanager
def training_job(run_dir: Path, *, resume: bool = False, quiet: bool = False) -> Iterator[None]:
    """Errors of a training command: one-line errors (exit 2), divergence (exit 1), Ctrl-C (exit 130).

    With ``resume`` and ``quiet`` (no bar to say it) the run also ends with one ``resumed from step N``
    line: N is the newest complete checkpoint when the command started, the one the run continued from.
    """
    from ..train.checkpoint import latest_checkpoint
    from ..train.loop import TrainingDiverged, TrainingInterrupted

    resumed = None
    if resume and quiet:
        with contextlib.suppress(OSError, ValueError):
            step = latest_checkpoint(run_dir)
            resumed = "resumed from step 0 (no checkpoint yet)" if step is None else f"resumed from step {step}"

    with cli_errors():
        ending = None  # (last line, exit code) of a run that did not finish
        try:
            yield
        except TrainingDiverged as e:
            ending = f"error: {e}", 1
        except TrainingInterrupted as e:
            ending = f"interrupted after step {e.step}: checkpoint saved in {run_dir}; add --resume to continue", 130
        if resumed:
            say(resumed)
        if ending is not None:
            say(ending[0])
            raise typer.Exit(ending[1])
