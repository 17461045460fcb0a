"""What a trained model tells the runner, and what the runner hands back.

A *system* (CycleGAN, SPADE/pix2pix, a Johnson style network, an AdaIN decoder)
is described by one :class:`TrainSystem`: its run settings, its data, how to
make its train state, its jitted step, its sample grids and its export.
:func:`nstjax.train.run` does the rest the same way for every system (run
directory, batches, resume, schedule, compilation cache, loop, export) and
returns a :class:`TrainResult`.

Building a :class:`TrainSystem` must not touch a JAX device (a multi-host run
starts ``jax.distributed`` after it): check inputs and load weights as NumPy
there, and place anything on devices in ``make_step`` / ``make_sampler``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import flax.struct
import numpy as np

from .data import Augment, BatchLoader, Decoder, FolderDataset
from .loop import TrainStep
from .settings import TrainSettings

__all__ = ["TrainResult", "TrainSystem"]


@dataclasses.dataclass(frozen=True)
class TrainSystem:
    """One trainable model, as :func:`nstjax.train.run` sees it.

    name: ``"cyclegan"``, ``"sketch2photo"``, ``"fast"``, ``"adain"``.
    config: the system's own settings object (returned as :attr:`TrainResult.config`).
    run_config: the run's settings as JSON data (``RUN_DIR/config.json``); a resumed run
      must match them except for the dotted keys of ``may_change_on_resume``.
    settings: length, global batch, seed, intervals, checkpoints kept, decay fraction.
    dataset, augment, decoders: what the run's :class:`~nstjax.train.BatchLoader` reads
      (batches of ``settings.batch_size``, seeded by ``settings.seed``).
    init_state: ``(total_steps, decay_steps) -> state``: a fresh, seeded train state on
      the default device (a pytree with an int32 ``step``).
    schedule_fields: fields of the state that hold the run's schedule (its length, the
      decay's length); a resumed run takes them from the fresh state, so the decay
      spreads over the resumed run's whole length.
    make_step: ``mesh -> step``, the jitted ``(state, batch) -> (state, metrics)`` that
      donates the state (:data:`nstjax.train.loop.TrainStep`); constants the step takes as
      arguments (VGG weights, style Grams) are placed on ``mesh`` here.
    make_sampler: ``(mesh, loader) -> (state -> uint8 [H, W, 3] grid)``, or None (no samples).
    export: ``state -> (params, config)``: what inference needs, written at each checkpoint.
    vgg_source: the VGG weights of the loss or encoder (``TrainResult.vgg_source``), if any.
    """

    name: str
    config: Any
    run_config: Mapping[str, Any]
    settings: TrainSettings
    may_change_on_resume: tuple[str, ...]
    dataset: FolderDataset
    augment: Augment
    init_state: Callable[[int, int], Any]
    make_step: Callable[[Any], TrainStep]
    export: Callable[[Any], tuple[Any, dict[str, Any]]]
    make_sampler: Callable[[Any, BatchLoader], Callable[[Any], np.ndarray]] | None = None
    decoders: Mapping[str, Decoder] | None = None
    schedule_fields: tuple[str, ...] = ()
    vgg_source: str | None = None


@flax.struct.dataclass
class TrainResult:
    """A finished run (or one resumed to its end).

    run_dir: the run directory (absolute). step: steps done, out of total_steps.
    metrics: the last logged record without ``step`` and ``time`` (loss terms, steps/s).
    resumed_from: the checkpoint's step a resumed run started from (None: a new run).
    state: the final train state, on the devices.
    params: the exported parameters (what ``RUN_DIR/export`` holds), as NumPy.
    config: the system's settings object (e.g. a ``FastConfig`` with its resolved style weight).
    vgg_source: the VGG weights of the loss or encoder, if the system has one.

    As a pytree a result is its final state (the state's leaves; the other fields ride
    along), and attributes a result lacks are read from the state: code written for
    the train state that ``nstjax.cyclegan.train`` and ``nstjax.sketch2photo.train``
    returned before (``result.g.params``, ``jax.device_get(result)``) keeps working.
    """

    state: Any
    run_dir: Path = flax.struct.field(pytree_node=False)
    step: int = flax.struct.field(pytree_node=False)
    total_steps: int = flax.struct.field(pytree_node=False)
    metrics: dict[str, float] = flax.struct.field(pytree_node=False)
    params: Any = flax.struct.field(pytree_node=False, default=None)
    config: Any = flax.struct.field(pytree_node=False, default=None)
    vgg_source: str | None = flax.struct.field(pytree_node=False, default=None)
    resumed_from: int | None = flax.struct.field(pytree_node=False, default=None)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names a result does not have.
        if name.startswith("__") or name == "state":
            raise AttributeError(name)
        return getattr(self.state, name)
