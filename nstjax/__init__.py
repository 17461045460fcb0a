"""nstjax: neural style transfer and its generative cousins in JAX.

Gatys et al.'s optimisation on a from-scratch Flax VGG-19 with converted
ImageNet weights, jit-compiled losses, Optax L-BFGS or Adam::

    import nstjax
    image = nstjax.stylize("photo.jpg", "painting.jpg", size=512)   # [H, W, 3] RGB in [0, 1]
    nstjax.save_image("out.png", image)

Each system is a subpackage (:mod:`nstjax.nst`, ...); shared parts are
:mod:`nstjax.io`, :mod:`nstjax.models`, :mod:`nstjax.losses` and
:mod:`nstjax.hub`. The names below are re-exported from them and imported on
first use, so ``import nstjax`` (and ``nstjax --help``) stays fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from .errors import NstjaxError
from .lazy import lazy_exports

try:
    __version__ = version("nstjax")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# Public name -> module that defines it.
_EXPORTS = {
    "LAYERS": "nstjax.models.vgg",
    "VGG19": "nstjax.models.vgg",
    "features": "nstjax.models.vgg",
    "VGGWeights": "nstjax.weights",
    "load_weights": "nstjax.weights",
    "content_loss": "nstjax.losses.style",
    "gram_matrix": "nstjax.losses.style",
    "style_loss": "nstjax.losses.style",
    "total_variation_loss": "nstjax.losses.style",
    "load_image": "nstjax.io.images",
    "save_image": "nstjax.io.images",
    "PRESETS": "nstjax.nst.config",
    "StylizeConfig": "nstjax.nst.config",
    "preset": "nstjax.nst.config",
    "StylizeInterrupted": "nstjax.nst.run",
    "StylizeResult": "nstjax.nst.run",
    "run_stylize": "nstjax.nst.run",
    "stylize": "nstjax.nst.run",
    "stylize_to_file": "nstjax.nst.run",
    "stylize_batch": "nstjax.nst.batch",
    "recreate_painting": "nstjax.recreate",
    "sky_on_ground_score": "nstjax.recreate",
    "sky_on_ground_patch_score": "nstjax.recreate",
    "label_painting": "nstjax.recreate",
}

__all__ = ["NstjaxError", "__version__", *sorted(_EXPORTS)]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
