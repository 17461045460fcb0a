"""CycleGAN train steps per second: nstjax against the PyTorch reference (references/cyclegan_torch.py).

One process, both implementations, interleaved: every repetition runs ``--steps``
train steps of each (nstjax then the reference, the order reversed every other
repetition), each after ``--settle-steps`` untimed ones (the first step after the
other side's pays for the memory it freed), so load from other processes hits
both; the median over
repetitions is reported. Default model: the paper's (ResNet generator, ngf 64,
9 blocks; 70x70 PatchGAN, ndf 64; LSGAN, cycle 10, identity 0.5, 50-image pools),
batch 1.

* nstjax: :func:`nstjax.cyclegan.train_step_fn`, the jitted step ``fit`` runs
  (state and batch on the first device); its first call (trace, compile, one step)
  is timed apart.
* reference: ``CycleGAN.optimize_parameters`` as the authors' code runs it, in a
  worker process driven over a pipe (so neither framework's idle threads compete
  with the other's work), on the GPU when JAX's backend is one and torch sees
  CUDA, else the CPU with ``--torch-threads`` threads (default: all cores) and
  ``OMP_WAIT_POLICY=PASSIVE`` (``--omp-wait-policy``: OpenMP's default, spinning
  idle threads, made PyTorch up to 6x slower on this shared 2-core machine).

Achieved GFLOP/s come from a FLOP model (:func:`step_flops`): the convolutions'
multiply-adds of the six generator passes (x3: forward, input gradient, weight
gradient) and of the discriminator passes (G step: 2 passes x2, forward and input
gradient; D step: 4 passes x3), 2 FLOPs each. Element-wise work is not counted.

    python scripts/bench_cyclegan.py --sizes 128,256 --repeats 3 --out /tmp/bench/cyclegan.json
    python scripts/bench_cyclegan.py --smoke --out /tmp/cyclegan_smoke.json   # end-to-end check, tiny

Works on CPU, GPU or TPU (whatever ``jax.devices()[0]`` is); on an accelerator add
``--dtypes float32,bfloat16`` (nstjax's bfloat16 compute; the reference stays float32).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "references"))


# --------------------------------------------------------------------------- FLOP model


def _conv_macs(h: int, w: int, k: int, c_in: int, c_out: int) -> int:
    return h * w * k * k * c_in * c_out


def generator_macs(size: int, ngf: int = 64, blocks: int = 9) -> int:
    """Multiply-adds of one ResNet generator pass on a ``size`` x ``size`` image (transposed
    convolutions counted as PyTorch runs them: input pixels x k^2 x Cin x Cout)."""
    s = size
    macs = _conv_macs(s, s, 7, 3, ngf)
    macs += _conv_macs(s // 2, s // 2, 3, ngf, 2 * ngf) + _conv_macs(s // 4, s // 4, 3, 2 * ngf, 4 * ngf)
    macs += blocks * 2 * _conv_macs(s // 4, s // 4, 3, 4 * ngf, 4 * ngf)
    macs += _conv_macs(s // 4, s // 4, 3, 4 * ngf, 2 * ngf) + _conv_macs(s // 2, s // 2, 3, 2 * ngf, ngf)
    return macs + _conv_macs(s, s, 7, ngf, 3)


def discriminator_macs(size: int, ndf: int = 64, n_layers: int = 3) -> int:
    """Multiply-adds of one 70x70 PatchGAN pass (4x4 kernels, padding 1)."""
    macs, s, c = 0, size, 3
    for n in range(n_layers):
        s = (s + 2 - 4) // 2 + 1
        width = ndf * min(2**n, 8)
        macs += _conv_macs(s, s, 4, c, width)
        c = width
    s = s - 1
    width = ndf * min(2**n_layers, 8)
    macs += _conv_macs(s, s, 4, c, width)
    return macs + _conv_macs(s - 1, s - 1, 4, width, 1)


def step_flops(size: int, batch: int = 1, ngf: int = 64, blocks: int = 9, ndf: int = 64) -> float:
    """FLOPs of one CycleGAN train step (model in the module docstring)."""
    g, d = generator_macs(size, ngf, blocks), discriminator_macs(size, ndf)
    return 2.0 * batch * (6 * 3 * g + 2 * 2 * d + 4 * 3 * d)


# --------------------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    """What ran: the CPU, its speed-relevant flags and the versions (_bench_common.machine), plus the device."""
    import jax

    import _bench_common as bc

    device = jax.devices()[0]
    try:
        uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        uptime = "n/a"
    return {**bc.machine(), "device_kind": getattr(device, "device_kind", ""),
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "uptime": uptime}  # fmt: skip


# --------------------------------------------------------------------------- workloads


class NstjaxSteps:
    def __init__(self, size: int, batch: int, dtype: str, ngf: int, blocks: int, ndf: int, seed: int = 0):
        import jax
        import jax.numpy as jnp

        from nstjax.cyclegan import CycleGANConfig, ModelConfig, init_state, train_step_fn
        from nstjax.train import TrainSettings

        config = CycleGANConfig(model=ModelConfig(ngf=ngf, ndf=ndf, blocks=blocks, size=size), dtype=dtype,
                                train=TrainSettings(steps=10**6, batch_size=batch))  # fmt: skip
        self.name = "nstjax" if dtype == "float32" else f"nstjax-{dtype}"
        self.jax = jax
        rng = np.random.default_rng(seed)
        device = jax.devices()[0]
        self.batch = {k: jax.device_put(jnp.asarray(rng.uniform(-1, 1, (batch, size, size, 3)), jnp.float32), device)
                      for k in ("a", "b")}  # fmt: skip
        self.state = jax.device_put(init_state(config, 10**6, 5 * 10**5), device)
        self.fn = train_step_fn(config.model, config.loss, config.optim, config.dtype)
        start = time.perf_counter()
        self(1)  # trace, compile and run one step
        self.first_call_s = time.perf_counter() - start

    def __call__(self, steps: int) -> None:
        for _ in range(steps):
            self.state, metrics = self.fn(self.state, self.batch)
        self.jax.block_until_ready((self.state, metrics))
        return None  # CPU time: this process's


class ReferenceSteps:
    """The reference, in this process (the worker runs it)."""

    def __init__(self, size: int, batch: int, ngf: int, blocks: int, ndf: int, device: str, seed: int = 0):
        import cyclegan_torch as ref
        import torch

        torch.manual_seed(seed)
        nets = [ref.init_weights(ref.ResnetGenerator(ngf=ngf, n_blocks=blocks)).to(device) for _ in range(2)]
        nets += [ref.init_weights(ref.NLayerDiscriminator(ndf=ndf)).to(device) for _ in range(2)]
        self.model = ref.CycleGAN(*nets)
        self.model.criterionGAN.to(device)
        rng = np.random.default_rng(seed)
        self.model.set_input(*(torch.tensor(rng.uniform(-1, 1, (batch, 3, size, size)), dtype=torch.float32,
                                            device=device) for _ in range(2)))  # fmt: skip
        self.sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        self.name = "reference"
        start = time.perf_counter()
        self(1)
        self.first_call_s = time.perf_counter() - start

    def __call__(self, steps: int) -> None:
        for _ in range(steps):
            self.model.optimize_parameters()
        self.sync()
        return None


class ReferenceWorker:
    """The reference in a worker process (this script with ``--worker``), driven over a pipe.

    A process of its own, so neither framework's idle threads compete with the other's
    work, and so PyTorch's OpenMP settings (``OMP_WAIT_POLICY``) apply from its start.
    """

    name = "reference"

    def __init__(self, size: int, args, torch_device: str):
        env = {**os.environ, "OMP_WAIT_POLICY": args.omp_wait_policy, "JAX_PLATFORMS": "cpu"}
        command = [sys.executable, __file__, "--worker", "--sizes", str(size), "--batch", str(args.batch),
                   "--ngf", str(args.ngf), "--ndf", str(args.ndf), "--blocks", str(args.blocks),
                   "--torch-device", torch_device, "--torch-threads", str(args.torch_threads)]  # fmt: skip
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        hello = self._read()
        self.first_call_s = hello["first_call_s"]
        self.threads = hello["threads"]

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the reference worker stopped")
        return json.loads(line)

    def __call__(self, steps: int) -> float:
        """Runs ``steps`` steps; returns the worker's CPU seconds (all its threads)."""
        self.proc.stdin.write(f"{steps}\n")
        self.proc.stdin.flush()
        return self._read()["cpu_seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def worker(args) -> None:
    import torch

    if args.torch_device == "cpu":
        torch.set_num_threads(args.torch_threads)
    steps = ReferenceSteps(int(args.sizes), args.batch, args.ngf, args.blocks, args.ndf, args.torch_device)
    print(json.dumps({"first_call_s": steps.first_call_s, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        n = int(line)
        start, cpu = time.perf_counter(), time.process_time()
        steps(n)
        print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}),
              flush=True)  # fmt: skip


def bench_size(size: int, args, torch_device: str) -> list[dict[str, Any]]:
    workloads: list[Any] = []
    for dtype in args.dtypes.split(","):
        workloads.append(NstjaxSteps(size, args.batch, dtype, args.ngf, args.blocks, args.ndf))
        print(f"[{size} px] {workloads[-1].name}: first call (trace, compile, one step) "
              f"{workloads[-1].first_call_s:.1f} s", flush=True)  # fmt: skip
    if not args.no_reference:
        workloads.append(ReferenceWorker(size, args, torch_device))
        print(f"[{size} px] reference: first step {workloads[-1].first_call_s:.1f} s "
              f"({workloads[-1].threads} threads)", flush=True)  # fmt: skip
    times: dict[str, list[float]] = {w.name: [] for w in workloads}
    cpu: dict[str, list[float]] = {w.name: [] for w in workloads}
    for rep in range(args.repeats):
        order = workloads if rep % 2 == 0 else workloads[::-1]
        for w in order:
            # Untimed first (as bench_speed.py's --settle-calls): the first step after another program's
            # pays for the memory that program freed, so each side is timed in its steady state.
            if args.settle_steps:
                w(args.settle_steps)
            start, cpu_start = time.perf_counter(), time.process_time()
            worker_cpu = w(args.steps)
            times[w.name].append((time.perf_counter() - start) / args.steps)
            # CPU seconds of every thread of the process that ran the steps: less sensitive to other
            # processes' load than wall time (it counts work, not waiting for a core).
            cpu[w.name].append((worker_cpu if worker_cpu is not None else time.process_time() - cpu_start) / args.steps)
        print(f"[{size} px] repetition {rep + 1}: " + ", ".join(f"{n} {t[-1]:.3f} s/step" for n, t in times.items()),
              flush=True)  # fmt: skip
    for w in workloads:
        if isinstance(w, ReferenceWorker):
            w.close()
    flops = step_flops(size, args.batch, args.ngf, args.blocks, args.ndf)
    ref_rate = 1.0 / statistics.median(times["reference"]) if "reference" in times else None
    rows = []
    for w in workloads:
        seconds = statistics.median(times[w.name])
        rows.append({
            "model": f"cyclegan resnet{args.blocks} ngf{args.ngf} ({w.name})",
            "impl": w.name,
            "size": size,
            "batch": args.batch,
            "dtype": "float32" if w.name in ("nstjax", "reference") else w.name.split("-", 1)[1],
            "steps_per_s": round(1.0 / seconds, 4),
            "seconds_per_step": [round(t, 4) for t in times[w.name]],
            "cpu_seconds_per_step": [round(t, 4) for t in cpu[w.name]],
            "cpu_vs_reference": (round(statistics.median(cpu["reference"]) / statistics.median(cpu[w.name]), 3)
                                 if "reference" in cpu else None),
            "gflops_per_s": round(flops / seconds / 1e9, 1),
            "vs_reference": round((1.0 / seconds) / ref_rate, 3) if ref_rate else None,
            "first_call_s": round(w.first_call_s, 2),
        })
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| size | implementation | dtype | steps/s | s/step (median) | GFLOP/s (model) | vs reference | "
             "CPU s/step (median) | vs reference (CPU) | first call |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        ratio = f"{r['vs_reference']:.2f}x" if r["vs_reference"] else "-"
        cpu_ratio = f"{r['cpu_vs_reference']:.2f}x" if r.get("cpu_vs_reference") else "-"
        lines.append(f"| {r['size']} | {r['impl']} | {r['dtype']} | {r['steps_per_s']:.4f} | "
                     f"{1 / r['steps_per_s']:.3f} | {r['gflops_per_s']} | {ratio} | "
                     f"{statistics.median(r['cpu_seconds_per_step']):.3f} | {cpu_ratio} | {r['first_call_s']:.1f} s |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="128,256", help="square crop sizes, e.g. 128,256")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--ndf", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--dtypes", default="float32", help="nstjax compute dtypes, e.g. float32,bfloat16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1, help="train steps per timed unit")
    parser.add_argument("--settle-steps", type=int, default=1,
                        help="untimed steps of each implementation before its timed ones in every repetition")
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1, help="CPU threads of the reference")
    parser.add_argument("--omp-wait-policy", default="PASSIVE", choices=("PASSIVE", "ACTIVE"),
                        help="the reference's OpenMP idle threads: PASSIVE sleeps (default: spinning threads cost "
                             "PyTorch 6x on a shared CPU), ACTIVE spins (OpenMP's default)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--torch-device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny model at 64 px, 2 repetitions: a quick check")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.smoke:
        args.sizes, args.ngf, args.ndf, args.blocks, args.repeats = "64", 16, 16, 2, 2

    import jax

    backend = jax.default_backend()
    torch_device = "cpu"
    if backend == "gpu":
        import torch

        torch_device = "cuda" if torch.cuda.is_available() else "cpu"
    info = machine()
    info.update(torch_device=torch_device, torch_threads=args.torch_threads if torch_device == "cpu" else None,
                reference_omp_wait_policy=args.omp_wait_policy)  # fmt: skip
    print(json.dumps(info, indent=1), flush=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows += bench_size(size, args, torch_device)
    info["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    info["load_average_after"] = os.getloadavg()
    md = table(rows)
    print(md)
    result = {"machine": info, "smoke": args.smoke, "flop_model": step_flops.__doc__, "rows": rows, "markdown": md,
              "settings": {k: v for k, v in vars(args).items() if k != "out"}}  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    from nstjax.launch import reexec_with_memory_settings

    reexec_with_memory_settings()  # as the nstjax command runs (both sides of the comparison inherit it)
    main()
