"""nstjax follows the authors' code by default (issue 28): sizes, crops, flips, schedules, loss scales.

Each test names the upstream behaviour it pins: naoto0804/pytorch-AdaIN (``test.py``, ``train.py``),
pytorch/examples ``fast_neural_style``, junyanz/pytorch-CycleGAN-and-pix2pix (``get_transform``) and
NVlabs/SPADE (options, ``VGGLoss``).
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from nstjax.adain import AdaINModel
from nstjax.io.images import fit_shortest_side
from nstjax.models import adain
from nstjax.weights import random_weights


def _photo(path, hw, seed=0):
    rng = np.random.default_rng(seed)
    small = (rng.random((4, 4, 3)) * 255).astype(np.uint8)
    Image.fromarray(small).resize(hw[::-1], Image.BILINEAR).save(path)
    return path


# --------------------------------------------------------------------------- AdaIN inference size


def test_adain_apply_resizes_the_short_side_like_torchvision_resize(tmp_path):
    """test.py's ``transforms.Resize(512)``: a 4:3 photo becomes 683x512, not 512x384."""
    from nstjax.adain.apply import apply_adain

    assert fit_shortest_side((600, 800), 512) == (512, 683)
    assert fit_shortest_side((800, 600), 512) == (683, 512)
    params = inspect.signature(apply_adain).parameters
    assert params["size"].default == 512 and params["style_size"].default == 512
    model = AdaINModel(jax.tree.map(jnp.asarray, adain.init_decoder(0)),
                       jax.tree.map(jnp.asarray, random_weights(0).params), "torch")
    content = _photo(tmp_path / "c.png", (30, 40))  # 4:3, landscape
    style = _photo(tmp_path / "s.png", (40, 20), seed=1)
    results = apply_adain(model, [content], [style], tmp_path / "out.png", size=24, style_size=16)
    assert results[0].shape == (24, 32)
    assert Image.open(tmp_path / "out.png").size == (32, 24)  # (width, height)


# --------------------------------------------------------------------------- learning-rate schedules


def test_spade_keeps_its_learning_rates_and_pix2pix_decays_over_the_second_half():
    """NVlabs' ``--niter 50 --niter_decay 0``; junyanz's ``--n_epochs 100 --n_epochs_decay 100``."""
    from nstjax.sketch2photo import Sketch2PhotoConfig
    from nstjax.train.settings import TrainSettings

    spade, pix = Sketch2PhotoConfig(), Sketch2PhotoConfig(model="pix2pix")
    assert (spade.decay, spade.train.decay_fraction, spade.train.decay_steps(1000)) == (0.0, 0.0, 0)
    assert (pix.decay, pix.train.decay_fraction, pix.train.decay_steps(1000)) == (0.5, 0.5, 500)
    chosen = Sketch2PhotoConfig(decay=0.25, train=TrainSettings(steps=8))
    assert chosen.train.decay_steps(8) == 2 and Sketch2PhotoConfig.from_json(chosen.to_json()) == chosen
    # A run recorded before ``decay`` existed keeps the schedule it was started with.
    old = spade.to_json()
    del old["decay"]
    old["train"]["decay_fraction"] = 0.5
    assert Sketch2PhotoConfig.from_json(old).train.decay_fraction == 0.5


# --------------------------------------------------------------------------- training data


def _stripes(path, hw):
    """An image whose every column has its own colour: a flip or a shifted crop shows at once."""
    x = np.linspace(0, 255, hw[1])[None, :, None] * np.ones((hw[0], 1, 3))
    x[..., 1] = np.linspace(0, 255, hw[0])[:, None]
    Image.fromarray(x.astype(np.uint8)).save(path)
    return path


def _batches(folder, augment, steps=6):
    from nstjax.train import BatchLoader, plain

    loader = BatchLoader(plain(folder), 1, augment, seed=3)
    try:
        return [loader.batch(s)["image"][0] for s in range(steps)]
    finally:
        loader.close()


def test_fast_style_training_data_is_the_pytorch_examples(tmp_path):
    """``Resize(size)`` + ``CenterCrop(size)`` and no flip for the contents; the style at its own size."""
    from nstjax.fast import FastConfig
    from nstjax.fast.train import content_augment, load_style

    (tmp_path / "photos").mkdir()
    _stripes(tmp_path / "photos" / "wide.png", (20, 40))
    batches = _batches(tmp_path / "photos", content_augment(16))
    for b in batches:
        np.testing.assert_array_equal(b, batches[0])  # a centre crop, never flipped: always the same
    assert batches[0].shape == (16, 16, 3)
    assert np.all(np.diff(batches[0][0, :, 0]) > 0)  # columns still left to right
    # The middle: 20x40 -> 16x32, crop columns 8..23 of 32, i.e. around the image's middle column.
    assert abs(float(batches[0][:, :, 0].mean())) < 0.05
    assert FastConfig().style_side is None and FastConfig(style_size=64).style_side == 64
    _stripes(tmp_path / "style.png", (30, 50))
    assert load_style(tmp_path / "style.png", None).shape == (1, 30, 50, 3)
    assert load_style(tmp_path / "style.png", 25).shape == (1, 15, 25, 3)


def test_adain_training_data_squashes_crops_at_random_and_never_flips(tmp_path):
    """train.py's ``Resize(size=(512, 512))``, ``RandomCrop(256)``; no flip."""
    from nstjax.adain import AdaINConfig
    from nstjax.adain.train import adain_augment

    augment = adain_augment(AdaINConfig(size=16, load_size=24))
    assert (augment.resize, augment.flip, augment.crop) == ("squash", False, "random")
    assert augment.shape((20, 40)) == (24, 24)
    (tmp_path / "photos").mkdir()
    _stripes(tmp_path / "photos" / "wide.png", (20, 40))
    for b in _batches(tmp_path / "photos", augment):
        assert np.all(np.diff(b[0, :, 0]) > 0)  # never mirrored


def test_gan_training_data_can_be_squashed_with_bicubic_before_the_random_crop(tmp_path):
    """junyanz's ``get_transform`` (``resize_and_crop``: ``Resize([load, load], BICUBIC)``, ``RandomCrop``,
    ``RandomHorizontalFlip``) as an option; the default keeps nstjax's aspect-keeping resize (see Augment)."""
    from nstjax.train import Augment

    default = Augment(load_size=24, crop_size=16)
    assert (default.resize, default.filter) == ("short_side", "lanczos")
    upstream = Augment(load_size=24, crop_size=16, resize="squash", filter="bicubic")
    assert (upstream.resize, upstream.filter, upstream.crop, upstream.flip) == ("squash", "bicubic", "random", True)
    assert upstream.shape((20, 40)) == (24, 24) and upstream.shape((40, 20)) == (24, 24)
    kept = Augment(load_size=24, crop_size=16, resize="short_side", filter="lanczos")
    assert kept.shape((20, 40)) == (24, 48)
    (tmp_path / "photos").mkdir()
    path = _stripes(tmp_path / "photos" / "wide.png", (20, 40))
    full = Augment(load_size=24, crop_size=24, flip=False, resize="squash", filter="bicubic")  # the whole image
    got = _batches(tmp_path / "photos", full, steps=1)[0]
    source = Image.open(path).convert("RGB").resize((24, 24), Image.Resampling.BICUBIC)
    want = np.asarray(source, np.float32) / 127.5 - 1.0
    assert np.max(np.abs(got - want)) < 2.5 / 127.5  # PIL's bicubic on float vs uint8 channels
    flips = [np.diff(b[0, :, 0]).mean() < 0 for b in _batches(tmp_path / "photos", upstream, steps=12)]
    assert any(flips) and not all(flips)


# --------------------------------------------------------------------------- SPADE's VGG loss scale


def _two_images(size=32):
    from conftest import smooth_image

    return (np.stack([smooth_image((size, size), 1)]) * 2 - 1, np.stack([smooth_image((size, size), 2)]) * 2 - 1)


def _nvlabs_vgg_term(params, preprocessing, fake, real):
    """NVlabs' ``VGGLoss`` in the reference (torch): the [-1, 1] images straight into a VGG in torchvision's
    convention (Caffe weights converted by weight surgery, references/spade_torch.py)."""
    import torch

    import spade_torch as ref

    loss = ref.VGGLoss(ref.VGG19(params, preprocessing))
    with torch.no_grad():
        return float(loss(*(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32))
                            for x in (fake, real))))  # fmt: skip


def _references_on_path():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "references"))


def test_spade_vgg_term_is_nvlabs_on_the_real_vgg16(real_vgg16):
    """NVlabs' ``VGGLoss``: [-1, 1] images straight into torchvision's VGG-19, weights 1/32 … 1, L1; with the
    real (Caffe-convention) VGG-16 nstjax's default term is the same value, and the former one ~10^2 heavier."""
    from nstjax.sketch2photo import VGG_LAYERS, SpadeConfig, vgg_loss, vgg_scale

    _references_on_path()
    assert SpadeConfig().vgg_input == "nvlabs" and SpadeConfig().lambda_vgg == 10.0
    assert [w for _, w in VGG_LAYERS] == [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0]
    fake, real = _two_images()
    params = jax.tree.map(jnp.asarray, real_vgg16.params)
    ours = float(vgg_loss(params, jnp.asarray(fake), jnp.asarray(real), preprocessing="caffe"))
    theirs = _nvlabs_vgg_term(real_vgg16.params, "caffe", fake, real)
    # The issue asks for 10 %; the two routes (input map + scale vs converted weights) differ only where the
    # converted conv1_1 sees zero padding as 255 * mean - caffe_mean (<= 0.5 of 255): measured 7e-5 apart
    # on these 32 px images (relative to the term).
    assert ours == pytest.approx(theirs, rel=0.01)
    old = float(vgg_loss(params, jnp.asarray(fake), jnp.asarray(real), preprocessing="caffe", vgg_input="preprocessed"))
    assert old > 20 * ours  # Caffe-scale features (1/vgg_scale = 57.6) at full contrast: measured 127x
    assert vgg_scale("caffe") == pytest.approx(1 / (255 * 0.226), rel=1e-3)
    assert vgg_scale("torch") == vgg_scale("caffe", normalised=True) == 1.0


def test_spade_vgg_term_feeds_torch_weights_the_image_as_it_is(random_weights):
    """With torchvision-convention weights nothing is converted: NVlabs' loss exactly (float32 rounding)."""
    from nstjax.sketch2photo import vgg_loss

    _references_on_path()
    fake, real = _two_images()
    params = jax.tree.map(jnp.asarray, random_weights.params)
    ours = float(vgg_loss(params, jnp.asarray(fake), jnp.asarray(real), preprocessing="torch"))
    assert ours == pytest.approx(_nvlabs_vgg_term(random_weights.params, "torch", fake, real), rel=1e-4)
    old = float(vgg_loss(params, jnp.asarray(fake), jnp.asarray(real), preprocessing="torch", vgg_input="preprocessed"))
    assert old > 1.5 * ours  # measured 2.11x (the issue: 2.15x with torchvision's weights on photos)


def test_spade_runs_from_before_vgg_input_keep_their_loss():
    from nstjax.errors import NstjaxError
    from nstjax.sketch2photo import Sketch2PhotoConfig, SpadeConfig

    old = Sketch2PhotoConfig().to_json()
    del old["spade"]["vgg_input"]
    assert Sketch2PhotoConfig.from_json(old).spade.vgg_input == "preprocessed"
    new = Sketch2PhotoConfig(spade=SpadeConfig(vgg_input="preprocessed"))
    assert Sketch2PhotoConfig.from_json(new.to_json()) == new
    with pytest.raises(NstjaxError, match="unknown VGG input"):
        SpadeConfig(vgg_input="raw")
