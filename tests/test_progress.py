"""The one progress renderer of the CLI (nstjax.cli.progress): lines that fit 80 columns and say what happens."""

import io
import re
from types import SimpleNamespace as Event

from rich.console import Console

from nstjax.cli.common import TrainBar
from nstjax.cli.nst import StepBar


def rendered(bar_type, events, width=80, **kwargs) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=True, color_system=None)
    bar = bar_type(console=console, **kwargs)
    for event in events:
        bar(event)
    bar.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # cursor moves of the live display
    return [line for line in re.split(r"[\r\n]", text) if line.strip()]


def test_a_stylize_bar_keeps_count_and_eta_at_80_columns():
    terms = {"content": 0.123456, "style": 1.23456, "tv": 0.000123}
    event = Event(scale=1, scales=1, size=(256, 384), step=40, steps=100, loss=1.358, terms=terms, evals_per_second=0.35)
    last = rendered(StepBar, [event])[-1]
    assert len(last) <= 80 and "40/100" in last and "ETA" in last, last
    assert "…" in last  # the loss terms are what gives way


def test_a_training_bar_says_it_compiles_then_counts(capsys):
    def event(name, step, **kw):
        return Event(event=name, step=step, total=12000, metrics=kw.get("metrics", {}), steps_per_second=kw.get("rate", 0.0),
                     skipped_files=0, resumed_from=kw.get("resumed_from"))

    metrics = {"g_loss": 1.234, "d_loss": 0.51, "cycle": 3.2, "idt": 1.1, "d_a": 0.3, "d_b": 0.3}
    lines = rendered(TrainBar, [event("start", 4000, resumed_from=4000), event("log", 4050, metrics=metrics, rate=1.5)],
                     label="cyclegan")  # fmt: skip
    assert lines[0] == "resumed from step 4000"
    assert any("compiling step 1" in line for line in lines)
    assert all(len(line) <= 80 for line in lines) and "4050/12000" in lines[-1] and "ETA" in lines[-1]
