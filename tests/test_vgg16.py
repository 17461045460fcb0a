"""VGG-16 on every path VGG-19 takes: convolution plans, bfloat16, remat, estimates, batches.

Seeded random VGG-16 weights: these tests are about plumbing, not features (the real
network's tests are in test_real_vgg16.py). One small shape throughout.
"""

from __future__ import annotations

import numpy as np
import pytest

from nstjax.models import vgg
from nstjax.nst import run_stylize, stylize_images
from nstjax.nst.config import preset
from nstjax.nst.estimate import forward_flops
from nstjax.nst.memory import estimate_bytes
from nstjax.weights import random_weights, validate_params

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu3_3", "relu4_1", "relu4_2", "relu4_3", "relu5_1", "relu5_3", "pool5")


@pytest.fixture(scope="module")
def vgg16():
    return random_weights(0, network="vgg16")


def test_the_network_follows_the_weights(vgg16):
    assert vgg.conv_layers("vgg16")[-4:] == ("conv4_3", "conv5_1", "conv5_2", "conv5_3")
    assert len(vgg16.params) == 13 and vgg16.network == "vgg16" and vgg.network_of(vgg16.params) == "vgg16"
    assert vgg.network_of(random_weights(0).params) == "vgg19"
    assert validate_params(vgg16.params) == "vgg16"
    # Layer names of VGG-16 are VGG-19's, in the same order.
    names16 = vgg.network_layers("vgg16")
    assert [vgg.LAYERS.index(n) for n in names16] == sorted(vgg.LAYERS.index(n) for n in names16)


def test_vgg16_features_are_its_own_13_convolutions(vgg16):
    # An independent NumPy forward pass of configuration D (zero padding, max pooling, torch convention).
    rng = np.random.default_rng(0)
    image = rng.random((1, 32, 32, 3)).astype(np.float32)
    x = ((image - np.array(vgg.TORCH_MEAN)) / np.array(vgg.TORCH_STD)).astype(np.float64)[0]
    for b, (_, count) in enumerate(vgg.NETWORKS["vgg16"], 1):
        for n in range(1, count + 1):
            k = vgg16.params[f"conv{b}_{n}"]["kernel"].astype(np.float64)
            p = np.pad(x, ((1, 1), (1, 1), (0, 0)))
            x = sum(p[i : i + x.shape[0], j : j + x.shape[1]] @ k[i, j] for i in range(3) for j in range(3))
            x = np.maximum(x + vgg16.params[f"conv{b}_{n}"]["bias"], 0)
        x = x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2, -1).max(axis=(1, 3))
    got = vgg.features(vgg16.params, image, ("pool5",), preprocessing="torch", conv_impl="xla")["pool5"]
    # float32 against float64 through 13 layers of up to 4608-term sums: relative rounding ~1e-5.
    np.testing.assert_allclose(np.asarray(got)[0], x, rtol=1e-4, atol=1e-4 * np.abs(x).max())


@pytest.mark.parametrize("conv_impl", ["gemm", "winograd", "auto"])
def test_every_convolution_plan_computes_vgg16(vgg16, conv_impl):
    image = np.random.default_rng(1).random((1, 32, 32, 3)).astype(np.float32)
    ref = vgg.features(vgg16.params, image, LAYERS, preprocessing="torch", conv_impl="xla")
    got = vgg.features(vgg16.params, image, LAYERS, preprocessing="torch", conv_impl=conv_impl)
    for name in LAYERS:
        # Different float32 summation orders (Winograd's transforms most): 1e-4 of the layer's largest value.
        scale = float(np.abs(ref[name]).max())
        np.testing.assert_allclose(np.asarray(got[name]), np.asarray(ref[name]), atol=1e-4 * scale, err_msg=name)


def test_bfloat16_and_remat_on_vgg16(vgg16):
    image = np.random.default_rng(2).random((1, 32, 32, 3)).astype(np.float32)
    ref = vgg.features(vgg16.params, image, ("relu5_3",), preprocessing="torch")["relu5_3"]
    for remat in ("conv", "block"):
        got = vgg.features(vgg16.params, image, ("relu5_3",), preprocessing="torch", remat=remat)["relu5_3"]
        np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-5 * float(np.abs(ref).max()))
    bf16 = vgg.features(vgg16.params, image, ("relu5_3",), preprocessing="torch", dtype="bfloat16")["relu5_3"]
    # bfloat16 keeps 8 bits of mantissa: ~0.4 % per rounding, a few % through 13 layers.
    rel = np.linalg.norm(np.asarray(bf16, np.float32) - np.asarray(ref)) / np.linalg.norm(np.asarray(ref))
    assert rel < 0.1


def test_estimates_count_vgg16s_layers():
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1", "relu4_2")
    # Up to relu5_1 VGG-16 lacks conv3_4 and conv4_4 (conv5_4 is past relu5_1 in both).
    extra = sum(2.0 * 9 * ci * co * vgg.layer_shape(n, 64, 64)[0] * vgg.layer_shape(n, 64, 64)[1]
                for n, (ci, co) in vgg.CONV_CHANNELS.items() if n in ("conv3_4", "conv4_4"))  # fmt: skip
    assert forward_flops((64, 64), layers, "vgg19") - forward_flops((64, 64), layers, "vgg16") == pytest.approx(extra)
    assert estimate_bytes((64, 64), layers=layers, network="vgg16") < estimate_bytes((64, 64), layers=layers)


def test_stylize_and_batch_run_on_vgg16(vgg16, content_image, style_image):
    config = preset("cpu", size=32, steps=3, tolerance=0.0)
    result = run_stylize(content_image, style_image, weights=vgg16, config=config)
    assert result.image.shape == content_image.shape and np.isfinite(result.loss)
    images = stylize_images([content_image, content_image[::-1]], style_image, weights=vgg16, config=config)
    assert len(images) == 2 and all(r.image.shape == content_image.shape for r in images)


def test_vgg19_only_layers_are_refused_on_vgg16(vgg16, content_image, style_image):
    config = preset("cpu", size=32, steps=1, style_layers=(("relu3_4", 1.0),))
    with pytest.raises(Exception, match="relu3_4.*not in VGG-16"):
        run_stylize(content_image, style_image, weights=vgg16, config=config)
