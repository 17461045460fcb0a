"""Parity of the feed-forward stylisers with PyTorch references written in their authors' designs.

* ``references/fast_style_torch.py`` (the PyTorch example ``fast_neural_style``):
  the transformer network's output from the same parameters (random instance-norm
  scales and shifts too), and the perceptual loss terms on nstjax's VGG-19 with
  the same random weights (content at relu2_2, Gram style loss over
  relu1_1 … relu5_1, TV).
* ``references/adain_torch.py`` (naoto0804/pytorch-AdaIN): ``calc_mean_std`` and
  the AdaIN operation, the decoder's forward pass, the training losses of
  ``Net.forward`` (encoder = nstjax's VGG behind the reference's 1x1 input
  convolution), and test-time transfer with α and style interpolation.

Tolerances are relative to the largest magnitude of the reference value
(``max|a - b| / max|b|``), float32 with convolutions at full precision on both sides.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from nstjax.adain.apply import AdaINModel, adain_transfer, style_statistics  # noqa: E402
from nstjax.adain.losses import adain_terms  # noqa: E402
from nstjax.fast.config import FAST_STYLE_LAYERS  # noqa: E402
from nstjax.fast.losses import perceptual_terms, style_grams  # noqa: E402
from nstjax.models import adain, johnson, vgg  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "references"))
import adain_torch as aref  # noqa: E402
import fast_style_torch as fref  # noqa: E402

FORWARD_RTOL = 1e-4  # transformer output: 17 convolutions and 15 instance norms deep
LOSS_RTOL = 1e-4  # perceptual and AdaIN loss terms
OP_RTOL = 1e-5  # calc_mean_std and AdaIN on the same features
DECODER_RTOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def highest_precision():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors; OpenMP spinning on a shared 2-core machine only costs
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with jax.default_matmul_precision("highest"):
            yield
    finally:
        torch.set_num_threads(threads)
        torch.set_float32_matmul_precision(old)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def nchw(x) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2)))


def nhwc(t) -> np.ndarray:
    return t.detach().permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def transformer_params():
    """Flax-initialised parameters with random instance-norm scales and shifts (not the trivial 1 and 0)."""
    params = jax.tree.map(np.asarray, johnson.init_transformer(3))
    rng = np.random.default_rng(3)

    def perturb(path, x):
        name = path[-1].key
        if name == "scale":
            return (1.0 + 0.3 * rng.standard_normal(x.shape)).astype(np.float32)
        if name == "bias" and path[-2].key.startswith("in"):
            return (0.2 * rng.standard_normal(x.shape)).astype(np.float32)
        return x

    return jax.tree_util.tree_map_with_path(perturb, params)


@pytest.fixture(scope="module")
def vgg_params():
    return vgg.init_params(0)


def smooth(shape, seed):
    rng = np.random.default_rng(seed)
    small = rng.random((shape[0] // 4, shape[1] // 4, 3)).astype(np.float32)
    return np.clip(small.repeat(4, 0).repeat(4, 1) + 0.05 * rng.standard_normal((*shape, 3)), 0, 1).astype(np.float32)


# --------------------------------------------------------------------------- Johnson et al.


def test_transformer_forward_matches_the_pytorch_example(transformer_params):
    images = np.stack([smooth((24, 32), 0), smooth((24, 32), 1)])
    forward = jax.jit(lambda p, x: johnson.TransformerNet().apply({"params": p}, x))
    ours = np.asarray(forward(transformer_params, images))
    net = fref.transformer_from_state(johnson.params_to_torch(transformer_params))
    with torch.no_grad():
        theirs = nhwc(net(nchw(images) * 255.0)) / 255.0
    assert ours.shape == theirs.shape == images.shape
    assert rel_err(ours, theirs) < FORWARD_RTOL, rel_err(ours, theirs)
    # The state dict round trip is exact, and the example's deprecated running stats are ignored.
    state = johnson.params_to_torch(transformer_params)
    assert set(state) == set(net.state_dict())
    state["in1.running_mean"] = np.zeros(32, np.float32)
    back = johnson.params_from_torch(state)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(transformer_params)):
        np.testing.assert_array_equal(a, b)


def test_perceptual_loss_matches_the_reference(transformer_params, vgg_params):
    contents = np.stack([smooth((32, 32), 2), smooth((32, 32), 3)])
    style = np.random.default_rng(4).random((1, 40, 36, 3)).astype(np.float32)
    layers = FAST_STYLE_LAYERS
    names = tuple(n for n, _ in layers)

    @jax.jit
    def ours_fn(params, vparams, contents, style):
        grams = style_grams(vparams, style, layers, preprocessing="torch")
        outputs = johnson.TransformerNet().apply({"params": params}, contents)
        return perceptual_terms(vparams, outputs, contents, grams, content_layer="relu2_2", style_layers=layers,
                                preprocessing="torch")

    ours = jax.tree.map(lambda x: float(np.mean(x)), ours_fn(transformer_params, vgg_params, contents, style))
    net = fref.transformer_from_state(johnson.params_to_torch(transformer_params))
    loss_vgg = fref.vgg_from_params(vgg_params, ("relu2_2", *names))
    grams = fref.style_grams(loss_vgg, nchw(style) * 255.0, names)
    with torch.no_grad():
        theirs = fref.perceptual_loss(net, loss_vgg, nchw(contents) * 255.0, grams, content_layer="relu2_2",
                                      style_layers=names)
    assert abs(ours["content"] - float(theirs["content"])) / float(theirs["content"]) < LOSS_RTOL
    # nstjax averages the (equally weighted) layers; the example sums them.
    assert abs(len(names) * ours["style"] - float(theirs["style_sum"])) / float(theirs["style_sum"]) < LOSS_RTOL
    assert abs(ours["tv"] - float(theirs["tv"])) / float(theirs["tv"]) < LOSS_RTOL


# --------------------------------------------------------------------------- AdaIN


def test_adain_operation_matches_the_reference():
    rng = np.random.default_rng(5)
    content = rng.standard_normal((2, 5, 6, 8)).astype(np.float32) * 3 + 1
    style = rng.random((2, 7, 4, 8)).astype(np.float32) * 5
    mean, std = adain.calc_mean_std(jnp.asarray(style))
    ref_mean, ref_std = aref.calc_mean_std(nchw(style))
    assert rel_err(np.asarray(mean).reshape(2, 8), ref_mean.numpy().reshape(2, 8)) < OP_RTOL
    assert rel_err(np.asarray(std).reshape(2, 8), ref_std.numpy().reshape(2, 8)) < OP_RTOL
    ours = adain.adaptive_instance_normalization(jnp.asarray(content), mean, std)
    theirs = aref.adaptive_instance_normalization(nchw(content), nchw(style))
    assert rel_err(ours, nhwc(theirs)) < OP_RTOL


def test_decoder_forward_matches_the_reference():
    params = jax.tree.map(np.asarray, adain.init_decoder(1))
    features = np.abs(np.random.default_rng(6).standard_normal((2, 3, 4, 512))).astype(np.float32)
    ours = np.asarray(jax.jit(adain.decode)(params, features))
    with torch.no_grad():
        theirs = nhwc(aref.decoder_from_params(params)(nchw(features)))
    assert ours.shape == theirs.shape == (2, 24, 32, 3)
    assert rel_err(ours, theirs) < DECODER_RTOL, rel_err(ours, theirs)


@pytest.fixture(scope="module")
def adain_setup(vgg_params):
    decoder = jax.tree.map(np.asarray, adain.init_decoder(2))
    encoder = aref.encoder_from_params(vgg_params, "torch")
    return decoder, encoder, aref.decoder_from_params(decoder)


def test_adain_losses_match_the_reference(vgg_params, adain_setup):
    decoder, encoder, ref_decoder = adain_setup
    contents = np.stack([smooth((32, 40), 7), smooth((32, 40), 8)])
    styles = np.random.default_rng(9).random((2, 32, 40, 3)).astype(np.float32)
    terms, _ = jax.jit(lambda d, v, c, s: adain_terms(d, v, c, s, preprocessing="torch"))(
        decoder, vgg_params, contents, styles
    )
    with torch.no_grad():
        loss_c, loss_s = aref.Net(encoder, ref_decoder)(nchw(contents), nchw(styles))
    assert abs(float(jnp.mean(terms["content"])) - float(loss_c)) / float(loss_c) < LOSS_RTOL
    assert abs(float(jnp.mean(terms["style"])) - float(loss_s)) / float(loss_s) < LOSS_RTOL


def test_transfer_with_alpha_and_style_interpolation_matches_the_reference(vgg_params, adain_setup):
    decoder, encoder, ref_decoder = adain_setup
    content = smooth((32, 40), 10)[None]
    styles = np.random.default_rng(11).random((2, 32, 40, 3)).astype(np.float32)
    model = AdaINModel(jax.tree.map(jnp.asarray, decoder), jax.tree.map(jnp.asarray, vgg_params), "torch")
    means, stds = zip(*(style_statistics(model, s) for s in styles))
    mean, std = adain.blend_statistics(jnp.concatenate(means), jnp.concatenate(stds), [0.7, 0.3])
    ours = adain_transfer(model, content, mean, std, alpha=0.6, clip=False)
    with torch.no_grad():
        theirs = nhwc(aref.style_transfer(encoder, ref_decoder, nchw(content), nchw(styles), alpha=0.6,
                                          interpolation_weights=[0.7, 0.3]))
    assert rel_err(ours, theirs) < LOSS_RTOL, rel_err(ours, theirs)
