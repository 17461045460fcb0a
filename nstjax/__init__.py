"""nstjax: neural style transfer in JAX (Gatys et al.).

A from-scratch Flax VGG-19 on converted ImageNet weights, jit-compiled content
and style losses, optimised with Optax L-BFGS or Adam::

    import nstjax
    image = nstjax.stylize("photo.jpg", "painting.jpg", size=512)   # [H, W, 3] RGB in [0, 1]
    nstjax.save_image("out.png", image)
"""

from .batch import stylize_batch
from .config import PRESETS, StylizeConfig, preset
from .errors import NstjaxError
from .images import load_image, save_image
from .losses import content_loss, gram_matrix, style_loss, total_variation_loss
from .stylize import StylizeInterrupted, StylizeResult, run_stylize, stylize, stylize_to_file
from .vgg import LAYERS, VGG19, features
from .weights import VGGWeights, load_weights

__all__ = [
    "LAYERS",
    "PRESETS",
    "VGG19",
    "NstjaxError",
    "StylizeConfig",
    "StylizeInterrupted",
    "StylizeResult",
    "VGGWeights",
    "content_loss",
    "features",
    "gram_matrix",
    "load_image",
    "load_weights",
    "preset",
    "run_stylize",
    "save_image",
    "style_loss",
    "stylize",
    "stylize_batch",
    "stylize_to_file",
    "total_variation_loss",
]
__version__ = "0.1.0"
