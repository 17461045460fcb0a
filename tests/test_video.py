"""Video in and out (nstjax.io.video): round trips keep frame count and rate, flicker and its blending,
audio dropped with a warning, atomic writes, a clear error without the ``video`` extra.

The clips are generated here with imageio: 8 frames of 32x32, a smooth picture
drifting one pixel per frame plus a little noise (like a camera's). The
styliser is a Johnson et al. network with seeded random weights (the real
network; its outputs flicker on noisy input as a trained one's do).
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from nstjax.errors import NstjaxError
from nstjax.fast import FastModel, plan_jobs, stylize_array
from nstjax.io import video
from nstjax.models import johnson
from nstjax.train import RunDir

FRAMES, FPS, SIDE = 8, 12, 32
BLEND_GAIN = 0.75  # temporal blending (strength 0.6) must cut the measured flicker to below 75% of it


def clip_frames(seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.random((6, 7, 3))
    base = np.kron(small, np.ones((8, 8, 1)))[:, :, :]  # 48x56 blocks
    frames = [base[4 : 4 + SIDE, t : t + SIDE] + rng.normal(0, 0.03, (SIDE, SIDE, 3)) for t in range(FRAMES)]
    return np.clip(np.stack(frames), 0, 1).astype(np.float32)


def write_clip(path, frames, fps=FPS, **kwargs):
    pixels = np.rint(frames * 255).astype(np.uint8)
    if path.suffix == ".gif":
        iio.imwrite(path, pixels, duration=1000 / fps, loop=0)
    else:
        iio.imwrite(path, pixels, fps=fps, **kwargs)
    return path


@pytest.fixture(scope="module")
def model():
    return FastModel(jax.tree.map(jnp.asarray, johnson.init_transformer(5)))


def stylise(model):
    return lambda frames: stylize_array(model, frames)


def test_mp4_round_trip_and_blending_lowers_flicker(model, tmp_path):
    source = write_clip(tmp_path / "clip.mp4", clip_frames())
    info = video.probe_video(source)
    assert (info.frames, info.fps, info.shape, info.has_audio) == (FRAMES, FPS, (SIDE, SIDE), False)
    events = []
    plain = video.transform_video(source, tmp_path / "plain.mp4", stylise(model), batch_size=4,
                                  progress=events.append)
    assert [e.done for e in events] == [4, 8] and all(e.total == FRAMES for e in events)
    out = video.probe_video(plain.path)
    assert (out.frames, out.fps, out.shape) == (FRAMES, FPS, (SIDE, SIDE))
    assert plain.frames == FRAMES and plain.lag == 0.0 and plain.flicker is not None
    blended = video.transform_video(source, tmp_path / "blended.mp4", stylise(model), batch_size=4, blend=0.6)
    assert blended.flicker < BLEND_GAIN * plain.flicker, (plain.flicker, blended.flicker)
    assert blended.lag > 0.0  # the price: shown frames deviate from the per-frame stylisation
    assert video.probe_video(blended.path).frames == FRAMES
    # The input's own frame-to-frame change is measured on the same decoded frames both times.
    assert plain.input_change == pytest.approx(blended.input_change)


def test_gif_and_webm_keep_their_kind_rate_and_count(model, tmp_path):
    gif = write_clip(tmp_path / "clip.gif", clip_frames(1), fps=10)  # GIF stores 1/100 s: 10 fps is exact
    result = video.transform_video(gif, tmp_path / "out.gif", stylise(model), batch_size=4)
    out = video.probe_video(result.path)
    assert (out.frames, out.fps, out.durations, out.loop) == (FRAMES, 10.0, (100.0,) * FRAMES, 0)
    webm = write_clip(tmp_path / "clip.webm", clip_frames(2), codec="libvpx-vp9")
    result = video.transform_video(webm, tmp_path / "out.webm", stylise(model), batch_size=4)
    out = video.probe_video(result.path)
    assert (out.frames, out.fps, out.shape) == (FRAMES, FPS, (SIDE, SIDE))
    with pytest.raises(NstjaxError, match="must be a .webm file like its input"):
        video.transform_video(webm, tmp_path / "out.mp4", stylise(model))


def test_audio_is_dropped_with_a_warning(model, tmp_path):
    silent = write_clip(tmp_path / "silent.mp4", clip_frames(3))
    import imageio_ffmpeg

    with_audio = tmp_path / "talk.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(silent), "-f", "lavfi", "-i",
         "sine=frequency=440:duration=1", "-shortest", "-c:v", "copy", "-c:a", "aac", str(with_audio)],
        check=True,
    )  # fmt: skip
    assert video.probe_video(with_audio).has_audio
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = video.transform_video(with_audio, tmp_path / "out.mp4", stylise(model))
    notes = [w for w in caught if issubclass(w.category, video.VideoWarning)]
    assert len(notes) == 1 and "audio track is dropped" in str(notes[0].message)
    assert result.audio_dropped and not video.probe_video(result.path).has_audio


def test_bad_videos_and_atomic_writes(model, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"this is not a video")
    with pytest.raises(NstjaxError, match="cannot read the video") as info:
        video.probe_video(tmp_path / "broken.mp4")
    assert str(tmp_path / "broken.mp4") in str(info.value)
    with pytest.raises(NstjaxError, match="no such file"):
        video.probe_video(tmp_path / "missing.mp4")
    source = write_clip(tmp_path / "clip.mp4", clip_frames(4))
    calls = []

    def fails_on_second_batch(frames):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("styliser crashed")
        return frames

    with pytest.raises(RuntimeError, match="styliser crashed"):
        video.transform_video(source, tmp_path / "out.mp4", fails_on_second_batch, batch_size=4)
    # Nothing under the output's name, and no temporary file left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4", "clip.mp4"]
    with pytest.raises(NstjaxError, match="overwrite the input"):
        video.transform_video(source, source, fails_on_second_batch)


def test_a_clear_error_without_the_video_extra(tmp_path, monkeypatch):
    source = write_clip(tmp_path / "clip.mp4", clip_frames(5))
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if the extra were not installed
    with pytest.raises(NstjaxError, match=r"need the optional 'video' extra .*pip install 'nstjax\[video\]'"):
        video.probe_video(source)
    # `apply` finds out while checking its inputs, before loading any model.
    with pytest.raises(NstjaxError, match="video' extra"):
        plan_jobs([source], tmp_path / "out.mp4")


def test_cli_prints_flicker_and_renders_video(model, tmp_path):
    from nstjax import cli
    from nstjax.cli import fast
    from nstjax.cli.common import new_typer

    run = RunDir.open(tmp_path / "run", {"system": "fast"}, resume=False)
    run.export(jax.tree.map(np.asarray, model.params), {"system": "fast", "model": {"output": "linear"},
                                                        "style": "random"})
    run.close()
    source = write_clip(tmp_path / "clip.mp4", clip_frames(6))
    app = cli.app
    if not any(group.name == "fast" for group in cli.app.registered_groups):
        app = new_typer("nstjax")
        app.add_typer(fast.app, name="fast")
    result = CliRunner().invoke(app, ["fast", "apply", str(tmp_path / "run"), str(source), "-o",
                                      str(tmp_path / "out.mp4"), "--blend", "0.5"])
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert line.startswith(str(tmp_path / "out.mp4")) and f"{FRAMES} frames at 12 fps" in line
    assert "flicker" in line and "blend lag" in line
    assert video.probe_video(tmp_path / "out.mp4").frames == FRAMES


def test_size_sets_the_side_asked_for(model, tmp_path):
    # 32x48 frames (2:3; sides multiples of 16, which mp4 writers keep as they are): size 24 sets the longest
    # side (16x24) or, as AdaIN's apply asks, the shortest (24x36). Shapes are (height, width).
    frames = np.kron(np.random.default_rng(4).random((FRAMES, 4, 6, 3)), np.ones((1, 8, 8, 1))).astype(np.float32)
    source = write_clip(tmp_path / "wide.mp4", frames)
    assert video.probe_video(source).shape == (32, 48)
    longest = video.transform_video(source, tmp_path / "longest.mp4", stylise(model), size=24)
    shortest = video.transform_video(source, tmp_path / "shortest.mp4", stylise(model), size=24, side="shortest")
    assert (longest.shape, shortest.shape) == ((16, 24), (24, 36))
