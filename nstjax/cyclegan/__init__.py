"""CycleGAN (Zhu et al. 2017): unpaired image-to-image translation, on the shared training core.

Two generators (G_AB: A->B, G_BA: B->A; ResNet or GDL_code's U-Net) and two
70x70 PatchGAN discriminators (D_A judges domain-A images, D_B domain B),
trained with LSGAN losses, cycle-consistency L1 (lambda 10) and identity L1
(0.5 lambda), Adam 2e-4 (beta1 0.5) constant then decaying linearly to 0, and a
50-image history pool per discriminator kept inside the jitted train state.

* :class:`CycleGANConfig` (:class:`ModelConfig`, :class:`LossConfig`,
  :class:`OptimConfig`, :class:`nstjax.train.TrainSettings`);
* :func:`train`: a run directory from two image folders (resumable, multi-device), through
  :func:`nstjax.train.run` with the run :func:`train_system` describes;
* :func:`translate` / :class:`Translator` / :func:`translate_images`: images of any size
  with a run's export (files, or arrays in memory);
* the pieces: :func:`train_step_fn`, :func:`generator_losses`,
  :func:`discriminator_losses`, :class:`CycleGANState`, :func:`init_state`,
  :func:`query_pool`.

See ``docs/cyclegan.md``.
"""


from ..lazy import lazy_exports

# Public name -> the module that defines it, imported on first use (nstjax --help never imports JAX).
_EXPORTS = {
    "DTYPES": "._config",
    "CycleGANConfig": "._config",
    "DtypeName": "._config",
    "GeneratorName": "._config",
    "LossConfig": "._config",
    "ModelConfig": "._config",
    "OptimConfig": "._config",
    "make_discriminator": "._config",
    "make_generator": "._config",
    "ImagePool": "._pool",
    "init_pool": "._pool",
    "pool_draws": "._pool",
    "query_pool": "._pool",
    "CycleGANState": "._state",
    "init_params": "._state",
    "init_state": "._state",
    "optimizer": "._state",
    "discriminator_losses": "._step",
    "generator_losses": "._step",
    "train_step_fn": "._step",
    "CYCLEGAN_TRAIN_SETTINGS": ".settings",
    "EXPORT_FORMAT": ".training",
    "MAY_CHANGE_ON_RESUME": ".training",
    "export_params": ".training",
    "sample_grid": ".training",
    "sample_images": ".training",
    "train": ".training",
    "train_system": ".training",
    "DIRECTIONS": "._translate",
    "Direction": "._translate",
    "TranslateProgress": "._translate",
    "Translator": "._translate",
    "translate": "._translate",
    "translate_images": "._translate",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
