"""The settings of Gatys style transfer, declared once: :data:`STYLIZE_SETTINGS`.

``nstjax stylize`` and ``stylize-batch`` generate their options from this table,
``nstjax serve`` its form and the checks of its JSON API, and
:func:`config_from_settings` turns the values into a
:class:`~nstjax.nst.config.StylizeConfig`. A value of ``None`` means "not
given": the preset's value stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..models.vgg_layers import CONV_IMPLS, PADDINGS, POOLINGS, REMATS
from ..schema import Schema, Setting, form_text
from .config import (
    COLOR_MATCH_METHODS,
    DTYPES,
    INITS,
    OPTIMIZERS,
    PRESERVE_COLORS,
    StylizeConfig,
    from_flags,
    parse_floats,
    parse_layer_weights,
)

__all__ = ["STYLIZE_SETTINGS", "config_from_settings", "settings_of_config"]

PRESET_CHOICES = ("auto", "gatys", "neural-style", "cpu", "fast")

STYLIZE_SETTINGS = Schema(
    "stylize",
    (
        Setting("preset", str, "Starting settings. auto: gatys on a GPU/TPU, cpu (a few minutes) on a CPU.",
                default="auto", choices=PRESET_CHOICES, label="Preset", group="basic", widget="select"),
        Setting("size", int, "Longest side of the output in pixels.", unit="px", label="Size (longest side, px)",
                group="basic", widget="range", look={"min": 64, "step": 32}),
        Setting("steps", int, "Optimiser steps (at the final scale).", unit="steps", label="Steps", group="basic",
                widget="range", look={"min": 10, "max": 2000, "step": 10}),
        Setting("optimizer", str, "Optimiser.", choices=OPTIMIZERS, label="Optimiser", widget="select"),
        Setting("lr", float, "Adam learning rate ([0, 1] pixel units).", unit="[0, 1] pixel units", flags=("--lr",),
                label="Adam learning rate", widget="number", look={"min": 0, "step": 0.005}),
        Setting("content_weight", float, "Weight of the content loss.", label="Content weight", group="basic",
                widget="log-range", look={"min": -2, "max": 3}),
        Setting("style_weight", float, "Weight of the style loss.", label="Style weight", group="basic",
                widget="log-range", look={"min": 1, "max": 7}),
        Setting("tv_weight", float, "Weight of the total-variation loss.", label="Smoothness (TV) weight",
                group="basic", widget="log-range", look={"min": -1, "max": 8, "zero": True}),
        Setting("content_layers", str, "Content layers with optional weights, e.g. relu4_2 or relu4_2:1,relu5_2:0.5.",
                label="Content layers"),
        Setting("style_layers", str, "Style layers with optional weights, e.g. relu1_1:1,relu2_1:0.5,relu3_1.",
                label="Style layers"),
        Setting("pooling", str, "VGG pooling.", choices=POOLINGS, label="Pooling", widget="select"),
        Setting("padding", str, "VGG convolution padding.", choices=PADDINGS, label="Padding", widget="select"),
        Setting("init", str, "Start image: content, noise, style, grey, or an image file.", label="Start from",
                widget="select", web_choices=INITS, web_help="Start image: content, noise, style or grey."),
        Setting("scales", str, "Coarse-to-fine: a count (3 = size/4, size/2, size) or sizes, e.g. 256,512.",
                label="Coarse-to-fine scales", look={"placeholder": "e.g. 3 or 256,512"}),
        Setting("scale_steps", str, "Steps at each coarser scale, e.g. 300,200.", label="Steps at coarser scales",
                look={"placeholder": "e.g. 300,200"}),
        Setting("seed", int, "Random seed (noise init, random weights).", label="Seed", widget="number",
                look={"min": 0, "step": 1}),
        Setting("weights", str, "VGG-19/16 weights: auto, random, a name from `nstjax weights list`, or a file.",
                label="VGG weights", group="basic", widget="select",
                web_help="auto, keras, torchvision, gatys or random (a file only through the server's --weights)."),
        Setting("dtype", str, "Compute dtype.", choices=DTYPES, label="Compute dtype", widget="select"),
        Setting("remat", str, "Rematerialisation (memory for compute).", choices=("auto", *REMATS),
                label="Rematerialisation", widget="select"),
        Setting("conv_impl", str, "How convolutions are computed: xla, gemm (matrix products), winograd (Winograd's "
                "F(2x2, 3x3): 2.25x fewer multiply-adds), onednn (oneDNN's, on CPU with the onednn extra), or auto "
                "(per layer, from the device, the CPU's bfloat16 support and the layer's size). Same result up to "
                "float rounding, different speed.",
                choices=CONV_IMPLS, label="Convolutions", widget="select"),
        Setting("tolerance", float, "Early-stop relative improvement (0 = off).", label="Early-stop tolerance",
                widget="number", look={"min": 0, "step": 1e-5}),
        Setting("style_blend", str, "Weights of several styles, e.g. 0.7,0.3.", label="Style blend", group="basic",
                widget="style-weights"),
        Setting("style_scale", str, "Style size relative to the output, one value or one per style.",
                label="Style scale", look={"placeholder": "e.g. 1 or 0.8,1.2"}),
        Setting("preserve_color", str, "Keep the content's colours.", choices=PRESERVE_COLORS,
                label="Colour preservation", group="basic", widget="select"),
        Setting("color_match", str, "Histogram matching method.", choices=COLOR_MATCH_METHODS,
                label="Histogram matching", widget="select"),
        Setting("quality", int, "JPEG/WebP quality.", default=95, minimum=1, maximum=100, web=False),
        Setting("quiet", bool, "No plan or progress bar.", default=False, flags=("--quiet", "-q"), web=False),
    ),
)  # fmt: skip
"""Every stylize setting: help, unit, choices, range and web widget. ``quality`` and ``quiet`` are CLI-only."""

# Settings whose value is the config field of the same name, unchanged (the rest need parsing).
_PLAIN = (
    "size", "steps", "optimizer", "content_weight", "style_weight", "tv_weight", "pooling", "padding",
    "init", "seed", "dtype", "remat", "conv_impl", "tolerance", "preserve_color", "color_match",
)  # fmt: skip

# Settings that are not config fields: how the job is run or written, not what it computes.
NOT_CONFIG = ("preset", "weights", "quality", "quiet")


def config_from_settings(
    values: Mapping[str, Any], *, config_type: type[StylizeConfig] = StylizeConfig, **extra: Any
) -> StylizeConfig:
    """The :class:`StylizeConfig` ``values`` ask for: the preset, then each setting that was given.

    ``values`` maps setting names (:data:`STYLIZE_SETTINGS`) to values, ``None`` = not given; missing names
    count as not given. ``extra`` holds config fields no setting names (``save_every``). A setting of an
    extended schema (``STYLIZE_SETTINGS.with_settings(...)``) that names a field of ``config_type`` (a subclass
    of :class:`StylizeConfig`) passes through to it unchanged.
    """
    given = {name: values.get(name) for name in STYLIZE_SETTINGS.names}
    known = set(STYLIZE_SETTINGS.names)

    def parsed(name: str, parse, *args):
        return None if given[name] is None else parse(given[name], *args)

    return from_flags(
        given["preset"],
        scales=given["scales"],
        scale_steps=given["scale_steps"],
        config_type=config_type,
        learning_rate=given["lr"],
        content_layers=parsed("content_layers", parse_layer_weights, "content layer"),
        style_layers=parsed("style_layers", parse_layer_weights, "style layer"),
        style_blend=parsed("style_blend", parse_floats, "--style-blend"),
        style_scale=parsed("style_scale", parse_floats, "--style-scale"),
        **{name: given[name] for name in _PLAIN},
        **{name: value for name, value in values.items() if name not in known},
        **extra,
    )


def settings_of_config(config: StylizeConfig) -> dict[str, Any]:
    """``config`` as setting name -> value, the way the form shows them (comma lists as text)."""
    fields = {"lr": "learning_rate"}
    values = {}
    for setting in STYLIZE_SETTINGS:
        field = fields.get(setting.name, setting.name)
        if setting.name not in NOT_CONFIG and hasattr(config, field):
            values[setting.name] = form_text(getattr(config, field))
    return values
