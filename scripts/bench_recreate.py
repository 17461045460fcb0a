"""The "sky on the ground" failure, measured: plain vs semantic NST in the lost-painting pipeline.

For each painting with a committed label map (``examples/painting_labels/``), one
``nstjax.recreate.recreate`` run of the shared sketch (``wild_vegetation_sketch.png``):
stage 1 by exemplar-guided NST from synthetic landscape pairs (written to a temp
folder, ``nstjax.labels.write_synth_dataset``), then *both* plain and semantic NST
of the same photo. Reported per painting: the sky-on-ground score of each (the
share of ground-class pixels whose CIELAB colour is nearer one of the painting's
sky colour clusters than its ground clusters, ``nstjax.recreate.sky_on_ground_score``),
the times, and the settings; a table on stdout and a JSON file.

A first row runs the synthetic two-class case of the tests (a blue-sky/green-grass scene, a painting with
a yellow sky over a violet field) where the failure is plain to see.

Weights: ``--weights random`` (the default here, and all this machine has) gives
seeded random VGG features: the runs exercise the pipeline and measure where
colours go, they are NOT real style transfer. A painting whose labels have no
ground class (The Shipwreck: sky, cloud, sea) has no score.

    python scripts/bench_recreate.py --size 128 --steps 40 --json bench_recreate.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import lscpu, machine  # noqa: E402

SHARED = ROOT.parent / "shared" / "images"
LABELS = ROOT / "examples" / "painting_labels"


def synthetic_row(args) -> dict:
    """The two-class case of tests/test_recreate.py at 48x64: a blue-sky/green-grass sketch and exemplar, a
    painting with a yellow sky over a violet field; the engine tests' shallow layers (relu1_1-relu3_1)."""
    import numpy as np

    from nstjax.io.images import save_image
    from nstjax.labels import load_palette, save_label_map
    from nstjax.nst.config import preset
    from nstjax.recreate import recreate

    pal = load_palette("landscape")
    sky, grass = pal.index("sky"), pal.index("grass")

    def scene(shape, top, bottom, seed, noise=0.08):
        labels = np.full(shape, grass, np.int32)
        labels[: shape[0] // 2] = sky
        img = np.where((labels == sky)[..., None], top, bottom).astype(np.float32)
        rng = np.random.default_rng(seed)
        return labels, np.clip(img + noise * rng.standard_normal(img.shape), 0, 1).astype(np.float32)

    config = preset("gatys", size=64, steps=args.steps, tolerance=0.0, pooling="max",
                    content_layers=(("relu2_2", 1.0),),
                    style_layers=(("relu1_1", 1.0), ("relu2_1", 1.0), ("relu3_1", 0.5)))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for sub in ("ex/labels", "ex/photos"):
            (root / sub).mkdir(parents=True)
        labels, photo = scene((64, 64), (0.5, 0.65, 0.9), (0.45, 0.7, 0.3), 1)
        save_label_map(root / "ex/labels/a.png", labels, pal, kind="color")
        save_image(root / "ex/photos/a.png", photo)
        plabels, painting = scene((80, 80), (0.95, 0.8, 0.2), (0.2, 0.15, 0.5), 3, noise=0.1)
        t0 = time.perf_counter()
        result = recreate(scene((48, 64), 0, 0, 0)[0], painting, None, painting_labels=plabels, exemplars=root / "ex",
                          weights=args.weights, config=config, seed=args.seed, compare=True)  # fmt: skip
    return {
        "painting": "synthetic (2 classes, 48x64, relu1_1-relu3_1)",
        "plain": result.scores.get("plain"),
        "semantic": result.scores.get("semantic"),
        "note": None,
        "fallbacks": result.record["fallbacks"]["painting"],
        "times_s": result.record["times_s"],
        "seconds": time.perf_counter() - t0,
        "weights": result.record["weights"]["source"],
        "shape_hw": result.record["settings"]["shape_hw"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sketch", type=Path, default=SHARED / "wild_vegetation_sketch.png")
    parser.add_argument("--paintings", default="starry_night,the_scream,shipwreck")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--weights", default="random")
    parser.add_argument("--exemplars", type=int, default=24, help="synthetic pairs written for stage 1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages-dir", type=Path, default=None, help="keep each run's stages here")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--no-synthetic", action="store_true", help="skip the synthetic two-class row")
    args = parser.parse_args()

    import warnings

    from nstjax.labels import write_synth_dataset
    from nstjax.recreate import recreate

    warnings.simplefilter("ignore")  # fallbacks and random-weight warnings are recorded in each run's JSON
    info = lscpu()
    rows = [] if args.no_synthetic else [synthetic_row(args)]
    with tempfile.TemporaryDirectory() as tmp:
        exemplars = write_synth_dataset(Path(tmp) / "synth", count=args.exemplars, size=128, seed=args.seed).directory
        for name in filter(None, args.paintings.split(",")):
            painting = next(SHARED.glob(f"{name}.*"))
            labels = LABELS / f"{name}.png"
            stages = (args.stages_dir / name) if args.stages_dir else Path(tmp) / name
            t0 = time.perf_counter()
            result = recreate(
                args.sketch, painting, None, painting_labels=labels, exemplars=exemplars, painter="semantic-nst",
                size=args.size, steps=args.steps, weights=args.weights, seed=args.seed, stages=stages, compare=True,
            )  # fmt: skip
            record = result.record
            rows.append(
                {
                    "painting": name,
                    "photo": result.scores.get("photo"),
                    "plain": result.scores.get("plain"),
                    "semantic": result.scores.get("semantic"),
                    "patches": {k: result.patch_scores.get(k) for k in ("photo", "plain", "semantic")},
                    "note": record["scores"]["note"],
                    "fallbacks": record["fallbacks"]["painting"],
                    "times_s": record["times_s"],
                    "seconds": time.perf_counter() - t0,
                    "weights": record["weights"]["source"],
                    "shape_hw": record["settings"]["shape_hw"],
                }
            )
            print(f"done {name} in {rows[-1]['seconds']:.0f} s", file=sys.stderr, flush=True)

    def pct(v):
        return "n/a" if v is None else f"{100 * v:5.1f}%"

    print(f"sky on the ground (share of ground pixels coloured like the painting's sky; CIELAB, 4 k-means "
          f"centres per side); {args.steps} steps per stage, weights {args.weights}; paintings: sketch "
          f"{args.sketch.name} at {args.size} px, stage 1 from {args.exemplars} synthetic exemplar pairs")  # fmt: skip
    width = max(14, *(len(r["painting"]) for r in rows)) if rows else 14
    print("each cell: colour score / patch score (sky_on_ground_patch_score: colour and texture of 12 px patches); "
          "recreate's final painting is the semantic NST stage")
    print(f"{'painting':<{width}} {'photo (unpainted)':>18} {'plain NST':>16} {'semantic NST':>16}  stage times (s)")
    for r in rows:
        times = ", ".join(f"{k} {v:.0f}" for k, v in r["times_s"].items())
        patches = r.get("patches", {})
        cells = [f"{pct(r.get(k))} / {pct(patches.get(k))}" for k in ("photo", "plain", "semantic")]
        print(f"{r['painting']:<{width}} {cells[0]:>18} {cells[1]:>16} {cells[2]:>16}  {times}"
              + (f"  ({r['note']})" if r["note"] else ""))  # fmt: skip
    m = machine()
    print(f"cpu: {m['cpu']}, {m['cores']} cores, load average {m['load_average'][0]:.1f}")
    out = {
        "benchmark": "bench_recreate",
        "settings": {"sketch": str(args.sketch), "size": args.size, "steps": args.steps, "weights": args.weights,
                     "exemplars": args.exemplars, "seed": args.seed, "painter_compare": ["plain", "semantic"]},  # fmt: skip
        "random_weights_note": "random VGG features: not real style transfer" if args.weights == "random" else None,
        "results": rows,
        "machine": {**m, "cpu_flags": info.get("Flags", "")},
    }
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
