"""Whole-process wall time: ``nstjax stylize`` against ``scripts/torch_reference.py``, same settings.

What a user waits for, start to exit: interpreter start, imports, weights,
compilation (nstjax: with a warm persistent compilation cache, filled by a
warm-up run), the optimisation and writing the image. Default problem: 256 px,
Adam, 30 steps, seeded random weights, the ``gatys`` preset's losses (average
pooling), early stopping off, chelsea.png / starry_night.jpg from
``../shared/images`` (generated images if those are missing).

Commands (each one a fresh process), run interleaved: every repetition runs
each command once, the order reversed every other repetition, so a change in
the machine's load hits all of them alike. Reported per command: median,
minimum and maximum wall seconds, user/system CPU seconds and peak RSS (from
``wait4``); for nstjax against each reference setting, the median of the
per-repetition ratios. The reference runs in its tutorial form (NCHW) and with
``--channels-last``; nstjax is compared with the faster of the two (by
median). nstjax's final losses must agree with the nearest reference layout's
(``--loss-rtol``): the same problem was solved (the two layouts differ between
themselves by their summation order; that spread is reported too).

    python scripts/bench_process.py --repeats 5 --out-dir /tmp/bench/process
    python scripts/bench_process.py --dtype bfloat16 --repeats 5 --out-dir /tmp/bench/process_bf16

Variants of nstjax (``--variants``): ``quiet`` (``-q``: no progress display, the
default), ``progress`` (the progress display on: after every chunk of steps the
CLI evaluates the best image's loss terms), ``conv-xla`` (``--conv-impl xla``),
``malloc`` (``-q`` with glibc told to keep freed memory, :data:`MALLOC_ENV`:
XLA:CPU allocates each execution's buffers afresh, and on some machines the
page faults of touching them again cost several percent), ``cold`` (``-q``, every
run with a fresh, empty nstjax cache but for the weights files: no compiled
programs, no device-speed calibration, no measured convolution choices — a user's
first run after installing, or at a new size), ``planned`` (``-q`` with ``NSTJAX_TIERED=0``: the planned
program, Winograd included, from the first step; the warm-up run compiled it). The cold start in
docs/benchmarks.md:

    python scripts/bench_process.py --variants quiet,planned,cold --reference-layouts channels-last --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
SHARED_IMAGES = REPO.parent / "shared" / "images"

MALLOC_ENV = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 36),
              "MALLOC_TOP_PAD_": str(1 << 28)}
# Environment of the variants that differ by it (``planned``: no tiers, the planned program from the first step).
VARIANT_ENV = {"nstjax-malloc": MALLOC_ENV, "nstjax-planned": {"NSTJAX_TIERED": "0"}}
NSTJAX_LOSS = re.compile(r"in [0-9.]+ s: loss ([0-9.eE+-]+)")
REFERENCE_LOSS = re.compile(r"loss [0-9.eE+-]+ -> ([0-9.eE+-]+)")


def images(workdir: Path) -> tuple[str, str, str]:
    content, style = SHARED_IMAGES / "chelsea.png", SHARED_IMAGES / "starry_night.jpg"
    if content.exists() and style.exists():
        return str(content), str(style), "chelsea.png / starry_night.jpg"
    sys.path.insert(0, str(SCRIPTS))
    import _bench_common as bc
    from PIL import Image

    c, s, _ = bc.load_pair(512)
    paths = []
    for name, array in (("content.png", c), ("style.png", s)):
        path = workdir / name
        Image.fromarray((np.clip(array, 0, 1) * 255).astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths[0], paths[1], "generated (smooth noise / white noise)"


def commands(args, content: str, style: str, workdir: Path) -> dict[str, list[str]]:
    python = sys.executable
    if args.nstjax_exe:
        nstjax = shlex.split(args.nstjax_exe)
    elif (Path(python).parent / "nstjax").exists():
        nstjax = [str(Path(python).parent / "nstjax")]  # the console script, as a user starts it
    else:
        nstjax = [python, "-c", "import sys; from nstjax.cli import main; sys.argv[0] = 'nstjax'; sys.exit(main())"]
    common = ["--size", str(args.size), "--steps", str(args.steps), "--optimizer", args.optimizer]
    base = [*nstjax, "stylize", content, style, "-o", str(workdir / "nstjax.png"), "--preset", "gatys", *common,
            "--weights", "random", "--tolerance", "0", "--dtype", args.dtype]
    out: dict[str, list[str]] = {}
    for variant in args.variants:
        extra = {"quiet": ["-q"], "progress": [], "conv-xla": ["-q", "--conv-impl", "xla"], "malloc": ["-q"],
                 "cold": ["-q"], "planned": ["-q"]}[variant]
        out[f"nstjax-{variant}"] = base + extra
    reference = [python, str(SCRIPTS / "torch_reference.py"), content, style, str(workdir / "reference.png"),
                 *common, *(["--bf16"] if args.dtype == "bfloat16" else [])]
    for layout in args.reference_layouts:
        out[f"reference-{layout}"] = reference + (["--channels-last"] if layout == "channels-last" else [])
    return out


class LoadSampler:
    """The 1-minute load average, sampled every few seconds while the benchmark runs."""

    def __init__(self, every: float = 5.0):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every):
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


def cold_cache(warm: Path) -> Path:
    """A fresh nstjax cache holding only ``warm``'s weights (links): nothing compiled or measured yet."""
    fresh = Path(tempfile.mkdtemp(prefix="nstjax_cold_cache_"))
    for item in warm.glob("*"):
        if item.suffix == ".npz" or item.name in ("imported", "downloads"):
            (fresh / item.name).symlink_to(item.resolve())
    return fresh


def run_once(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run ``cmd`` to completion; wall seconds, CPU seconds, peak RSS, output."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        return {"error": f"timed out after {timeout:.0f} s", "output": output[-2000:]}
    wall = time.perf_counter() - start
    # communicate() reaped the child; its resource use is in RUSAGE_CHILDREN deltas, read by the caller.
    return {"wall_s": wall, "returncode": proc.returncode, "output": output}


def measure(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run_once(cmd, env, timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result.update(user_s=after.ru_utime - before.ru_utime, sys_s=after.ru_stime - before.ru_stime,
                  # ru_maxrss of children is the largest of any child so far (KiB on Linux).
                  maxrss_children_kib=after.ru_maxrss)
    return result


def final_loss(name: str, output: str) -> float | None:
    pattern = REFERENCE_LOSS if name.startswith("reference") else NSTJAX_LOSS
    found = pattern.findall(output)
    return float(found[-1]) if found else None


def loss_differences(commands: dict[str, Any]) -> tuple[float, float]:
    """(largest relative distance of an nstjax final loss from the nearest reference loss, relative
    spread of the reference layouts' losses). The layouts sum in different orders, so they differ
    among themselves; nstjax is held to the nearest of them."""
    ours = [v for n, c in commands.items() if not n.startswith("reference") for v in c["losses"]]
    theirs = [v for n, c in commands.items() if n.startswith("reference") for v in c["losses"]]
    if not ours or not theirs:
        return float("nan"), float("nan")
    distance = max(min(abs(o - t) / max(abs(t), 1e-30) for t in theirs) for o in ours)
    return distance, (max(theirs) - min(theirs)) / max(abs(min(theirs)), 1e-30)


def summarise(runs: dict[str, list[dict[str, Any]]], baseline_prefix: str = "nstjax") -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name, results in runs.items():
        walls = [r["wall_s"] for r in results if "wall_s" in r]
        summary[name] = dict(
            wall_median_s=float(np.median(walls)) if walls else None,
            wall_min_s=min(walls, default=None), wall_max_s=max(walls, default=None),
            user_median_s=float(np.median([r["user_s"] for r in results])) if results else None,
            sys_median_s=float(np.median([r["sys_s"] for r in results])) if results else None,
            losses=sorted({final_loss(name, r.get("output", "")) for r in results} - {None}),
            failures=sum(1 for r in results if r.get("returncode", 1) != 0),
        )
    references = [n for n in runs if n.startswith("reference")]
    fastest = min(references, key=lambda n: summary[n]["wall_median_s"] or float("inf")) if references else None
    ratios: dict[str, Any] = {}
    for name in runs:
        if not name.startswith(baseline_prefix):
            continue
        for ref in references:
            pairs = [b["wall_s"] / a["wall_s"] for a, b in zip(runs[name], runs[ref]) if "wall_s" in a and "wall_s" in b]
            ratios[f"{name} vs {ref}"] = dict(
                speedup_median=float(np.median(pairs)) if pairs else None,  # reference wall / nstjax wall
                speedup_min=min(pairs, default=None), speedup_max=max(pairs, default=None),
            )
    return dict(commands=summary, fastest_reference=fastest, ratios=ratios)


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [
        f"Whole process, {result['settings']['size']} px, {result['settings']['optimizer']} "
        f"{result['settings']['steps']} steps, {result['settings']['dtype']}, random weights, warm compilation "
        f"cache; {result['settings']['repeats']} interleaved repetitions; {result['machine']['cpu']} "
        f"({result['machine']['cores']} cores); load average during the run {result['load_average']['mean']:.1f} "
        f"(min {result['load_average']['min']:.1f}, max {result['load_average']['max']:.1f}).",
        "",
        "| command | wall median (min–max) | user CPU | sys CPU | final loss |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, c in s["commands"].items():
        losses = ", ".join(f"{v:.6g}" for v in c["losses"]) or "n/a"
        fail = f" ({c['failures']} failed)" if c["failures"] else ""
        lines.append(f"| {name}{fail} | {c['wall_median_s']:.1f} s ({c['wall_min_s']:.1f}–{c['wall_max_s']:.1f}) | "
                     f"{c['user_median_s']:.1f} s | {c['sys_median_s']:.1f} s | {losses} |")
    lines += ["", f"Fastest reference setting: {s['fastest_reference']}.", "",
              "| pair | speed-up (reference wall / nstjax wall), median of pairs (min–max) |", "|---|---:|"]
    for pair, r in s["ratios"].items():
        mark = " (fastest reference)" if pair.endswith(s["fastest_reference"] or "?") else ""
        lines.append(f"| {pair}{mark} | {r['speedup_median']:.2f}x ({r['speedup_min']:.2f}–{r['speedup_max']:.2f}) |")
    check = result["loss_check"]
    lines += ["", f"Final losses agree within {check['rtol']:g} (relative): {'yes' if check['ok'] else 'NO'} "
              f"(nstjax's largest difference from the nearest reference layout "
              f"{check['largest_relative_difference']:.2e}; the reference layouts between themselves "
              f"{check.get('reference_layouts_relative_difference', float('nan')):.2e})."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--optimizer", choices=("adam", "lbfgs"), default="adam")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variants", default="quiet",
                        help="nstjax variants: quiet, progress, conv-xla, malloc, cold, planned")
    parser.add_argument("--reference-layouts", default="nchw,channels-last",
                        help="reference memory formats to run: nchw, channels-last")
    parser.add_argument("--nstjax-exe", default=None,
                        help="how to start nstjax (default: the nstjax console script beside this Python)")
    parser.add_argument("--cache-dir", default=None,
                        help="NSTJAX_CACHE for nstjax (default: a fresh folder, filled by the warm-up run)")
    parser.add_argument("--loss-rtol", type=float, default=None,
                        help="allowed relative difference of the final losses (default 2e-4 float32, 2e-2 bfloat16)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per process")
    parser.add_argument("--out-dir", default="bench_process")
    args = parser.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    args.reference_layouts = [v for v in args.reference_layouts.split(",") if v]
    rtol = args.loss_rtol if args.loss_rtol is not None else (2e-4 if args.dtype == "float32" else 2e-2)

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="nstjax_process_"))
    content, style, what = images(workdir)
    cmds = commands(args, content, style, workdir)
    env = dict(os.environ)
    env["NSTJAX_CACHE"] = args.cache_dir or str(workdir / "cache")
    env.setdefault("PYTHONPATH", str(REPO))

    sys.path.insert(0, str(SCRIPTS))
    import _bench_common as bc

    info = bc.lscpu()
    machine = dict(cpu=info.get("Model name", "?"), cores=os.cpu_count(),
                   flags=sorted(set(info.get("Flags", "").split()) & {
                       "avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni"}),
                   versions=bc.versions())
    print(f"{machine['cpu']} ({machine['cores']} cores), flags {' '.join(machine['flags'])}", flush=True)
    for name, cmd in cmds.items():
        print(f"{name}: {shlex.join(cmd)}", flush=True)

    # Warm-up: fills nstjax's compilation cache (and its one-off device-speed measurement), loads
    # torch's libraries into the page cache. Not counted.
    envs = {name: {**env, **VARIANT_ENV.get(name, {})} for name in cmds}
    for name, cmd in cmds.items():
        r = measure(cmd, envs[name], args.timeout)
        print(f"  warm-up {name}: {r.get('wall_s', float('nan')):.1f} s, exit {r.get('returncode')}", flush=True)
        if r.get("returncode") != 0:
            print(r.get("output", "")[-3000:])
            return 1

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in cmds}
    names = list(cmds)
    with LoadSampler() as load:
        for rep in range(args.repeats):
            for name in names if rep % 2 == 0 else names[::-1]:
                run_env = envs[name]
                if name == "nstjax-cold":
                    run_env = {**run_env, "NSTJAX_CACHE": str(cold_cache(Path(env["NSTJAX_CACHE"])))}
                r = measure(cmds[name], run_env, args.timeout)
                runs[name].append(r)
                print(f"  repetition {rep + 1}/{args.repeats} {name}: {r.get('wall_s', float('nan')):.2f} s, "
                      f"loss {final_loss(name, r.get('output', ''))}", flush=True)

    summary = summarise(runs)
    spread, reference_spread = loss_differences(summary["commands"])
    result = dict(
        settings=dict(vars(args), images=what), machine=machine, commands={n: shlex.join(c) for n, c in cmds.items()},
        load_average=dict(mean=float(np.mean(load.samples)), min=float(min(load.samples)),
                          max=float(max(load.samples)), samples=load.samples),
        summary=summary,
        loss_check=dict(rtol=rtol, largest_relative_difference=spread, ok=bool(spread <= rtol),
                        reference_layouts_relative_difference=reference_spread),
        runs={n: [{k: v for k, v in r.items() if k != "output"} | {"output_tail": r.get("output", "")[-400:]}
                  for r in rs] for n, rs in runs.items()},
    )
    (out_dir / "process.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    table = markdown(result)
    (out_dir / "process.md").write_text(table)
    print()
    print(table)
    return 0 if result["loss_check"]["ok"] else 3


if __name__ == "__main__":
    raise SystemExit(main())
