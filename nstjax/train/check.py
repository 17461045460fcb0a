"""Check a training run's directory: is everything ``--resume``, ``apply`` and ``translate`` read whole?

:func:`check_run` reads ``RUN/config.json``, every complete checkpoint (its
digests, then each array back from disk, on the host) and the export, and
returns a :class:`RunCheck`: one :class:`Problem` per damaged file, naming the
checkpoint's step and the file. It works for every trained system (CycleGAN,
SPADE/pix2pix, fast, AdaIN): the layout is the shared one of
:class:`~nstjax.train.checkpoint.RunDir`, and the system is read from the
config. Nothing is changed on disk (the temporary folder of a save cut short is
reported; ``--resume`` removes it).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..errors import NstjaxError
from .checkpoint import CONFIG_NAME, checkpoint_dirs, load_export, read_json, verify_checkpoint

__all__ = ["Problem", "RunCheck", "check_run"]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One damaged or missing part of a run.

    path: the file (or folder) at fault.
    problem: what is wrong, one line.
    step: the checkpoint's step, or None for the config and the export.
    """

    path: Path
    problem: str
    step: int | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclasses.dataclass(frozen=True)
class RunCheck:
    """What :func:`check_run` found.

    path: the run directory.
    system: the trained system named by ``config.json`` (``cyclegan``, ``fast``, …), or None.
    steps: steps of the checkpoints that read back whole, oldest first.
    export_step: the step of a whole export, or None.
    problems: one per damaged part; empty for a sound run.
    notes: facts that are not problems (e.g. a save cut short, which ``--resume`` removes).
    """

    path: Path
    system: str | None
    steps: tuple[int, ...]
    export_step: int | None
    problems: tuple[Problem, ...]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def check_run(run_dir: str | os.PathLike) -> RunCheck:
    """Check the run in ``run_dir`` (see the module's docstring); never raises for a damaged run.

    Raises:
      NstjaxError: ``run_dir`` is not a folder, or holds no run (neither ``config.json`` nor ``checkpoints/``).
    """
    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise NstjaxError("no such folder", path)
    if not (path / CONFIG_NAME).exists() and not (path / "checkpoints").exists():
        raise NstjaxError("holds no training run (no config.json, no checkpoints/)", path)
    problems: list[Problem] = []
    notes: list[str] = []

    system = None
    try:
        config = read_json(path / CONFIG_NAME)
        if not isinstance(config, dict):
            problems.append(Problem(path / CONFIG_NAME, "is not a JSON object (edited?)"))
        else:
            system = config.get("system")
    except NstjaxError as e:
        problems.append(Problem(path / CONFIG_NAME, e.problem))

    steps = []
    for step in checkpoint_dirs(path):
        try:
            verify_checkpoint(path, step)
        except NstjaxError as e:
            problems.append(Problem(Path(e.path) if e.path else path / "checkpoints" / str(step), e.problem, step))
        else:
            steps.append(step)
    torn = sorted(p.name for p in (path / "checkpoints").glob("*tmp*")) if (path / "checkpoints").is_dir() else []
    if torn:
        notes.append(f"{len(torn)} checkpoint save(s) cut short ({', '.join(torn)}); --resume removes them")
    if not steps and not any(p.step is not None for p in problems):
        notes.append("no checkpoint yet")

    export_step = None
    if (path / "export").exists():
        try:
            export_step = load_export(path)[1].get("step")
        except NstjaxError as e:
            problems.append(Problem(Path(e.path) if e.path else path / "export", e.problem))
    elif steps:
        problems.append(Problem(path / "export", "missing (a run writes its export with each checkpoint)"))
    return RunCheck(path, system, tuple(steps), export_step, tuple(problems), tuple(notes))
