"""Adversarial losses of the GANs (CycleGAN, pix2pix, SPADE), written once.

Kinds (:data:`GanLossName`):

* ``"lsgan"`` (least squares, Mao et al.; CycleGAN): D pushes real logits to 1
  and fake logits to 0 with mean squared errors; G pushes fake logits to 1.
* ``"hinge"`` (SPADE): D: ``mean(relu(1 - real)) + mean(relu(1 + fake))``;
  G: ``-mean(fake)``.
* ``"bce"`` (the original non-saturating GAN; pix2pix's ``vanilla``): binary
  cross-entropy on logits; G uses ``-log sigmoid(fake)`` (non-saturating).

Logits are arrays of any shape (a PatchGAN's [B, h, w, 1]) or a sequence of
arrays (a multi-scale discriminator's outputs), whose losses are averaged. Each
loss is a float32 scalar: the mean over every logit. The discriminator's loss
is the *sum* of its real and fake terms; CycleGAN halves it (the authors'
``backward_D_basic``), which the caller does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import jax
import jax.numpy as jnp

__all__ = ["GAN_LOSSES", "GanLossName", "discriminator_loss", "fake_loss", "generator_loss", "real_loss"]

GanLossName = Literal["lsgan", "hinge", "bce"]
GAN_LOSSES: tuple[str, ...] = ("lsgan", "hinge", "bce")

Logits = jax.Array | Sequence[jax.Array]


def _check(kind: str) -> None:
    if kind not in GAN_LOSSES:
        raise ValueError(f"unknown GAN loss {kind!r} (one of {', '.join(GAN_LOSSES)})")


def _mean_over(logits: Logits, term: Callable[[jax.Array], jax.Array]) -> jax.Array:
    items = list(logits) if isinstance(logits, (list, tuple)) else [logits]
    values = [jnp.mean(term(jnp.asarray(x, jnp.float32))) for x in items]
    return sum(values) / len(values)


def real_loss(kind: GanLossName, logits: Logits) -> jax.Array:
    """The discriminator's loss on real images' ``logits`` (its target: "real")."""
    _check(kind)
    if kind == "lsgan":
        return _mean_over(logits, lambda x: jnp.square(x - 1.0))
    if kind == "hinge":
        return _mean_over(logits, lambda x: jax.nn.relu(1.0 - x))
    return _mean_over(logits, lambda x: jax.nn.softplus(-x))  # -log sigmoid(x)


def fake_loss(kind: GanLossName, logits: Logits) -> jax.Array:
    """The discriminator's loss on generated images' ``logits`` (its target: "fake")."""
    _check(kind)
    if kind == "lsgan":
        return _mean_over(logits, jnp.square)
    if kind == "hinge":
        return _mean_over(logits, lambda x: jax.nn.relu(1.0 + x))
    return _mean_over(logits, jax.nn.softplus)  # -log(1 - sigmoid(x))


def discriminator_loss(kind: GanLossName, real_logits: Logits, fake_logits: Logits) -> jax.Array:
    """``real_loss + fake_loss``: what the discriminator minimises."""
    return real_loss(kind, real_logits) + fake_loss(kind, fake_logits)


def generator_loss(kind: GanLossName, fake_logits: Logits) -> jax.Array:
    """What the generator minimises on the discriminator's logits for its outputs."""
    _check(kind)
    if kind == "hinge":
        return _mean_over(fake_logits, lambda x: -x)
    return real_loss(kind, fake_logits)  # lsgan: (x - 1)^2; bce: non-saturating -log sigmoid(x)
