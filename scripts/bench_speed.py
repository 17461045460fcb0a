"""Speed of nstjax against the eager PyTorch reference (``torch_reference.py``).

For each image size (square, ``--sizes``), on the same problem (seeded random
VGG-19 weights, gatys layers/weights, average pooling):

* **throughput** (this process, interleaved): loss-and-gradient evaluations
  ("eval"), Adam steps and L-BFGS steps (``adam``/``lbfgs``: evaluations per
  second inside the optimiser, line searches included) for nstjax in float32
  and bfloat16 and for the reference in float32 and ``torch.autocast``
  bfloat16. Every repetition runs each workload once, nstjax and reference
  alternating (order reversed every other repetition), so machine noise hits
  both; the median over repetitions is reported. Before each timed
  repetition every workload makes one untimed call or step (``--settle-calls``):
  the first call after another program's pays for the memory that program
  freed, so untimed it measures each implementation's steady state.
  FLOP/s counts a direct convolution's multiply-adds (nstjax's Winograd layers
  do 2.25x fewer, so it can exceed the peak).
* **compile time and memory** (fresh subprocesses): nstjax cold (empty
  persistent compilation cache) and warm (the cache the cold run filled), as
  (a) the first ``run_stylize`` call of one L-BFGS step minus the second
  identical call, and (b) the explicit ``lower().compile()`` of the evaluation
  program; the reference's first-call overhead; peak resident memory: the RSS
  high-water mark of a fresh process over three L-BFGS steps, reset after
  set-up (and, for nstjax, after compiling), reported with its rise over the
  idle RSS; on GPU the device's peak allocation.
* **achieved FLOP/s** of "eval" against the device's peak (model in
  ``_bench_common.eval_flops``: forward ≈ 2·MACs of the convolutions up to
  conv5_1 + Gram matrices; one evaluation ≈ 2× forward, input gradients only).

Weights are seeded random: speed does not depend on their values.

    python scripts/bench_speed.py --sizes 128,256,512 --repeats 5 --out bench_speed.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bc  # noqa: E402

IMPLS = ("nstjax", "reference")
BEFORE = "nstjax-autodiff-conv"  # --compare-autodiff-conv: nstjax with JAX's default convolution VJP (the old path)
GRAM_BEFORE = "nstjax-autodiff-gram"  # --compare-autodiff-gram: the Gram matrix differentiated by JAX (the old path)
PATCHES = {BEFORE: bc.autodiff_conv, GRAM_BEFORE: bc.autodiff_gram}
MODES = ("eval", "adam", "lbfgs")


# --------------------------------------------------------------------------- workloads


class Workload:
    """One timed thing: ``unit()`` runs a few evaluations and returns how many."""

    def __init__(self, impl: str, dtype: str, mode: str, unit: Callable[[int], int]):
        self.impl, self.dtype, self.mode = impl, dtype, mode
        self._unit = unit
        self.trace_context = None  # entered around the warm-up calls (the autodiff-conv variant)
        self.calls = 1  # calls (eval) or steps (optimisers) per timed unit
        self.first_s = float("nan")
        self.rates: list[float] = []
        self.seconds: list[float] = []

    @property
    def name(self) -> str:
        return f"{self.impl}/{self.dtype}/{self.mode}"

    def run(self) -> tuple[int, float]:
        start = time.perf_counter()
        evals = self._unit(self.calls)
        return evals, time.perf_counter() - start

    def settle(self) -> None:
        """One untimed call or step: the first one after another program's pays for memory that
        program freed (fresh pages from the kernel: up to 0.8 s of system time at 256 px)."""
        self._unit(1)


def nstjax_workloads(params, preprocessing, content, style, settings, dtypes, modes, impl="nstjax",
                     conv_impl="auto") -> list[Workload]:
    """nstjax's workloads; ``impl`` names the variant: ``nstjax`` (as shipped), ``nstjax-xla``
    (``conv_impl``), :data:`GRAM_BEFORE` or :data:`BEFORE` (traced under a patch of the library)."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    from nstjax.nst import engine

    # The jitted init (as run_stylize uses): fresh buffers, safe to donate to the chunk.
    init_carry = engine.init_carry_jit
    out = []
    targets_params = params
    x0 = jnp.asarray(content)[None]
    stop = {k: jnp.asarray(v, jnp.float32 if k == "tolerance" else jnp.int32) for k, v in bc.NEVER_STOP.items()}
    patch = PATCHES.get(impl)
    for dtype in dtypes:
        for mode in modes[dtype]:
            optimizer = "adam" if mode == "adam" else "lbfgs"
            with patch() if patch else contextlib.nullcontext():
                spec, targets, lw = bc.nstjax_problem(
                    targets_params, preprocessing, content, style, settings=settings, optimizer=optimizer, dtype=dtype
                )
            spec = dataclasses.replace(spec, conv_impl=conv_impl)
            params = engine.device_params(targets_params, spec=spec)  # as run_stylize passes them
            if mode == "eval":
                vg = bc.jitted_value_and_grad()

                def unit(n, vg=vg, spec=spec, targets=targets, lw=lw, params=params):
                    for _ in range(n):
                        out_ = vg(x0, params, targets, lw, spec=spec)
                    jax.block_until_ready(out_)
                    return n

            else:
                chunk = bc.jitted_run_steps()
                state = {"carry": None}

                def unit(n, chunk=chunk, spec=spec, targets=targets, lw=lw, state=state, params=params):
                    carry = state["carry"]
                    if carry is None or bool(carry.nonfinite):
                        carry = init_carry(x0, spec)
                    before = int(carry.evaluations)
                    carry, _ = chunk(carry, params, targets, lw, jnp.int32(n), stop, spec)
                    evals = int(carry.evaluations) - before  # a device->host read: waits for the chunk
                    state["carry"] = carry
                    return evals

            w = Workload(impl, dtype, mode, unit)
            w.trace_context = patch
            out.append(w)
    return out


def reference_workloads(params, preprocessing, content, style, settings, dtypes, modes, device,
                        channels_last=False) -> list[Workload]:
    """The reference's workloads, named ``reference`` (NCHW, the tutorial's) or ``reference-cl``
    (``channels_last``)."""
    import torch
    import torch_reference as ref

    name = "reference-cl" if channels_last else "reference"
    out = []
    for dtype in dtypes:
        autocast = torch.bfloat16 if dtype == "bfloat16" else None
        loss_fn = ref.build_loss(content, style, params, preprocessing, autocast_dtype=autocast, device=device,
                                 channels_last=channels_last, **settings.loss_kwargs())
        for mode in modes[dtype]:
            image = ref.to_tensor(content, device).requires_grad_(True)
            sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
            if mode == "eval":

                def unit(n, image=image, loss_fn=loss_fn, sync=sync):
                    for _ in range(n):
                        image.grad = None
                        loss_fn(image)["total"].backward()
                    sync()
                    return n

            else:
                unit = _ReferenceSteps(image, loss_fn, mode, settings, sync)
            out.append(Workload(name, dtype, mode, unit))
    return out


class _ReferenceSteps:
    """``n`` optimiser steps of the reference; returns the evaluations (closure calls) made."""

    def __init__(self, image, loss_fn, mode, settings, sync):
        import torch_reference as ref

        self.image, self.loss_fn, self.mode, self.sync = image, loss_fn, mode, sync
        self.evaluations = 0
        # L-BFGS: one step() call runs max_iter iterations; its state carries over between calls.
        self.opt = ref.make_optimizer(image, mode, learning_rate=settings.learning_rate,
                                      lbfgs_memory=settings.lbfgs_memory, max_iter=1, max_eval=10**9)

    def closure(self):
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.image)["total"]
        loss.backward()
        self.evaluations += 1
        return loss

    def __call__(self, n: int) -> int:
        before = self.evaluations
        if self.mode == "lbfgs":
            self.opt.param_groups[0]["max_iter"] = n
            self.opt.step(self.closure)
        else:
            for _ in range(n):
                self.opt.step(self.closure)
        self.sync()
        return self.evaluations - before


def throughput(size: int, args, settings, device: str) -> dict[str, Any]:
    """Interleaved timing of every workload at one size."""
    params, preprocessing = bc.random_params()
    content, style, what = bc.square_pair(size)
    modes = {"float32": args.modes, "bfloat16": args.bf16_modes}
    dtypes = ["float32"] + (["bfloat16"] if args.bf16_modes else [])
    ref_dtypes = list(dtypes)
    if "bfloat16" in ref_dtypes and (size > args.reference_bf16_max_size or not reference_bf16_ok(device)):
        ref_dtypes.remove("bfloat16")
    ours = nstjax_workloads(params, preprocessing, content, style, settings, dtypes, modes)
    old = []
    if "xla" in args.conv_impls:
        old += nstjax_workloads(params, preprocessing, content, style, settings, dtypes, modes,
                                impl="nstjax-xla", conv_impl="xla")
    if args.compare_autodiff_gram:
        old += nstjax_workloads(bc.with_cache_marker(params, "autodiff_gram"), preprocessing, content, style,
                                settings, dtypes, modes, impl=GRAM_BEFORE)
    if args.compare_autodiff_conv:
        old += nstjax_workloads(bc.with_cache_marker(params), preprocessing, content, style, settings,
                                dtypes, modes, impl=BEFORE)
    theirs = []
    for layout in args.reference_layouts:
        theirs += reference_workloads(params, preprocessing, content, style, settings, ref_dtypes, modes, device,
                                      channels_last=layout == "channels-last")
    # Pair the workloads nstjax, reference, (variants), nstjax, reference, …
    workloads: list[Workload] = []
    for a in ours:
        workloads.append(a)
        workloads += [b for b in theirs + old if (b.dtype, b.mode) == (a.dtype, a.mode)]
    workloads += [b for b in theirs + old if b not in workloads]

    for w in workloads:  # warm-up: compilation (nstjax), primitive creation (torch); then calibrate
        if w.trace_context is not None:
            with w.trace_context():
                evals, first = w.run()
        else:
            evals, first = w.run()
        w.first_s = first
        evals, seconds = w.run()
        per_call = seconds / max(1, w.calls)
        w.calls = max(1, int(np.ceil(args.min_time / max(per_call, 1e-6))))
        print(f"  {size}px {w.name}: first call {first:.2f} s, then {evals / seconds:.2f} evals/s; "
              f"{w.calls} call(s) per repetition", flush=True)
    load = []
    for rep in range(args.repeats):
        order = workloads if rep % 2 == 0 else workloads[::-1]
        for w in order:
            for _ in range(args.settle_calls):
                w.settle()
            evals, seconds = w.run()
            w.rates.append(evals / seconds)
            w.seconds.append(seconds)
            load.append(os.getloadavg()[0])
        print(f"  {size}px repetition {rep + 1}/{args.repeats}: "
              + ", ".join(f"{w.name} {w.rates[-1]:.2f}" for w in workloads), flush=True)

    flops = bc.eval_flops(size, size)
    rows = []
    for w in workloads:
        rate = bc.median(w.rates)
        peak, _ = bc.device_peak_flops(w.dtype)
        rows.append(dict(
            size=size, impl=w.impl, dtype=w.dtype, mode=w.mode, evals_per_s=rate,
            rates=w.rates, seconds=w.seconds, iqr=[float(np.percentile(w.rates, 25)), float(np.percentile(w.rates, 75))],
            calls_per_repetition=w.calls, first_call_s=w.first_s,
            gflops=rate * flops / 1e9, fraction_of_peak=(rate * flops / peak) if peak else None,
        ))
    add_reference_ratios(rows)
    return dict(size=size, images=what, eval_gflop=flops / 1e9, rows=rows,
                load_average=dict(mean=float(np.mean(load)), min=float(min(load)), max=float(max(load))))


def add_reference_ratios(rows: list[dict[str, Any]]) -> None:
    """Give each nstjax row its ratio to the fastest reference setting of its dtype and mode.

    ``ratio_vs_reference`` and ``reference_setting`` name the fastest; the ratio
    to each layout is kept as ``ratio_vs_layout_<impl>``.
    """
    for row in rows:
        if row["impl"].startswith("reference"):
            continue
        best = fastest_reference(rows, row["dtype"], row["mode"])
        row["ratio_vs_reference"] = row["evals_per_s"] / best["evals_per_s"] if best else None
        row["reference_setting"] = best["impl"] if best else None
        for r in rows:
            if r["impl"].startswith("reference") and (r["dtype"], r["mode"]) == (row["dtype"], row["mode"]):
                row[f"ratio_vs_layout_{r['impl']}"] = row["evals_per_s"] / r["evals_per_s"]


def fastest_reference(rows, dtype: str, mode: str):
    """The reference setting (NCHW or channels_last) with the most evaluations per second, or None."""
    refs = [r for r in rows if r["impl"].startswith("reference") and (r["dtype"], r["mode"]) == (dtype, mode)]
    return max(refs, key=lambda r: r["evals_per_s"], default=None)


def reference_bf16_ok(device: str) -> bool:
    """Whether torch.autocast(bfloat16) runs a convolution on ``device``."""
    import torch

    try:
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
            conv = torch.nn.Conv2d(3, 4, 3).to(device)
            conv(torch.zeros(1, 3, 8, 8, device=device)).float().sum()
        return True
    except Exception as error:  # noqa: BLE001 - any failure means "not supported here"
        print(f"  torch autocast bfloat16 unavailable on {device}: {error}")
        return False


# --------------------------------------------------------------------------- subprocess measurements


def child_nstjax(job: dict[str, Any]) -> dict[str, Any]:
    """Compile times and memory of nstjax in a fresh process (cache dir set by the parent)."""
    import jax
    import jax.numpy as jnp

    from nstjax.nst.config import preset
    from nstjax.nst.run import run_stylize
    from nstjax.weights import random_weights

    size, dtype = job["size"], job["dtype"]
    data = np.load(job["images"])
    content, style = data["content"], data["style"]
    weights = random_weights(0)
    settings = bc.Settings()
    out: dict[str, Any] = {"cache_dir": jax.config.jax_compilation_cache_dir}
    config = preset(
        "gatys", size=size, steps=1, dtype=dtype, tolerance=0.0, remat="none",
        content_weight=settings.content_weight, style_weight=settings.style_weight, tv_weight=settings.tv_weight,
    )
    # (a) what a user waits for: the first run_stylize (all its programs compile) vs an identical second one.
    t0 = time.perf_counter()
    first = run_stylize(content, style, weights=weights, config=config)
    t1 = time.perf_counter()
    second = run_stylize(content, style, weights=weights, config=config)
    t2 = time.perf_counter()
    out.update(stylize_first_s=t1 - t0, stylize_second_s=t2 - t1, stylize_compile_s=(t1 - t0) - (t2 - t1),
               stylize_evaluations=[first.evaluations, second.evaluations])
    # (b) the evaluation program alone, ahead of time.
    spec, targets, lw = bc.nstjax_problem(weights.params, weights.preprocessing, content, style,
                                          settings=settings, optimizer="lbfgs", dtype=dtype)
    vg = bc.jitted_value_and_grad()
    x0 = jnp.asarray(content)[None]
    t0 = time.perf_counter()
    lowered = vg.lower(x0, weights.params, targets, lw, spec=spec)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    out.update(eval_lower_s=t1 - t0, eval_compile_s=t2 - t1)
    try:
        analysis = compiled.memory_analysis()
        out["xla_eval_temp_bytes"] = int(analysis.temp_size_in_bytes)
        out["xla_eval_argument_bytes"] = int(analysis.argument_size_in_bytes)
    except Exception:  # noqa: BLE001 - not every backend reports it
        pass
    return out


def child_nstjax_memory(job: dict[str, Any]) -> dict[str, Any]:
    """Peak memory of three L-BFGS steps in a fresh process: nothing ran before them."""
    import jax
    import jax.numpy as jnp

    from nstjax.weights import random_weights
    from nstjax.nst import engine as stylize_module

    data = np.load(job["images"])
    content, style = data["content"], data["style"]
    weights = random_weights(0)
    spec, targets, lw = bc.nstjax_problem(weights.params, weights.preprocessing, content, style,
                                          settings=bc.Settings(), optimizer="lbfgs", dtype=job["dtype"])
    x0 = jnp.asarray(content)[None]
    stop = {k: jnp.asarray(v, jnp.float32 if k == "tolerance" else jnp.int32) for k, v in bc.NEVER_STOP.items()}
    carry = stylize_module.init_carry_jit(x0, spec)
    params = stylize_module.device_params(weights.params, spec=spec)
    # Compile first (from the warm cache the parent passes), so compiler memory is not counted.
    chunk = stylize_module.run_chunk.lower(carry, params, targets, lw, jnp.int32(3), stop, spec=spec).compile()
    out: dict[str, Any] = {}
    try:
        analysis = chunk.memory_analysis()
        out["xla_chunk_temp_bytes"] = int(analysis.temp_size_in_bytes)
    except Exception:  # noqa: BLE001
        pass
    device = jax.devices()[0]
    idle = bc.rss_bytes("VmRSS")
    bc.reset_peak_rss()
    carry, _ = chunk(carry, params, targets, lw, jnp.int32(3), stop)
    out["evaluations"] = int(carry.evaluations)
    peak = bc.rss_bytes("VmHWM")
    out.update(rss_idle_bytes=idle, rss_peak_bytes=peak, rss_delta_bytes=(peak - idle) if peak and idle else None)
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        out.update(device_peak_bytes=stats.get("peak_bytes_in_use"), device_in_use_bytes=stats.get("bytes_in_use"))
    return out


def child_reference(job: dict[str, Any]) -> dict[str, Any]:
    """First-call overhead and memory of the reference in a fresh process (no JAX imported)."""
    import torch
    import torch_reference as ref

    device = job["device"]
    data = np.load(job["images"])
    content, style = data["content"], data["style"]
    params = bc.load_params_npz(Path(job["params"]))
    settings = bc.Settings()
    autocast = torch.bfloat16 if job["dtype"] == "bfloat16" else None
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    loss_fn = ref.build_loss(content, style, params, "torch", autocast_dtype=autocast, device=device,
                             channels_last=job.get("channels_last", False), **settings.loss_kwargs())
    image = ref.to_tensor(content, device).requires_grad_(True)
    t1 = time.perf_counter()
    idle = bc.rss_bytes("VmRSS")
    bc.reset_peak_rss()
    if device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    loss_fn(image)["total"].backward()
    t2 = time.perf_counter()
    image.grad = None
    loss_fn(image)["total"].backward()
    t3 = time.perf_counter()
    out.update(setup_s=t1 - t0, first_eval_s=t2 - t1, second_eval_s=t3 - t2, first_call_overhead_s=(t2 - t1) - (t3 - t2))
    opt = ref.make_optimizer(image, "lbfgs", max_iter=3, max_eval=10**9)
    evaluations = [0]

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(image)["total"]
        loss.backward()
        evaluations[0] += 1
        return loss

    opt.step(closure)
    out["evaluations"] = evaluations[0]
    if device == "cpu":
        # Peak over everything after set-up: two evaluations and three L-BFGS steps.
        peak = bc.rss_bytes("VmHWM")
        out.update(rss_idle_bytes=idle, rss_peak_bytes=peak, rss_delta_bytes=(peak - idle) if peak and idle else None)
    else:
        torch.cuda.synchronize()
        out.update(device_peak_bytes=torch.cuda.max_memory_allocated())
    return out


def run_child(job: dict[str, Any], env: dict[str, str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", json.dumps(job)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-2000:]}
    result = json.loads(lines[-1])
    result["process_wall_s"] = wall
    return result


def subprocess_measurements(size: int, args, device: str, workdir: Path) -> dict[str, Any]:
    content, style, _ = bc.square_pair(size)
    images = workdir / f"images_{size}.npz"
    np.savez(images, content=content, style=style)
    params_path = workdir / "params.npz"
    if not params_path.exists():
        bc.save_params(params_path, bc.random_params()[0])
    out: dict[str, Any] = {}
    dtypes = ["float32"] + (["bfloat16"] if args.bf16_modes else [])
    for dtype in dtypes:
        cache = Path(tempfile.mkdtemp(prefix=f"jaxcache_{size}_{dtype}_", dir=workdir))
        env = dict(os.environ)
        env.update(
            JAX_COMPILATION_CACHE_DIR=str(cache),
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
            JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
            NSTJAX_COMPILATION_CACHE="0",  # nstjax leaves the settings above alone
        )
        job = dict(kind="nstjax", size=size, dtype=dtype, images=str(images))
        for phase in ("cold", "warm"):
            print(f"  {size}px nstjax {dtype} compile time ({phase} cache) …", flush=True)
            result = run_child(job, env, args.child_timeout)
            result["cache_files"] = sum(1 for _ in cache.rglob("*") if _.is_file())
            out[f"nstjax/{dtype}/{phase}"] = result
        print(f"  {size}px nstjax {dtype} memory …", flush=True)
        out[f"nstjax/{dtype}/memory"] = run_child(dict(job, kind="nstjax-memory"), env, args.child_timeout)
        if dtype == "bfloat16" and (size > args.reference_bf16_max_size or not reference_bf16_ok(device)):
            continue
        print(f"  {size}px reference {dtype} first call/memory …", flush=True)
        job = dict(kind="reference", size=size, dtype=dtype, images=str(images), params=str(params_path), device=device,
                   channels_last=args.reference_channels_last)
        out[f"reference/{dtype}"] = run_child(job, dict(os.environ), args.child_timeout)
    return out


# --------------------------------------------------------------------------- report


def fmt(value, spec=".2f", unit=""):
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:{spec}}{unit}"


def mib(value):
    return fmt(value / 2**20 if value is not None else None, ".0f", " MiB")


REFERENCE_LABELS = {"reference": "NCHW", "reference-cl": "channels_last"}


def report_lines(result: dict[str, Any]) -> list[str]:
    """The throughput table (markdown): nstjax variants against the fastest reference setting."""
    lines = [
        f"machine: {result['machine']['cpu']} ({result['machine']['cores']} cores), flags "
        f"{' '.join(result['machine'].get('cpu_flags', []))}; JAX device {result['machine']['jax_device']}, "
        f"torch device {result['torch_device']} ({result['torch_threads']} threads); CPUs this process may use: "
        f"{result.get('affinity', '?')}",
        f"peak: {fmt((result['peak_flops'] or 0) / 1e9, '.0f', ' GFLOP/s')} ({result['peak_how']})",
        "",
        "| size | mode | dtype | nstjax evals/s | reference evals/s (fastest setting) | nstjax / reference "
        "| nstjax GFLOP/s (% peak) | reference GFLOP/s (% peak) | load avg |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in result["throughput"]:
        rows = entry["rows"]
        load = entry.get("load_average", {})
        for row in (r for r in rows if not r["impl"].startswith("reference")):
            other = fastest_reference(rows, row["dtype"], row["mode"])
            pct = lambda r: f"{r['gflops']:.1f} ({100 * r['fraction_of_peak']:.0f}%)" if r and r["fraction_of_peak"] else (f"{r['gflops']:.1f}" if r else "n/a")
            label = row["mode"] if row["impl"] == "nstjax" else f"{row['mode']} ({row['impl']})"
            ref = f"{other['evals_per_s']:.3f} ({REFERENCE_LABELS.get(other['impl'], other['impl'])})" if other else "n/a"
            lines.append(f"| {row['size']} | {label} | {row['dtype']} | {row['evals_per_s']:.3f} | {ref} | "
                         f"{fmt(row.get('ratio_vs_reference'), '.2f', 'x')} | {pct(row)} | {pct(other)} | "
                         f"{fmt(load.get('mean'), '.1f')} |")
    ours = [(e["size"], r) for e in result["throughput"] for r in e["rows"] if r["impl"] == "nstjax"]
    if ours:
        lines += ["", "nstjax first call (compilation, or a persistent-cache load, and one call or step) against a "
                  "warm timed unit (that many calls or steps):", "",
                  "| size | dtype | mode | first call | warm unit | calls or steps per unit |", "|---:|---|---|---:|---:|---:|"]
        for size, r in ours:
            warm = float(np.median(r["seconds"])) if r.get("seconds") else None
            lines.append(f"| {size} | {r['dtype']} | {r['mode']} | {fmt(r.get('first_call_s'), '.2f', ' s')} | "
                         f"{fmt(warm, '.3f', ' s')} | {r.get('calls_per_repetition')} |")
    cores = result["machine"].get("cores") or 1
    busy = [e["size"] for e in result["throughput"] if e.get("load_average", {}).get("mean", 0) > cores + 0.5]
    if busy and result["torch_device"] == "cpu" and result.get("torch_threads", 1) > 1:
        lines += ["", f"**Busy machine** at {', '.join(map(str, busy))} px (1-minute load average above the {cores} "
                  "cores): under contention torch's OpenMP threads lose far more speed than XLA's thread pool (on "
                  "a 2-core VM at a load of 5-9: torch 1/7 of its quiet speed, XLA 1/3), so these ratios favour "
                  "nstjax. Re-run on a quiet machine."]
    refs = [(e["size"], r) for e in result["throughput"] for r in e["rows"] if r["impl"].startswith("reference")]
    if refs:
        lines += ["", "Reference settings, evaluations per second:", "",
                  "| size | mode | dtype | NCHW | channels_last |", "|---:|---|---|---:|---:|"]
        keys = sorted({(size, r["mode"], r["dtype"]) for size, r in refs}, key=lambda k: (k[0], k[2], MODES.index(k[1])))
        for size, mode, dtype in keys:
            cell = {r["impl"]: r["evals_per_s"] for s_, r in refs if (s_, r["mode"], r["dtype"]) == (size, mode, dtype)}
            lines.append(f"| {size} | {mode} | {dtype} | {fmt(cell.get('reference'), '.3f')} | "
                         f"{fmt(cell.get('reference-cl'), '.3f')} |")
    return lines


def subprocess_lines(result: dict[str, Any]) -> list[str]:
    """The compile-time and memory table (markdown) of the fresh-process measurements."""
    if not result.get("subprocess"):
        return []
    lines = [
        "| size | dtype | nstjax first run_stylize − second, cold / warm cache | eval program compile, cold / warm "
        "| reference first-call overhead | nstjax peak RSS (Δ over idle) | reference peak RSS (Δ over idle) "
        "| XLA eval temp |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for size, sub in result["subprocess"].items():
        for dtype in ("float32", "bfloat16"):
            cold, warm = sub.get(f"nstjax/{dtype}/cold"), sub.get(f"nstjax/{dtype}/warm")
            memory = sub.get(f"nstjax/{dtype}/memory")
            if cold is None:
                continue
            refr = sub.get(f"reference/{dtype}") or {}

            def rss(d):
                if not d or "error" in d:
                    return "n/a"
                if d.get("device_peak_bytes") is not None:
                    return mib(d["device_peak_bytes"]) + " (device)"
                return f"{mib(d.get('rss_peak_bytes'))} ({mib(d.get('rss_delta_bytes'))})"

            lines.append(
                f"| {size} | {dtype} | {fmt(cold.get('stylize_compile_s'), '.1f', ' s')} / "
                f"{fmt(warm.get('stylize_compile_s'), '.1f', ' s')} | {fmt(cold.get('eval_compile_s'), '.1f', ' s')} / "
                f"{fmt(warm.get('eval_compile_s'), '.1f', ' s')} | {fmt(refr.get('first_call_overhead_s'), '.2f', ' s')} | "
                f"{rss(memory)} | {rss(refr)} | {mib(cold.get('xla_eval_temp_bytes'))} |"
            )
            for name, d in (("nstjax cold", cold), ("nstjax warm", warm), ("nstjax memory", memory), ("reference", refr)):
                if d and "error" in d:
                    notes.append(f"({size} {dtype} {name} failed: {d['error'][-300:]})")
    return lines + ([""] + notes if notes else [])


def write_markdown(path: str | None, result: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("\n".join(report_lines(result) + [""] + subprocess_lines(result)) + "\n")


def print_report(result: dict[str, Any]) -> None:
    print()
    for line in report_lines(result):
        print(line)
    for line in subprocess_lines(result):
        print(line)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None, help="comma-separated square sizes (default 128,256,512; "
                        "on GPU 128,256,512,1024,2048)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds per timed repetition (at least one call)")
    parser.add_argument("--settle-calls", type=int, default=1,
                        help="untimed calls (or optimiser steps) each workload makes before each timed repetition, "
                        "for nstjax and the reference alike: the first call after another program's pays for the "
                        "memory that program freed (0 = time it too)")
    parser.add_argument("--modes", default="eval,adam,lbfgs", help="float32 workloads")
    parser.add_argument("--bf16-modes", default="eval", help="bfloat16 workloads ('' = no bfloat16)")
    parser.add_argument("--reference-bf16-max-size", type=int, default=None,
                        help="largest size at which to run the reference under torch.autocast(bfloat16) "
                        "(default: all on GPU; 128 on a CPU without native bfloat16, where it is ~30x slower)")
    parser.add_argument("--reference-layouts", default="nchw,channels-last",
                        help="reference memory formats to time (nchw = the tutorial's, channels-last); nstjax is "
                        "compared with the fastest of them for each size, dtype and mode")
    parser.add_argument("--conv-impls", default="auto",
                        help="nstjax convolution formulations to time: auto (as shipped, the 'nstjax' rows) and "
                        "optionally xla ('nstjax-xla' rows: XLA's convolutions everywhere)")
    parser.add_argument("--compare-autodiff-gram", action="store_true",
                        help=f"also time {GRAM_BEFORE}: nstjax with the Gram matrix as one einsum differentiated "
                        "by JAX (the path before its hand-written VJP; patched in this process only)")
    parser.add_argument("--md", default=None, help="also write the tables as markdown to this file")
    parser.add_argument("--compare-autodiff-conv", action="store_true",
                        help=f"also time {BEFORE}: nstjax with JAX's default convolution VJP instead of "
                        "vgg.conv3x3's (the path before the fix; patched in this process only)")
    parser.add_argument("--no-subprocess", action="store_true", help="skip compile-time/memory subprocesses")
    parser.add_argument("--no-throughput", action="store_true", help="only the subprocess measurements")
    parser.add_argument("--child-timeout", type=float, default=900)
    parser.add_argument("--out", default="bench_speed.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        job = json.loads(args.child)
        run = {"nstjax": child_nstjax, "nstjax-memory": child_nstjax_memory, "reference": child_reference}[job["kind"]]
        result = run(job)
        print(json.dumps(result, default=bc._default))
        return 0

    import jax
    import torch

    args.modes = [m for m in args.modes.split(",") if m]
    args.reference_layouts = [m for m in args.reference_layouts.split(",") if m]
    args.conv_impls = [m for m in args.conv_impls.split(",") if m]
    args.reference_channels_last = args.reference_layouts == ["channels-last"]  # the subprocess measurements
    args.bf16_modes = [m for m in args.bf16_modes.split(",") if m]
    for m in (*args.modes, *args.bf16_modes):
        if m not in MODES:
            parser.error(f"unknown mode {m!r}; choose from {', '.join(MODES)}")
    gpu = jax.default_backend() != "cpu"
    sizes = [int(s) for s in (args.sizes or ("128,256,512,1024,2048" if gpu else "128,256,512")).split(",")]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.reference_bf16_max_size is None:
        native = device != "cpu" or bc.machine()["avx512_bf16"] or "amx_bf16" in bc.lscpu().get("Flags", "")
        args.reference_bf16_max_size = 1 << 30 if native else 128
    peak, how = bc.device_peak_flops("float32")
    result: dict[str, Any] = dict(
        machine=bc.machine(), torch_device=device, torch_threads=torch.get_num_threads(),
        affinity=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        peak_flops=peak, peak_how=how, settings=vars(args), flop_model=bc.eval_flops.__doc__,
        throughput=[], subprocess={},
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nstjax_bench_") as tmp:
        for size in sizes:
            if not args.no_throughput:
                print(f"throughput at {size}x{size} …", flush=True)
                result["throughput"].append(throughput(size, args, bc.Settings(), device))
                bc.write_json(args.out, result)
                write_markdown(args.md, result)  # after each size: a cut-short run keeps what it measured
            if not args.no_subprocess:
                print(f"compile time and memory at {size}x{size} …", flush=True)
                result["subprocess"][str(size)] = subprocess_measurements(size, args, device, Path(tmp))
                bc.write_json(args.out, result)
    result["seconds"] = time.perf_counter() - start
    result["load_average_end"] = os.getloadavg()
    bc.write_json(args.out, result)
    print_report(result)
    write_markdown(args.md, result)
    print(f"\nwrote {args.out} ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    from nstjax.launch import reexec_with_memory_settings

    reexec_with_memory_settings()  # as the nstjax command runs (both sides of the comparison inherit it)
    raise SystemExit(main())
