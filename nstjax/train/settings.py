"""The settings every training run has, whatever it trains: length, batch, seed, intervals."""

from __future__ import annotations

import dataclasses

from ..errors import NstjaxError

__all__ = ["TrainSettings"]


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
