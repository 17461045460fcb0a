"""Losses shared by every system.

:mod:`~nstjax.losses.style`: Gram matrices (plain and region-guided), content,
style and total-variation losses, in nstjax's normalised units.
"""

from .style import content_loss, gram_matrix, style_layer_loss, style_loss, total_variation_loss, weighted_mean

__all__ = [
    "content_loss",
    "gram_matrix",
    "style_layer_loss",
    "style_loss",
    "total_variation_loss",
    "weighted_mean",
]
