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


from ..lazy import lazy_exports

# Public name -> the module that defines it, imported on first use (nstjax --help never imports JAX).
_EXPORTS = {
    "DTYPES": "._config",
    "VGG_INPUTS": "._config",
    "VGG_LAYERS": "._config",
    "DtypeName": "._config",
    "InputName": "._config",
    "ModelName": "._config",
    "NormName": "._config",
    "Pix2PixConfig": "._config",
    "Sketch2PhotoConfig": "._config",
    "SpadeConfig": "._config",
    "make_networks": "._config",
    "ConvertProgress": "._datasets",
    "ConvertReport": "._datasets",
    "ade20k_lookup": "._datasets",
    "ade20k_mapping": "._datasets",
    "convert_ade20k": "._datasets",
    "fill_unmapped": "._datasets",
    "split_facades": "._datasets",
    "RenderProgress": "._render",
    "Renderer": "._render",
    "render": "._render",
    "render_labels": "._render",
    "Sketch2PhotoState": "._state",
    "init_state": "._state",
    "init_variables": "._state",
    "optimizers": "._state",
    "discriminate": "._steps",
    "feature_matching_loss": "._steps",
    "generate": "._steps",
    "generator_input": "._steps",
    "kld_loss": "._steps",
    "noise": "._steps",
    "spade_discriminator_losses": "._steps",
    "spade_generator_losses": "._steps",
    "step_keys": "._steps",
    "train_step_fn": "._steps",
    "vgg_loss": "._steps",
    "vgg_loss_params": "._steps",
    "vgg_scale": "._steps",
    "SKETCH2PHOTO_TRAIN_SETTINGS": ".settings",
    "EXPORT_FORMAT": ".training",
    "MAY_CHANGE_ON_RESUME": ".training",
    "dataset": ".training",
    "export_params": ".training",
    "generate_samples": ".training",
    "sample_batch": ".training",
    "sample_grid": ".training",
    "train": ".training",
    "train_system": ".training",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
