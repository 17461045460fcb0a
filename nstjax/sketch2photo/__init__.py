"""Sketch -> photo: SPADE / GauGAN (Park et al. 2019) and pix2pix (Isola et al. 2017), on the shared training core.

A person paints a colour-coded semantic sketch (sky, mountain, grass, flowers in
the :mod:`nstjax.labels` palette); a trained generator turns it into a photo-like
scene.

* :class:`Sketch2PhotoConfig` (:class:`SpadeConfig`, :class:`Pix2PixConfig`,
  :class:`nstjax.train.TrainSettings`);
* :func:`train`: a run directory from a folder of label maps and a folder of photos
  matched by file stem (resumable, multi-device), through :func:`nstjax.train.run` with
  the run :func:`train_system` describes;
* :func:`render` (files), :func:`render_labels` (arrays; the lost-painting
  pipeline's entry point), :class:`Renderer`;
* data: :func:`convert_ade20k` (ADE20K outdoor scenes onto the landscape palette),
  :func:`split_facades` (pix2pix's CMP Facades A|B images);
* the pieces: :func:`train_step_fn`, the loss terms, :class:`Sketch2PhotoState`,
  :func:`init_state`, :func:`init_variables`.

See ``docs/sketch2photo.md``.
"""

from ._config import (
    DTYPES,
    VGG_LAYERS,
    DtypeName,
    InputName,
    ModelName,
    NormName,
    Pix2PixConfig,
    Sketch2PhotoConfig,
    SpadeConfig,
    make_networks,
)
from ._datasets import (
    ConvertProgress,
    ConvertReport,
    ade20k_lookup,
    ade20k_mapping,
    convert_ade20k,
    fill_unmapped,
    split_facades,
)
from ._render import RenderProgress, Renderer, render, render_labels
from ._state import Sketch2PhotoState, init_state, init_variables, optimizers
from ._steps import (
    discriminate,
    feature_matching_loss,
    generate,
    generator_input,
    kld_loss,
    noise,
    spade_discriminator_losses,
    spade_generator_losses,
    step_keys,
    train_step_fn,
    vgg_loss,
)
from .training import (
    EXPORT_FORMAT,
    MAY_CHANGE_ON_RESUME,
    dataset,
    export_params,
    generate_samples,
    sample_batch,
    sample_grid,
    train,
    train_system,
)

__all__ = [
    "DTYPES",
    "EXPORT_FORMAT",
    "MAY_CHANGE_ON_RESUME",
    "VGG_LAYERS",
    "ConvertProgress",
    "ConvertReport",
    "DtypeName",
    "InputName",
    "ModelName",
    "NormName",
    "Pix2PixConfig",
    "RenderProgress",
    "Renderer",
    "Sketch2PhotoConfig",
    "Sketch2PhotoState",
    "SpadeConfig",
    "ade20k_lookup",
    "ade20k_mapping",
    "convert_ade20k",
    "dataset",
    "discriminate",
    "export_params",
    "feature_matching_loss",
    "fill_unmapped",
    "generate",
    "generate_samples",
    "generator_input",
    "init_state",
    "init_variables",
    "kld_loss",
    "make_networks",
    "noise",
    "optimizers",
    "render",
    "render_labels",
    "sample_batch",
    "sample_grid",
    "spade_discriminator_losses",
    "spade_generator_losses",
    "split_facades",
    "step_keys",
    "train",
    "train_step_fn",
    "train_system",
    "vgg_loss",
]
