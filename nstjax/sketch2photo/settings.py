"""The settings of a SPADE or pix2pix training run, declared once: :data:`SKETCH2PHOTO_TRAIN_SETTINGS`.

``nstjax sketch2photo train`` generates its model and loss options from this table (the length, batch and
intervals are :data:`nstjax.train.settings.TRAIN_SETTINGS`). Each setting is a field of
:class:`~nstjax.sketch2photo.Sketch2PhotoConfig`, with the config's default: ``model``, ``size``, ``palette`` and
``dtype`` of the config itself; ``ngf``/``ndf`` of both ``spade`` and ``pix2pix``; ``hidden``, ``vae``
(``use_vae``), ``norm``, ``lambda_vgg`` and ``vgg_input`` of ``spade``; ``input_kind`` (``--input``) of
``pix2pix``. ``weights``
is :func:`~nstjax.sketch2photo.train`'s argument: the VGG weights of SPADE's perceptual loss.

This module imports no JAX (the CLI reads it at start-up), so the choices are written here; a test checks
them against the config's ``ModelName``, ``NormName``, ``InputName``, ``DTYPES`` and ``VGG_INPUTS``.
"""

from __future__ import annotations

from ..schema import Schema, Setting

__all__ = ["SKETCH2PHOTO_TRAIN_SETTINGS"]

SKETCH2PHOTO_TRAIN_SETTINGS = Schema(
    "sketch2photo-train",
    (
        Setting("model", str, "spade (GauGAN) or pix2pix (the U-Net baseline).", default="spade",
                choices=("spade", "pix2pix"), label="Model", group="basic", widget="select"),
        Setting("size", int, "Side of the square training crops in pixels.", default=256, unit="px",
                label="Crop size", group="basic", widget="number", look={"min": 64, "step": 32}),
        Setting("ngf", int, "Generator width (SPADE: of its last block; pix2pix: first layer).", default=64,
                unit="channels", label="Generator width", widget="number", look={"min": 1, "step": 16}),
        Setting("ndf", int, "Channels of the discriminators' first layer.", default=64, unit="channels",
                label="Discriminator width", widget="number", look={"min": 1, "step": 16}),
        Setting("palette", str, "Palette of the label maps: a shipped name or a JSON file.", default="landscape",
                label="Palette", group="basic", web_help="A shipped palette's name (landscape, …)."),
        Setting("hidden", int, "SPADE: channels of each SPADE layer's shared convolution.", default=128,
                unit="channels", label="SPADE hidden width", widget="number", look={"min": 1, "step": 16}),
        Setting("vae", bool, "SPADE: also train the image encoder (style images at render).", default=False,
                flags=("--vae",), label="Train the style encoder (VAE)", widget="checkbox"),
        Setting("norm", str, "SPADE's parameter-free norm (batch: the paper's).", default="batch",
                choices=("batch", "instance"), label="SPADE normalisation", widget="select"),
        Setting("weights", str, "VGG weights of SPADE's perceptual loss: auto, random, a name (nstjax weights "
                "list), a file.", label="VGG weights", widget="select",
                web_help="auto, keras, torchvision, gatys or random (a file only through the server's --weights)."),
        Setting("lambda_vgg", float, "SPADE: weight of the VGG perceptual loss (0 = off).", default=10.0,
                label="Perceptual (VGG) loss weight", widget="number", look={"min": 0, "step": 1}),
        Setting("vgg_input", str, "SPADE: the VGG loss's scale: nvlabs (NVlabs' whatever the weights) or "
                "preprocessed (nstjax's former: 2x with torch weights, 119x with the Caffe VGG-16).",
                default="nvlabs", choices=("nvlabs", "preprocessed"), label="Perceptual loss input", widget="select"),
        Setting("input_kind", str, "pix2pix: labels (label maps) or image (RGB inputs, e.g. facades).",
                default="labels", choices=("labels", "image"), flags=("--input",), label="pix2pix input",
                widget="select"),
        Setting("dtype", str, "Compute dtype (bfloat16: GPUs/TPUs).", default="float32",
                choices=("float32", "bfloat16"), label="Compute dtype", widget="select"),
    ),
)  # fmt: skip
"""Every SPADE/pix2pix model and loss setting a user chooses: help, unit, choices and web widget."""
