"""Gatys et al.'s normalised VGG computed from the loaded weights (issue 28), and AdaIN's encoder built on it.

naoto0804/pytorch-AdaIN's encoder is ``vgg_normalised.pth``: Gatys et al.'s VGG-19 with every filter's mean
activation over a set of images rescaled to 1. nstjax computes the same normalisation for whatever weights it
loads (:mod:`nstjax.models.vgg_normalise`), on a deterministic calibration set.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import smooth_image
from nstjax.models import vgg, vgg_normalise as vn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "references"))
torch = pytest.importorskip("torch")
import adain_torch as aref  # noqa: E402

# float32 activations through up to 13 convolutions of up to 4608-term sums (XLA's, Winograd's or GEMM's):
# relative rounding of order sqrt(4608) * 6e-8 * 13 ~ 5e-5 (measured: at most 2.7e-5 for the real VGG-16).
MEAN_RTOL = 1e-3


def test_calibration_images_are_deterministic_and_cover_the_range():
    a, b = vn.calibration_images(2, 32), vn.calibration_images(2, 32)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 32, 32, 3) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0 and a.std() > 0.1  # discs of different colours, not a flat field
    assert not np.array_equal(vn.calibration_images(1, 32, seed=1), a[:1])


def test_the_real_vgg16_normalised_has_mean_activation_one_per_filter(real_vgg16):
    """The pinned property: on the calibration images every (non-silent) filter averages 1; the network is
    the same function up to those per-channel scales (AdaIN's reflection padding included)."""
    images = vn.calibration_images()
    means = vn.filter_means(real_vgg16.params, images, preprocessing="caffe")
    normalised = vn.normalise(real_vgg16.params, means)
    after = vn.filter_means(normalised, images, preprocessing="caffe")
    silent = 0
    for name, m in means.items():
        live = m > vn.SILENT_FRACTION * m.mean()
        silent += int((~live).sum())
        np.testing.assert_allclose(after[name][live], 1.0, rtol=MEAN_RTOL, err_msg=name)
        assert np.all(after[name][~live] < vn.SILENT_FRACTION * m.mean() + 1e-6), name  # kept as they were
    assert silent < 0.05 * sum(m.size for m in means.values())  # measured: 100 of 4224, 3 up to relu4_1
    # Raw Caffe-scale activations are tens to hundreds (relu1_1 ... relu4_1 on these images).
    assert 10 < means["conv1_1"].mean() < 100 and 100 < means["conv3_1"].mean() < 1000
    # Same function: normalised features times the means are the raw ones, on another image and padding.
    photo = smooth_image((48, 40), 7)[None]
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    raw = vgg.features(real_vgg16.params, photo, layers, padding="reflect", preprocessing="caffe")
    new = vgg.features(normalised, photo, layers, padding="reflect", preprocessing="caffe")
    scales = {n: np.where(m > vn.SILENT_FRACTION * m.mean(), m, 1.0) for n, m in means.items()}
    for layer in layers:
        conv = layer.replace("relu", "conv")
        want = np.asarray(raw[layer])
        np.testing.assert_allclose(np.asarray(new[layer]) * scales[conv], want, rtol=1e-3,
                                   atol=1e-4 * np.abs(want).max(), err_msg=layer)  # fmt: skip


def test_the_normalisation_matches_gatys_layer_by_layer_procedure_in_torch(random_weights):
    """nstjax's one pass (the means of the raw network) equals the reference's layer-by-layer float64 procedure."""
    images = np.stack([smooth_image((32, 32), s) for s in (1, 2)])
    ours = vn.normalise(random_weights.params, vn.filter_means(random_weights.params, images, preprocessing="torch"))
    theirs = aref.normalise_params(random_weights.params, "torch", images)
    for name in theirs:
        for kind in ("kernel", "bias"):  # float32 means vs float64: relative rounding ~1e-6 per layer
            np.testing.assert_allclose(ours[name][kind], theirs[name][kind], rtol=2e-4,
                                       atol=2e-4 * np.abs(theirs[name][kind]).max(), err_msg=f"{name}.{kind}")


def test_normalised_params_are_cached_atomically_by_digest(random_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("NSTJAX_CACHE", str(tmp_path))
    small = np.stack([smooth_image((32, 32), s) for s in (3, 4)])
    monkeypatch.setattr(vn, "calibration_images", lambda: small)
    first = vn.normalised_params(random_weights.params, preprocessing="torch")
    path = vn.cache_path(vn.params_digest(random_weights.params), "torch")
    assert path.is_file() and not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp left

    def no_pass(*args, **kwargs):
        raise AssertionError("the cached means should have been used")

    monkeypatch.setattr(vn, "filter_means", no_pass)
    second = vn.normalised_params(random_weights.params, preprocessing="torch")
    jax.tree.map(np.testing.assert_array_equal, first, second)
    # A damaged cache file is computed again, not trusted.
    path.write_bytes(b"not an npz")
    monkeypatch.undo()
    monkeypatch.setenv("NSTJAX_CACHE", str(tmp_path))
    monkeypatch.setattr(vn, "calibration_images", lambda: small)
    third = vn.normalised_params(random_weights.params, preprocessing="torch")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), first, third)
    assert path.stat().st_size > 100


def test_adain_encodes_with_the_normalised_vgg_by_default(random_weights, tmp_path, monkeypatch):
    from nstjax.adain import AdaINConfig
    from nstjax.adain.train import encoder_params, vgg_record
    from nstjax.errors import NstjaxError
    from nstjax.weights import VGGWeights

    monkeypatch.setenv("NSTJAX_CACHE", str(tmp_path))
    small = np.stack([smooth_image((32, 32), s) for s in (5, 6)])
    monkeypatch.setattr(vn, "calibration_images", lambda: small)
    assert AdaINConfig().encoder == "normalised"
    with pytest.raises(NstjaxError, match="encoder must be one of"):
        AdaINConfig(encoder="other")
    normalised = encoder_params(random_weights)
    means = vn.filter_means(random_weights.params, small, preprocessing="torch")
    jax.tree.map(np.testing.assert_array_equal, normalised, vn.normalise(random_weights.params, means))
    assert encoder_params(random_weights, "raw") is random_weights.params
    # Gatys et al.'s published normalised VGG-19 is used as it is.
    gatys = VGGWeights(random_weights.params, "caffe", "gatys")
    assert encoder_params(gatys) is gatys.params
    record = vgg_record(random_weights, 0)
    assert record["encoder"] == "normalised" and record["calibration"] == vn.CALIBRATION_VERSION
    assert vgg_record(random_weights, 0, "raw")["encoder"] == "raw"
    # The AdaIN encoder's features of the normalised network: relu4_1 is 1/m of the raw one.
    x = jnp.asarray(small[:1])
    from nstjax.models import adain

    raw = adain.encode(jax.tree.map(jnp.asarray, random_weights.params), x, preprocessing="torch")["relu4_1"]
    new = adain.encode(jax.tree.map(jnp.asarray, normalised), x, preprocessing="torch")["relu4_1"]
    scale = np.where(means["conv4_1"] > vn.SILENT_FRACTION * means["conv4_1"].mean(), means["conv4_1"], 1.0)
    np.testing.assert_allclose(np.asarray(new) * scale, np.asarray(raw), rtol=1e-3, atol=1e-5 * float(jnp.abs(raw).max()))
