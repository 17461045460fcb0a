"""Settings of an AdaIN decoder's training (Huang & Belongie 2017; the reference implementation's defaults)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import NstjaxError

__all__ = ["AdaINConfig", "ENCODERS"]

DTYPES = ("float32", "bfloat16")

ENCODERS = ("normalised", "raw")
"""The encoder's weights: ``"normalised"`` (Gatys et al.'s normalisation, computed from the loaded
weights: :mod:`nstjax.models.vgg_normalise`; the reference's ``vgg_normalised.pth`` is such a network)
or ``"raw"`` (the weights as loaded, nstjax before issue 28)."""


@dataclasses.dataclass(frozen=True)
class AdaINConfig:
    """What the decoder is trained with (hashable: static under jit).

    size: side of the square training crops (256).
    load_size: side of the square content and style images are squashed to before
      cropping (512, the reference's ``Resize((512, 512))``).
    content_weight, style_weight: the paper's λ = 10 weighs the style loss (content 1).
    learning_rate, lr_decay: Adam at ``lr / (1 + lr_decay · step)`` (1e-4, 5e-5).
    dtype: compute dtype of encoder and decoder.
    encoder: :data:`ENCODERS`: ``"normalised"`` (every filter's mean activation 1 on the calibration
      images, the scale of the reference's ``vgg_normalised.pth``, for which λ = 10 was chosen) or
      ``"raw"`` (the weights' own scale: the real Caffe-convention VGG-16's mean activations at
      relu1_1 … relu4_1 are 24-290, which weighs the style layers and the content term differently).
    """

    size: int = 256
    load_size: int = 512
    content_weight: float = 1.0
    style_weight: float = 10.0
    learning_rate: float = 1e-4
    lr_decay: float = 5e-5
    dtype: str = "float32"
    encoder: str = "normalised"

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 16 or self.size % 8:
            raise NstjaxError(f"training size must be a multiple of 8 of at least 16 pixels, got {self.size!r}")
        if not isinstance(self.load_size, int) or self.load_size < self.size:
            raise NstjaxError(f"load size {self.load_size} must be at least the training size {self.size}")
        for name in ("content_weight", "style_weight", "lr_decay"):
            if not getattr(self, name) >= 0:
                raise NstjaxError(f"{name.replace('_', ' ')} must be a non-negative number, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise NstjaxError(f"learning rate must be positive, got {self.learning_rate}")
        if self.dtype not in DTYPES:
            raise NstjaxError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.encoder not in ENCODERS:
            raise NstjaxError(f"encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")

    def replace(self, **changes: Any) -> AdaINConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
