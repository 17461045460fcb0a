"""Settings of a feed-forward (Johnson et al.) style network: model, perceptual loss, optimiser.

Loss weights are in the units of :mod:`nstjax.losses.style` (Gram matrices divided
by C·h·w, style layers averaged with their weights, content a mean squared
difference, TV a mean over [0, 1] pixels), the units of ``nstjax stylize``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import NstjaxError
from ..models.johnson import OUTPUTS
from ..models.vgg_layers import POOLINGS, validate_layers

__all__ = [
    "DEFAULT_STYLE_WEIGHTS",
    "DTYPES",
    "FAST_STYLE_LAYERS",
    "JOHNSON_STYLE_LAYERS",
    "FastConfig",
    "default_style_layers",
    "default_style_weight",
]

FAST_STYLE_LAYERS = tuple((name, 1.0) for name in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"))
"""The style layers with a VGG-19 loss network (Gatys et al.'s), equal weights."""

JOHNSON_STYLE_LAYERS = tuple((name, 1.0) for name in ("relu1_2", "relu2_2", "relu3_3", "relu4_3"))
"""Johnson et al.'s style layers of their VGG-16 loss network (paper, section 3.1; the PyTorch example
too), equal weights: the default when the weights are VGG-16's."""


def default_style_layers(network: str) -> tuple[tuple[str, float], ...]:
    """The style layers for a loss network: Johnson et al.'s on VGG-16, Gatys et al.'s on VGG-19."""
    return JOHNSON_STYLE_LAYERS if network == "vgg16" else FAST_STYLE_LAYERS

DTYPES = ("float32", "bfloat16")

DEFAULT_STYLE_WEIGHTS: dict[str, float] = {
    # The PyTorch example trains with content 1e5 and style 1e10 summed over 4 layers on torch-convention
    # features: 4e5 against content 1 in nstjax's averaged units.
    "torch": 4e5,
    # Caffe-convention features (0-255 input) are about 255 * 0.226 ≈ 58 times larger; the style term grows
    # with the 4th power of the scale and the content term with the 2nd, so the same balance is 4e5 / 58².
    "caffe": 1.2e2,
}
"""Default style weight by the VGG weights' input convention (content weight 1). Untuned estimates:
no ImageNet weights could be used where nstjax was written, so these translate the PyTorch example's
balance rather than come from experiments."""


def default_style_weight(preprocessing: str, source: str = "") -> float:
    """The default style weight for VGG weights of ``preprocessing`` (``"caffe"``/``"torch"``).

    Gatys' normalised VGG (``source="gatys"``) has caffe input but activations rescaled to a
    mean of 1, so it takes the torch-scale value.
    """
    if source == "gatys":
        return DEFAULT_STYLE_WEIGHTS["torch"]
    return DEFAULT_STYLE_WEIGHTS.get(preprocessing, DEFAULT_STYLE_WEIGHTS["torch"])


@dataclasses.dataclass(frozen=True)
class FastConfig:
    """What a feed-forward style network is trained with (hashable: it is static under jit).

    size: side of the square training crops in pixels (256 in the paper).
    style_size: longest side the style image is resized to (None: its own size, as the
      PyTorch example's ``--style-size`` default).
    content_weight, style_weight, tv_weight: loss weights (``style_weight`` None = by
      weights convention, :func:`default_style_weight`).
    content_layer: VGG layer of the content (feature reconstruction) loss; relu2_2 as in the paper.
    style_layers: (layer, weight) pairs of the style loss (None = by the loss network,
      :func:`default_style_layers`: Johnson et al.'s relu1_2 … relu4_3 on VGG-16).
    pooling: VGG pooling in the loss network.
    learning_rate: Adam's step size, constant (1e-3, paper and example).
    output: ``"linear"`` or ``"tanh"`` (see :mod:`nstjax.models.johnson`).
    dtype: compute dtype of the transformer and the loss network.
    """

    size: int = 256
    style_size: int | None = None
    content_weight: float = 1.0
    style_weight: float | None = None
    tv_weight: float = 0.0
    content_layer: str = "relu2_2"
    style_layers: tuple[tuple[str, float], ...] | None = None
    pooling: str = "max"
    learning_rate: float = 1e-3
    output: str = "linear"
    dtype: str = "float32"

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 16:
            raise NstjaxError(f"training size must be an integer of at least 16 pixels, got {self.size!r}")
        if self.style_size is not None and (not isinstance(self.style_size, int) or self.style_size < 16):
            raise NstjaxError(f"style size must be at least 16 pixels, got {self.style_size!r}")
        for name in ("content_weight", "tv_weight"):
            if not getattr(self, name) >= 0:
                raise NstjaxError(f"{name.replace('_', ' ')} must be a non-negative number, got {getattr(self, name)}")
        if self.style_weight is not None and not self.style_weight >= 0:
            raise NstjaxError(f"style weight must be a non-negative number, got {self.style_weight}")
        if not self.learning_rate > 0:
            raise NstjaxError(f"learning rate must be positive, got {self.learning_rate}")
        validate_layers([self.content_layer], "content layer")
        if self.style_layers is not None:
            validate_layers([n for n, _ in self.style_layers], "style layer")
            if not self.style_layers or sum(w for _, w in self.style_layers) <= 0:
                raise NstjaxError("give at least one style layer with a positive weight")
        for field, value, choices in (("pooling", self.pooling, POOLINGS), ("output", self.output, OUTPUTS),
                                      ("dtype", self.dtype, DTYPES)):  # fmt: skip
            if value not in choices:
                raise NstjaxError(f"{field} must be one of {', '.join(choices)}, got {value!r}")

    @property
    def style_side(self) -> int | None:
        """Longest side of the style image in training (None: as it is)."""
        return self.style_size

    def replace(self, **changes: Any) -> FastConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (tuples as lists); :meth:`from_json` reads it back."""
        data = dataclasses.asdict(self)
        data["style_layers"] = None if self.style_layers is None else [[n, w] for n, w in self.style_layers]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FastConfig:
        data = dict(data)
        layers = data.get("style_layers", FAST_STYLE_LAYERS)  # runs written before the default followed the network
        data["style_layers"] = None if layers is None else tuple((str(n), float(w)) for n, w in layers)
        return cls(**data)
