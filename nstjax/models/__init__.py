"""Networks shared by every system, as Flax Linen modules with pure-function wrappers.

* :mod:`~nstjax.models.vgg`: the VGG-19 / VGG-16 feature extractor (style and perceptual losses);
  its ImageNet weights are :mod:`nstjax.weights`'s (sources, readers, conversion, cache).
* :mod:`~nstjax.models.johnson`: Johnson et al.'s feed-forward transformer network.
* :mod:`~nstjax.models.adain`: AdaIN and its decoder (Huang & Belongie).
* :mod:`~nstjax.models.layers`: the convolution, upsampling and instance-norm layers the GAN
  networks share (the feed-forward networks use its padding, upsampling and instance norm).
* :mod:`~nstjax.models.conv`: how every convolution is computed (XLA's, im2col GEMM, Winograd,
  per-tap kernel gradients) and the one planner that picks among them (:func:`~nstjax.models.conv.plan`;
  for bfloat16 on CPUs with fast bfloat16, from timings made once per machine and shape class).
* :mod:`~nstjax.models.vgg_normalise`: Gatys et al.'s normalised VGG computed from loaded weights
  (mean activation 1 per filter; AdaIN's encoder).
* :mod:`~nstjax.models.resnet_generator`: CycleGAN's ResNet generator; :mod:`~nstjax.models.unet`:
  GDL_code's U-Net generator; :mod:`~nstjax.models.patchgan`: the 70x70 PatchGAN discriminator.
* :mod:`~nstjax.models.spade`: SPADE (GauGAN) generator, encoder and multi-scale discriminator;
  :mod:`~nstjax.models.pix2pix`: pix2pix's U-Net.
"""


from ..lazy import lazy_exports

# Public name -> the module that defines it, imported on first use (nstjax --help never imports JAX).
_EXPORTS = {
    "Decoder": ".adain",
    "adaptive_instance_normalization": ".adain",
    "calc_mean_std": ".adain",
    "init_decoder": ".adain",
    "TransformerNet": ".johnson",
    "init_transformer": ".johnson",
    "PatchGAN": ".patchgan",
    "Pix2PixUnet": ".pix2pix",
    "ResnetGenerator": ".resnet_generator",
    "SPADE": ".spade",
    "ConvEncoder": ".spade",
    "MultiscaleDiscriminator": ".spade",
    "SPADEGenerator": ".spade",
    "SPADEResBlock": ".spade",
    "UnetGenerator": ".unet",
    "LAYERS": ".vgg",
    "VGG19": ".vgg",
    "features": ".vgg",
    "init_params": ".vgg",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
