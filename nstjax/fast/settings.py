"""The settings of feed-forward style networks, declared once: training and applying.

* :data:`FAST_TRAIN_SETTINGS`: ``nstjax fast train``'s model and loss options, each the
  :class:`~nstjax.fast.config.FastConfig` field of the same name (``lr`` is ``learning_rate``, ``style_layers``
  is parsed), plus ``weights`` (:func:`~nstjax.fast.train.train_fast`'s VGG weights) and the batch size of
  :data:`~nstjax.train.settings.TRAIN_SETTINGS` at the paper's 4;
* :data:`MEDIA_APPLY_SETTINGS`: how images, folders and videos are stylised and written, shared by
  ``nstjax fast apply`` and ``nstjax adain apply`` (the keyword arguments of
  :func:`~nstjax.fast.apply.apply_fast`; ``crf`` is ``video_quality``). ``output`` and ``quiet`` are CLI-only.

This module imports no JAX (the CLI reads it at start-up), so the choices are written here; a test checks
them against ``FastConfig``'s (``OUTPUTS``, ``POOLINGS``, ``DTYPES``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..schema import Schema, Setting
from ..train.settings import TRAIN_SETTINGS

__all__ = ["FAST_TRAIN_SETTINGS", "MEDIA_APPLY_SETTINGS"]

_DTYPES = ("float32", "bfloat16")  # FastConfig's (nstjax.fast.config.DTYPES), without its JAX imports

FAST_TRAIN_SETTINGS = Schema(
    "fast-train",
    (
        Setting("size", int, "Side of the square training crops.", default=256, unit="px", minimum=16,
                label="Crop size", group="basic", widget="number", look={"step": 32}),
        Setting("style_size", int, "Longest side of the style image (default: its own size, as the PyTorch example).", unit="px", minimum=16,
                label="Style image size", group="basic", widget="number", look={"step": 32}),
        Setting("content_weight", float, "Weight of the content (feature) loss.", default=1.0, minimum=0.0,
                label="Content weight", group="basic", widget="log-range", look={"min": -2, "max": 3, "zero": True}),
        Setting("style_weight", float, "Weight of the style loss (default by weights: 120 keras, 4e5 others).",
                minimum=0.0, label="Style weight", group="basic", widget="log-range", look={"min": 0, "max": 7}),
        Setting("tv_weight", float, "Weight of the total-variation loss.", default=0.0, minimum=0.0,
                label="Smoothness (TV) weight", widget="log-range", look={"min": -1, "max": 8, "zero": True}),
        Setting("content_layer", str, "VGG layer of the content loss.", default="relu2_2", label="Content layer"),
        Setting("style_layers", str, "Style layers with optional weights (default: relu1_2,relu2_2,relu3_3,relu4_3 "
                "with VGG-16 weights, as in the paper; relu1_1,…,relu5_1 with VGG-19).",
                label="Style layers", look={"placeholder": "e.g. relu1_1:1,relu2_1:0.5,relu3_1"}),
        Setting("lr", float, "Adam learning rate (constant).", default=1e-3, minimum=0.0, flags=("--lr",),
                label="Adam learning rate", widget="number", look={"step": 1e-4}),
        Setting("output", str, "Last layer: linear (PyTorch example) or tanh (paper).", default="linear",
                choices=("linear", "tanh"), label="Last layer", widget="select"),
        Setting("pooling", str, "Pooling of the loss network.", default="max", choices=("max", "avg"),
                label="Pooling", widget="select"),
        Setting("dtype", str, "Compute dtype.", default="float32", choices=_DTYPES, label="Compute dtype",
                widget="select"),
        Setting("weights", str, "VGG-19/16 weights of the loss: auto, random, a name (nstjax weights list), a file.",
                label="VGG weights", group="basic", widget="select",
                web_help="auto, keras, torchvision, gatys or random (a file only through the server's --weights)."),
        dataclasses.replace(TRAIN_SETTINGS["batch_size"], default=4),  # the paper's
    ),
)  # fmt: skip
"""Every setting of a feed-forward network's training a user chooses, and its batch size (4, the paper's)."""

MEDIA_APPLY_SETTINGS = Schema(
    "media-apply",
    (
        Setting("output", Path, "Output file, or a folder for several inputs.", flags=("--output", "-o"),
                web=False, required=True),
        Setting("size", int, "Resize inputs (images and frames) to this longest side first.", unit="px", minimum=16,
                label="Size (longest side, px)", group="basic", widget="number", look={"step": 32}),
        Setting("batch_size", int, "Video frames stylised at a time.", default=4, unit="frames", minimum=1,
                label="Frames at a time", widget="number", look={"step": 1}),
        Setting("blend", float, "Video: temporal blending of still regions with the previous frame, 0 (off) to <1; "
                "lowers flicker, adds ghosting.", default=0.0, minimum=0.0, maximum=0.99, label="Frame blending",
                group="basic", widget="range", look={"step": 0.05}),
        Setting("motion", float, "Video: input change (0-1) above which a pixel is not blended.", default=0.1,
                minimum=0.001, label="Motion threshold", widget="number", look={"max": 1, "step": 0.01}),
        Setting("quality", int, "JPEG/WebP quality of images.", default=95, minimum=1, maximum=100, web=False),
        Setting("crf", int, "Video quality: H.264 CRF (lower is better; VP9 adds 13).", default=18, minimum=0,
                maximum=50, web=False),
        Setting("dtype", str, "Compute dtype.", default="float32", choices=_DTYPES, label="Compute dtype",
                widget="select"),
        Setting("quiet", bool, "No progress bar.", default=False, flags=("--quiet", "-q"), web=False),
    ),
)  # fmt: skip
"""How a trained network's inputs are read and its outputs written (``fast apply``, ``adain apply``): help,
range and web widget. ``output``, ``quality``, ``crf`` and ``quiet`` are CLI-only."""
