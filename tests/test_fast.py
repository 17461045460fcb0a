"""Feed-forward style networks (Johnson et al.): training, resume, export, apply, CLI, bad input.

Everything is tiny: 32 px crops of six generated 40x48 photos, batches of 2,
seeded random VGG-19 weights, and a loss on relu1_1/relu2_1 (style) and
relu2_1 (content) so the loss network is three convolutions deep. The network
and the training code are the ones ``fast train`` runs at 256 px on real data;
only the sizes and layers are shrunk. Every run here uses the same
:class:`FastConfig` and batch shape, so the train step compiles once.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nstjax.errors import NstjaxError
from nstjax.fast import (
    FastConfig,
    FastModel,
    apply_fast,
    evaluate_style_loss,
    init_state,
    load_fast_model,
    plan_jobs,
    stylize_array,
    train_fast,
)
from nstjax.fast.train import load_style
from nstjax.fast.losses import style_grams
from nstjax.models import johnson
from nstjax.weights import random_weights
from nstjax.train import Augment, BatchLoader, TrainingInterrupted, TrainSettings, plain

STEPS = 16
STYLE_DROP = 3.0  # the style loss of the outputs falls at least 3x in 16 steps (measured: 4.5x)
CONFIG = FastConfig(
    size=32, style_weight=1e5, learning_rate=1e-2, content_layer="relu2_1",
    style_layers=(("relu1_1", 1.0), ("relu2_1", 1.0)),
)  # fmt: skip
# The same run as CLI options: `fast train` then builds an identical FastConfig (no recompilation).
CLI_OPTIONS = ["--size", "32", "--style-weight", "1e5", "--lr", "1e-2", "--content-layer", "relu2_1",
               "--style-layers", "relu1_1,relu2_1", "--weights", "random", "--batch-size", "2", "--quiet"]


def settings(steps=STEPS, **kw):
    return TrainSettings(steps=steps, batch_size=2, log_every=4, sample_every=8, checkpoint_every=8, **kw)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        small = rng.random((4, 4, 3))
        Image.fromarray((small * 255).astype(np.uint8)).resize((48, 40), Image.BILINEAR).save(photos / f"p{i}.png")
    y, x = np.mgrid[0:32, 0:32]
    stripes = np.stack([np.sin(x / 2.0) > 0, np.sin((x + y) / 3.0) > 0, np.zeros_like(x)], -1)
    Image.fromarray((stripes * 255).astype(np.uint8)).save(root / "style.png")
    return root


@pytest.fixture(scope="module")
def vgg():
    return random_weights(0)


@pytest.fixture(scope="module")
def straight(files, vgg, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "straight"
    return train_fast(files / "style.png", files / "photos", run, config=CONFIG, settings=settings(), weights=vgg)


def test_training_lowers_the_style_loss_of_the_outputs(files, vgg, straight):
    vgg_params = jax.tree.map(jnp.asarray, vgg.params)
    grams = style_grams(vgg_params, jnp.asarray(load_style(files / "style.png", 32)), CONFIG.style_layers,
                        preprocessing="torch")
    # Fresh crops (another seed) of the training photos: the same evaluation before and after.
    contents = (BatchLoader(plain(files / "photos"), 4, Augment(32, 32), seed=9).batch(0)["image"] + 1) / 2
    before = evaluate_style_loss(init_state(CONFIG, 0).net.params, contents, vgg_params, grams, config=CONFIG,
                                 preprocessing="torch")
    after = evaluate_style_loss(straight.params, contents, vgg_params, grams, config=CONFIG, preprocessing="torch")
    assert after["style"] * STYLE_DROP < before["style"], (before, after)
    assert straight.step == STEPS and straight.config.style_weight == 1e5
    records = [json.loads(line) for line in (straight.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 8, 12, 16]
    assert {"loss", "content", "style", "tv"} <= set(records[-1])
    assert sorted(p.name for p in (straight.run_dir / "samples").iterdir()) == ["step_0000008.png", "step_0000016.png"]
    model = load_fast_model(straight.run_dir)
    assert model.info["style"] == "style" and model.info["step"] == STEPS and model.info["system"] == "fast"
    for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(straight.params)):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_resume_equals_uninterrupted(files, vgg, straight, tmp_path):
    # Tolerance: none. On one CPU device the resumed run replays the same batches through the same
    # compiled step, so parameters and Adam moments must agree bit for bit.
    calls = []

    def stop_after_8() -> bool:
        calls.append(1)
        return len(calls) >= 8

    with pytest.raises(TrainingInterrupted) as info:
        train_fast(files / "style.png", files / "photos", tmp_path / "run", config=CONFIG, settings=settings(),
                   weights=vgg, stop=stop_after_8)
    assert info.value.step == 8
    resumed = train_fast(files / "style.png", files / "photos", tmp_path / "run", config=CONFIG, settings=settings(),
                         weights=vgg, resume=True)
    assert resumed.step == STEPS
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(straight.params)):
        np.testing.assert_array_equal(a, b)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [4, 8, 12, 16]
    # A resumed run must have the same settings (a different style weight is refused, naming it).
    with pytest.raises(NstjaxError, match=r"different settings \(loss.style_weight: 100000.0 -> 1000.0\)"):
        train_fast(files / "style.png", files / "photos", tmp_path / "run", config=CONFIG.replace(style_weight=1e3),
                   settings=settings(), weights=vgg, resume=True)


def test_stylize_any_size_and_bad_inputs(straight, files):
    model = load_fast_model(straight.run_dir)
    odd = np.random.default_rng(1).random((1, 30, 37, 3)).astype(np.float32)
    out = stylize_array(model, odd)
    assert out.shape == odd.shape and 0.0 <= out.min() and out.max() <= 1.0
    with pytest.raises(NstjaxError, match="must be \\[B, H, W, 3\\]"):
        stylize_array(model, odd[0])
    with pytest.raises(NstjaxError, match="no trained model here"):
        load_fast_model(files)
    with pytest.raises(NstjaxError, match="no images in the folder"):
        train_fast(files / "style.png", straight.run_dir / "export", files / "never", config=CONFIG,
                   settings=settings(), weights="random")
    with pytest.raises(NstjaxError, match="file not found"):
        train_fast(files / "missing.png", files / "photos", files / "never", config=CONFIG, settings=settings(),
                   weights="random")
    assert not (files / "never").exists()  # checked before anything was created
    with pytest.raises(NstjaxError, match="at least 16 pixels"):
        FastConfig(size=8)
    with pytest.raises(NstjaxError, match="unknown style layer"):
        FastConfig(style_layers=(("relu9_1", 1.0),))


def test_output_planning(files, tmp_path):
    photo = files / "photos" / "p0.png"
    (job,) = plan_jobs([photo], tmp_path / "one.jpg")
    assert job.dest == tmp_path / "one.jpg" and job.kind == "image"
    jobs = plan_jobs([files / "photos"], tmp_path / "many")
    assert [j.dest.name for j in jobs] == [f"p{i}.png" for i in range(6)] and (tmp_path / "many").is_dir()
    with pytest.raises(NstjaxError, match="overwrite an input"):
        plan_jobs([files / "photos"], files / "photos")
    with pytest.raises(NstjaxError, match="must be an image file"):
        plan_jobs([photo], tmp_path / "out.mp4")
    with pytest.raises(NstjaxError, match="unsupported image extension"):
        plan_jobs([photo], tmp_path / "out.xyz")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(NstjaxError, match="neither an image nor a video"):
        plan_jobs([tmp_path / "notes.txt"], tmp_path / "o")
    with pytest.raises(NstjaxError, match="no such file or folder"):
        plan_jobs([tmp_path / "missing.png"], tmp_path / "o")
    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "p0.png")
    with pytest.raises(NstjaxError, match="two inputs would both be written"):
        plan_jobs([photo, tmp_path / "a" / "p0.png"], tmp_path / "o2")


# ----------------------------------------------------------------------------- CLI


def cli_app():
    """The real ``nstjax`` app when ``fast`` is registered there, else a root with just ``fast``."""
    from nstjax import cli
    from nstjax.cli import fast
    from nstjax.cli.common import new_typer

    if any(group.name == "fast" for group in cli.app.registered_groups):
        return cli.app
    root = new_typer("nstjax")
    root.add_typer(fast.app, name="fast")
    return root


def invoke(*args):
    return CliRunner().invoke(cli_app(), [str(a) for a in args])


def test_cli_train_apply_import_round_trip(files, tmp_path):
    run = tmp_path / "run"
    result = invoke("fast", "train", "--style", files / "style.png", "--data", files / "photos", "--run", run,
                    "--steps", "4", *CLI_OPTIONS)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(run.resolve())
    assert "trained 4 steps" in result.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["loss"]["style_layers"] == [["relu1_1", 1.0], ["relu2_1", 1.0]] and config["train"]["batch_size"] == 2
    # Training longer with --resume continues from step 4.
    result = invoke("fast", "train", "--style", files / "style.png", "--data", files / "photos", "--run", run,
                    "--steps", "6", "--resume", *CLI_OPTIONS)
    assert result.exit_code == 0, result.output
    assert load_fast_model(run).info["step"] == 6

    # One image to a file, a folder to a folder.
    photo = files / "photos" / "p1.png"
    result = invoke("fast", "apply", run, photo, "-o", tmp_path / "one.png", "--quiet")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "one.png").size == Image.open(photo).size
    assert result.stdout.startswith(str(tmp_path / "one.png"))
    result = invoke("fast", "apply", run, files / "photos", "-o", tmp_path / "all", "--quiet")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [f"p{i}.png" for i in range(6)]
    assert Image.open(tmp_path / "all" / "p0.png").size == (48, 40)

    # A PyTorch example checkpoint (written by torch.save) converts and gives the network's own output.
    torch = pytest.importorskip("torch")
    params = johnson.init_transformer(7)
    torch.save({k: torch.as_tensor(v) for k, v in johnson.params_to_torch(params).items()}, tmp_path / "mosaic.pth")
    result = invoke("fast", "import-torch", tmp_path / "mosaic.pth", "--run", tmp_path / "imported")
    assert result.exit_code == 0, result.output
    apply_fast(tmp_path / "imported", [photo], tmp_path / "imported.png")
    expected = stylize_array(FastModel(jax.tree.map(jnp.asarray, params)), np.asarray(Image.open(photo))[None] / 255.0)
    got = np.asarray(Image.open(tmp_path / "imported.png"), np.float32) / 255.0
    assert np.max(np.abs(got - expected[0])) <= 0.5 / 255 + 1e-6  # equal up to 8-bit rounding
    assert load_fast_model(tmp_path / "imported").name == "mosaic"


def test_cli_errors_are_one_line(files, straight, tmp_path):
    cases = [
        (["fast", "train", "--style", files / "nope.png", "--data", files / "photos", "--run", tmp_path / "r",
          "--steps", "1", *CLI_OPTIONS], "file not found"),
        (["fast", "train", "--style", files / "style.png", "--data", tmp_path, "--run", tmp_path / "r",
          "--steps", "1", *CLI_OPTIONS], "no images in the folder"),
        (["fast", "train", "--style", files / "style.png", "--data", files / "photos", "--run", straight.run_dir,
          "--steps", "1", *CLI_OPTIONS], "already holds a run; add --resume"),
        (["fast", "train", "--style", files / "style.png", "--data", files / "photos", "--run", tmp_path / "r",
          "--steps", "1", "--style-layers", "relu1_9", "--quiet"], "unknown style layer 'relu1_9'"),
        (["fast", "apply", files / "photos", files / "style.png", "-o", tmp_path / "o.png"], "no trained model here"),
        (["fast", "apply", straight.run_dir, files / "style.png", "-o", tmp_path / "o.mp4"], "must be an image file"),
        (["fast", "apply", straight.run_dir, files / "style.png", "-o", tmp_path / "x" / "o.png"],
         "output directory does not exist"),
        (["fast", "import-torch", files / "style.png", "--run", tmp_path / "i"], "not a PyTorch checkpoint"),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, result.stderr)
    assert not (tmp_path / "r").exists()


def test_fast_convolution_forms_equal_the_plain_ones():
    # The network computes its upsampling layers and its last 9x9 convolution in reorganised forms
    # (faster on XLA:CPU); they must equal the plain convolutions, here on odd sizes.
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((2, 7, 9, 5)), jnp.float32)
    w3 = jnp.asarray(rng.standard_normal((3, 3, 5, 4)), jnp.float32)
    w9 = jnp.asarray(rng.standard_normal((9, 9, 5, 3)), jnp.float32)

    def plain(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    @jax.jit
    def both(x, w3, w9):
        up = johnson.reflect_pad(johnson.upsample_nearest(x, 2), 1)
        padded = johnson.reflect_pad(x, 4)
        return (johnson.upsample_conv3x3(x, w3), plain(up, w3)), (johnson.split_conv(padded, w9), plain(padded, w9))

    (fast_up, plain_up), (fast_9, plain_9) = both(x, w3, w9)
    assert fast_up.shape == plain_up.shape == (2, 14, 18, 4) and fast_9.shape == plain_9.shape == (2, 7, 9, 3)
    np.testing.assert_allclose(fast_up, plain_up, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(plain_up))))
    np.testing.assert_allclose(fast_9, plain_9, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(plain_9))))
