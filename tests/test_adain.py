"""AdaIN: what α does, a short training run, apply with style blending and colour preservation, CLI, errors.

Seeded random VGG-19 weights and decoders, images of 32x40 (multiples of 8: no
padding) unless a test is about padding. α = 0 must give back the decoder's
reconstruction of the content; α = 1 must give relu4_1 features with the
style's channel means and standard deviations.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nstjax.adain import AdaINConfig, AdaINModel, adain_transfer, load_adain_model, style_statistics, stylizer
from nstjax.errors import NstjaxError
from nstjax.io.color import match_color
from nstjax.models import adain
from nstjax.weights import random_weights

SHAPE = (32, 40)
ALPHA1_RTOL = 1e-3  # AdaIN output statistics vs the style's (eps = 1e-5 in the variance shifts them slightly)
ALPHA0_RTOL = 1e-5  # α = 0 vs decoding the content's own features


@pytest.fixture(scope="module")
def model():
    vgg = random_weights(0)
    return AdaINModel(jax.tree.map(jnp.asarray, adain.init_decoder(0)), jax.tree.map(jnp.asarray, vgg.params), "torch")


def smooth(shape, seed):
    rng = np.random.default_rng(seed)
    small = rng.random((shape[0] // 8, shape[1] // 8, 3))
    return np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize(shape[::-1], Image.BILINEAR),
                      np.float32) / 255.0


def test_alpha_zero_reconstructs_the_content_and_alpha_one_takes_the_style_statistics(model):
    content = smooth(SHAPE, 1)[None]
    style = np.random.default_rng(2).random((48, 48, 3)).astype(np.float32)
    mean, std = style_statistics(model, style)
    own = jax.jit(lambda v, x: adain.encode(v, x, preprocessing="torch")["relu4_1"])(model.vgg, content)
    reconstruction = np.asarray(jax.jit(adain.decode)(model.decoder, own))
    out0 = adain_transfer(model, content, mean, std, alpha=0.0, clip=False)
    assert np.max(np.abs(out0 - reconstruction)) <= ALPHA0_RTOL * np.max(np.abs(reconstruction))
    out1 = adain_transfer(model, content, mean, std, alpha=1.0, clip=False)
    # The style does change the picture (an untrained decoder draws faint images, hence the relative bound).
    assert np.max(np.abs(out1 - reconstruction)) > 0.01 * np.max(np.abs(reconstruction))

    target = adain.mix_with_content(adain.adaptive_instance_normalization(own, mean, std), own, 1.0)
    t_mean, t_std = adain.calc_mean_std(target)
    np.testing.assert_allclose(np.asarray(t_mean), np.asarray(mean), rtol=ALPHA1_RTOL, atol=1e-6)
    # A channel the content never varies in (dead ReLUs of random weights) cannot take on the style's spread:
    # AdaIN maps it to the style's mean. Every channel with real variance (var >> eps = 1e-5) in both the
    # content and the style takes the style's std.
    _, c_std = adain.calc_mean_std(own)
    active = (np.asarray(c_std).ravel() > 0.1) & (np.asarray(std).ravel() > 0.1)
    assert active.sum() >= 100, active.sum()
    np.testing.assert_allclose(np.asarray(t_std).ravel()[active], np.asarray(std).ravel()[active], rtol=ALPHA1_RTOL)
    # Halfway: the features are the average of the two.
    half = adain.mix_with_content(adain.adaptive_instance_normalization(own, mean, std), own, 0.5)
    np.testing.assert_allclose(np.asarray(half), 0.5 * (np.asarray(target) + np.asarray(own)), rtol=1e-5, atol=1e-5)


def test_blending_styles_and_preserving_colour(model):
    content = smooth(SHAPE, 3)[None]
    red = np.zeros((32, 32, 3), np.float32)
    red[..., 0] = np.random.default_rng(4).random((32, 32))
    blue = red[..., ::-1].copy()
    (m_r, s_r), (m_b, s_b) = style_statistics(model, red), style_statistics(model, blue)
    # Several styles: their statistics are mixed with the normalised blend weights.
    mean, std = adain.blend_statistics(jnp.concatenate([m_r, m_b]), jnp.concatenate([s_r, s_b]), [0.25, 0.75])
    np.testing.assert_allclose(np.asarray(mean), 0.25 * np.asarray(m_r) + 0.75 * np.asarray(m_b), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(std), 0.25 * np.asarray(s_r) + 0.75 * np.asarray(s_b), rtol=1e-6)
    np.testing.assert_allclose(stylizer(model, [red, blue], blend=[1, 3])(content),
                               adain_transfer(model, content, mean, std), atol=1e-6)
    np.testing.assert_allclose(stylizer(model, [red, blue], blend=[3, 0])(content), stylizer(model, [red])(content),
                               atol=1e-6)
    # Colour preservation: the style is recoloured to the content's colours before its statistics are taken.
    recoloured = match_color(red, content[0])
    m_c, s_c = style_statistics(model, np.clip(recoloured, 0, 1))
    assert np.max(np.abs(np.asarray(m_c) - np.asarray(m_r))) > 0.05 * np.max(np.abs(np.asarray(m_r)))
    np.testing.assert_allclose(stylizer(model, [red], preserve_color=True)(content),
                               adain_transfer(model, content, m_c, s_c), atol=1e-6)
    # Odd sizes are padded to multiples of 8 and cropped back.
    odd = smooth((35, 42), 5)[None]
    assert stylizer(model, [red])(odd).shape == odd.shape
    with pytest.raises(NstjaxError, match="2 weights for 1 styles"):
        stylizer(model, [red], blend=[1, 2])
    with pytest.raises(NstjaxError, match="alpha must be between 0 and 1"):
        stylizer(model, [red], alpha=1.5)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("adain")
    rng = np.random.default_rng(6)
    for name in ("contents", "styles"):
        (root / name).mkdir()
        for i in range(4):
            small = rng.random((5, 6, 3))
            Image.fromarray((small * 255).astype(np.uint8)).resize((40, 36), Image.BILINEAR).save(
                root / name / f"{name[0]}{i}.png"
            )
    return root


def invoke(*args):
    from nstjax import cli
    from nstjax.cli import adain as adain_cli
    from nstjax.cli.common import new_typer

    app = cli.app
    if not any(group.name == "adain" for group in cli.app.registered_groups):
        app = new_typer("nstjax")
        app.add_typer(adain_cli.app, name="adain")
    return CliRunner().invoke(app, [str(a) for a in args])


def test_training_and_the_cli_round_trip(folders, tmp_path):
    run = tmp_path / "run"
    result = invoke("adain", "train", "--content", folders / "contents", "--styles", folders / "styles", "--run", run,
                    "--size", "32", "--load-size", "32", "--steps", "4", "--batch-size", "2", "--lr", "1e-3",
                    "--log-every", "1", "--sample-every", "0", "--weights", "random", "--quiet")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in records)
    # An untrained decoder is far from any image: four steps already halve the loss (measured: 3.6x).
    assert records[-1]["loss"] < 0.5 * records[0]["loss"], records
    exported = load_adain_model(run)
    assert exported.info["vgg"]["source"] == "random" and exported.info["step"] == 4

    content = folders / "contents" / "c0.png"
    styles = [folders / "styles" / "s0.png", folders / "styles" / "s1.png"]
    result = invoke("adain", "apply", run, content, *styles, "-o", tmp_path / "out.png", "--alpha", "0.5",
                    "--style-blend", "3,1", "--preserve-color", "--size", "0", "--style-size", "0", "--quiet")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out.png").size == (40, 36)
    result = invoke("adain", "apply", run, folders / "contents", styles[0], "-o", tmp_path / "all", "--size", "0",
                    "--style-size", "0", "--quiet")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [f"c{i}.png" for i in range(4)]

    # Errors: one line each, exit status 2.
    cases = [
        (["adain", "apply", run, content, *styles, "-o", tmp_path / "e.png", "--style-blend", "1,2,3"],
         "--style-blend has 3 weights for 2 styles"),
        (["adain", "apply", run, content, tmp_path / "missing.png", "-o", tmp_path / "e.png"], "file not found"),
        (["adain", "apply", folders, content, styles[0], "-o", tmp_path / "e.png"], "no trained model here"),
        (["adain", "train", "--content", folders / "contents", "--styles", tmp_path / "nothing", "--run",
          tmp_path / "r2", "--steps", "1", "--weights", "random", "--quiet"], "no such folder"),
        (["adain", "train", "--content", folders / "contents", "--styles", folders / "styles", "--run",
          tmp_path / "r2", "--size", "30", "--steps", "1", "--weights", "random", "--quiet"], "multiple of 8"),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, result.stderr)
    # A decoder only works with the VGG weights it was trained on.
    with pytest.raises(NstjaxError, match="trained on other VGG-19 weights"):
        load_adain_model(run, weights=random_weights(1))


def test_config_checks():
    with pytest.raises(NstjaxError, match="at least the training size"):
        AdaINConfig(size=64, load_size=32)
    with pytest.raises(NstjaxError, match="learning rate must be positive"):
        AdaINConfig(learning_rate=0.0)
