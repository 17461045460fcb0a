"""Feed-forward style transfer (Johnson, Alahi & Fei-Fei 2016): one trained network per style.

* :mod:`~nstjax.fast.config` — :class:`FastConfig`: model, loss weights and layers, optimiser;
* :mod:`~nstjax.fast.losses` — the perceptual loss on nstjax's VGG-19;
* :mod:`~nstjax.fast.train` — :func:`train_fast`: a run on a folder of content photos (its
  :class:`~nstjax.train.TrainSystem`, run by :func:`nstjax.train.run`);
* :mod:`~nstjax.fast.apply` — :func:`load_fast_model`, :func:`stylize_array`, :func:`apply_fast`
  (images, folders, videos) and :func:`import_torch_model` (PyTorch example checkpoints);
* inputs and outputs (images, folders, videos) are :mod:`nstjax.io.media`'s, shared with :mod:`nstjax.adain`;
  its names are re-exported here.

The network itself is :mod:`nstjax.models.johnson`.
"""

from ..io.media import MediaJob, MediaProgress, MediaResult, expand_inputs, plan_jobs, run_jobs
from .apply import FastModel, apply_fast, import_torch_model, load_fast_model, stylize_array
from .config import DEFAULT_STYLE_WEIGHTS, FAST_STYLE_LAYERS, FastConfig, default_style_weight
from .losses import perceptual_terms, style_grams, weighted_loss
from .train import FastState, FastTrainResult, evaluate_style_loss, init_state, train_fast, train_step

__all__ = [
    "DEFAULT_STYLE_WEIGHTS",
    "FAST_STYLE_LAYERS",
    "FastConfig",
    "FastModel",
    "FastState",
    "FastTrainResult",
    "MediaJob",
    "MediaProgress",
    "MediaResult",
    "apply_fast",
    "default_style_weight",
    "evaluate_style_loss",
    "expand_inputs",
    "import_torch_model",
    "init_state",
    "load_fast_model",
    "perceptual_terms",
    "plan_jobs",
    "run_jobs",
    "style_grams",
    "stylize_array",
    "train_fast",
    "train_step",
    "weighted_loss",
]
