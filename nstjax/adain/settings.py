"""The settings of AdaIN, declared once: training a decoder and applying it.

* :data:`ADAIN_TRAIN_SETTINGS`: ``nstjax adain train``'s options, each the :class:`~nstjax.adain.config.AdaINConfig`
  field of the same name and default (``lr`` is ``learning_rate``; ``encoder``: Gatys-normalised or raw VGG), plus ``weights``
  (:func:`~nstjax.adain.train.train_adain`'s VGG weights) and the batch size of
  :data:`~nstjax.train.settings.TRAIN_SETTINGS` at the reference's 8;
* :data:`ADAIN_APPLY_SETTINGS`: ``nstjax adain apply``'s options: the style's (``alpha``, ``style_blend``,
  ``preserve_color``, ``style_size``, ``weights``: keyword arguments of :func:`~nstjax.adain.apply.apply_adain`,
  ``style_blend`` is its ``blend``), then :data:`nstjax.fast.settings.MEDIA_APPLY_SETTINGS` with contents
  resized to 512 px (the reference's) unless told otherwise.
"""

from __future__ import annotations

import dataclasses

from ..fast.settings import MEDIA_APPLY_SETTINGS
from ..schema import Schema, Setting
from ..train.settings import TRAIN_SETTINGS
from .config import DTYPES, ENCODERS, AdaINConfig

__all__ = ["ADAIN_APPLY_SETTINGS", "ADAIN_TRAIN_SETTINGS"]

_DEFAULT = AdaINConfig()

ADAIN_TRAIN_SETTINGS = Schema(
    "adain-train",
    (
        Setting("size", int, "Side of the square training crops (a multiple of 8).", default=_DEFAULT.size,
                unit="px", minimum=16, label="Crop size", group="basic", widget="number", look={"step": 8}),
        Setting("load_size", int, "Side of the square images are squashed to before cropping (the reference's 512x512).", default=_DEFAULT.load_size,
                unit="px", minimum=16, label="Load size", widget="number", look={"step": 32}),
        Setting("content_weight", float, "Weight of the content loss.", default=_DEFAULT.content_weight,
                minimum=0.0, label="Content weight", group="basic", widget="number", look={"step": 0.1}),
        Setting("style_weight", float, "Weight of the style loss (the paper's lambda).",
                default=_DEFAULT.style_weight, minimum=0.0, label="Style weight", group="basic", widget="number",
                look={"step": 1}),
        Setting("lr", float, "Adam learning rate (decays as lr / (1 + decay * step)).",
                default=_DEFAULT.learning_rate, minimum=0.0, flags=("--lr",), label="Adam learning rate",
                widget="number", look={"step": 1e-5}),
        Setting("lr_decay", float, "Learning-rate decay per step.", default=_DEFAULT.lr_decay, minimum=0.0,
                unit="per step", label="Learning-rate decay", widget="number", look={"step": 1e-5}),
        Setting("dtype", str, "Compute dtype.", default=_DEFAULT.dtype, choices=DTYPES, label="Compute dtype",
                widget="select"),
        Setting("weights", str, "VGG-19/16 weights of the encoder: auto, random, a name (nstjax weights list), a "
                "file.", label="VGG weights", group="basic", widget="select",
                web_help="auto, keras, torchvision, gatys or random (a file only through the server's --weights)."),
        Setting("encoder", str, "Encoder scale: normalised (each filter's mean activation 1, as the reference's "
                "vgg_normalised) or raw (the weights as loaded).", default=_DEFAULT.encoder, choices=ENCODERS,
                label="Encoder normalisation", widget="select"),
        dataclasses.replace(TRAIN_SETTINGS["batch_size"], default=8),  # the reference's
    ),
)  # fmt: skip
"""Every setting of an AdaIN decoder's training a user chooses, and its batch size (8, the reference's)."""

_SIZE = dataclasses.replace(
    MEDIA_APPLY_SETTINGS["size"],
    help="Short side contents (images, frames) are resized to (the reference's); 0 keeps their size.",
    default=512,
    minimum=0,
)  # AdaIN works at the reference's 512 px unless told otherwise

ADAIN_APPLY_SETTINGS = Schema(
    "adain-apply",
    (
        Setting("alpha", float, "Style strength: 0 gives the content back, 1 full style.", default=1.0, minimum=0.0,
                maximum=1.0, label="Style strength", group="basic", widget="range", look={"step": 0.05}),
        Setting("style_blend", str, "Weights of several styles, e.g. 0.7,0.3.", label="Style blend", group="basic",
                widget="style-weights"),
        Setting("preserve_color", bool, "Keep the content's colours.", default=False, flags=("--preserve-color",),
                label="Keep the content's colours", group="basic", widget="checkbox"),
        Setting("style_size", int, "Short side of the style images (the reference's); 0 keeps their size.", default=512, unit="px",
                minimum=0, label="Style image size", widget="number", look={"step": 32}),
        Setting("weights", str, "VGG-19 weights (default: those the decoder was trained on).", label="VGG weights",
                widget="select"),
        *(_SIZE if setting.name == "size" else setting for setting in MEDIA_APPLY_SETTINGS),
    ),
)  # fmt: skip
"""Every ``adain apply`` setting: the style's, then the media's (:data:`~nstjax.fast.settings.MEDIA_APPLY_SETTINGS`,
``size`` at 512 px and 0 allowed). Paths, ``quality``, ``crf`` and ``quiet`` are CLI-only."""
