"""Networks shared by every system, as Flax Linen modules with pure-function wrappers.

* :mod:`~nstjax.models.vgg`: the VGG-19 feature extractor (style and perceptual losses);
  :mod:`~nstjax.models.vgg_weights`: its ImageNet weights (sources, download, conversion, cache).
* :mod:`~nstjax.models.johnson`: Johnson et al.'s feed-forward transformer network.
* :mod:`~nstjax.models.adain`: AdaIN and its decoder (Huang & Belongie).
* :mod:`~nstjax.models.spade`: SPADE (GauGAN) generator, encoder and multi-scale discriminator;
  :mod:`~nstjax.models.pix2pix`: pix2pix's U-Net.
"""

from .adain import Decoder, adaptive_instance_normalization, calc_mean_std, init_decoder
from .johnson import TransformerNet, init_transformer
from .pix2pix import Pix2PixUnet
from .spade import SPADE, ConvEncoder, MultiscaleDiscriminator, SPADEGenerator, SPADEResBlock
from .vgg import LAYERS, VGG19, features, init_params
from .vgg_weights import VGGWeights, load_weights, random_weights, resolve_weights

__all__ = [
    "LAYERS",
    "VGG19",
    "SPADE",
    "ConvEncoder",
    "Decoder",
    "MultiscaleDiscriminator",
    "Pix2PixUnet",
    "SPADEGenerator",
    "SPADEResBlock",
    "TransformerNet",
    "adaptive_instance_normalization",
    "calc_mean_std",
    "init_decoder",
    "init_transformer",
    "VGGWeights",
    "features",
    "init_params",
    "load_weights",
    "random_weights",
    "resolve_weights",
]
