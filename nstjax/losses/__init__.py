"""Losses shared by every system.

:mod:`~nstjax.losses.style`: Gram matrices (plain and region-guided), content,
style and total-variation losses, in nstjax's normalised units.
:mod:`~nstjax.losses.gan`: adversarial losses (LSGAN, hinge, binary cross-entropy) for the
discriminators' real and fake outputs and for the generators.
"""

from .gan import GAN_LOSSES, fake_loss, generator_loss, real_loss
from .style import content_loss, gram_matrix, style_layer_loss, style_loss, total_variation_loss, weighted_mean

__all__ = [
    "GAN_LOSSES",
    "content_loss",
    "fake_loss",
    "generator_loss",
    "gram_matrix",
    "real_loss",
    "style_layer_loss",
    "style_loss",
    "total_variation_loss",
    "weighted_mean",
]
