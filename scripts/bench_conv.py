"""Per-layer convolution timings: XLA's convolution against the GEMM and Winograd formulations, and torch.

For every VGG-19 convolution up to conv5_1 at one input size (square, ``--size``),
in float32 and bfloat16, the forward pass and the input gradient (what
``vgg.conv3x3``'s VJP computes: the same convolution with the transposed kernel):

* ``xla``: ``lax.conv_general_dilated`` in the dtype;
* ``xla-f32``: bfloat16 activations, computed in float32 (what ``conv_plan`` does
  where bfloat16 has no fast path);
* ``gemm``: :func:`nstjax.models.vgg.gemm_conv` (im2col, one GEMM with float32
  accumulation);
* ``winograd``: :func:`nstjax.models.layers.winograd_conv3x3` in float32 (16 products, the
  kernel's Winograd form computed once);
* ``onednn``: :func:`nstjax.native.onednn_conv2d` in the dtype (where the ``onednn`` extra's bridge is
  available; the kernel reordered into oneDNN's layout at every call, as in VGG);
* ``torch`` / ``torch-cl``: ``torch.nn.functional.conv2d`` forward and
  ``convolution_backward`` input gradient, NCHW and channels_last, bfloat16 as
  native bfloat16 tensors.

Every timing is the minimum over ``--repeats`` interleaved repetitions (machine
noise only ever adds time). The last column is what ``conv_plan(conv_impl="auto")``
picks on this machine. Use it to set ``layers.WINOGRAD_MIN_CHANNELS`` and
``vgg.BF16_GEMM_MAX_PIXELS`` for a CPU family:

    python scripts/bench_conv.py --size 128 --dtypes float32,bfloat16 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bc  # noqa: E402


def layer_shapes(size: int):
    out, c_in, h = [], 3, size
    for b, (c_out, count) in enumerate(bc.BLOCKS, 1):
        for n in range(1, count + 1):
            out.append((f"conv{b}_{n}", h, c_in, c_out))
            c_in = c_out
            if (b, n) == (5, 1):
                return out
        h //= 2
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="input image side (layers run at size / 2^k)")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--layers", default="", help="comma-separated layer names (default: conv1_1 … conv5_1)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.05, help="seconds per timed unit")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--out", default=None, help="write JSON here")
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from nstjax import native, runtime
    from nstjax.models import layers, vgg

    torch = None
    if not args.no_torch:
        import torch

    pad = ((1, 1), (1, 1))
    wanted = set(filter(None, args.layers.split(",")))
    machine = bc.machine()
    print(f"{machine['cpu']} ({machine['cores']} cores), flags {' '.join(machine['cpu_flags'])}; "
          f"fast bfloat16: {runtime.fast_bfloat16()}; load average {os.getloadavg()[0]:.1f}")
    rows = []
    for dtype_name in args.dtypes.split(","):
        dtype = jnp.dtype(dtype_name)
        for name, hw, c_in, c_out in layer_shapes(args.size):
            if wanted and name not in wanted:
                continue
            rng = np.random.default_rng(0)
            x = jnp.asarray(rng.standard_normal((1, hw, hw, c_in)), dtype)
            g = jnp.asarray(rng.standard_normal((1, hw, hw, c_out)), dtype)
            k = jnp.asarray(rng.standard_normal((3, 3, c_in, c_out)) * np.sqrt(2 / (9 * c_in)), dtype)
            kt = vgg.transposed_kernel(k)
            jobs = {}
            impls = [("xla", "xla", dtype), ("xla-f32", "xla", jnp.float32), ("gemm", "gemm", dtype)]
            if native.onednn_available():
                impls.append(("onednn", "onednn", dtype))
            for impl, method, compute in impls:
                if impl == "xla-f32" and dtype == jnp.float32:
                    continue
                f = jax.jit(lambda a, b, m=method, c=compute: vgg.conv3x3(
                    a.astype(c), b.astype(c), pad, method=m).astype(a.dtype))
                jobs[f"{impl} fwd"] = lambda f=f: f(x, k).block_until_ready()
                jobs[f"{impl} dx"] = lambda f=f: f(g, kt).block_until_ready()
            # Winograd in float32 with the kernel forms computed once, as with_winograd_kernels does.
            f = jax.jit(lambda a, kw: layers.winograd_conv3x3(a.astype(jnp.float32), kw, pad).astype(a.dtype))
            kw, ktw = (jnp.asarray(layers.winograd_kernel(np.asarray(w, np.float32))) for w in (k, kt))
            jobs["winograd fwd"] = lambda f=f, kw=kw: f(x, kw).block_until_ready()
            jobs["winograd dx"] = lambda f=f, ktw=ktw: f(g, ktw).block_until_ready()
            if dtype == jnp.bfloat16:  # Winograd with bfloat16 products (float32 accumulation)
                f = jax.jit(lambda a, kw: layers.winograd_conv3x3(a, kw.astype(a.dtype), pad))
                jobs["winograd-bf16 fwd"] = lambda f=f, kw=kw: f(x, kw).block_until_ready()
                jobs["winograd-bf16 dx"] = lambda f=f, ktw=ktw: f(g, ktw).block_until_ready()
            if torch is not None:
                tdt = torch.float32 if dtype == jnp.float32 else torch.bfloat16
                tx = torch.from_numpy(np.array(x, np.float32)).permute(0, 3, 1, 2).contiguous().to(tdt)
                tg = torch.from_numpy(np.array(g, np.float32)).permute(0, 3, 1, 2).contiguous().to(tdt)
                tk = torch.from_numpy(np.array(k, np.float32)).permute(3, 2, 0, 1).contiguous().to(tdt)
                for label, fmt in (("torch", torch.contiguous_format), ("torch-cl", torch.channels_last)):
                    ax, ag, ak = (t.contiguous(memory_format=fmt) for t in (tx, tg, tk))

                    def fwd(ax=ax, ak=ak):
                        with torch.no_grad():
                            torch.nn.functional.conv2d(ax, ak, padding=1)

                    def dx(ax=ax, ag=ag, ak=ak):
                        torch.ops.aten.convolution_backward(ag, ax, ak, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                                            [True, False, False])

                    jobs[f"{label} fwd"], jobs[f"{label} dx"] = fwd, dx
            flop = 2 * hw * hw * 9 * c_in * c_out
            inner = {}
            for job_name, job in jobs.items():  # warm-up, then calibrate to ~min_time per unit
                job()
                t0 = time.perf_counter()
                job()
                inner[job_name] = max(1, int(args.min_time / max(time.perf_counter() - t0, 1e-6)))
            best = {n: float("inf") for n in jobs}
            names = list(jobs)
            for rep in range(args.repeats):
                for job_name in names if rep % 2 == 0 else names[::-1]:
                    t0 = time.perf_counter()
                    for _ in range(inner[job_name]):
                        jobs[job_name]()
                    best[job_name] = min(best[job_name], (time.perf_counter() - t0) / inner[job_name])
            plan = vgg.conv_plan(hw, hw, c_in, c_out, dtype)
            row = dict(layer=name, size=hw, c_in=c_in, c_out=c_out, dtype=dtype_name, gflop=flop / 1e9,
                       ms={n: v * 1e3 for n, v in best.items()}, auto=f"{plan.method}/{jnp.dtype(plan.compute_dtype).name}")
            rows.append(row)
            cells = "  ".join(f"{n} {v * 1e3:7.2f}" for n, v in best.items())
            print(f"{dtype_name:8s} {name} {hw:4d}px {c_in:3d}->{c_out:3d}: {cells}  ms | auto: {row['auto']}",
                  flush=True)
    if args.out:
        bc.write_json(args.out, dict(machine=machine, settings=vars(args), rows=rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
