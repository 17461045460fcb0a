"""`nstjax stylize` through the Typer app: a real run, and one clear error per bad input."""

from __future__ import annotations

import os
import re
import stat
import struct
import zlib

import numpy as np
import pytest
from conftest import CONTENT_SHAPE, smooth_image
from PIL import Image
from typer.testing import CliRunner

from nstjax.cli import app
from nstjax.cli import nst as cli_nst
from nstjax.nst import run as nst_run
from nstjax.nst import memory

runner = CliRunner()

# Same shapes and layers as tests/test_stylize.py, so the compiled programs are shared.
SHALLOW = [
    "--size", "32", "--pooling", "max", "--tolerance", "0", "--weights", "random",
    "--content-layers", "relu2_2", "--style-layers", "relu1_1:1,relu2_1:1,relu3_1:0.5", "--quiet",
]


def save(path, array):
    Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8)).save(path)
    return path


@pytest.fixture()
def files(tmp_path):
    content = save(tmp_path / "content.png", smooth_image(CONTENT_SHAPE, 1))
    style = save(tmp_path / "style.png", np.random.default_rng(2).random((32, 32, 3)))
    return tmp_path, content, style


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def assert_one_line_error(result, *fragments, code=2):
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in result.output


def test_stylize_64px_full_gatys_layers(tmp_path):
    """The must-show run: 64 px content and style, default Gatys layers, random weights."""
    # Inputs in awkward modes on purpose: a palette photo and an RGBA painting convert cleanly.
    content = Image.fromarray((smooth_image((48, 64), 5) * 255).astype(np.uint8)).convert("P")
    content.save(tmp_path / "photo.png")
    rgba = np.random.default_rng(6).integers(0, 256, (64, 64, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "painting.png")
    out = tmp_path / "out.jpg"
    result = invoke(
        "stylize", tmp_path / "photo.png", tmp_path / "painting.png", "-o", out,
        "--size", "64", "--steps", "3", "--weights", "random", "--quiet", "--quality", "90",
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert "wrote" in result.stdout and "loss" in result.stdout and "style" in result.stdout
    with Image.open(out) as im:
        assert im.size == (64, 48) and im.format == "JPEG"


def test_shallow_run_and_snapshots(files):
    tmp_path, content, style = files
    out = tmp_path / "out.png"
    old = os.umask(0o027)  # outputs must get the bits the umask gives a new file: 0o640 here
    try:
        result = invoke("stylize", content, style, "-o", out, "--steps", "4", "--save-every", "2", *SHALLOW)
    finally:
        os.umask(old)
    assert result.exit_code == 0, (result.output, result.exception)
    assert out.exists()
    assert (tmp_path / "out_step0002.png").exists()
    for written in (out, tmp_path / "out_step0002.png"):
        assert stat.S_IMODE(written.stat().st_mode) == 0o640, oct(written.stat().st_mode)
    with Image.open(out) as im:
        assert im.size == (32, 24)


def test_ctrl_c_saves_best_image(files, monkeypatch):
    tmp_path, content, style = files
    seen = []  # (step, the best image so far) of each progress event

    def interrupting(self, p):
        seen.append((p.step, p.best_image()))
        if p.step >= 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_nst.StepBar, "__call__", interrupting)
    out = tmp_path / "out.png"
    args = [a for a in SHALLOW if a != "--quiet"]
    result = invoke("stylize", content, style, "-o", out, "--steps", "50", *args)
    assert result.exit_code == 130, (result.output, result.exception)
    assert "interrupted" in result.stderr
    # The file is the best image when Ctrl-C came (the last event's), rounded to 8 bits, not the content.
    step, best = seen[-1]
    assert step >= 2
    with Image.open(out) as im:
        assert im.size == (32, 24)
        saved = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(saved, rounded(best))
    assert np.abs(saved.astype(int) - np.asarray(Image.open(content).convert("RGB"), int)).max() > 2


def test_nan_stops_and_keeps_last_finite_image(files, monkeypatch):
    tmp_path, content, style = files
    runs = []
    run_stylize = nst_run.run_stylize
    monkeypatch.setattr(nst_run, "run_stylize", lambda *a, **k: runs.append(run_stylize(*a, **k)) or runs[-1])
    out = tmp_path / "out.png"
    result = invoke("stylize", content, style, "-o", out, "--optimizer", "adam", "--lr", "1e20", "--steps", "8", *SHALLOW)
    assert result.exit_code == 1
    assert "NaN or infinite" in result.stderr
    # The file is the run's last finite image (a float array: finite is a real check there), rounded to 8 bits.
    (run,) = runs
    assert run.stopped == "nonfinite" and run.steps < 8
    assert np.all(np.isfinite(run.image)) and np.isfinite(run.loss)
    with Image.open(out) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), rounded(run.image))


def rounded(image: np.ndarray) -> np.ndarray:
    """What nstjax.io.save_image writes for a float image in [0, 1]: 8 bits, rounded to nearest."""
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


# ------------------------------------------------------------------ bad input: one line, exit 2


def test_missing_content_file(files):
    tmp_path, _, style = files
    result = invoke("stylize", tmp_path / "nope.jpg", style, "-o", tmp_path / "o.png", *SHALLOW)
    assert_one_line_error(result, "nope.jpg")


def test_not_an_image(files):
    tmp_path, content, _ = files
    fake = tmp_path / "painting.jpg"
    fake.write_text("this is not a picture")
    result = invoke("stylize", content, fake, "-o", tmp_path / "o.png", *SHALLOW)
    assert_one_line_error(result, "painting.jpg")


def test_truncated_image(files):
    tmp_path, content, style = files
    data = style.read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    result = invoke("stylize", content, cut, "-o", tmp_path / "o.png", *SHALLOW)
    assert_one_line_error(result, "cut.png", "truncated")
    assert not (tmp_path / "o.png").exists()


def _png_claiming(width, height):
    """A PNG whose header claims ``width x height`` pixels (a decompression bomb's trick)."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb(files):
    tmp_path, content, _ = files
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(100_000, 100_000))
    result = invoke("stylize", content, bomb, "-o", tmp_path / "o.png", *SHALLOW)
    assert_one_line_error(result, "bomb.png", "pixels")


def test_output_directory_missing(files):
    tmp_path, content, style = files
    result = invoke("stylize", content, style, "-o", tmp_path / "no" / "such" / "o.png", *SHALLOW)
    assert_one_line_error(result, "does not exist")


def test_unknown_output_extension(files):
    tmp_path, content, style = files
    result = invoke("stylize", content, style, "-o", tmp_path / "o.xyz", *SHALLOW)
    assert_one_line_error(result, "o.xyz")


def test_size_too_small_for_deepest_layer(files):
    tmp_path, content, style = files
    result = invoke("stylize", content, style, "-o", tmp_path / "o.png", "--size", "8", "--weights", "random")
    assert_one_line_error(result, "too small", "16 px")


def test_memory_estimate_refused(files, monkeypatch):
    tmp_path, content, style = files
    monkeypatch.setattr(memory, "device_memory_bytes", lambda device=None: 1 << 20)
    result = invoke("stylize", content, style, "-o", tmp_path / "o.png", *SHALLOW)
    assert_one_line_error(result, "needs about", "GiB", "try")
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--style-layers", "relu1_1,relu4_5"], ["relu4_5", "did you mean"]),
        (["--content-layers", "relu4_2:abc"], ["not a number"]),
        (["--style-weight", "-3"], ["style_weight", "non-negative"]),
        (["--style-blend", "0.5,0.3,0.2"], ["--style-blend", "3 values for 1 style"]),
        (["--preset", "picasso"], ["--preset", "'picasso' is not one of", "'auto'", "'neural-style'"]),
        (["--optimizer", "sgd"], ["--optimizer", "'sgd' is not one of 'lbfgs', 'adam'"]),
        (["--scales", "300,200"], ["--scales"]),
    ],
    ids=["layer", "layer-weight", "negative", "blend", "preset", "optimizer", "scales"],
)
def test_bad_settings(files, flags, fragments):
    tmp_path, content, style = files
    result = invoke("stylize", content, style, "-o", tmp_path / "o.png", "--weights", "random", "--quiet", *flags)
    assert_one_line_error(result, *fragments)


def test_help_lists_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    assert "stylize" in result.stdout and "weights" in result.stdout


def test_stylize_batch_command(files):
    tmp_path, content, style = files
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        save(photos / f"p{i}.png", smooth_image(CONTENT_SHAPE, 10 + i))
    out = tmp_path / "styled"
    args = ["stylize-batch", photos, style, "-o", out, "--steps", "2", "--batch-size", "2", *SHALLOW]
    result = invoke(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert sorted(p.name for p in out.glob("*.png")) == ["p0.png", "p1.png", "p2.png"]
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 3
    # A rerun finds everything done and redoes nothing.
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    again = invoke(*args)
    assert again.exit_code == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == before


def test_mask_of_another_size_warns_and_finishes(files):
    # A segmentation at half the photo's size is resized with nearest neighbour, and the CLI says so
    # (one "warning:" line) instead of failing, then finishes the run.
    tmp_path, content, style = files
    half = np.zeros((CONTENT_SHAPE[0] // 2, CONTENT_SHAPE[1] // 2, 3), np.uint8)
    half[:] = (10, 200, 30)
    Image.fromarray(half).save(tmp_path / "content_seg.png")
    full = np.zeros((32, 32, 3), np.uint8)
    full[:] = (10, 200, 30)
    Image.fromarray(full).save(tmp_path / "style_seg.png")
    out = tmp_path / "out.png"
    result = invoke(
        "stylize", content, style, "-o", out, "--steps", "2", *SHALLOW,
        "--content-mask", tmp_path / "content_seg.png", "--style-mask", tmp_path / "style_seg.png",
    )
    assert result.exit_code == 0, (result.output, result.exception)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "content_seg.png" in warnings[0], result.stderr
    assert out.exists()


def test_plan_line_says_what_will_run_and_how_long(files):
    tmp_path, content, style = files
    args = [a for a in SHALLOW if a != "--quiet"]
    result = invoke("stylize", content, style, "-o", tmp_path / "o.png", "--steps", "2", *args)
    assert result.exit_code == 0, (result.output, result.exception)
    plan = next(line for line in result.stderr.splitlines() if line.startswith("stylize "))
    assert "32x24 px" in plan and "L-BFGS 2 steps" in plan and "weights random" in plan and "cpu" in plan
    assert re.search(r"about \d+:\d\d \+ 1 compilation ~\d+:\d\d \(estimate", plan), plan


def test_help_shows_no_type_tag_on_flags():
    for command in (["stylize", "--help"], ["fast", "apply", "--help"], ["cyclegan", "train", "--help"]):
        result = CliRunner().invoke(app, command, terminal_width=120)
        assert result.exit_code == 0, result.output
        assert "--quiet" in result.output and "<bool>" not in result.output, command
    assert "<int>" in CliRunner().invoke(app, ["stylize", "--help"], terminal_width=120).output  # values keep theirs


def test_every_train_command_prints_its_run_directory(tmp_path, monkeypatch):
    """fast and adain train print RUN (as cyclegan and sketch2photo do), not RUN/export (library faked)."""
    import types

    import nstjax.adain.train
    import nstjax.fast.train

    def trained(*args, **kwargs):
        return types.SimpleNamespace(step=1, metrics={}, vgg_source="random", run_dir=(tmp_path / "run").resolve())

    monkeypatch.setattr(nstjax.fast.train, "train_fast", trained)
    monkeypatch.setattr(nstjax.adain.train, "train_adain", trained)
    (tmp_path / "s.png").touch()
    for command in (["fast", "train", "--style", tmp_path / "s.png", "--data", tmp_path],
                    ["adain", "train", "--styles", tmp_path, "--content", tmp_path]):
        result = CliRunner().invoke(app, [*map(str, command), "--run", str(tmp_path / "run"), "--steps", "1", "--quiet"])
        assert result.exit_code == 0, (command, result.output)
        assert result.stdout.strip().splitlines()[-1] == str((tmp_path / "run").resolve()), command


def test_a_still_image_is_one_image_not_one_frame():
    from pathlib import Path
    from types import SimpleNamespace

    from nstjax.cli.fast import MediaBar

    bar = MediaBar(quiet=True)
    still = bar.row(SimpleNamespace(index=1, count=2, source=Path("chelsea.png"), done=1, total=1))
    video = bar.row(SimpleNamespace(index=2, count=2, source=Path("clip.mp4"), done=3, total=9))
    assert still.info == "image" and video.info == "frames"


def test_an_undertrained_fast_model_gets_one_short_warning(tmp_path):
    """A network exported after 20 steps: `fast apply` warns in one line of at most 150 characters, and
    still writes the image; a network trained long enough gets no warning."""
    import jax

    from nstjax.fast.apply import FEW_STEPS
    from nstjax.models import johnson
    from nstjax.train import RunDir

    params = jax.tree.map(np.asarray, johnson.init_transformer())
    photo = tmp_path / "p.png"
    save(photo, smooth_image((16, 16), 0))
    for steps, warned in ((20, True), (FEW_STEPS, False)):
        run = tmp_path / f"a_rather_long_run_directory_name_{steps}"
        directory = RunDir.open(run, {"system": "fast"}, resume=False)
        try:
            directory.export(params, {"system": "fast", "model": {"output": "linear", "pixel_scale": 255.0},
                                      "style": "s", "step": steps})  # fmt: skip
        finally:
            directory.close()
        result = CliRunner().invoke(app, ["fast", "apply", str(run), str(photo), "-o", str(tmp_path / "o.png"), "--quiet"])
        assert result.exit_code == 0, result.output
        lines = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        assert len(lines) == int(warned), result.stderr
        if warned:
            assert "trained for only 20 steps" in lines[0] and len(lines[0]) <= 150, lines[0]


def test_auto_preset_is_per_platform():
    from nstjax.nst.config import auto_preset_name, preset

    assert auto_preset_name("gpu") == auto_preset_name("tpu") == "gatys"
    assert auto_preset_name("cpu") == "cpu"
    cpu = preset("cpu")
    assert preset("auto") == cpu  # these tests run on a CPU
    # The CPU default is a run of minutes, the paper's is not: fewer evaluations at fewer pixels.
    gatys = preset("gatys")
    assert cpu.size * cpu.size * cpu.steps < gatys.size * gatys.size * gatys.steps / 8


def test_estimate_counts_the_papers_flops():
    from nstjax.nst.config import preset
    from nstjax.nst.estimate import LBFGS_EVALS_PER_STEP, NETWORK_EFFICIENCY, estimate_run, forward_flops

    # VGG-19 up to relu5_1 at 512x512: 94.67 GMAC (docs/benchmarks.md's FLOP model), 2 FLOPs per MAC.
    assert forward_flops((512, 512), ["relu5_1"]) / 1e9 == pytest.approx(2 * 94.67, rel=1e-3)
    config = preset("cpu")
    estimate = estimate_run(config, [(288, 384)], flops_per_second=1e11)
    expected = config.steps * LBFGS_EVALS_PER_STEP * 2 * forward_flops((288, 384), ["relu5_1"]) / (1e11 * NETWORK_EFFICIENCY)
    assert estimate.seconds == pytest.approx(expected)
    assert estimate.evaluations == pytest.approx(config.steps * LBFGS_EVALS_PER_STEP)
