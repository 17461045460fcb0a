"""Quality at a fixed budget of evaluations: nstjax against the PyTorch reference.

For each (content, style) pair, at ``--size`` (longest side) and on the same
seeded random VGG-19 weights, four runs from the content image, each allowed
``--evals`` loss-and-gradient evaluations:

* nstjax L-BFGS (``optax.lbfgs``, memory 10, zoom line search) and Adam
  (``optax.adam``, lr 0.02), through the engine ``run_stylize`` uses (the jitted
  chunk of steps), one step per call so the evaluations of each step are known;
* the reference L-BFGS (``torch.optim.LBFGS``, history 10, strong Wolfe) and
  Adam (``torch.optim.Adam``, lr 0.02).

Reported: the content, style and TV terms and the total of each final iterate,
all evaluated by the same function (nstjax's objective in float32; the
reference's own value is kept as a cross-check), and loss-vs-evaluations
curves (CSV and JSON; a PNG too if matplotlib is installed). The curves give,
after each number of evaluations, the loss known at that point (nstjax: the
loss of each step's starting point; reference: every closure call) and the
lowest so far.

The weights are random (no ImageNet weights can be downloaded here, and no
result needing them is claimed): the losses measure how well each optimiser
minimises the same objective, not how good the pictures look.

    python scripts/bench_quality.py --size 128 --evals 100 --out-dir bench_quality
"""

from __future__ import annotations

import argparse
import csv
import functools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bc  # noqa: E402

DEFAULT_PAIRS = "chelsea.png:starry_night.jpg,coffee.png:the_scream.jpg"


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="longest side of content and style")
    parser.add_argument("--evals", type=int, default=100, help="evaluation budget per run")
    parser.add_argument("--pairs", default=DEFAULT_PAIRS,
                        help="content:style file names in ../shared/images (generated images when missing)")
    parser.add_argument("--optimizers", default="lbfgs,adam")
    parser.add_argument("--out-dir", default="bench_quality")
    parser.add_argument("--save-images", action="store_true", help="also write the final images (PNG)")
    parser.add_argument("--bf16", action="store_true",
                        help="also run nstjax in bfloat16 (final losses still evaluated in float32)")
    parser.add_argument("--what-if", action="store_true",
                        help="also run nstjax L-BFGS with the line search growing steps 10x per trial (a proposed fix)")
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from nstjax.io import images as nst_images
    from nstjax.nst.engine import objective

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params, preprocessing = bc.random_params()
    settings = bc.Settings()
    evaluate = jax.jit(objective, static_argnames=("spec",))
    result: dict[str, Any] = dict(machine=bc.machine(), size=args.size, budget=args.evals,
                                  settings=settings,
                                  weights="random (vgg.init_params(0)), torch preprocessing", runs=[])
    rows = []
    csv_rows = []
    for pair in args.pairs.split(","):
        content_name, style_name = pair.split(":")
        content, style, what = bc.load_pair(args.size, content_name, style_name)
        print(f"{what}: content {content.shape[1]}x{content.shape[0]}, style {style.shape[1]}x{style.shape[0]}", flush=True)
        for optimizer in args.optimizers.split(","):
            ours = run_nstjax(content, style, params, preprocessing, optimizer, args.evals, settings)
            theirs = run_reference(content, style, params, preprocessing, optimizer, args.evals, settings)
            spec, targets, lw = ours["spec"], ours["targets"], ours["loss_weights"]  # float32: the common judge
            runs = [("nstjax", ours), ("reference", theirs)]
            if args.bf16:
                runs.append(("nstjax-bfloat16", run_nstjax(content, style, params, preprocessing, optimizer,
                                                            args.evals, settings, dtype="bfloat16")))
            if args.what_if and optimizer == "lbfgs":
                runs.append(("nstjax+increase10", run_nstjax(content, style, params, preprocessing, optimizer,
                                                              args.evals, settings, what_if=True)))
            for impl, run in runs:
                total, terms = evaluate(jnp.asarray(run["image"])[None], params, targets, lw, spec=spec)
                clipped_total, _ = evaluate(jnp.clip(jnp.asarray(run["image"]), 0, 1)[None], params, targets, lw, spec=spec)
                losses = [v for _, v in run["curve"]]
                entry = dict(
                    pair=what, impl=impl, optimizer=optimizer, evaluations=run["evaluations"], steps=run["steps"],
                    seconds=run["seconds"], content=float(terms["content"][0]), style=float(terms["style"][0]),
                    tv=float(terms["tv"][0]), total=float(total), total_clipped=float(clipped_total),
                    initial=losses[0], best_seen=float(np.nanmin(losses)),
                    curve=run["curve"],
                )
                if impl == "reference":
                    entry["reference_own_total"] = theirs["reference_final"]["total"]
                result["runs"].append(entry)
                rows.append(entry)
                best = np.inf
                for e, v in run["curve"]:
                    best = min(best, v)
                    csv_rows.append((what, impl, optimizer, e, v, best))
                steps = "" if entry["steps"] is None else f", {entry['steps']} steps"
                print(f"  {impl:9s} {optimizer:5s}: {entry['evaluations']} evals{steps}, {entry['seconds']:.1f} s: "
                      f"total {entry['total']:.5g} (content {entry['content']:.4g}, style {entry['style']:.4g}) "
                      f"from {entry['initial']:.5g}", flush=True)
                if args.save_images:
                    stem = f"{Path(content_name).stem}_{Path(style_name).stem}_{impl}_{optimizer}.png"
                    nst_images.save_image(out_dir / stem, np.clip(run["image"], 0, 1))
            bc.write_json(out_dir / "bench_quality.json", result)

    with open(out_dir / "curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["pair", "impl", "optimizer", "evaluations", "loss", "best_so_far"])
        writer.writerows(csv_rows)
    bc.write_json(out_dir / "bench_quality.json", result)
    plot(result, out_dir / "curves.png")

    print()
    print("| pair | optimizer | implementation | evaluations | content | style | total | total (clipped to [0, 1]) | start |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['pair']} | {r['optimizer']} | {r['impl']} | {r['evaluations']} | {r['content']:.4g} | "
              f"{r['style']:.4g} | {r['total']:.4g} | {r['total_clipped']:.4g} | {r['initial']:.4g} |")
    print(f"\nwrote {out_dir}/bench_quality.json, {out_dir}/curves.csv")
    return 0


def plot(result: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no PNG; the curves are in curves.csv)")
        return
    pairs = sorted({r["pair"] for r in result["runs"]})
    fig, axes = plt.subplots(1, len(pairs), figsize=(6 * len(pairs), 4), squeeze=False)
    for ax, pair in zip(axes[0], pairs):
        for r in (r for r in result["runs"] if r["pair"] == pair):
            e, v = np.asarray(r["curve"]).T
            ax.plot(e, np.minimum.accumulate(v), label=f"{r['impl']} {r['optimizer']}",
                    linestyle="-" if r["impl"] == "nstjax" else "--")
        ax.set_yscale("log")
        ax.set_xlabel("evaluations")
        ax.set_ylabel("lowest loss so far")
        ax.set_title(pair)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
