"""Code paths chosen by the CPU, for every flag set the tests can inject, whatever this machine has.

``/proc/cpuinfo`` flags decide one thing in nstjax: whether bfloat16 convolutions of
the VGG network run with bfloat16 products, by oneDNN (where its bridge is available: both
ways are tested), Winograd or GEMMs, and are measured on first use
(:func:`nstjax.runtime.fast_bfloat16`, read by :func:`nstjax.models.vgg.conv_plan`). The GAN layers' :func:`~nstjax.models.layers.conv_method`
and the console script's huge pages (:mod:`nstjax.launch`: the kernel's THP mode, not a
CPU flag) must not depend on them. The flag sets: AVX2 only (the AMD EPYC most numbers
were measured on), AVX-512 without bfloat16, AVX512-BF16, and AMX.

Everything here is planning or tracing (``make_jaxpr``): no compilation.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from nstjax import launch, runtime
from nstjax.models import conv, layers, vgg

FLAG_SETS = {
    "avx2": frozenset({"sse4_2", "avx", "avx2", "fma"}),
    "avx512f": frozenset({"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"}),
    "avx512_bf16": frozenset({"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}),
    "amx_bf16": frozenset({"avx", "avx2", "fma", "amx_tile", "amx_bf16", "amx_int8"}),
}
FAST_BF16 = {"avx2": False, "avx512f": False, "avx512_bf16": True, "amx_bf16": True}
F32, BF16 = jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)


@pytest.fixture(params=sorted(FLAG_SETS), ids=str)
def flags(request, monkeypatch):
    """(name, flags), with nstjax.runtime.cpu_flags() answering them for the test's duration, the
    fixed rules in force (no measuring: test_measured_choices_only_where_bfloat16_is_fast covers that),
    and no oneDNN bridge (test_vgg_conv_plan_with_onednn_by_flags covers it)."""
    monkeypatch.setattr(runtime, "cpu_flags", lambda: FLAG_SETS[request.param])
    monkeypatch.setattr(conv.native, "onednn_available", lambda: False)
    monkeypatch.setenv("NSTJAX_CONV_TUNING", "0")
    return request.param, FLAG_SETS[request.param]


def expected_plan(h: int, w: int, c_in: int, c_out: int, dtype, fast_bf16: bool) -> tuple[str, jnp.dtype]:
    """conv_plan's fixed "auto" rule on CPU as its docstring states it, written out independently."""
    macs = h * w * 9 * c_in * c_out
    winograd = min(c_in, c_out) >= layers.WINOGRAD_MIN_CHANNELS and macs >= layers.WINOGRAD_MIN_MACS
    if dtype == BF16 and fast_bf16 and winograd:
        return "winograd", BF16
    if (dtype == BF16 and fast_bf16 and c_in >= vgg.GEMM_MIN_CHANNELS and macs >= vgg.GEMM_MIN_MACS
            and h * w <= vgg.BF16_GEMM_MAX_PIXELS):  # fmt: skip
        return "gemm", BF16
    return ("winograd" if winograd else "xla"), F32


def vgg_layer_shapes(sizes=(32, 64, 128, 256, 512)):
    """(h, w, c_in, c_out) of every VGG-19 convolution and of its input gradient, at square inputs of ``sizes``."""
    for size in sizes:
        for name, (c_in, c_out) in vgg.CONV_CHANNELS.items():
            h, w = vgg.layer_shape(name, size, size)
            yield h, w, c_in, c_out
            yield h, w, c_out, c_in


def test_fast_bfloat16_by_flags(flags) -> None:
    name, given = flags
    assert runtime.fast_bfloat16(given) is FAST_BF16[name]
    assert runtime.fast_bfloat16() is FAST_BF16[name]  # the default reads runtime.cpu_flags()
    # AVX-512 or VNNI alone is not bfloat16 arithmetic; either bfloat16 extension alone is.
    assert not runtime.fast_bfloat16({"avx512f", "avx512_vnni", "avx_vnni"})
    assert runtime.fast_bfloat16({"avx512_bf16"}) and runtime.fast_bfloat16({"amx_bf16"})


@pytest.mark.parametrize("dtype", [F32, BF16], ids=["float32", "bfloat16"])
def test_vgg_conv_plan_by_flags(flags, dtype) -> None:
    name, given = flags
    seen = set()
    for h, w, c_in, c_out in vgg_layer_shapes():
        want = expected_plan(h, w, c_in, c_out, dtype, FAST_BF16[name])
        for cpu_flags in (given, None):  # passed explicitly, and read from runtime.cpu_flags()
            plan = vgg.conv_plan(h, w, c_in, c_out, dtype, "auto", platform="cpu", cpu_flags=cpu_flags)
            assert (plan.method, jnp.dtype(plan.compute_dtype)) == want, (h, w, c_in, c_out, cpu_flags)
        seen.add(want[0])
    # Each method the flags allow is reached by some VGG layer at these sizes.
    assert seen == ({"gemm", "winograd", "xla"} if dtype == BF16 and FAST_BF16[name] else {"winograd", "xla"})
    # Accelerators and explicit choices ignore the flags.
    assert vgg.conv_plan(16, 16, 512, 512, dtype, "auto", platform="gpu", cpu_flags=given).method == "xla"
    assert vgg.conv_plan(16, 16, 512, 512, dtype, "xla", platform="cpu", cpu_flags=given).method == "xla"


@pytest.mark.parametrize("dtype", [F32, BF16], ids=["float32", "bfloat16"])
def test_vgg_conv_plan_with_onednn_by_flags(flags, dtype, monkeypatch) -> None:
    # With the bridge available, bfloat16 layers on CPUs with fast bfloat16 all take oneDNN's convolution
    # (fixed rule); asked about another CPU (explicit flags) or in float32, the rules without it.
    name, given = flags
    monkeypatch.setattr(conv.native, "onednn_available", lambda: True)
    onednn = dtype == BF16 and FAST_BF16[name]
    for h, w, c_in, c_out in vgg_layer_shapes():
        plan = vgg.conv_plan(h, w, c_in, c_out, dtype, "auto", platform="cpu")
        assert (plan.method, jnp.dtype(plan.compute_dtype)) == (
            ("onednn", BF16) if onednn else expected_plan(h, w, c_in, c_out, dtype, FAST_BF16[name]))
        plan = vgg.conv_plan(h, w, c_in, c_out, dtype, "auto", platform="cpu", cpu_flags=given)
        assert (plan.method, jnp.dtype(plan.compute_dtype)) == expected_plan(h, w, c_in, c_out, dtype, FAST_BF16[name])


def test_gan_conv_method_ignores_flags(monkeypatch) -> None:
    # CycleGAN's / SPADE's / pix2pix's layers (kernel 1-7, stride 1-2, 8-512 channels, 2-256 px): one answer
    # whatever the CPU. This machine's flags first, then each injected set.
    shapes = [(s, s, ci, co, k, st) for s in (2, 8, 32, 64, 128, 256) for ci, co in ((3, 64), (32, 64), (64, 64),
              (256, 256), (64, 3), (512, 1)) for k, st in ((3, 1), (3, 2), (4, 2), (7, 1), (1, 1))]  # fmt: skip
    here = [layers.conv_method(*shape, impl="auto", platform="cpu") for shape in shapes]
    assert {"xla", "gemm", "shift", "winograd"} <= set(here)
    for given in FLAG_SETS.values():
        monkeypatch.setattr(runtime, "cpu_flags", lambda given=given: given)
        assert [layers.conv_method(*shape, impl="auto", platform="cpu") for shape in shapes] == here


def _ops(jaxpr) -> dict[str, set]:
    """The traced network's convolutions by kind, recursively: XLA convolutions (operand dtypes), im2col GEMMs
    over 3x3 patches and Winograd's products ((pixels, contraction, outputs, operand dtypes, result dtype)).
    Sets: a custom VJP's jaxpr holds its primal too, so multiplicities depend on JAX's internals."""
    out: dict[str, set] = {"conv": set(), "gemm": set(), "winograd": set()}

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            name, shapes = eqn.primitive.name, [v.aval.shape for v in eqn.invars]
            dtypes = tuple(v.aval.dtype.name for v in eqn.invars)
            if name == "conv_general_dilated":
                out["conv"].add(dtypes)
            elif name == "dot_general":
                dims = eqn.params["dimension_numbers"]
                result = eqn.outvars[0].aval.dtype.name
                if dims == (((1,), (0,)), ((), ())) and shapes[0][1] % 9 == 0:  # [pixels, 9 Cin] x [9 Cin, Cout]
                    out["gemm"].add((shapes[0][0], shapes[0][1] // 9, shapes[1][1], dtypes, result))
                elif dims == (((3,), (0,)), ((), ())):  # [B, h, w, Cin] x [Cin, Cout]: one of the 16
                    out["winograd"].add((shapes[0][3], shapes[1][1], dtypes, result))
            for value in eqn.params.values():  # sub-jaxprs: custom_vjp, pjit, remat, ...
                for sub in value if isinstance(value, (list, tuple)) else (value,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        walk(inner)
                    elif hasattr(getattr(inner, "jaxpr", None), "eqns"):
                        walk(inner.jaxpr)

    walk(jaxpr)
    return out


def test_traced_bfloat16_network_follows_the_plan(flags) -> None:
    """The image gradient of a 128 px bfloat16 VGG (to relu5_1) as traced with the flags injected: exactly the
    GEMM layers' products (forward and input gradient) as bfloat16 GEMMs accumulated in float32, exactly the
    Winograd layers' as bfloat16 products (fast bfloat16) or float32 ones, float32 convolutions for the rest."""
    name, _ = flags
    size, deepest = 128, "conv5_1"  # conv5_1 (8x8 px) is the one GEMM layer; Winograd's from conv1_2
    convs = list(vgg.CONV_CHANNELS)[: list(vgg.CONV_CHANNELS).index(deepest) + 1]
    want = {"gemm": set(), "winograd": set()}
    for n in convs:
        (h, w), (c_in, c_out) = vgg.layer_shape(n, size, size), vgg.CONV_CHANNELS[n]
        method, _ = expected_plan(h, w, c_in, c_out, BF16, FAST_BF16[name])
        for a, b in ((c_in, c_out), (c_out, c_in)):  # forward, input gradient
            if method == "gemm":
                want["gemm"].add((h * w, a, b, ("bfloat16", "bfloat16"), "float32"))
            elif method == "winograd":
                operands = "bfloat16" if FAST_BF16[name] else "float32"
                want["winograd"].add((a, b, (operands, operands), "float32"))
    assert bool(want["gemm"]) is FAST_BF16[name] and want["winograd"]
    params = jax.eval_shape(lambda: vgg.with_transposed_kernels(vgg.init_params(0)))
    image = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)

    def grad(p, x):
        def loss(x):
            f = vgg.features(p, x, ("relu5_1",), dtype=jnp.bfloat16)["relu5_1"]
            return jnp.mean(jnp.square(f.astype(jnp.float32)))

        return jax.grad(loss)(x)

    with jax.default_device(jax.devices("cpu")[0]):
        ops = _ops(jax.make_jaxpr(grad)(params, image).jaxpr)
    assert ops["gemm"] == want["gemm"]
    assert ops["winograd"] == want["winograd"]
    # conv1_1, and the kernel gradients XLA drops (in bfloat16 for the layers with bfloat16 products).
    assert ops["conv"] == {("float32", "float32")} | ({("bfloat16", "bfloat16")} if FAST_BF16[name] else set())


GLIBC = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.parametrize("mode, expect", [("madvise", launch.TUNABLE), ("always", None), ("never", None),
                                          (None, None)])  # fmt: skip
def test_huge_pages_by_thp_mode(mode, expect) -> None:
    """The console script's start for each THP mode (injected: this machine's is one of them). Only madvise
    needs glibc's hugetlb tunable (where glibc's malloc stays: no caching allocator); the process then runs
    again with it, once."""
    if mode == "madvise" and not GLIBC:
        pytest.skip("the tunable is glibc's")
    code = (f"import os, nstjax.launch as l; l.thp_mode = lambda *a: {mode!r}; l.reexec_with_memory_settings(); "
            "print(os.environ.get('GLIBC_TUNABLES'))")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "NSTJAX_HUGE_PAGES", "LD_PRELOAD")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "NSTJAX_ALLOCATOR": "system"})  # fmt: skip
    assert out.stdout.splitlines() == [str(expect)]
    # The decision is the pure function's, and CPU flags play no part in it.
    assert launch.huge_page_environment({}, system="Linux", libc="glibc", mode=mode) == (
        None if expect is None else {"GLIBC_TUNABLES": expect})


def test_measured_choices_only_where_bfloat16_is_fast(monkeypatch, tmp_path) -> None:
    """With measuring on (the default): on CPUs with fast bfloat16 the large bfloat16 layers take the
    measured choice (injected here: XLA's, float32), on the others nothing is ever measured."""
    from nstjax.models import _tuning

    monkeypatch.setenv("NSTJAX_CONV_TUNING", "1")  # tests run with the fixed rules (conftest)
    monkeypatch.setattr(conv.native, "onednn_available", lambda: False)  # its candidates: test_onednn.py
    timed = []
    monkeypatch.setattr(conv, "time_candidates", lambda run, candidates: timed.append(candidates) or
                        {c: (0.5 if c == ("xla", "float32") else 1.0) for c in candidates})  # fmt: skip
    for name, given in sorted(FLAG_SETS.items()):
        monkeypatch.setattr(runtime, "cpu_flags", lambda given=given: given)
        monkeypatch.setattr(conv, "_CHOICES", _tuning.ChoiceCache(tmp_path / f"{name}.json", key=name))
        timed.clear()
        for h, w, c_in, c_out in vgg_layer_shapes(sizes=(64, 256)):
            plan = vgg.conv_plan(h, w, c_in, c_out, BF16, "auto", platform="cpu")
            fixed = expected_plan(h, w, c_in, c_out, BF16, FAST_BF16[name])
            measured = (FAST_BF16[name] and min(c_in, c_out) >= layers.WINOGRAD_MIN_CHANNELS
                        and h * w * 9 * c_in * c_out >= conv.THRESHOLDS.tuning_min_macs)  # fmt: skip
            assert (plan.method, jnp.dtype(plan.compute_dtype)) == (("xla", F32) if measured else fixed)
            # float32 layers follow the fixed rule everywhere.
            plan32 = vgg.conv_plan(h, w, c_in, c_out, F32, "auto", platform="cpu")
            assert (plan32.method, jnp.dtype(plan32.compute_dtype)) == expected_plan(h, w, c_in, c_out, F32, False)
        assert bool(timed) is FAST_BF16[name], name
        # Each shape class is measured once (the forward and input-gradient shapes of 3_2 .. 3_4 share one).
        assert len(timed) == len(set(conv._CHOICES._load())), name
