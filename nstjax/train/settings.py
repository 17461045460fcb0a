"""The settings every training run has, whatever it trains: length, batch, seed, intervals.

:class:`TrainSettings` holds them; :data:`TRAIN_SETTINGS` declares them once for users (``--steps``, … of every
``nstjax … train`` command, a future training form), and :func:`train_settings_from` turns such values back
into a :class:`TrainSettings`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..errors import NstjaxError
from ..schema import Schema, Setting

__all__ = ["TRAIN_SETTINGS", "TrainSettings", "train_settings_from"]


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How long and how a run trains. A system's config holds one of these beside its model settings.

    steps / epochs: the run's length; give one (``epochs`` counts passes over the
      larger folder: see :attr:`~nstjax.train.data.BatchLoader.steps_per_epoch`).
    batch_size: the global batch, over every device and host (a multiple of the device count).
    seed: parameters' initialisation, data order and augmentation, noise.
    log_every, sample_every, checkpoint_every: intervals in steps (0 = never; the last
      step is always logged and checkpointed).
    keep: checkpoints kept (the newest).
    decay_fraction: share of the run over which learning rates decay linearly to 0
      (CycleGAN and pix2pix: the second half).
    """

    steps: int | None = None
    epochs: int | None = None
    batch_size: int = 1
    seed: int = 0
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 1000
    keep: int = 3
    decay_fraction: float = 0.5

    def __post_init__(self):
        if (self.steps is None) == (self.epochs is None):
            raise NstjaxError("give the run's length as steps or as epochs (one of them)")
        for name in ("steps", "epochs", "batch_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise NstjaxError(f"{name} must be a positive integer, got {value!r}")
        for name in ("log_every", "sample_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise NstjaxError(f"{name} must be 0 (never) or a positive number of steps")
        if self.keep < 1:
            raise NstjaxError(f"keep must be at least 1 checkpoint, got {self.keep}")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise NstjaxError(f"decay fraction must be in [0, 1], got {self.decay_fraction}")

    def total_steps(self, steps_per_epoch: int) -> int:
        """The run's length in steps."""
        return self.steps if self.steps is not None else self.epochs * steps_per_epoch

    def decay_steps(self, total_steps: int) -> int:
        """Steps at the end of the run over which learning rates decay to 0."""
        return int(round(self.decay_fraction * total_steps))


_DEFAULT = {field.name: field.default for field in dataclasses.fields(TrainSettings)}

TRAIN_SETTINGS = Schema(
    "train",
    (
        Setting("steps", int, "Train this many steps (or give --epochs).", unit="steps", label="Steps", group="basic",
                widget="number", look={"min": 1, "step": 100}),
        Setting("epochs", int, "Train this many passes over the (larger) folder.", unit="epochs", label="Epochs",
                group="basic", widget="number", look={"min": 1, "step": 1}),
        Setting("batch_size", int, "Global batch size (a multiple of the device count).",
                default=_DEFAULT["batch_size"], unit="images", label="Batch size", group="basic", widget="number",
                look={"min": 1, "step": 1}),
        Setting("seed", int, "Seed of initialisation, data order, augmentation.", default=_DEFAULT["seed"],
                label="Seed", widget="number", look={"min": 0, "step": 1}),
        Setting("log_every", int, "Log metrics every N steps.", default=_DEFAULT["log_every"], unit="steps",
                label="Log every", widget="number", look={"min": 0, "step": 10}),
        Setting("sample_every", int, "Write a sample grid every N steps (0 = only at the end).",
                default=_DEFAULT["sample_every"], unit="steps", label="Sample grid every", widget="number",
                look={"min": 0, "step": 100}),
        Setting("checkpoint_every", int, "Checkpoint (and export) every N steps.",
                default=_DEFAULT["checkpoint_every"], unit="steps", label="Checkpoint every", widget="number",
                look={"min": 0, "step": 100}),
        Setting("keep", int, "Checkpoints to keep.", default=_DEFAULT["keep"], unit="checkpoints",
                label="Checkpoints kept", widget="number", look={"min": 1, "step": 1}),
    ),
)  # fmt: skip
"""The user-facing fields of :class:`TrainSettings` (all but ``decay_fraction``, a system's choice), with their
defaults. Neither ``steps`` nor ``epochs`` given means the system's default length. Bounds are checked by
:class:`TrainSettings` itself (the look's ``min`` only guides a form)."""


def train_settings_from(values: Mapping[str, Any], **extra: Any) -> TrainSettings:
    """The :class:`TrainSettings` of ``values`` (:data:`TRAIN_SETTINGS` names; missing ones at their defaults).

    ``extra`` holds the system's own choices: other fields (``decay_fraction``) and its default length
    (``epochs=200``), used only when ``values`` give neither ``steps`` nor ``epochs``.
    """
    given = {setting.name: values.get(setting.name, setting.default) for setting in TRAIN_SETTINGS}
    default_length = {"steps": extra.pop("steps", None), "epochs": extra.pop("epochs", None)}
    if given["steps"] is None and given["epochs"] is None:
        given.update(default_length)
    return TrainSettings(**given, **extra)
