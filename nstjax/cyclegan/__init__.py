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

from ._config import (
    DTYPES,
    CycleGANConfig,
    DtypeName,
    GeneratorName,
    LossConfig,
    ModelConfig,
    OptimConfig,
    make_discriminator,
    make_generator,
)
from ._pool import ImagePool, init_pool, pool_draws, query_pool
from ._state import CycleGANState, init_params, init_state, optimizer
from ._step import discriminator_losses, generator_losses, train_step_fn
from .training import (
    EXPORT_FORMAT,
    MAY_CHANGE_ON_RESUME,
    export_params,
    sample_grid,
    sample_images,
    train,
    train_system,
)
from ._translate import DIRECTIONS, Direction, TranslateProgress, Translator, translate, translate_images

__all__ = [
    "DIRECTIONS",
    "DTYPES",
    "EXPORT_FORMAT",
    "MAY_CHANGE_ON_RESUME",
    "CycleGANConfig",
    "CycleGANState",
    "Direction",
    "DtypeName",
    "GeneratorName",
    "ImagePool",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "TranslateProgress",
    "Translator",
    "discriminator_losses",
    "export_params",
    "generator_losses",
    "init_params",
    "init_pool",
    "init_state",
    "make_discriminator",
    "make_generator",
    "optimizer",
    "pool_draws",
    "query_pool",
    "sample_grid",
    "sample_images",
    "train",
    "train_step_fn",
    "train_system",
    "translate",
    "translate_images",
]
