"""Arbitrary style transfer in real time: AdaIN (Huang & Belongie 2017).

One trained decoder serves every style image: the content's relu4_1 features
are renormalised to the style's per-channel mean and std, then decoded.

* :mod:`~nstjax.adain.config` — :class:`AdaINConfig` (the reference's training settings);
* :mod:`~nstjax.adain.losses` — content loss on the AdaIN target, mean/std style loss;
* :mod:`~nstjax.adain.train` — :func:`train_adain` on a content folder and a style folder (its
  :class:`~nstjax.train.TrainSystem`, run by :func:`nstjax.train.run`);
* :mod:`~nstjax.adain.apply` — :func:`load_adain_model`, :func:`adain_transfer`,
  :func:`apply_adain` (images, folders, videos; α, style blending, colour preservation).

The network pieces are :mod:`nstjax.models.adain`.
"""


from ..lazy import lazy_exports

# Public name -> the module that defines it, imported on first use (nstjax --help never imports JAX).
_EXPORTS = {
    "AdaINModel": ".apply",
    "adain_transfer": ".apply",
    "apply_adain": ".apply",
    "load_adain_model": ".apply",
    "style_statistics": ".apply",
    "stylizer": ".apply",
    "AdaINConfig": ".config",
    "adain_terms": ".losses",
    "ADAIN_APPLY_SETTINGS": ".settings",
    "ADAIN_TRAIN_SETTINGS": ".settings",
    "AdaINState": ".train",
    "AdaINTrainResult": ".train",
    "init_state": ".train",
    "train_adain": ".train",
    "train_step": ".train",
    "vgg_digest": ".train",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
