"""CycleGAN on the shared training core: it learns, resumes exactly, runs on 4 devices, translates, has a CLI.

Two synthetic domains written by the tests: A is warm (orange) and smooth, B is
cool (blue) with diagonal stripes. The statistics the tests read are the colour
``mean(R) - mean(B)`` and the texture ``mean |horizontal difference|``.

Everything uses one tiny configuration (ngf 8, ndf 8, 2 residual blocks, 32 px
crops, batch 4, the default 50-image pools), the one tests/test_cyclegan_parity.py
checks against the PyTorch reference, so the jitted train step compiles once for
the whole session (the learning rate and run length are data in the state).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from _adam_step import check_two_data_parallel_steps
from nstjax.cli.cyclegan import app
from nstjax.cyclegan import (
    CycleGANConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    Translator,
    init_params,
    init_pool,
    init_state,
    pool_draws,
    query_pool,
    sample_grid,
    train,
    translate,
)
from nstjax.errors import NstjaxError
from nstjax.io import load_image
from nstjax.models.patchgan import PatchGAN, patch_grid
from nstjax.models.layers import conv_method, convolve
from nstjax.models.resnet_generator import ResnetGenerator
from nstjax.train import (
    TrainingInterrupted,
    TrainSettings,
    constant_then_linear_decay,
    image_grid,
    linear_decay_rate,
    load_export,
)

TINY = ModelConfig(ngf=8, ndf=8, blocks=2, size=32)
BATCH = 4
RESUME_STEPS = 32  # the pools (50 images, 4 per step) are full after 13 steps: resuming at 16 continues a full pool


@pytest.fixture(autouse=True, scope="module")
def highest_precision():
    # The parity tests pin float32 matmul precision to "highest"; the same setting here keeps one compiled step
    # (module scope: active before the module's other fixtures train).
    with jax.default_matmul_precision("highest"):
        yield


# ----------------------------------------------------------------------------- synthetic domains


def _smooth(rng: np.random.Generator, size: int) -> np.ndarray:
    small = (rng.random((4, 4)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)) / 255.0


def warm_smooth(rng: np.random.Generator, size: int = 40) -> np.ndarray:
    """Domain A: orange, low-frequency shading."""
    return np.clip(np.array([0.85, 0.45, 0.2]) * (0.6 + 0.4 * _smooth(rng, size)[..., None]), 0, 1)


def cool_striped(rng: np.random.Generator, size: int = 40) -> np.ndarray:
    """Domain B: blue, diagonal stripes of period 4-6 px."""
    y, x = np.mgrid[:size, :size]
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (x + y) / rng.uniform(4, 6) + rng.uniform(0, 2 * np.pi))
    return np.clip(np.array([0.2, 0.4, 0.85]) * (0.55 + 0.45 * stripes[..., None]), 0, 1)


def colour(x: np.ndarray) -> float:
    return float(x[..., 0].mean() - x[..., 2].mean())


def texture(x: np.ndarray) -> float:
    return float(np.abs(np.diff(x, axis=1)).mean())


def write_domain(folder: Path, make, count: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        paths.append(folder / f"{folder.name}{i:02d}.png")
        Image.fromarray((make(rng) * 255).round().astype(np.uint8)).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def domains(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("domains")
    write_domain(root / "a", warm_smooth, 12, seed=0)
    write_domain(root / "b", cool_striped, 12, seed=1)
    write_domain(root / "test_a", warm_smooth, 4, seed=2)
    write_domain(root / "test_b", cool_striped, 4, seed=3)
    return {name: root / name for name in ("a", "b", "test_a", "test_b")}


def tiny_config(steps: int, lr: float = 2e-4, **intervals) -> CycleGANConfig:
    settings = {"log_every": 10, "sample_every": 0, "checkpoint_every": 0, **intervals}
    return CycleGANConfig(model=TINY, optim=OptimConfig(lr=lr),
                          train=TrainSettings(steps=steps, batch_size=BATCH, **settings))  # fmt: skip


def leaves(state) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state))]


# ----------------------------------------------------------------------------- pieces


def test_pool_follows_the_authors_rule():
    # Replay the authors' ImagePool, image by image, with the random numbers query_pool draws.
    size, rng = 3, np.random.default_rng(0)
    pool = init_pool(size, (2, 2, 1))
    kept: list[np.ndarray] = []
    for step in range(4):
        images = rng.random((2, 2, 2, 1)).astype(np.float32)
        key = jax.random.PRNGKey(step)
        pool, out = query_pool(pool, jnp.asarray(images), key)
        uniform, slots = (np.asarray(v) for v in pool_draws(key, 2, size))
        expect = []
        for image, u, slot in zip(images, uniform, slots):
            if len(kept) < size:
                kept.append(image)
                expect.append(image)
            elif u > 0.5:
                expect.append(kept[slot])
                kept[slot] = image
            else:
                expect.append(image)
        np.testing.assert_array_equal(np.asarray(out), np.stack(expect))
        np.testing.assert_array_equal(np.asarray(pool.images), np.stack(kept + [np.zeros_like(images[0])] * (size - len(kept))))
    assert int(pool.count) == size
    empty = init_pool(0, (2, 2, 1))
    same = jnp.ones((2, 2, 2, 1))
    assert query_pool(empty, same, jax.random.PRNGKey(0))[1] is same


def test_schedule_is_the_cores_constant_then_linear_decay():
    for total, decay in ((100, 50), (10, 0), (7, 7)):
        core = constant_then_linear_decay(2e-4, total, decay)
        ours = [float(linear_decay_rate(2e-4, s, total, decay)) for s in range(total + 1)]
        np.testing.assert_allclose(ours, [float(core(s)) for s in range(total + 1)], rtol=1e-6, atol=1e-12)


def test_config_checks_and_round_trip():
    config = CycleGANConfig(model=ModelConfig(generator="unet", size=64), train=TrainSettings(epochs=3))
    assert config.model.upsample == "resize" and config.model.load_size == 72  # GDL_code's; 286/256 of 64
    assert CycleGANConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert ModelConfig().upsample == "transpose" and ModelConfig().load_size == 286
    for bad, message in (
        (dict(size=30), "multiple of 4"),
        (dict(generator="unet", size=40), "multiple of 16"),
        (dict(size=16), "at least 24 px"),
        (dict(generator="vit"), "unknown generator"),
        (dict(upsample="pixelshuffle"), "unknown upsampling"),
        (dict(ngf=0), "ngf must be a positive integer"),
    ):
        with pytest.raises(NstjaxError, match=message):
            ModelConfig(**bad)
    with pytest.raises(NstjaxError, match="pool size"):
        LossConfig(pool_size=-1)
    with pytest.raises(NstjaxError, match="learning rate"):
        OptimConfig(lr=0)


def test_patchgan_options_for_other_discriminators():
    # Conditional input (label + image: 6 channels), no norm, 2 stride-2 layers, SPADE's padding 2, features
    # for feature matching, spectral norm with its power-iteration state in "batch_stats".
    model = PatchGAN(ndf=4, n_layers=2, norm="none", spectral_norm=True, padding=2, return_features=True)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 32, 32, 6)), jnp.float32)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    rng = np.random.default_rng(1)  # NumPy values: JAX's init would compile random bits per shape
    variables = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32) * 0.3, shapes)
    assert set(variables) == {"params", "batch_stats"} and "bias" in variables["params"]["conv1"]

    @jax.jit
    def power_iterations(variables):
        def one(_, stats):
            _, updated = model.apply({**variables, "batch_stats": stats}, x, update_stats=True,
                                     mutable=["batch_stats"])  # fmt: skip
            return updated["batch_stats"]

        stats = jax.lax.fori_loop(0, 30, one, variables["batch_stats"])
        return stats, model.apply({**variables, "batch_stats": stats}, x)

    stats, (logits, features) = power_iterations(variables)
    assert logits.shape == (2, 11, 11, 1) and patch_grid(32, n_layers=2, padding=2) == 11 and logits.dtype == jnp.float32
    assert [f.shape[-1] for f in features] == [4, 8, 16]
    for name in ("conv1", "conv2"):
        kernel = variables["params"][name]["kernel"]
        sigma = [v for k, v in jax.tree_util.tree_leaves_with_path(stats) if name in jax.tree_util.keystr(k)
                 and "sigma" in jax.tree_util.keystr(k)][0]  # fmt: skip
        top = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
        np.testing.assert_allclose(float(sigma), top, rtol=1e-3)


@pytest.mark.parametrize(
    "shape, kernel, stride, padding",
    [((9, 11, 5, 7), 3, 1, 1), ((10, 12, 5, 7), 3, 2, 1), ((10, 12, 5, 7), 4, 2, 1), ((12, 12, 5, 7), 4, 1, "SAME"),
     ((10, 12, 6, 2), 7, 1, "VALID"), ((9, 9, 8, 3), 4, 1, 1), ((3, 3, 16, 12), 2, 1, "SAME")],
)
def test_matrix_product_convolutions_equal_xlas(shape, kernel, stride, padding):
    # convolve(impl="gemm"): im2col products, or (stride 1, fewer outputs than inputs and more output pixels
    # than output channels: the fifth and sixth cases) the shifted sum of per-tap products; values and both
    # gradients equal XLA's convolution.
    h, w, c_in, c_out = shape
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, h, w, c_in)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((kernel, kernel, c_in, c_out)), jnp.float32)
    ref = functools.partial(convolve, stride=stride, padding=padding, impl="xla")
    ours = functools.partial(convolve, stride=stride, padding=padding, impl="gemm")
    y_ref, vjp_ref = jax.vjp(ref, x, k)
    y, vjp = jax.vjp(ours, x, k)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=2e-5)
    g = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
    for got, want in zip(vjp(g), vjp_ref(g)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=5e-5)
    shift = stride == 1 and c_out < c_in and y.shape[1] * y.shape[2] > c_out
    assert conv_method(y.shape[1], y.shape[2], c_in, c_out, kernel, stride, "gemm") == ("shift" if shift else "gemm")
    assert conv_method(64, 64, 256, 256, 3, 1, "auto", platform="gpu") == "xla"
    assert conv_method(64, 64, 256, 256, 3, 1, "auto", platform="cpu") == "winograd"  # residual blocks at 256 px
    assert conv_method(32, 32, 256, 256, 3, 1, "auto", platform="cpu") == "winograd"  # ... and at 128 px
    assert conv_method(128, 128, 32, 64, 3, 1, "auto", platform="cpu") == "gemm"  # < 64 channels: no Winograd
    assert conv_method(256, 256, 3, 64, 7, 1, "auto", platform="cpu") == "gemm"  # the stem
    assert conv_method(128, 128, 64, 128, 3, 2, "auto", platform="cpu") == "gemm"  # downsampling
    assert conv_method(256, 256, 64, 3, 7, 1, "auto", platform="cpu") == "xla"  # the RGB head
    assert conv_method(8, 8, 32, 32, 3, 1, "auto", platform="cpu") == "xla"  # small layers: XLA compiles faster
    assert conv_method(2, 2, 512, 2048, 2, 1, "auto", platform="cpu") == "gemm"  # ... but not tiny outputs
    assert conv_method(33, 33, 512, 1, 4, 1, "auto", platform="cpu") == "shift"  # ... nor one-channel logits
    assert conv_method(63, 63, 512, 1, 4, 1, "auto", platform="cpu") == "shift"  # ... at any size


def test_bfloat16_compute_keeps_float32_parameters_and_outputs():
    gen = ResnetGenerator(ngf=8, blocks=1)
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 16, 16, 3)), jnp.float32)
    shapes = jax.eval_shape(gen.init, jax.random.PRNGKey(0), x)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: (rng.standard_normal(s.shape) * 0.1).astype(np.float32), shapes)
    full = jax.jit(gen.apply)(params, x)
    half = jax.jit(ResnetGenerator(ngf=8, blocks=1, dtype=jnp.bfloat16).apply)(params, x)
    assert half.dtype == full.dtype == jnp.float32
    assert 0 < float(jnp.abs(half - full).max()) < 0.1  # bfloat16 arithmetic, same function


def test_sample_grid_labels_its_rows_by_direction():
    # 2 A and 2 B samples: rows A, G_AB(A), G_BA(G_AB(A)) then B, G_BA(B), G_AB(G_BA(B)), each titled on the left.
    rng = np.random.default_rng(0)
    samples = {k: rng.uniform(-1, 1, (2, TINY.size, TINY.size, 3)).astype(np.float32) for k in ("a", "b")}
    grid = sample_grid(init_state(tiny_config(1), 1, 1), samples, TINY)
    plain = image_grid([[np.zeros((TINY.size, TINY.size, 3))] * 3] * 4, labels=["input", "translated", "reconstructed"])
    band = grid.shape[1] - plain.shape[1]
    assert grid.shape[0] == plain.shape[0] and band >= 20  # a left band as wide as 'A->B' (~25 px in PIL's default font)
    top, pad, h = 14, 2, TINY.size  # image_grid's column-label band, padding and tile side
    for i in range(4):
        rows = grid[top + pad + i * (h + pad) : top + pad + i * (h + pad) + h, :band]
        assert (rows < 128).any(), i  # dark text pixels in each row's band; the band is white otherwise
    assert (grid[:top, :band] == 255).all()  # nothing drawn above the row titles
    # the row titles differ between the A rows and the B rows, and match within each pair
    title = [grid[top + pad + i * (h + pad) : top + pad + i * (h + pad) + h, :band] for i in range(4)]
    assert np.array_equal(title[0], title[1]) and np.array_equal(title[2], title[3])
    assert not np.array_equal(title[0], title[2])


# ----------------------------------------------------------------------------- training


def test_training_learns_the_translation(domains, tmp_path):
    steps = 80
    config = tiny_config(steps, lr=2e-3, sample_every=steps, checkpoint_every=steps)
    state = train(domains["a"], domains["b"], tmp_path / "run", config, threads=2)
    assert int(state.step) == steps and int(state.pool_a.count) == 50

    translator = Translator.load(tmp_path / "run", "a2b")
    test_a = [load_image(p) for p in sorted(domains["test_a"].iterdir())]
    test_b = [load_image(p) for p in sorted(domains["test_b"].iterdir())]
    fakes = [translator(x) for x in test_a]
    for stat, needed in ((colour, 0.75), (texture, 0.3)):
        a, b, fake = (np.mean([stat(x) for x in xs]) for xs in (test_a, test_b, fakes))
        moved = (fake - a) / (b - a)
        assert moved > needed, (stat.__name__, a, b, fake)  # the share of the way from A's statistic to B's

    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(10, steps + 1, 10))
    cycle = [r["g_cycle_a"] + r["g_cycle_b"] for r in records]  # means over steps 1-10, ..., 71-80
    assert cycle[-1] < 0.6 * cycle[0], cycle
    assert records[0]["lr"] == pytest.approx(2e-3) and records[-1]["lr"] < 2e-3 * 0.2  # decaying linearly to 0 over the second half
    grid = Image.open(tmp_path / "run" / "samples" / f"step_{steps:07d}.png")
    assert grid.size[0] > 3 * 32 and grid.size[1] > 4 * 32  # 4 rows (2 A, 2 B) x 3 columns
    params, export_config = load_export(tmp_path / "run")
    assert set(params) == {"g_ab", "g_ba"} and export_config["model"]["ngf"] == 8


@pytest.fixture(scope="module")
def straight_run(domains, tmp_path_factory) -> tuple[object, Path]:
    """(final state, run directory) of RESUME_STEPS uninterrupted steps."""
    run = tmp_path_factory.mktemp("straight") / "run"
    config = tiny_config(RESUME_STEPS, checkpoint_every=RESUME_STEPS)
    return train(domains["a"], domains["b"], run, config, threads=2), run


def test_resume_equals_uninterrupted(domains, straight_run, tmp_path):
    run = tmp_path / "resumed"
    config = tiny_config(RESUME_STEPS, checkpoint_every=RESUME_STEPS)
    polls = []  # stop() is polled once after each step

    def stop() -> bool:
        polls.append(1)
        return len(polls) == RESUME_STEPS // 2

    with pytest.raises(TrainingInterrupted) as info:
        train(domains["a"], domains["b"], run, config, threads=2, stop=stop)
    assert info.value.step == RESUME_STEPS // 2
    resumed = train(domains["a"], domains["b"], run, config, resume=True, threads=2)
    assert int(resumed.step) == RESUME_STEPS and int(resumed.pool_b.count) == 50
    # Parameters, Adam states, both pools, the pools' key, the schedule: bit for bit (one CPU device).
    for x, y in zip(leaves(straight_run[0]), leaves(resumed), strict=True):
        np.testing.assert_array_equal(x, y)
    records = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records == [10, 16, 20, 30, 32]  # the interruption's log, then the resumed run's


MULTI_DEVICE = r"""
import json, sys
import jax
sys.path.insert(0, sys.argv[1])
import test_cyclegan as t
with jax.default_matmul_precision("highest"):
    state = t.train(sys.argv[2], sys.argv[3], sys.argv[4], t.tiny_config(t.DEVICE_STEPS), threads=2)
print(json.dumps({"devices": len(jax.devices()), "state": [x.tolist() for x in t.leaves(state)]}))
"""
DEVICE_STEPS = 2


def test_four_devices_give_the_result_of_one(domains, tmp_path):
    first = train(domains["a"], domains["b"], tmp_path / "step1", tiny_config(1), threads=2)
    one = train(domains["a"], domains["b"], tmp_path / "run1", tiny_config(DEVICE_STEPS), threads=2)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", MULTI_DEVICE, str(Path(__file__).parent), str(domains["a"]), str(domains["b"]),
         str(tmp_path / "run4")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["devices"] == 4
    assert_same_training(first, one, result["state"])


def assert_same_training(first, one, other_leaves: list) -> None:
    """Two steps on another device layout (``other_leaves``: the state's leaves) are the two steps of
    ``one`` (one device; ``first``: its first step alone).

    The batch of 4 is split one image per device: instance norm is per image, the losses' means become
    cross-device sums, so only float rounding differs. Adam's moments and parameters are compared by
    tests/_adam_step.py's rule (check_two_data_parallel_steps): moments to 1e-2 of each array's largest
    (a ReLU switching sides at rounding level moves a gradient by up to ~3e-3 of it), parameters to 1e-6
    wherever step 1's gradient is above that, within 2 lr elsewhere. A GAN amplifies rounding
    differences step after step, so longer runs drift apart while being equally valid runs.
    """
    first, one = jax.device_get((first, one))
    other = [np.asarray(y, x.dtype) for x, y in zip(leaves(one), other_leaves, strict=True)]
    other = jax.tree.unflatten(jax.tree.structure(one), other)
    config = tiny_config(DEVICE_STEPS)
    lr1, lr2 = (float(linear_decay_rate(one.lr, k, one.total_steps, one.decay_steps)) for k in (0, 1))
    assert lr1 == float(linear_decay_rate(first.lr, 0, first.total_steps, first.decay_steps))
    g0, d0 = init_params(TINY, config.train.seed)
    compared, total = check_two_data_parallel_steps({"g": g0, "d": d0}, first, one, other, b1=config.optim.beta1,
                                                    b2=config.optim.beta2, lr1=lr1, lr2=lr2)  # fmt: skip
    assert compared > 0.9 * total, (compared, total)  # ~4 % of each tensor's gradients are below 1e-2 of its peak
    # The pools hold the fakes of both steps. Step 1's come from the same parameters (rounding only, ~1e-6);
    # step 2's from parameters that may differ by 2 lr = 4e-4 at the few elements above: 1e-3 of the
    # largest pixel (seen here: 2e-6, no element parted).
    for pool in ("pool_a", "pool_b"):
        x, y = getattr(one, pool), getattr(other, pool)
        assert int(x.count) == int(y.count) == 4 * DEVICE_STEPS
        np.testing.assert_allclose(y.images, x.images, rtol=0, atol=1e-3 * np.abs(x.images).max(), err_msg=pool)
    for name in ("step", "key", "lr", "total_steps", "decay_steps"):
        np.testing.assert_array_equal(getattr(other, name), getattr(one, name), err_msg=name)


# ----------------------------------------------------------------------------- translation and CLI


def test_translate_any_size_files_and_folders(domains, straight_run, tmp_path):
    run = straight_run[1]
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.fromarray((np.random.default_rng(0).random((37, 23, 3)) * 255).astype(np.uint8)).save(odd / "odd.png")
    out = translate(run, [odd / "odd.png", domains["test_b"]], tmp_path / "out", direction="b2a")
    assert sorted(p.name for p in out) == ["odd.png", "test_b00.png", "test_b01.png", "test_b02.png", "test_b03.png"]
    assert Image.open(tmp_path / "out" / "odd.png").size == (23, 37)
    small = translate(run, [odd], tmp_path / "small", size=12)
    assert Image.open(small[0]).size == (7, 12)  # longest side 12, aspect kept
    for inputs, message in (
        ([tmp_path / "missing.png"], "no such file or folder"),
        ([tmp_path / "out", odd / "odd.png"], "two inputs would both be written to odd.png"),
    ):
        with pytest.raises(NstjaxError, match=message):
            translate(run, inputs, tmp_path / "x")
    with pytest.raises(NstjaxError, match="unknown direction"):
        translate(run, [odd], tmp_path / "x", direction="sideways")
    with pytest.raises(NstjaxError, match="no trained model here"):
        translate(tmp_path, [odd], tmp_path / "x")



def test_cli_round_trip_and_bad_input(domains, tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    tiny = ["--size", "32", "--ngf", "8", "--ndf", "8", "--blocks", "2", "--batch-size", str(BATCH)]
    result = runner.invoke(app, ["train", str(domains["a"]), str(domains["b"]), "--run", str(run), *tiny,
                                 "--steps", "3", "--log-every", "1", "--sample-every", "3", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(run.resolve())
    assert (run / "export" / "config.json").exists() and (run / "samples" / "step_0000003.png").exists()
    stored = json.loads((run / "config.json").read_text())
    assert stored["system"] == "cyclegan" and stored["train"]["steps"] == 3 and stored["model"]["blocks"] == 2

    # Train longer: --resume continues from step 3.
    result = runner.invoke(app, ["train", str(domains["a"]), str(domains["b"]), "--run", str(run), *tiny,
                                 "--steps", "5", "--log-every", "1", "--resume", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]

    result = runner.invoke(app, ["translate", str(run), str(domains["test_a"]), "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    written = result.stdout.split()
    assert len(written) == 4 and all(Path(p).exists() for p in written)
    assert Image.open(written[0]).size == (40, 40)

    (tmp_path / "empty").mkdir()
    for args, message in (
        (["train", str(tmp_path / "missing"), str(domains["b"]), "--run", str(tmp_path / "r1"), "--steps", "1"],
         "no such folder"),
        (["train", str(tmp_path / "empty"), str(domains["b"]), "--run", str(tmp_path / "r2"), "--steps", "1"],
         "no images in the folder"),
        (["train", str(domains["a"]), str(domains["b"]), "--run", str(run), *tiny, "--steps", "5"],
         "already holds a run; add --resume"),
        (["translate", str(run), str(tmp_path / "missing"), "-o", str(tmp_path / "o")], "no such file or folder"),
        (["translate", str(run), str(tmp_path / "empty"), "-o", str(tmp_path / "o")], "no images in the folder"),
        (["translate", str(run), str(domains["test_a"]), "-o", str(tmp_path / "o"), "--direction", "sideways"],
         "'sideways' is not one of 'a2b', 'b2a'"),
        (["translate", str(domains["a"]), str(domains["test_a"]), "-o", str(tmp_path / "o")], "no trained model here"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, result.stderr)


def test_translate_o_is_a_file_for_one_image_and_a_folder_for_several(domains, straight_run, tmp_path):
    # The one -o rule of every command that writes an output per input (nstjax.io.media.output_targets).
    run = straight_run[1]
    one = sorted(domains["test_a"].iterdir())[0]
    (written,) = translate(run, [one], tmp_path / "cat_cg.jpg")
    assert written == tmp_path / "cat_cg.jpg" and written.is_file() and Image.open(written).format == "JPEG"
    several = translate(run, [domains["test_a"]], tmp_path / "folder")
    assert all(p.parent == tmp_path / "folder" for p in several) and len(several) == 4
    with pytest.raises(NstjaxError, match="outputs need a folder for -o, but this names a file"):
        translate(run, [domains["test_a"]], tmp_path / "many.png")
    assert not (tmp_path / "many.png").exists()
