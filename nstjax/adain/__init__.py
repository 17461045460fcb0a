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

from .apply import AdaINModel, adain_transfer, apply_adain, load_adain_model, style_statistics, stylizer
from .config import AdaINConfig
from .losses import adain_terms
from .train import AdaINState, AdaINTrainResult, init_state, train_adain, train_step, vgg_digest

__all__ = [
    "AdaINConfig",
    "AdaINModel",
    "AdaINState",
    "AdaINTrainResult",
    "adain_terms",
    "adain_transfer",
    "apply_adain",
    "init_state",
    "load_adain_model",
    "style_statistics",
    "stylizer",
    "train_adain",
    "train_step",
    "vgg_digest",
]
