"""One Adam update of a GAN's parameters: nstjax's fused step, optax's, and PyTorch's, in one run.

The parameters are those of pix2pix at the paper's widths (ngf/ndf 64: 57 M float32 values in 50
arrays; ``--model cyclegan``: CycleGAN's two generators and discriminators, 28 M). Timed, median of
``--repeats`` updates after two untimed ones:

* ``nstjax fused``: :func:`nstjax.train.apply_gradients` with :func:`nstjax.train.adam`, the state
  donated, as the train steps run it (:func:`nstjax.native.fused_adam_update`; needs the ``onednn``
  extra and a C++ compiler);
* ``optax``: the same with ``NSTJAX_FUSED_ADAM=0`` (optax's update and ``apply_updates``, XLA's fusions);
* ``torch foreach`` / ``torch fused``: ``torch.optim.Adam`` over tensors of the same shapes, the
  references' default (foreach) and ``fused=True``.

    python scripts/bench_adam.py --model pix2pix --repeats 15
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def parameters(model: str):
    from nstjax.train import TrainSettings

    if model == "pix2pix":
        from nstjax.sketch2photo import Pix2PixConfig, Sketch2PhotoConfig, init_state

        cfg = Sketch2PhotoConfig(model="pix2pix", size=256, train=TrainSettings(steps=10, batch_size=1),
                                 pix2pix=Pix2PixConfig(ngf=64, ndf=64))  # fmt: skip
        state = init_state(cfg, 17, 10, 0)
    else:
        from nstjax.cyclegan import CycleGANConfig, init_state

        state = init_state(CycleGANConfig(), 10, 0)
    return {"g": state.g.params, "d": state.d.params}


def time_nstjax(params, fused: bool, repeats: int) -> list[float]:
    from nstjax.train import NetState, adam, apply_gradients

    os.environ["NSTJAX_FUSED_ADAM"] = "1" if fused else "0"
    tx = adam(lambda count: 2e-4 + 0.0 * count, b1=0.5)  # a schedule, as the trainers pass one
    step = jax.jit(functools.partial(apply_gradients, tx=tx), donate_argnums=0)
    net = NetState(params=jax.tree.map(jnp.array, params), opt_state=tx.init(params))
    grads = jax.tree.map(lambda a: jnp.full_like(a, 1e-3), params)
    times = []
    for i in range(repeats + 2):
        t = time.perf_counter()
        net = jax.block_until_ready(step(net, grads))
        if i >= 2:
            times.append(time.perf_counter() - t)
    return times


def time_torch(params, fused: bool, repeats: int) -> list[float]:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    tensors = [torch.zeros(a.shape, requires_grad=True) for a in jax.tree.leaves(params)]
    for t in tensors:
        t.grad = torch.full_like(t, 1e-3)
    opt = torch.optim.Adam(tensors, lr=2e-4, betas=(0.5, 0.999), **({"fused": True} if fused else {}))
    times = []
    for i in range(repeats + 2):
        t = time.perf_counter()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=("pix2pix", "cyclegan"), default="pix2pix")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args(argv)

    import _bench_common as bc
    from nstjax import native

    params = parameters(args.model)
    leaves = jax.tree.leaves(params)
    print(f"{args.model}: {sum(a.size for a in leaves) / 1e6:.1f} M float32 parameters in {len(leaves)} arrays; "
          f"{bc.describe_cpu()}")  # fmt: skip
    contenders = [("optax (XLA)", functools.partial(time_nstjax, fused=False))]
    reason = native.fused_adam_status()
    if reason is None:
        contenders.insert(0, ("nstjax fused", functools.partial(time_nstjax, fused=True)))
    else:
        print(f"nstjax fused: not here ({reason})")
    if not args.no_torch:
        contenders += [("torch foreach", functools.partial(time_torch, fused=False)),
                       ("torch fused", functools.partial(time_torch, fused=True))]  # fmt: skip
    for name, timer in contenders:
        times = timer(params, repeats=args.repeats)
        print(f"{name:14s} {statistics.median(times) * 1e3:7.1f} ms (min {min(times) * 1e3:.1f}) an update")
    os.environ.pop("NSTJAX_FUSED_ADAM", None)
    return 0


if __name__ == "__main__":
    from nstjax.launch import reexec_with_memory_settings

    reexec_with_memory_settings()  # as the nstjax command runs (tcmalloc where installed; both sides inherit it)
    sys.exit(main())
