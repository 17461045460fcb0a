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


from ..lazy import lazy_exports

# Public name -> the module that defines it, imported on first use (nstjax --help never imports JAX).
_EXPORTS = {
    "MediaJob": "..io.media",
    "MediaProgress": "..io.media",
    "MediaResult": "..io.media",
    "expand_inputs": "..io.media",
    "plan_jobs": "..io.media",
    "run_jobs": "..io.media",
    "FastModel": ".apply",
    "apply_fast": ".apply",
    "import_torch_model": ".apply",
    "load_fast_model": ".apply",
    "stylize_array": ".apply",
    "DEFAULT_STYLE_WEIGHTS": ".config",
    "FAST_STYLE_LAYERS": ".config",
    "JOHNSON_STYLE_LAYERS": ".config",
    "default_style_layers": ".config",
    "FastConfig": ".config",
    "default_style_weight": ".config",
    "perceptual_terms": ".losses",
    "style_grams": ".losses",
    "weighted_loss": ".losses",
    "FAST_TRAIN_SETTINGS": ".settings",
    "MEDIA_APPLY_SETTINGS": ".settings",
    "FastState": ".train",
    "FastTrainResult": ".train",
    "evaluate_style_loss": ".train",
    "init_state": ".train",
    "train_fast": ".train",
    "train_step": ".train",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
