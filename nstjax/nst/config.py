"""Style-transfer settings as data: :class:`StylizeConfig` and the named presets.

Loss weights are in the units of :mod:`nstjax.losses` (Gram matrices divided by
C·h·w, layers averaged, TV averaged over pixels of [0, 1] images).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import NstjaxError
from ..models.vgg_layers import CONV_IMPLS, PADDINGS, POOLINGS, REMATS, validate_layers

GATYS_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise", "style", "grey")
DTYPES = ("float32", "bfloat16")
PRESERVE_COLORS = ("none", "luminance", "histogram")
COLOR_MATCH_METHODS = ("cholesky", "eigen")

LayerWeights = tuple[tuple[str, float], ...]


@dataclasses.dataclass(frozen=True)
class StylizeConfig:
    """Everything that shapes one stylisation, apart from the images and weights.

    Sizes are in pixels; ``size`` is the longest side of the output. Weights are
    in the units of :mod:`nstjax.losses`.
    """

    size: int = 512
    steps: int = 500
    """Optimiser steps at the final scale (L-BFGS steps may take several evaluations)."""
    scales: tuple[int, ...] = ()
    """Longest sides of coarser passes before ``size`` (coarse to fine); empty = single scale."""
    scale_steps: tuple[int, ...] = ()
    """Steps at each coarser scale; default ``steps`` for each."""
    optimizer: str = "lbfgs"
    learning_rate: float = 0.02
    """Adam step size in [0, 1] pixel units."""
    adam_average: float = 0.0
    """Decay of an exponential moving average of Adam's iterates (0 = off, e.g. 0.95)."""
    lbfgs_memory: int = 10
    content_weight: float = 1.0
    style_weight: float = 5e3
    tv_weight: float = 0.0
    content_layers: LayerWeights = (("relu4_2", 1.0),)
    style_layers: LayerWeights = tuple((name, 1.0) for name in GATYS_STYLE_LAYERS)
    pooling: str = "max"
    padding: str = "zero"
    init: str = "content"
    """``content``, ``noise`` (seeded), ``style``, ``grey``, or a path to an image file."""
    seed: int = 0
    dtype: str = "float32"
    remat: str = "auto"
    """``none``, ``conv``, ``block``, or ``auto`` (the least remat that fits in memory)."""
    conv_impl: str = "auto"
    """How the VGG convolutions are computed: ``xla`` (XLA's convolutions), ``gemm`` (one matrix product
    per layer, float32 accumulation) or ``auto`` (per layer, from the device, the CPU's bfloat16 support,
    the layer's size and the dtype: :func:`nstjax.models.vgg.conv_plan`). Same result, different speed."""
    tolerance: float = 1e-5
    """Stop when the best loss improves by less than this fraction for ``patience`` steps (0 = never)."""
    patience: int = 20
    save_every: int = 0
    """Steps between intermediate images (0 = none)."""
    style_blend: tuple[float, ...] = ()
    """Weights of several styles (normalised to sum 1); empty = equal."""
    style_scale: tuple[float, ...] = (1.0,)
    """Style image size relative to the output's longest side, one value or one per style."""
    preserve_color: str = "none"
    color_match: str = "cholesky"

    def __post_init__(self):
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("pooling", self.pooling, POOLINGS)
        _check_choice("padding", self.padding, PADDINGS)
        _check_choice("dtype", self.dtype, DTYPES)
        _check_choice("remat", self.remat, (*REMATS, "auto"))
        _check_choice("conv_impl", self.conv_impl, CONV_IMPLS)
        _check_choice("preserve_color", self.preserve_color, PRESERVE_COLORS)
        _check_choice("color_match", self.color_match, COLOR_MATCH_METHODS)
        for name in ("size", "steps"):
            if int(getattr(self, name)) < 1:
                raise NstjaxError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("content_weight", "style_weight", "tv_weight", "learning_rate", "tolerance"):
            _check_weight(name, getattr(self, name))
        if not 0.0 <= self.adam_average < 1.0:
            raise NstjaxError(f"adam_average must be in [0, 1), got {self.adam_average}")
        for what, layers in (("content layer", self.content_layers), ("style layer", self.style_layers)):
            if not layers:
                raise NstjaxError(f"at least one {what} is needed")
            validate_layers((name for name, _ in layers), what)
            for name, weight in layers:
                _check_weight(f"weight of {what} {name}", weight)
            if sum(w for _, w in layers) <= 0:
                raise NstjaxError(f"{what} weights must not all be zero")
        for value in self.style_blend:
            _check_weight("style blend weight", value)
        if self.style_blend and sum(self.style_blend) <= 0:
            raise NstjaxError("style blend weights must not all be zero")
        for value in self.style_scale:
            if not (math.isfinite(value) and value > 0):
                raise NstjaxError(f"style scale must be a positive number, got {value}")
        if any(s < 1 for s in (*self.scales, *self.scale_steps)):
            raise NstjaxError("scales and scale steps must be positive integers")
        if self.scale_steps and len(self.scale_steps) != len(self.scales):
            raise NstjaxError(
                f"{len(self.scale_steps)} scale step counts given for {len(self.scales)} coarser scales"
            )

    def replace(self, **changes: Any) -> StylizeConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    @property
    def schedule(self) -> tuple[tuple[int, int], ...]:
        """((longest side, steps), …) from coarse to fine, ending at (size, steps)."""
        coarse = self.scale_steps or (self.steps,) * len(self.scales)
        return (*zip(self.scales, coarse), (self.size, self.steps))


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise NstjaxError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_weight(name: str, value: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise NstjaxError(f"{name} must be a finite non-negative number, got {value!r}")


def multiscale(size: int, count: int, factor: float = 2.0) -> tuple[int, ...]:
    """Coarser sizes for ``count`` scales in all: e.g. (128, 256) for 512 and 3."""
    return tuple(max(1, round(size / factor**k)) for k in range(count - 1, 0, -1))


# Gatys et al. 2016: relu4_2 content, relu1_1..relu5_1 style with equal weights, average
# pooling (the paper found it gives slightly more appealing results), L-BFGS, 512 px.
# Style weight 5e3 = Gatys' own PyTorch code (1e3 per layer with 1/C² layer weights, summed over
# 5 layers) expressed in our averaged units; content weight 1.
_GATYS = dict(
    size=512,
    steps=500,
    optimizer="lbfgs",
    pooling="avg",
    content_weight=1.0,
    style_weight=5e3,
    tv_weight=0.0,
    init="content",
)

PRESETS: Mapping[str, Mapping[str, Any]] = {
    "gatys": _GATYS,
    # jcjohnson/neural-style defaults: content 5, style 100 summed over 5 layers (= 500 averaged),
    # TV 1e-3 on 0-255 caffe pixels summed over the image. Our TV is a mean over [0, 1] pixels, so
    # 1e-3 * 255² / 2 * (3 * 512 * 512) ≈ 2.6e7 reproduces it at 512x512. Max pooling, random init,
    # 1000 L-BFGS iterations, 512 px.
    "neural-style": dict(
        size=512,
        steps=1000,
        optimizer="lbfgs",
        pooling="max",
        content_weight=5.0,
        style_weight=500.0,
        tv_weight=2.6e7,
        init="noise",
        tolerance=0.0,
    ),
    # What a CPU finishes in a few minutes (about 4 on 2 cores, see docs/benchmarks.md): the paper's
    # losses at 384 px with 100 L-BFGS steps from the content, where most of the style arrives.
    "cpu": {**_GATYS, "size": 384, "steps": 100},
    # Quick previews: the paper's losses with Adam at a large step, fewer steps, a smaller image.
    "fast": {**_GATYS, "size": 384, "steps": 150, "optimizer": "adam", "learning_rate": 0.03},
}


PRESET_NAMES: tuple[str, ...] = ("auto", *PRESETS)
"""Every name :func:`preset` takes: ``auto`` and the named presets."""

ACCELERATORS = ("gpu", "tpu", "cuda", "rocm")
"""JAX platforms on which ``auto`` means the paper's settings."""


def auto_preset_name(platform: str | None = None) -> str:
    """What ``auto`` stands for on ``platform`` (default: JAX's default backend).

    ``gatys`` (the paper: 512 px, 500 L-BFGS steps) on a GPU or TPU; ``cpu`` (384
    px, 100 steps: a few minutes instead of ~40) everywhere else.
    """
    if platform is None:
        import jax  # here, not at import: reading the backend initialises it

        platform = jax.default_backend()
    return "gatys" if platform.lower() in ACCELERATORS else "cpu"


def preset(name: str | None, *, config_type: type[StylizeConfig] = StylizeConfig, **overrides: Any) -> StylizeConfig:
    """The config of preset ``name`` (default ``auto``) with ``overrides`` applied.

    ``config_type`` may be a subclass of :class:`StylizeConfig` with more fields (an extended settings schema).

    ``auto`` is :func:`auto_preset_name` of the default backend. ``None`` values in
    ``overrides`` are ignored, so CLI flags that were not given leave the preset's
    values alone.
    """
    name = name or "auto"
    if name == "auto":
        name = auto_preset_name()
    if name not in PRESETS:
        raise NstjaxError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    return config_type(**values)


def parse_layer_weights(text: str, what: str = "layer") -> LayerWeights:
    """Parse ``"relu1_1:1,relu2_1:0.5"`` (or plain ``"relu1_1,relu2_1"``, weight 1) into pairs."""
    pairs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, weight_text = item.partition(":")
        try:
            weight = float(weight_text) if weight_text else 1.0
        except ValueError:
            raise NstjaxError(f"{what} {name!r}: weight {weight_text!r} is not a number") from None
        _check_weight(f"weight of {what} {name}", weight)
        pairs.append((name.strip(), weight))
    if not pairs:
        raise NstjaxError(f"no {what}s given in {text!r}")
    validate_layers((name for name, _ in pairs), what)
    return tuple(pairs)


def parse_floats(text: str, what: str) -> tuple[float, ...]:
    """Parse ``"0.7,0.3"`` into finite floats, with an error naming ``what``."""
    values = []
    for item in (part.strip() for part in text.split(",")):
        try:
            value = float(item)
        except ValueError:
            raise NstjaxError(f"{what}: {item!r} is not a number") from None
        if not math.isfinite(value):
            raise NstjaxError(f"{what}: {item!r} is not a finite number")
        values.append(value)
    return tuple(values)


def parse_scales(text: str, size: int) -> tuple[int, ...]:
    """Coarser scales from a flag: a count (``"3"`` -> size/4, size/2) or sizes (``"256,512"``).

    Listed sizes must increase and stay below ``size``; a last entry equal to
    ``size`` is the final scale itself and is dropped.
    """
    values = parse_floats(text, "--scales")
    if len(values) == 1 and values[0] == int(values[0]) and 1 <= values[0] <= 8:
        return multiscale(size, int(values[0]))
    sizes = tuple(int(v) for v in values)
    if sizes and sizes[-1] == size:
        sizes = sizes[:-1]
    if any(b <= a for a, b in zip(sizes, sizes[1:])) or any(not 0 < s < size for s in sizes):
        raise NstjaxError(f"--scales {text!r}: sizes must increase and stay below the output size {size}")
    return sizes


def from_flags(
    preset_name: str | None,
    *,
    scales: str | None = None,
    scale_steps: str | None = None,
    config_type: type[StylizeConfig] = StylizeConfig,
    **overrides: Any,
) -> StylizeConfig:
    """A config from CLI-style values: preset, then the flags that were given (``None`` = not given)."""
    config = preset(preset_name, config_type=config_type, **overrides)
    changes: dict[str, Any] = {}
    if scales is not None:
        changes["scales"] = parse_scales(scales, config.size)
    if scale_steps is not None:
        changes["scale_steps"] = tuple(int(v) for v in parse_floats(scale_steps, "--scale-steps"))
    return config.replace(**changes) if changes else config
