"""The training core every trained model shares (CycleGAN, SPADE, pix2pix, feed-forward styles).

* :mod:`~nstjax.train.data` — image-folder datasets (unpaired, paired by stem, plain) and a
  seeded, threaded :class:`BatchLoader` whose batches are a pure function of the step;
* :mod:`~nstjax.train.optimizer` — :func:`adam`: ``optax.adam`` that the GAN steps take in one pass per array;
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


from ..lazy import lazy_exports

# Public name -> the module that defines it, imported on first use (nstjax --help never imports JAX).
_EXPORTS = {
    "Adam": ".optimizer",
    "adam": ".optimizer",
    "RunDir": ".checkpoint",
    "load_export": ".checkpoint",
    "read_json": ".checkpoint",
    "write_json": ".checkpoint",
    "Augment": ".data",
    "BatchLoader": ".data",
    "FolderDataset": ".data",
    "image_files": ".data",
    "image_to_unit": ".data",
    "paired": ".data",
    "plain": ".data",
    "unit_to_image": ".data",
    "unpaired": ".data",
    "any_process": ".hosts",
    "barrier": ".hosts",
    "is_primary": ".hosts",
    "multi_process": ".hosts",
    "to_host": ".hosts",
    "TrainingDiverged": ".loop",
    "TrainingInterrupted": ".loop",
    "TrainProgress": ".loop",
    "fit": ".loop",
    "image_grid": ".plots",
    "read_metrics": ".plots",
    "save_grid": ".plots",
    "save_loss_curve": ".plots",
    "run": ".runner",
    "TrainSettings": ".settings",
    "NetState": ".state",
    "apply_gradients": ".state",
    "check_batch_splits": ".state",
    "constant_then_linear_decay": ".state",
    "data_mesh": ".state",
    "init_net": ".state",
    "linear_decay_rate": ".state",
    "replicate": ".state",
    "shard_batch": ".state",
    "TrainResult": ".system",
    "TrainSystem": ".system",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
