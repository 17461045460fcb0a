"""Train steps per second of nstjax's SPADE and pix2pix against their PyTorch references, in one interleaved run.

Both sides train the same networks from the same kind of initialisation on the
same random batch (label maps of blocky regions, images in [-1, 1]):

* SPADE: nstjax's jitted step (``nstjax.sketch2photo.train_step_fn``) against
  references/spade_torch.py's ``SPADETrainer.run_one_step`` (NVlabs' structure,
  eager PyTorch).
* pix2pix: nstjax's jitted step against references/pix2pix_torch.py's
  ``Pix2Pix.optimize_parameters`` (the authors' structure, eager PyTorch): the
  ``UnetGenerator`` on the one-hot label map (same depth and dropout blocks) and
  the conditional PatchGAN built with ``norm="instance"``, the discriminator
  nstjax trains (the authors' pix2pix uses batch norm there; docs/sketch2photo.md).

Timing rounds alternate between all contenders (each round runs every one once,
after ``--settle-steps`` untimed steps of it: the first step after another
program's pays for the memory that program freed), so a busy machine slows them
alike; the median round is reported, and each nstjax
row gets ``vs_reference``: its steps/s over its model's reference at the
reference's fastest thread count (``--torch-threads``). Also: nstjax's first call
(compile) time and XLA's FLOP count of one step (``cost_analysis``), from which
docs/sketch2photo.md estimates training costs.

CPU (here):   .venv/bin/python scripts/bench_sketch2photo.py --size 64 --batch 2 --steps 1 --rounds 3
GPU:          python scripts/bench_sketch2photo.py --size 256 --batch 8 --ngf 64 --ndf 64 --out gan.json
              (the bench_device.sh hook contract: --out FILE.json [--smoke], rows with model/size/batch/dtype/steps_per_s)

``--no-torch``: nstjax only; ``--no-pix2pix``: SPADE only; ``--smoke``: one round
of one step (numbers mean nothing). The references run in float32 only (with
``--dtype bfloat16`` only nstjax is timed).

Prints a table and a JSON object with the machine (CPU model and flags, load
average from ``uptime``; other jobs share this CPU), versions and every number.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "references"))
sys.path.insert(0, str(ROOT / "scripts"))

from nstjax.models.pix2pix import pix2pix_dropout_blocks  # noqa: E402
from nstjax.weights import random_weights  # noqa: E402
from nstjax.sketch2photo import (  # noqa: E402
    Pix2PixConfig,
    Sketch2PhotoConfig,
    SpadeConfig,
    init_state,
    train_step_fn,
    vgg_loss_params,
)
from nstjax.train import TrainSettings, data_mesh, replicate, shard_batch  # noqa: E402

K = 17


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "n/a"


def batch_arrays(batch: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    cell = max(1, size // 8)
    labels = np.stack([np.kron(rng.integers(0, K, (size // cell, size // cell)), np.ones((cell, cell), np.int32))
                       for _ in range(batch)]).astype(np.int32)  # fmt: skip
    real = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
    return labels, real


def jax_runner(config: Sketch2PhotoConfig, batch: int, vgg):
    mesh = data_mesh()
    state = replicate(init_state(config, K, 10**6, 0), mesh)
    labels, real = batch_arrays(batch, config.size)
    data = shard_batch({"labels": labels, "image": real}, mesh)
    vgg_params = None
    if config.model == "spade":  # as nstjax sketch2photo train passes them
        vgg_params = replicate(jax.tree.map(jnp.asarray, vgg_loss_params(vgg.params, config)), mesh)
    step = train_step_fn(config, K, vgg.preprocessing)
    t = time.perf_counter()
    compiled = step.lower(state, data, vgg_params).compile()  # what the first call would compile
    compile_s = time.perf_counter() - t
    flops = None
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops = float(cost.get("flops", 0.0)) or None
    except Exception:  # noqa: BLE001 - cost analysis is optional
        pass
    holder = {"state": state}
    holder["state"], m = step(holder["state"], data, vgg_params)  # warm-up (in-memory cache hit)
    jax.block_until_ready(m)

    def run(n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            holder["state"], m = step(holder["state"], data, vgg_params)
        jax.block_until_ready(m)
        return time.perf_counter() - t

    return run, compile_s, flops


def torch_settings(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    # XLA:CPU flushes denormals to zero; PyTorch does not by default, and the references' inits (NVlabs' Glorot
    # with gain 0.02, the authors' N(0, 0.02)) make many activations tiny. Flushing them is the fair comparison.
    torch.set_flush_denormal(True)


def timed_torch(one_step, device: str, threads: int):
    """``run(n)``: seconds for ``n`` calls of ``one_step`` on ``threads`` threads (after one warm-up call)."""
    import torch

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    one_step()
    sync()

    def run(n: int) -> float:
        torch.set_num_threads(threads)  # the contenders interleave with different thread counts
        sync()
        t = time.perf_counter()
        for _ in range(n):
            one_step()
        sync()
        return time.perf_counter() - t

    return run


def torch_batch(batch: int, size: int, device: str):
    """The batch of :func:`batch_arrays` as the references take it: one-hot labels and images, NCHW float32."""
    import torch

    labels, real = batch_arrays(batch, size)
    seg = torch.from_numpy(np.eye(K, dtype=np.float32)[labels].transpose(0, 3, 1, 2).copy()).to(device)
    x = torch.from_numpy(real.transpose(0, 3, 1, 2).copy()).to(device)
    return seg, x


def torch_runner(config: Sketch2PhotoConfig, batch: int, vgg, device: str, threads: int):
    import spade_torch as ref
    import torch

    torch_settings(threads)
    s = config.spade
    torch.manual_seed(0)
    g = ref.init_weights(ref.SPADEGenerator(K, s.ngf, s.n_up, config.size, s.hidden, s.norm, s.use_vae, s.z_dim))
    e = ref.init_weights(ref.ConvEncoder(s.ngf, s.enc_size, s.z_dim)) if s.use_vae else None
    d = ref.init_weights(ref.MultiscaleDiscriminator(K + 3, s.ndf, s.num_d, s.n_layers_d + 1))
    nets = [n.to(device).train() for n in (g, e, d) if n is not None]
    weights = dict(s.vgg_layers)
    names = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    trainer = ref.SPADETrainer(nets[0], nets[-1], nets[1] if s.use_vae else None,
                               ref.VGG19(vgg.params, vgg.preprocessing).to(device),
                               vgg_weights=[weights.get(n, 0.0) for n in names], lr=2 * s.lr_g)  # fmt: skip
    seg, x = torch_batch(batch, config.size, device)
    return timed_torch(lambda: trainer.run_one_step(seg, x), device, threads)


def pix2pix_torch_runner(config: Sketch2PhotoConfig, batch: int, device: str, threads: int):
    """references/pix2pix_torch.py's train step on the networks nstjax's pix2pix trains (labels in, K classes)."""
    import pix2pix_torch as ref
    import torch

    torch_settings(threads)
    p = config.pix2pix
    torch.manual_seed(0)
    g = ref.init_weights(ref.UnetGenerator(K, 3, p.depth, ngf=p.ngf, dropout_blocks=p.dropout_blocks))
    # instance norm: nstjax's pix2pix PatchGAN (the authors' is batch norm; the parity tests compare this one)
    d = ref.init_weights(ref.patch_discriminator(K + 3, ndf=p.ndf, n_layers=p.n_layers_d, norm="instance"))
    model = ref.Pix2Pix(g.to(device), d.to(device), lr=p.lr, beta1=p.beta1, lambda_L1=p.lambda_l1)
    seg, x = torch_batch(batch, config.size, device)
    model.set_input(seg, x)
    return timed_torch(model.optimize_parameters, device, threads)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--ngf", type=int, default=16)
    p.add_argument("--ndf", type=int, default=16)
    p.add_argument("--hidden", type=int, default=128, help="SPADE's shared-conv channels (the paper's 128)")
    p.add_argument("--vae", action="store_true", help="with the image encoder")
    p.add_argument("--steps", type=int, default=3, help="steps per timing round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--settle-steps", type=int, default=1,
                   help="untimed steps of each contender before its timed ones in every round")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-pix2pix", action="store_true")
    p.add_argument("--torch-threads", default="1,all",
                   help="comma-separated thread counts for the reference ('all' = every core); on a shared, busy CPU "
                        "one thread is often faster (OpenMP threads spin while waiting for a core)")
    p.add_argument("--smoke", action="store_true", help="one round of one step (bench_device.sh --smoke)")
    p.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = p.parse_args(argv)
    if args.smoke:
        args.steps, args.rounds, args.settle_steps = 1, 1, 0

    import _bench_common as bc

    vgg = random_weights(0)  # the speed does not depend on the weights' values
    settings = TrainSettings(steps=10**6, batch_size=args.batch)
    spade = Sketch2PhotoConfig(model="spade", size=args.size, dtype=args.dtype, train=settings,
                               spade=SpadeConfig(ngf=args.ngf, ndf=args.ndf, hidden=args.hidden, use_vae=args.vae))
    pix = Sketch2PhotoConfig(model="pix2pix", size=args.size, dtype=args.dtype, train=settings,
                             pix2pix=Pix2PixConfig(ngf=args.ngf, ndf=args.ndf))  # fmt: skip
    device = "cpu"
    try:
        import torch

        device = "cuda" if torch.cuda.is_available() and jax.default_backend() == "gpu" else "cpu"
    except ImportError:
        args.no_torch = True

    import os

    use_torch = not args.no_torch and args.dtype == "float32"  # the references run in float32 only
    threads = [os.cpu_count() if spec.strip() == "all" else int(spec) for spec in str(args.torch_threads).split(",")]
    rows = []
    runners = {}
    run, compile_s, flops = jax_runner(spade, args.batch, vgg)
    runners["spade/nstjax"] = run
    rows.append({"model": "spade", "impl": "nstjax", "compile_s": round(compile_s, 2), "flops_per_step": flops})
    if use_torch:
        for n in threads:
            impl = f"torch-{n}t"
            runners[f"spade/{impl}"] = torch_runner(spade, args.batch, vgg, device, n)
            rows.append({"model": "spade", "impl": impl, "torch_threads": n})
    if not args.no_pix2pix:
        run, compile_s, flops = jax_runner(pix, args.batch, vgg)
        runners["pix2pix/nstjax"] = run
        rows.append({"model": "pix2pix", "impl": "nstjax", "compile_s": round(compile_s, 2), "flops_per_step": flops})
        if use_torch:
            for n in threads:
                impl = f"torch-{n}t"
                runners[f"pix2pix/{impl}"] = pix2pix_torch_runner(pix, args.batch, device, n)
                rows.append({"model": "pix2pix", "impl": impl, "torch_threads": n})
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():  # interleaved: each round runs every contender once
            # Untimed first (as bench_speed.py's --settle-calls): the first step after another program's
            # pays for the memory that program freed, so each side is timed in its steady state.
            if args.settle_steps:
                run(args.settle_steps)
            times[name].append(run(args.steps) / args.steps)
    for row in rows:
        sec = statistics.median(times[f"{row['model']}/{row['impl']}"])
        row.update(size=args.size, batch=args.batch, dtype=args.dtype, seconds_per_step=round(sec, 4),
                   steps_per_s=round(1.0 / sec, 3))  # fmt: skip
        if row.get("flops_per_step"):
            row["gflops_per_s"] = round(row["flops_per_step"] / sec / 1e9, 2)
    for model in ("spade", "pix2pix"):  # against each model's reference at its fastest thread count
        torch_rows = [r for r in rows if r["model"] == model and r["impl"].startswith("torch")]
        if not torch_rows:
            continue
        best = min(r["seconds_per_step"] for r in torch_rows)
        for r in rows:
            if r["model"] == model and r["impl"] == "nstjax":
                r["speedup_vs_best_torch"] = r["vs_reference"] = round(best / r["seconds_per_step"], 2)
    drops = pix.pix2pix.dropout_blocks
    drops = pix2pix_dropout_blocks(pix.pix2pix.depth) if drops is None else drops  # None: the paper's depth - 5
    result = {
        "rows": rows,
        "settings": {**vars(args), "out": str(args.out) if args.out else None, "hidden": args.hidden,
                     "n_up": spade.spade.n_up, "vgg_layers": [n for n, _ in spade.spade.vgg_layers],
                     "pix2pix_depth": pix.pix2pix.depth, "pix2pix_dropout_blocks": drops,
                     "pix2pix_reference_discriminator_norm": "instance", "torch_device": device},
        "machine": bc.machine(),
        "uptime": uptime(),
    }  # fmt: skip
    header = (f"{'model':8} {'impl':9} {'size':>4} {'batch':>5} {'s/step':>8} {'steps/s':>8} {'vs ref':>7} "
              f"{'compile s':>9} {'GFLOP/step':>10}")  # fmt: skip
    print(header)
    for r in rows:
        gf = f"{r['flops_per_step'] / 1e9:.1f}" if r.get("flops_per_step") else "-"
        ratio = f"{r['vs_reference']:.2f}x" if r.get("vs_reference") else "-"
        print(f"{r['model']:8} {r['impl']:9} {r['size']:>4} {r['batch']:>5} {r['seconds_per_step']:>8.3f} "
              f"{r['steps_per_s']:>8.2f} {ratio:>7} {r.get('compile_s', '-')!s:>9} {gf:>10}")  # fmt: skip
    print(f"machine: {result['machine']['cpu']} flags {result['machine']['cpu_flags']}; {result['uptime']}")
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    from nstjax.launch import reexec_with_memory_settings

    reexec_with_memory_settings()  # as the nstjax command runs (both sides of the comparison inherit it)
    sys.exit(main())
