"""The training core every trained model shares (CycleGAN, SPADE, pix2pix, feed-forward styles).

* :mod:`~nstjax.train.data` — image-folder datasets (unpaired, paired by stem, plain) and a
  seeded, threaded :class:`BatchLoader` whose batches are a pure function of the step;
* :mod:`~nstjax.train.state` — :class:`NetState` (params + optimiser state), schedules, the
  data-parallel mesh and batch sharding over devices and hosts;
* :mod:`~nstjax.train.checkpoint` — :class:`RunDir`: config, orbax checkpoints, inference export,
  metrics;
* :mod:`~nstjax.train.plots` — loss curves and sample grids;
* :mod:`~nstjax.train.loop` — :func:`fit`: the loop with logs, samples, checkpoints and Ctrl-C;
* :mod:`~nstjax.train.settings` — :class:`TrainSettings`: length, batch, seed, intervals;
* :mod:`~nstjax.train.hosts` — several processes: who writes, barriers, host copies;
* :mod:`~nstjax.train.system` — :class:`TrainSystem` (what a trained model tells the runner)
  and :class:`TrainResult`;
* :mod:`~nstjax.train.runner` — :func:`run`: one training run of any system (run directory,
  batches, resume, schedule, compilation cache, loop, export).
"""

from .checkpoint import RunDir, load_export, read_json, write_json
from .data import Augment, BatchLoader, FolderDataset, image_files, image_to_unit, paired, plain, unit_to_image, unpaired
from .hosts import any_process, barrier, is_primary, multi_process, to_host
from .loop import TrainingDiverged, TrainingInterrupted, TrainProgress, fit
from .plots import image_grid, read_metrics, save_grid, save_loss_curve
from .runner import run
from .settings import TrainSettings
from .state import (
    NetState,
    apply_gradients,
    check_batch_splits,
    constant_then_linear_decay,
    data_mesh,
    init_net,
    linear_decay_rate,
    replicate,
    shard_batch,
)
from .system import TrainResult, TrainSystem

__all__ = [
    "Augment",
    "BatchLoader",
    "FolderDataset",
    "NetState",
    "RunDir",
    "TrainProgress",
    "TrainResult",
    "TrainSettings",
    "TrainSystem",
    "TrainingDiverged",
    "TrainingInterrupted",
    "any_process",
    "apply_gradients",
    "barrier",
    "check_batch_splits",
    "constant_then_linear_decay",
    "linear_decay_rate",
    "data_mesh",
    "fit",
    "image_files",
    "image_grid",
    "image_to_unit",
    "init_net",
    "is_primary",
    "load_export",
    "multi_process",
    "paired",
    "plain",
    "read_json",
    "read_metrics",
    "replicate",
    "run",
    "save_grid",
    "save_loss_curve",
    "shard_batch",
    "to_host",
    "unit_to_image",
    "unpaired",
    "write_json",
]
