"""Networks shared by every system, as Flax Linen modules with pure-function wrappers.

* :mod:`~nstjax.models.vgg`: the VGG-19 / VGG-16 feature extractor (style and perceptual losses);
  its ImageNet weights are :mod:`nstjax.weights`'s (sources, readers, conversion, cache).
* :mod:`~nstjax.models.johnson`: Johnson et al.'s feed-forward transformer network.
* :mod:`~nstjax.models.adain`: AdaIN and its decoder (Huang & Belongie).
* :mod:`~nstjax.models.layers`: the convolution, upsampling and instance-norm layers the GAN
  networks share (the feed-forward networks use its padding, upsampling and instance norm).
* :mod:`~nstjax.models.conv`: how every convolution is computed (XLA's, im2col GEMM, Winograd,
  per-tap kernel gradients) and the one planner that picks among them (:func:`~nstjax.models.conv.plan`).
* :mod:`~nstjax.models.resnet_generator`: CycleGAN's ResNet generator; :mod:`~nstjax.models.unet`:
  GDL_code's U-Net generator; :mod:`~nstjax.models.patchgan`: the 70x70 PatchGAN discriminator.
* :mod:`~nstjax.models.spade`: SPADE (GauGAN) generator, encoder and multi-scale discriminator;
  :mod:`~nstjax.models.pix2pix`: pix2pix's U-Net.
"""

from .adain import Decoder, adaptive_instance_normalization, calc_mean_std, init_decoder
from .johnson import TransformerNet, init_transformer
from .patchgan import PatchGAN
from .pix2pix import Pix2PixUnet
from .resnet_generator import ResnetGenerator
from .spade import SPADE, ConvEncoder, MultiscaleDiscriminator, SPADEGenerator, SPADEResBlock
from .unet import UnetGenerator
from .vgg import LAYERS, VGG19, features, init_params

__all__ = [
    "LAYERS",
    "VGG19",
    "SPADE",
    "ConvEncoder",
    "Decoder",
    "MultiscaleDiscriminator",
    "PatchGAN",
    "Pix2PixUnet",
    "ResnetGenerator",
    "SPADEGenerator",
    "SPADEResBlock",
    "TransformerNet",
    "UnetGenerator",
    "adaptive_instance_normalization",
    "calc_mean_std",
    "init_decoder",
    "init_transformer",
    "features",
    "init_params",
]
