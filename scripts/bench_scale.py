"""Scale benchmarks of nstjax: bfloat16 drift, batch throughput, largest image that fits.

Subcommands, each printing tables and, with ``--out``, writing JSON (with the
machine, versions, the command line and load averages):

``drift``
    The same content/style, seed, steps and settings (``gatys`` preset: avg
    pooling, content 1, style 5e3; early stop off) run in float32 and in
    bfloat16 with :func:`nstjax.nst.run.run_stylize`. Reported: PSNR (dB, [0, 1]
    images) of the bfloat16 result against the float32 result, the final
    weighted losses (total/content/style) of *both* results evaluated with the
    **float32** objective (float32 targets), the loss the bfloat16 run reports
    for itself (its own bfloat16 objective), and the wall time per optimiser
    step of each. Each timed run follows a 1-step warm-up run of the same
    program (steps are a traced argument, so the warm-up compiles exactly the
    program the timed run uses): the step time excludes compilation.
    "step time" is the time spent inside the jitted optimiser chunks divided by
    the steps (L-BFGS steps include their line-search evaluations).

``batch``
    Images per second of :func:`nstjax.batch.stylize_images` for several batch
    sizes (square images, Adam, fixed steps, early stop off), after a warm-up
    call of 1 step with the same batch size (compile time = warm-up time minus
    one timed step, reported separately), and of a plain ``run_stylize`` loop
    over single images as the baseline. With ``--devices N`` (default 4) the
    same is repeated in a subprocess started with
    ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (virtual CPU devices
    sharing the same physical cores).

``fit``
    For each mode (dtype x remat), the largest square side (a multiple of
    ``--step``) whose compiled L-BFGS optimiser chunk (gatys layers, max
    pooling) fits in the memory available to the device
    (:func:`nstjax.memory.device_memory_bytes`, read once at the start: on CPU
    that is MemAvailable, which other processes move), by XLA's own buffer
    assignment: ``memory_analysis()`` temp + arguments + outputs - aliased.
    **Compile-only: nothing is run.** The search starts at the estimator's
    answer, gallops (1, 2, 4 ... steps) until the boundary is bracketed, then
    bisects. Alongside: what :func:`nstjax.memory.estimate_bytes` predicts at
    that size, the estimator's own largest-fitting size, and (from the same
    probes, no extra compiles) the bracket against the machine's whole RAM
    (MemTotal). Then the ``rss`` measurement at ``--rss-size`` (0: skip), and
    the estimator's prediction for an 80 GB GPU at 4096 px (a model, not a
    measurement).

``rss``
    One real L-BFGS step (``run_stylize``, float32, remat none, gatys layers,
    max pooling) at ``--size`` and at ``--small-size`` in fresh subprocesses:
    the peak RSS during ``run_stylize`` (VmHWM, reset after set-up) above the
    RSS at its start, against the estimate and XLA's buffer assignment. The
    difference between the two sizes removes size-independent costs
    (compilation, code).

Weights are seeded random (``random_weights(0)``) but for ``drift --weights auto`` (the
real ImageNet VGG-16 here). Speed and memory do not depend on the weights' values; the
drift numbers do (random features are not ImageNet features).

The persistent compilation cache is switched off (``NSTJAX_COMPILATION_CACHE=0``)
so compile times are honest and nothing is written to the user's cache.

    .venv/bin/python scripts/bench_scale.py drift --sizes 64,128 --lbfgs-steps 30 --adam-steps 60 --out drift.json
    .venv/bin/python scripts/bench_scale.py batch --size 64 --steps 10 --batch-sizes 1,4,16 --devices 4 --out batch.json
    .venv/bin/python scripts/bench_scale.py fit --step 256 --max-compiles 6 --rss-size 0 --out fit.json
    .venv/bin/python scripts/bench_scale.py rss --size 512 --out rss.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NSTJAX_COMPILATION_CACHE", "0")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_IMAGES = REPO.parent / "shared" / "images"
GATYS_STYLE = tuple((n, 1.0) for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"))
GATYS_CONTENT = (("relu4_2", 1.0),)
GATYS_LAYER_NAMES = ["relu4_2", "relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
MODES = tuple((d, r) for d in ("float32", "bfloat16") for r in ("none", "conv", "block"))
GIB = 2**30


# --------------------------------------------------------------------------- helpers


def _engine():
    """nstjax's engine and run modules as one namespace (``run_stylize``, ``make_spec``, …)."""
    import types

    from nstjax.nst import engine, run

    return types.SimpleNamespace(
        run_stylize=run.run_stylize, objective=engine.objective, make_spec=engine.make_spec,
        plain_targets=engine.plain_targets, traced_settings=engine.traced_settings,
    )


def _run_module():
    """The module whose ``run_chunk`` ``run_stylize`` calls (patched by :class:`ChunkTimer`): the tiered
    steps', run as one program (NSTJAX_TIERED=0) so that every chunk goes through it and is timed."""
    os.environ["NSTJAX_TIERED"] = "0"
    from nstjax.nst import tiered

    return tiered


def machine() -> dict[str, Any]:
    info: dict[str, str] = {}
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    mem_total = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
    import jax
    import jaxlib

    return {
        "cpu_model": info.get("Model name"),
        "cpus": info.get("CPU(s)"),
        "cores_per_socket": info.get("Core(s) per socket"),
        "threads_per_core": info.get("Thread(s) per core"),
        "mem_total_bytes": mem_total,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def load_square_pair(size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Content and style resized to ``size`` x ``size`` (shared images, else generated)."""
    from nstjax.io import images

    c, s = SHARED_IMAGES / "chelsea.png", SHARED_IMAGES / "starry_night.jpg"
    if c.exists() and s.exists():
        content, style, what = images.load_image(c), images.load_image(s), "chelsea.png / starry_night.jpg"
    else:
        rng = np.random.default_rng(1)
        small = rng.random((16, 16, 3)).astype(np.float32)
        content = images.resize_image(small, (size, size))
        style = np.random.default_rng(2).random((size, size, 3), dtype=np.float32)
        what = "generated (smooth noise / white noise)"
    return images.resize_image(content, (size, size)), images.resize_image(style, (size, size)), what


def content_set(size: int, n: int) -> list[np.ndarray]:
    """``n`` distinct square content images (shared photos, flipped/rolled for variety)."""
    from nstjax.io import images

    names = ["chelsea.png", "astronaut.png", "coffee.png", "shipwreck.jpg"]
    base = [images.load_image(SHARED_IMAGES / f) for f in names if (SHARED_IMAGES / f).exists()]
    if not base:
        base = [np.random.default_rng(i).random((size, size, 3), dtype=np.float32) for i in range(4)]
    base = [images.resize_image(b, (size, size)) for b in base]
    out = []
    for i in range(n):
        img = base[i % len(base)]
        k = i // len(base)
        if k % 2:
            img = img[:, ::-1]
        img = np.roll(img, 7 * (k // 2), axis=0)
        out.append(np.ascontiguousarray(img, dtype=np.float32))
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


class ChunkTimer:
    """Wraps a jitted chunk function of a module: records (steps asked, seconds) per call."""

    def __init__(self, module, name: str):
        self.module, self.name = module, name
        self.original = getattr(module, name)
        self.calls: list[tuple[int, float]] = []

    def __enter__(self):
        import jax

        original = self.original

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            out = original(*args, **kwargs)
            jax.block_until_ready(out)
            self.calls.append((int(args[4]), time.perf_counter() - t0))
            return out

        setattr(self.module, self.name, timed)
        return self

    def __exit__(self, *exc):
        setattr(self.module, self.name, self.original)

    @property
    def seconds(self) -> float:
        return sum(s for _, s in self.calls)


class FinishCapture:
    """Records the unclipped best image ``run_stylize`` hands to ``Problem.finish`` (which clips it to [0, 1])."""

    def __init__(self):
        from nstjax.nst.problem import Problem

        self.cls, self.original, self.last = Problem, Problem.finish, None

    def __enter__(self):
        original = self.original

        def finish(problem, image):
            self.last = np.array(image, np.float32)
            return original(problem, image)

        self.cls.finish = finish
        return self

    def __exit__(self, *exc):
        self.cls.finish = self.original


def write_json(path: str | None, data: Any) -> None:
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_default) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")


def _default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


# --------------------------------------------------------------------------- 1. bfloat16 drift


def run_drift(args) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    from nstjax.nst.config import preset
    from nstjax.io.images import resize_image
    from nstjax.weights import resolve_weights

    engine = _engine()
    evaluate = jax.jit(engine.objective, static_argnames=("spec",))
    weights = resolve_weights(args.weights, 0)
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = [("lbfgs", args.lbfgs_steps), ("adam", args.adam_steps)]
    rows = []
    for size in sizes:
        content, style, what = load_square_pair(size)
        for optimizer, steps in runs:
            base = preset("gatys", size=size, steps=steps, optimizer=optimizer, tolerance=0.0, seed=0)
            out: dict[str, Any] = {"size": size, "optimizer": optimizer, "steps": steps, "images": what}
            images, iterates = {}, {}
            for dtype in ("float32", "bfloat16"):
                config = base.replace(dtype=dtype)
                with ChunkTimer(_run_module(), "run_chunk") as warm_t:
                    t0 = time.perf_counter()
                    engine.run_stylize(content, style, weights=weights, config=config.replace(steps=1))
                    warm_s = time.perf_counter() - t0
                with ChunkTimer(_run_module(), "run_chunk") as timer, FinishCapture() as finish:
                    t0 = time.perf_counter()
                    result = engine.run_stylize(content, style, weights=weights, config=config)
                    wall = time.perf_counter() - t0
                step_s = timer.seconds / max(result.steps, 1)
                images[dtype] = result.image
                iterates[dtype] = finish.last
                out[dtype] = {
                    "steps_run": result.steps,
                    "evaluations": result.evaluations,
                    "stopped": result.stopped,
                    "own_loss": result.loss,
                    "own_terms": result.terms,
                    "step_s": step_s,
                    "eval_s": timer.seconds / max(result.evaluations, 1),
                    "wall_s": wall,
                    "warmup_s": warm_s,
                    "warmup_first_chunk_s": warm_t.calls[0][1] if warm_t.calls else None,
                    "compile_s_est": (warm_t.calls[0][1] - step_s) if warm_t.calls else None,
                }
                print(
                    f"  {size}px {optimizer} {dtype}: {result.steps} steps, {result.evaluations} evals, "
                    f"{step_s:.3f} s/step, own loss {result.loss:.5g} ({result.stopped})",
                    flush=True,
                )

            # Both results under the float32 objective: float32 targets of the same (square) images, as
            # run_stylize builds them for one style at scale 1 (content features, the style's Grams).
            config32 = base.replace(dtype="float32")
            spec = engine.make_spec(config32, weights.preprocessing, guided=False)
            shape = images["float32"].shape[:2]
            assert shape == content.shape[:2] == style.shape[:2], (shape, content.shape, style.shape)
            targets = engine.plain_targets(weights.params, jnp.asarray(content)[None], jnp.asarray(style)[None], spec)
            lw = engine.traced_settings(config32, getattr(weights, "style_weight_scale", 1.0))[0]

            def f32_loss(img):
                total, terms = evaluate(jnp.asarray(img)[None], weights.params, targets, lw, spec)
                return {"total": float(total), **{k: float(v[0]) for k, v in terms.items()}}

            init = resize_image(content, shape)
            out["init_f32_loss"] = f32_loss(init)
            for dtype in ("float32", "bfloat16"):
                it = iterates[dtype]
                # The optimiser's own (unclipped) best image, and the output: that image clipped to [0, 1].
                out[dtype]["f32_loss"] = f32_loss(it)
                out[dtype]["f32_loss_output"] = f32_loss(images[dtype])
                out[dtype]["clipped_fraction"] = float(np.mean((it < 0) | (it > 1)))
                out[dtype]["psnr_vs_content_db"] = psnr(images[dtype], init)
            # Self-check: the float32 run's own loss is the float32 objective of its iterate.
            out["check_f32_own_vs_reevaluated"] = out["float32"]["own_loss"] / out["float32"]["f32_loss"]["total"] - 1
            out["psnr_bf16_vs_f32_db"] = psnr(images["bfloat16"], images["float32"])
            out["max_abs_diff"] = float(np.max(np.abs(images["bfloat16"] - images["float32"])))
            out["mean_abs_diff"] = float(np.mean(np.abs(images["bfloat16"] - images["float32"])))
            for key, field in (("f32_loss_rel_diff", "f32_loss"), ("output_loss_rel_diff", "f32_loss_output")):
                l32, l16 = out["float32"][field]["total"], out["bfloat16"][field]["total"]
                out[key] = (l16 - l32) / abs(l32)
            rows.append(out)
            print(f"  -> PSNR bf16 vs f32 {out['psnr_bf16_vs_f32_db']:.2f} dB, loss rel diff {out['f32_loss_rel_diff']:+.3%} "
                  f"(check {out['check_f32_own_vs_reevaluated']:+.1e})", flush=True)

    print()
    print("bfloat16 vs float32: output images (clipped to [0, 1])")
    print(
        table(
            ["size", "opt", "steps", "PSNR bf16 vs f32 dB", "mean|d|", "max|d|", "PSNR f32 vs content", "PSNR bf16 vs content",
             "clipped px f32", "clipped px bf16"],
            [
                [r["size"], r["optimizer"], r["steps"], r["psnr_bf16_vs_f32_db"], r["mean_abs_diff"], r["max_abs_diff"],
                 r["float32"]["psnr_vs_content_db"], r["bfloat16"]["psnr_vs_content_db"],
                 f"{r['float32']['clipped_fraction']:.1%}", f"{r['bfloat16']['clipped_fraction']:.1%}"]
                for r in rows
            ],
        )
    )
    print()
    print("final losses under the float32 objective (weighted terms; tv weight 0) of each run's best iterate "
          "(unclipped, what the optimiser minimised) and of its clipped output")
    print(
        table(
            ["size", "opt", "init", "f32 total", "content", "style", "bf16 total", "content", "style", "d total",
             "bf16 own (bf16 obj.)", "f32 output", "bf16 output", "d output"],
            [
                [r["size"], r["optimizer"], r["init_f32_loss"]["total"],
                 r["float32"]["f32_loss"]["total"], r["float32"]["f32_loss"]["content"], r["float32"]["f32_loss"]["style"],
                 r["bfloat16"]["f32_loss"]["total"], r["bfloat16"]["f32_loss"]["content"], r["bfloat16"]["f32_loss"]["style"],
                 f"{r['f32_loss_rel_diff']:+.2%}", r["bfloat16"]["own_loss"],
                 r["float32"]["f32_loss_output"]["total"], r["bfloat16"]["f32_loss_output"]["total"],
                 f"{r['output_loss_rel_diff']:+.2%}"]
                for r in rows
            ],
        )
    )
    print()
    print("wall time per optimiser step (compile excluded)")
    print(
        table(
            ["size", "opt", "f32 s/step", "bf16 s/step", "bf16/f32", "f32 evals", "bf16 evals", "f32 compile s", "bf16 compile s"],
            [
                [r["size"], r["optimizer"], r["float32"]["step_s"], r["bfloat16"]["step_s"],
                 r["bfloat16"]["step_s"] / r["float32"]["step_s"], r["float32"]["evaluations"],
                 r["bfloat16"]["evaluations"], r["float32"]["compile_s_est"], r["bfloat16"]["compile_s_est"]]
                for r in rows
            ],
        )
    )
    return {"rows": rows, "loadavg_end": loadavg()}


# --------------------------------------------------------------------------- 2. batch throughput


def _batch_inner(args) -> dict[str, Any]:
    """Throughput in this process (whatever devices it has)."""
    import jax

    from nstjax.nst.config import preset
    from nstjax.weights import random_weights

    from nstjax.nst import batch as batch_mod
    engine = _engine()
    weights = random_weights(0)
    size, steps = args.size, args.steps
    _, style, what = load_square_pair(size)
    config = preset("gatys", size=size, steps=steps, optimizer="adam", tolerance=0.0)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    contents = content_set(size, max(max(sizes), args.baseline_images))
    devices = jax.local_device_count()
    out: dict[str, Any] = {"devices": devices, "size": size, "steps": steps, "images": what, "loadavg_start": loadavg()}

    # Baseline: run_stylize on one image at a time.
    warm = time.perf_counter()
    engine.run_stylize(contents[0], style, weights=weights, config=config.replace(steps=1))
    warm = time.perf_counter() - warm
    with ChunkTimer(_run_module(), "run_chunk") as timer:
        t0 = time.perf_counter()
        for c in contents[: args.baseline_images]:
            engine.run_stylize(c, style, weights=weights, config=config)
        wall = time.perf_counter() - t0
    n = args.baseline_images
    out["baseline"] = {
        "images": n,
        "wall_s": wall,
        "images_per_s": n / wall,
        "step_s": timer.seconds / (n * steps),
        "warmup_s": warm,
    }
    print(f"  [{devices} dev] run_stylize loop: {n / wall:.3f} images/s", flush=True)

    rows = []
    for b in sizes:
        batch = contents[:b]
        with ChunkTimer(batch_mod, "_batch_chunk") as warm_t:
            t0 = time.perf_counter()
            batch_mod.stylize_images(batch, style, weights=weights, config=config.replace(steps=1), batch_size=b)
            warm = time.perf_counter() - t0
        with ChunkTimer(batch_mod, "_batch_chunk") as timer:
            t0 = time.perf_counter()
            results = batch_mod.stylize_images(batch, style, weights=weights, config=config, batch_size=b)
            wall = time.perf_counter() - t0
        program = -(-b // devices) * devices
        step_s = timer.seconds / steps
        row = {
            "batch": b,
            "program_batch": program,
            "wall_s": wall,
            "images_per_s": b / wall,
            "optimiser_images_per_s": b / timer.seconds,
            "batched_step_s": step_s,
            "warmup_s": warm,
            "compile_s_est": warm_t.calls[0][1] - step_s if warm_t.calls else None,
            "steps_run": sorted({r.steps for r in results}),
        }
        rows.append(row)
        print(f"  [{devices} dev] batch {b}: {row['images_per_s']:.3f} images/s, compile ~{row['compile_s_est']:.1f} s", flush=True)
    out["rows"] = rows
    out["loadavg_end"] = loadavg()
    return out


def run_batch(args) -> dict[str, Any]:
    results = {"in_process": _batch_inner(args)}
    if args.devices and args.devices > 1:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "batch.json"
            flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={args.devices}"
            env = {**os.environ, "XLA_FLAGS": flags.strip()}
            cmd = [sys.executable, __file__, "batch-inner", "--size", str(args.size), "--steps", str(args.steps),
                   "--batch-sizes", args.batch_sizes, "--baseline-images", str(args.baseline_images), "--out", str(path)]
            print(f"  subprocess: XLA_FLAGS={env['XLA_FLAGS']!r} {' '.join(cmd[1:])}", flush=True)
            subprocess.run(cmd, env=env, check=True)
            results["virtual_devices"] = json.loads(path.read_text())["batch"]
    print()
    print(f"batch throughput, {args.size}x{args.size} px, Adam {args.steps} steps, compile excluded")
    rows = []
    for key, res in results.items():
        label = f"{res['devices']} device(s)"
        b = res["baseline"]
        rows.append([label, "run_stylize loop", b["images"], "-", b["images_per_s"], "-", b["step_s"], b["warmup_s"]])
        for r in res["rows"]:
            rows.append([label, "stylize_images", r["batch"], r["program_batch"], r["images_per_s"],
                         r["optimiser_images_per_s"], r["batched_step_s"], r["compile_s_est"]])
    print(table(["devices", "how", "images", "program batch", "images/s (wall)", "images/s (optimiser)",
                 "s/step (whole batch)", "compile s (est) / warm-up s"], rows))
    return results


# --------------------------------------------------------------------------- 3. largest size that fits


def compiled_bytes(weights, size: int, dtype: str, remat: str) -> dict[str, Any]:
    """XLA's buffer assignment of the L-BFGS chunk for a size x size image (compile only)."""
    from nstjax.nst.config import preset
    from nstjax.nst.memory import compiled_memory

    config = preset("gatys", pooling="max", optimizer="lbfgs", dtype=dtype, remat=remat,
                    content_layers=GATYS_CONTENT, style_layers=GATYS_STYLE)
    t0 = time.perf_counter()
    sizes = compiled_memory(config, (size, size), weights)
    seconds = time.perf_counter() - t0
    return {"size": size, "bytes": int(sizes["total"]), **{k: int(v) for k, v in sizes.items() if k != "total"},
            "compile_s": seconds}


def estimate(size: int, dtype: str, remat: str, platform: str = "cpu") -> int:
    from nstjax.nst import memory

    return memory.estimate_bytes((size, size), layers=GATYS_LAYER_NAMES, dtype=dtype, remat=remat,
                                 pooling="max", optimizer="lbfgs", platform=platform)


def estimator_largest(dtype: str, remat: str, available: int, step: int, limit: int, platform: str = "cpu") -> int:
    best = 0
    for s in range(step, limit + 1, step):
        if estimate(s, dtype, remat, platform) <= available:
            best = s
    return best


def search_mode(weights, dtype, remat, available, step, limit, max_compiles, start) -> dict[str, Any]:
    """Largest multiple of ``step`` whose compiled chunk fits: gallop from ``start``, then bisect."""
    probes: dict[int, dict[str, Any]] = {}

    def fits(s):
        if s not in probes:
            r = compiled_bytes(weights, s, dtype, remat)
            r["fits"] = r["bytes"] <= available
            probes[s] = r
            print(f"    {dtype}/{remat} {s}px: {r['bytes'] / GIB:.2f} GiB ({'fits' if r['fits'] else 'too big'}), "
                  f"compile {r['compile_s']:.1f} s", flush=True)
        return probes[s]["fits"]

    k_max = limit // step
    k = min(max(1, start // step), k_max)
    lo, hi = 0, k_max + 1  # lo fits (0 = none known), hi does not (k_max + 1 = beyond the limit)
    # Gallop from the start (1, 2, 4, ... steps) until the boundary is bracketed, then bisect.
    if fits(k * step):
        lo, jump = k, 1
        while lo + jump <= k_max and len(probes) < max_compiles:
            if fits((lo + jump) * step):
                lo, jump = lo + jump, jump * 2
            else:
                hi = lo + jump
                break
    else:
        hi, jump = k, 1
        while hi - jump >= 1 and len(probes) < max_compiles:
            if fits((hi - jump) * step):
                lo = hi - jump
                break
            hi, jump = hi - jump, jump * 2
    while hi - lo > 1 and len(probes) < max_compiles:
        mid = (lo + hi) // 2
        if fits(mid * step):
            lo = mid
        else:
            hi = mid
    exact = hi - lo == 1
    return {
        "dtype": dtype,
        "remat": remat,
        "largest_fitting": lo * step,
        "smallest_failing": hi * step if hi <= k_max else None,
        "bracket_exact": exact,
        "probes": [probes[s] for s in sorted(probes)],
    }


_RSS_CODE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
from bench_scale import load_square_pair
from nstjax.stylize import run_stylize
from nstjax.weights import random_weights

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

size = int(sys.argv[1])
w = random_weights(0)
content, style, _ = load_square_pair(size)
start = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
    f.write("5")
t0 = time.perf_counter()
r = run_stylize(content, style, weights=w, size=size, steps=1, optimizer="lbfgs", pooling="max",
                tolerance=0.0, dtype="float32", remat="none")
print(json.dumps({"size": size, "rss_start_bytes": start, "peak_rss_bytes": status("VmHWM"),
                  "seconds": time.perf_counter() - t0, "evaluations": r.evaluations, "loss": r.loss}))
"""


def measure_rss(size: int) -> dict[str, Any]:
    """Peak RSS of one L-BFGS step at ``size`` in a fresh process, counted from after the set-up."""
    env = {**os.environ, "NSTJAX_COMPILATION_CACHE": "0"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _RSS_CODE, str(size), str(Path(__file__).resolve().parent)],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    data = json.loads(out.stdout.strip().splitlines()[-1])
    data["grown_bytes"] = data["peak_rss_bytes"] - data["rss_start_bytes"]
    data["process_s"] = time.perf_counter() - t0
    return data


def run_rss(size: int, small_size: int = 128) -> dict[str, Any]:
    """One real L-BFGS step (float32, remat none, gatys layers, max pooling) at ``small_size`` and ``size``.

    The peak RSS during ``run_stylize`` above the RSS at its start ("grown") still holds
    size-independent costs (compilation, code); the difference between the two sizes removes them.
    """
    from nstjax.weights import random_weights

    print(f"  real L-BFGS step in fresh subprocesses at {small_size} and {size} px ...", flush=True)
    small, large = measure_rss(small_size), measure_rss(size)
    xla = compiled_bytes(random_weights(0), size, "float32", "none")
    xla_small = compiled_bytes(random_weights(0), small_size, "float32", "none")
    est_l, est_s = estimate(size, "float32", "none"), estimate(small_size, "float32", "none")
    rss = {
        "size": size,
        "small_size": small_size,
        "small": small,
        "large": large,
        "xla_bytes": xla["bytes"],
        "xla_small_bytes": xla_small["bytes"],
        "estimate_bytes": est_l,
        "estimate_small_bytes": est_s,
        "grown_diff_bytes": large["grown_bytes"] - small["grown_bytes"],
    }
    print()
    print("one real L-BFGS step (float32, remat none, gatys layers, max pooling): peak RSS vs the estimate")
    print(table(["what", f"{small_size} px GiB", f"{size} px GiB", "difference GiB"], [
        ["RSS when run_stylize starts", small["rss_start_bytes"] / GIB, large["rss_start_bytes"] / GIB, "-"],
        ["peak RSS during run_stylize", small["peak_rss_bytes"] / GIB, large["peak_rss_bytes"] / GIB, "-"],
        ["peak - start (measured)", small["grown_bytes"] / GIB, large["grown_bytes"] / GIB, rss["grown_diff_bytes"] / GIB],
        ["estimate_bytes (model)", est_s / GIB, est_l / GIB, (est_l - est_s) / GIB],
        ["XLA buffer assignment of the chunk", xla_small["bytes"] / GIB, xla["bytes"] / GIB,
         (xla["bytes"] - xla_small["bytes"]) / GIB],
    ]))
    print(f"  ({small['evaluations']} and {large['evaluations']} evaluations; {small['seconds']:.0f} s and "
          f"{large['seconds']:.0f} s inside run_stylize)")
    return rss


def run_fit(args) -> dict[str, Any]:
    from nstjax.nst import memory
    from nstjax.weights import random_weights

    weights = random_weights(0)
    available = memory.device_memory_bytes()
    if args.available_gib:
        available = int(args.available_gib * GIB)
    machine_total = machine()["mem_total_bytes"]
    print(f"  available (MemAvailable at start): {available / GIB:.2f} GiB of {machine_total / GIB:.2f} GiB", flush=True)
    modes = [tuple(m.split("/")) for m in args.modes.split(",")] if args.modes else list(MODES)
    rows = []
    for dtype, remat in modes:
        est_best = estimator_largest(dtype, remat, available, args.step, args.limit)
        r = search_mode(weights, dtype, remat, available, args.step, args.limit, args.max_compiles,
                        start=est_best or args.step)
        s = r["largest_fitting"]
        xla = next((p for p in r["probes"] if p["size"] == s), None)
        r["xla_bytes_at_largest"] = xla["bytes"] if xla else None
        r["estimate_bytes_at_largest"] = estimate(s, dtype, remat) if s else None
        r["estimator_largest_fitting"] = est_best
        # The same probes against the machine's whole RAM (no extra compiles: a bracket, exact when adjacent).
        total = machine_total
        ok = [p["size"] for p in r["probes"] if p["bytes"] <= total]
        bad = [p["size"] for p in r["probes"] if p["bytes"] > total]
        r["mem_total_bracket"] = (max(ok) if ok else None, min(bad) if bad else None)
        rows.append(r)

    rss = run_rss(args.rss_size) if args.rss_size else {}

    gpu = []
    for dtype, remat in MODES:
        b = estimate(4096, dtype, remat, platform="gpu")
        gpu.append({"dtype": dtype, "remat": remat, "bytes": b, "fits_80GB": b <= 80e9,
                    "largest_fitting_80GB": estimator_largest(dtype, remat, int(80e9), args.step, 16384, platform="gpu")})

    print()
    print(f"largest square side that fits in {available / GIB:.2f} GiB (XLA buffer assignment, compile only; "
          f"L-BFGS, gatys layers, max pooling; multiples of {args.step} px)")
    print(table(["dtype", "remat", "largest fits", "first too big", "XLA GiB there", "estimate GiB there",
                 "estimator's largest", "compiles", "MemTotal: fits / too big (probed)"],
                [[r["dtype"], r["remat"], r["largest_fitting"], r["smallest_failing"],
                  (r["xla_bytes_at_largest"] or 0) / GIB, (r["estimate_bytes_at_largest"] or 0) / GIB,
                  r["estimator_largest_fitting"], len(r["probes"]),
                  f"{r['mem_total_bracket'][0]} / {r['mem_total_bracket'][1]}"] for r in rows]))
    print("probes (compile only):")
    print(table(["dtype", "remat", "size", "XLA GiB", "temp GiB", "args GiB", "estimate GiB", "est/XLA", "compile s"],
                [[r["dtype"], r["remat"], p["size"], p["bytes"] / GIB, p["temp"] / GIB, p["arguments"] / GIB,
                  estimate(p["size"], r["dtype"], r["remat"]) / GIB,
                  estimate(p["size"], r["dtype"], r["remat"]) / p["bytes"], p["compile_s"]]
                 for r in rows for p in r["probes"]]))
    print()
    print("estimator on an 80 GB GPU (platform='gpu') at 4096x4096, L-BFGS: MODEL, NOT MEASURED")
    print(table(["dtype", "remat", "estimate GB", "fits 80 GB", "estimator's largest side"],
                [[g["dtype"], g["remat"], g["bytes"] / 1e9, g["fits_80GB"], g["largest_fitting_80GB"]] for g in gpu]))
    return {"available_bytes": available, "step": args.step, "limit": args.limit, "modes": rows, "rss": rss,
            "mem_total_bytes": machine_total, "gpu_model_4096": gpu, "loadavg_end": loadavg()}


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--out", help="write results as JSON here")

    d = sub.add_parser("drift", help="bfloat16 vs float32: PSNR, losses, step time")
    d.add_argument("--weights", default="random",
                   help="random (seeded, the default), auto (here: the real ImageNet VGG-16) or a weights spec")
    d.add_argument("--sizes", default="128,256")
    d.add_argument("--lbfgs-steps", type=int, default=50)
    d.add_argument("--adam-steps", type=int, default=100)
    common(d)

    for name in ("batch", "batch-inner"):
        b = sub.add_parser(name, help="batch throughput" if name == "batch" else "internal: one process of batch")
        b.add_argument("--size", type=int, default=128)
        b.add_argument("--steps", type=int, default=20)
        b.add_argument("--batch-sizes", default="1,4,16")
        b.add_argument("--baseline-images", type=int, default=4)
        if name == "batch":
            b.add_argument("--devices", type=int, default=4, help="also run with this many virtual CPU devices (0: no)")
        common(b)

    f = sub.add_parser("fit", help="largest image that fits per mode (compile only) + one real run's RSS")
    f.add_argument("--step", type=int, default=256)
    f.add_argument("--limit", type=int, default=8192)
    f.add_argument("--max-compiles", type=int, default=8)
    f.add_argument("--modes", default="", help="e.g. float32/none,bfloat16/block (default: all six)")
    f.add_argument("--rss-size", type=int, default=1024, help="0: skip the real run")
    f.add_argument("--available-gib", type=float, default=0.0, help="override the available memory")
    common(f)

    r = sub.add_parser("rss", help="only the real-run peak RSS part of fit")
    r.add_argument("--size", type=int, default=1024)
    r.add_argument("--small-size", type=int, default=128)
    common(r)

    args = p.parse_args(argv)
    info = {"machine": machine(), "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
            "weights": "random_weights(0) (seeded He-normal, not ImageNet)", "loadavg_start": loadavg()}
    print(f"{info['machine']['cpu_model']}, {info['machine']['cpus']} CPUs, jax {info['machine']['jax']}, "
          f"jaxlib {info['machine']['jaxlib']}, backend {info['machine']['backend']} x{len(info['machine']['devices'])}, "
          f"load {info['loadavg_start']}", flush=True)
    t0 = time.perf_counter()
    if args.cmd == "drift":
        info["drift"] = run_drift(args)
    elif args.cmd == "batch":
        info["batch"] = run_batch(args)
    elif args.cmd == "batch-inner":
        info["batch"] = _batch_inner(args)
    elif args.cmd == "fit":
        info["fit"] = run_fit(args)
    elif args.cmd == "rss":
        info["rss"] = run_rss(args.size, args.small_size)
    info["total_s"] = time.perf_counter() - t0
    print(f"total {info['total_s']:.0f} s")
    write_json(args.out, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
