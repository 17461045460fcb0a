"""Gatys et al.'s normalised VGG, computed from any VGG-19/VGG-16 weights.

Gatys, Ecker & Bethge (2016) "normalized the network by scaling the weights such that the
mean activation of each convolutional filter over images and positions is equal to one".
Their ``vgg_normalised`` VGG-19 is what naoto0804/pytorch-AdaIN's encoder uses. This module
does the same to the weights nstjax loads, so AdaIN's losses see features on that scale:

1. :func:`filter_means`: run the network *as trained* (zero padding, max pooling, the
   weights' own preprocessing) on a set of images and take each filter's mean ReLU output
   ``m_l[c]`` over the images and positions.
2. :func:`normalise`: ``kernel_l[..., i, o] * m_{l-1}[i] / m_l[o]`` and
   ``bias_l[o] / m_l[o]``. ReLU and max/average pooling commute with positive per-channel
   scales, so layer ``l`` of the new network gives exactly layer ``l`` of the old one
   divided by ``m_l`` (the multiplication by ``m_{l-1}`` undoes the previous layer's
   division): one pass with the original weights yields every layer's scale at once, the
   network computes the same function up to those scales, and every filter's mean
   activation on the images becomes 1.

The images (:func:`calibration_images`) are a deterministic set that needs no download:
8 "dead leaves" pictures at 224 px (occluding discs with a power-law size distribution,
the classic model of natural-image statistics: flat regions, sharp edges, a 1/f spectrum).
Measured on the real VGG-16 against six natural pictures (three photos, three paintings, 224 px),
their layer-average mean activations at relu1_1 … relu4_1 are within 25 % (1.09, 0.97, 1.25, 1.18x);
per filter, the middle half of the ratios lies within 0.57-1.8x up to relu3_1 (as between the photos
and the paintings themselves) and 0.3-1.6x at relu4_1 (twice that spread); deeper layers (object
parts, which discs lack) differ more. Natural pictures are not always at hand (no download is needed
for these), and a per-run set (the run's own images) would tie a decoder to its data set.
A filter that stays (almost) silent on them (mean below :data:`SILENT_FRACTION` of its
layer's average) keeps its scale.

:func:`normalised_params` ties it together and caches the scales under
``<cache>/vgg-normalised/<digest>-<convention>-v<version>.npz`` (written atomically), keyed by the
weights' digest (:func:`params_digest`), so the pass runs once per weights file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import NstjaxError
from ..hub import cache_dir
from ..io.atomic import atomic_path
from .vgg import conv_layers, features, network_of

__all__ = [
    "CALIBRATION_VERSION",
    "SILENT_FRACTION",
    "cache_path",
    "calibration_images",
    "filter_means",
    "normalise",
    "normalised_params",
    "params_digest",
]

CALIBRATION_VERSION = 1
"""Version of the calibration set and procedure; part of the cache key (bump when either changes)."""

SILENT_FRACTION = 1e-3
"""A filter whose mean activation is below this fraction of its layer's average keeps its scale:
dividing by a near-zero mean would blow up a filter the calibration images hardly excite."""

_COUNT, _SIZE = 8, 224  # ImageNet's input size, as VGG was trained


def calibration_images(count: int = _COUNT, size: int = _SIZE, seed: int = 0) -> np.ndarray:
    """float32 [count, size, size, 3] RGB in [0, 1]: seeded dead-leaves pictures (same on every machine).

    Discs of radius 3 px … size/2 with density ~ r^-3 (scale-invariant), drawn front to back
    until the picture is covered; each disc one colour (a per-picture tint plus its own
    hue), then faint Gaussian grain (std 0.02) so no region is perfectly flat.
    """
    rng = np.random.default_rng(seed)
    r_min, r_max = 3.0, size / 2
    out = np.empty((count, size, size, 3), np.float32)
    for k in range(count):
        image = np.zeros((size, size, 3), np.float32)
        covered = np.zeros((size, size), bool)
        tint = rng.random(3)
        while not covered.all():
            # Inverse-CDF draw of r with density ~ r^-3 on [r_min, r_max].
            u = rng.random()
            r = (r_min ** -2 - u * (r_min ** -2 - r_max ** -2)) ** -0.5
            cy, cx = rng.random(2) * size
            y0, y1 = max(0, int(cy - r)), min(size, int(cy + r) + 1)
            x0, x1 = max(0, int(cx - r)), min(size, int(cx + r) + 1)
            yy, xx = np.ogrid[y0:y1, x0:x1]
            disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) & ~covered[y0:y1, x0:x1]
            image[y0:y1, x0:x1][disc] = np.clip(0.5 * tint + 0.6 * rng.random(3) - 0.05, 0.0, 1.0)
            covered[y0:y1, x0:x1] |= disc
        out[k] = np.clip(image + rng.normal(0.0, 0.02, image.shape), 0.0, 1.0)
    return out


def params_digest(params: Mapping[str, Mapping[str, Any]]) -> str:
    """SHA-256 (first 16 hex digits) of VGG parameters: kernels and biases in network order (float32 bytes)."""
    digest = hashlib.sha256()
    for name in conv_layers(network_of(params)):
        for kind in ("kernel", "bias"):
            digest.update(np.ascontiguousarray(np.asarray(params[name][kind], np.float32)).tobytes())
    return digest.hexdigest()[:16]


@functools.partial(jax.jit, static_argnames=("preprocessing", "layers"))
def _means(params, image, *, preprocessing: str, layers: tuple[str, ...]):
    out = features(params, image, layers, pooling="max", padding="zero", preprocessing=preprocessing)
    return {name: jnp.mean(out[name], axis=(0, 1, 2)) for name in layers}


def filter_means(params: Mapping[str, Mapping[str, Any]], images: np.ndarray, *,
                 preprocessing: str) -> dict[str, np.ndarray]:
    """``{conv name: float64 [C]}``: each filter's mean ReLU output over ``images`` and positions.

    ``images``: float [N, H, W, 3] RGB in [0, 1]; the network as trained (zero padding, max
    pooling, ``preprocessing`` the weights' convention), one image at a time (float32).
    """
    convs = conv_layers(network_of(params))
    layers = tuple(n.replace("conv", "relu") for n in convs)
    device_params = jax.tree.map(jnp.asarray, {n: {k: params[n][k] for k in ("kernel", "bias")} for n in convs})
    total = {n: np.zeros(np.shape(params[n]["bias"]), np.float64) for n in convs}
    for image in np.asarray(images, np.float32):
        means = _means(device_params, image[None], preprocessing=preprocessing, layers=layers)
        for conv, relu in zip(convs, layers):
            total[conv] += np.asarray(means[relu], np.float64)
    return {n: v / len(images) for n, v in total.items()}


def _scales(means: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The divisor of each filter: its mean, or 1 for a silent filter (:data:`SILENT_FRACTION`)."""
    out = {}
    for name, m in means.items():
        m = np.asarray(m, np.float64)
        out[name] = np.where(m > SILENT_FRACTION * max(float(m.mean()), 0.0), m, 1.0)
    return out


def normalise(params: Mapping[str, Mapping[str, Any]],
              means: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """``params`` rescaled so that layer ``l`` outputs the original layer ``l`` divided by ``means[l]``.

    ``params``: ``{conv: {"kernel": [3, 3, Cin, Cout], "bias": [Cout]}}`` (NumPy or JAX, HWIO);
    ``means``: :func:`filter_means` of them (silent filters keep their scale). Returns float32
    NumPy parameters with only ``kernel`` and ``bias`` (derived forms such as ``kernel_t``
    must be made again). The first layer's input, the preprocessed image, is unchanged.
    """
    scales = _scales(means)
    out, previous = {}, None
    for name in conv_layers(network_of(params)):
        kernel = np.asarray(params[name]["kernel"], np.float64)
        if previous is not None:
            kernel = kernel * previous[None, None, :, None]
        s = scales[name]
        out[name] = {"kernel": (kernel / s).astype(np.float32),
                     "bias": (np.asarray(params[name]["bias"], np.float64) / s).astype(np.float32)}
        previous = s
    return out


def cache_path(digest: str, preprocessing: str) -> Path:
    """Where the filter means of the weights with :func:`params_digest` ``digest`` (read in the
    ``preprocessing`` convention) are cached."""
    return cache_dir() / "vgg-normalised" / f"{digest}-{preprocessing}-v{CALIBRATION_VERSION}.npz"


def _read_cached(path: Path, params: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path) as data:
            means = {n: np.asarray(data[n], np.float64) for n in conv_layers(network_of(params))}
    except (OSError, KeyError, ValueError):  # missing, truncated or from other weights: compute again
        return None
    if any(means[n].shape != np.shape(params[n]["bias"]) or not np.all(np.isfinite(means[n])) for n in means):
        return None
    return means


def normalised_params(params: Mapping[str, Mapping[str, Any]], *, preprocessing: str,
                      cache: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """:func:`normalise` of ``params`` by their :func:`filter_means` on :func:`calibration_images`.

    ``preprocessing``: the weights' input convention (``"caffe"``/``"torch"``). With ``cache``
    the means are read from / written to :func:`cache_path` (a cache that cannot be written,
    e.g. a read-only or full disk, is skipped: it only saves the pass, ~2 s for VGG-19 on 2 CPU cores).
    """
    digest = params_digest(params)
    path = cache_path(digest, preprocessing)
    means = _read_cached(path, params) if cache else None
    if means is None:
        means = filter_means(params, calibration_images(), preprocessing=preprocessing)
        if cache:
            with contextlib.suppress(OSError, NstjaxError):  # NstjaxError: atomic_path's NoSpaceLeft
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(path) as tmp:
                    np.savez(tmp, **means)
    return normalise(params, means)
