"""Networks shared by every system, as Flax Linen modules with pure-function wrappers.

:mod:`~nstjax.models.vgg`: the VGG-19 feature extractor (style and perceptual
losses). :mod:`~nstjax.models.vgg_weights`: its ImageNet weights (sources,
download, conversion, cache).
"""

from .vgg import LAYERS, VGG19, features, init_params
from .vgg_weights import VGGWeights, load_weights, random_weights, resolve_weights

__all__ = [
    "LAYERS",
    "VGG19",
    "VGGWeights",
    "features",
    "init_params",
    "load_weights",
    "random_weights",
    "resolve_weights",
]
