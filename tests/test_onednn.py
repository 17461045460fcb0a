"""oneDNN's convolution through XLA's FFI (nstjax.native), and how the planner uses it.

Tolerances, from the arithmetic (ε = 2⁻²⁴, float32's unit roundoff; u = 2⁻⁸, bfloat16's): oneDNN's
direct convolution sums n = k·k·Cin products per output with float32 accumulation, and bfloat16
operands multiply exactly in float32 (8-bit significands make a 16-bit product). So against the exact
convolution of the operands as given (bfloat16 values widened to float64), every output is within
(n + 2)·ε·Σ|terms| (Σ|terms|: the same convolution of the operands' absolute values), plus u·|exact|
when the result is stored in bfloat16 (one rounding to nearest). On a CPU with AMX, AVX512-BF16 or
neither, whatever kernel oneDNN picks.
"""

from __future__ import annotations

import dataclasses
import os
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nstjax import native
from nstjax.errors import NstjaxError
from nstjax.models import _tuning, conv, vgg
from nstjax.native import _build

EPS, U_BF16 = 2.0**-24, 2.0**-8
F32, BF16 = jnp.float32, jnp.bfloat16


def exact(x, w, stride, pads):
    """The cross-correlation in float64 NumPy, tap by tap."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    k = w.shape[0]
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    ho, wo = (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
    y = 0.0
    for i in range(k):
        for j in range(k):
            window = xp[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride]
            y = y + np.einsum("bhwc,co->bhwo", window, w[i, j])
    return y


# (name, input [B, H, W, Cin], kernel (k, Cout), stride, padding, operand dtype, result dtype)
CASES = [
    ("3x3 same, float32", (2, 7, 6, 5), (3, 4), 1, ((1, 1), (1, 1)), F32, F32),
    ("3x3 stride 2, uneven padding", (2, 7, 6, 5), (3, 4), 2, ((1, 0), (2, 1)), F32, F32),
    ("4x4 unpadded", (1, 9, 8, 3), (4, 6), 1, ((0, 0), (0, 0)), F32, F32),
    ("1x1", (2, 5, 5, 8), (1, 3), 1, ((0, 0), (0, 0)), F32, F32),
    ("3x3 bfloat16 to float32", (2, 7, 6, 16), (3, 16), 1, ((1, 1), (1, 1)), BF16, F32),
    ("3x3 bfloat16 to bfloat16", (2, 7, 6, 16), (3, 16), 1, ((1, 1), (1, 1)), BF16, BF16),
    # VGG-like channel counts: oneDNN's blocked (AMX / AVX-512) kernels rather than its reference ones.
    ("3x3 64 channels, bfloat16", (1, 8, 8, 64), (3, 64), 1, ((1, 1), (1, 1)), BF16, BF16),
    ("3x3 64 channels, float32", (1, 8, 8, 64), (3, 64), 1, ((1, 1), (1, 1)), F32, F32),
]  # fmt: skip


@pytest.mark.parametrize("name, x_shape, kernel, stride, pads, dtype, out", CASES, ids=[c[0] for c in CASES])
def test_the_convolution_is_exact_to_its_roundings(onednn, name, x_shape, kernel, stride, pads, dtype, out):
    rng = np.random.default_rng(len(name))
    k, c_out = kernel
    x = jnp.asarray(rng.standard_normal(x_shape), dtype)
    w = jnp.asarray(rng.standard_normal((k, k, x_shape[3], c_out)), dtype)
    got = jax.jit(lambda a, b: native.onednn_conv2d(a, b, stride, pads, out))(x, w)
    want = exact(x.astype(F32), w.astype(F32), stride, pads)
    size = exact(jnp.abs(x.astype(F32)), jnp.abs(w.astype(F32)), stride, pads)
    assert got.dtype == out and got.shape == want.shape
    bound = (k * k * x_shape[3] + 2) * EPS * size + (U_BF16 * np.abs(want) if out == BF16 else 0.0)
    err = np.abs(np.asarray(got.astype(F32), np.float64) - want)
    assert np.all(err <= bound), float((err - bound).max())


def test_vmap_equals_one_call_per_member(onednn):
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.standard_normal((3, 2, 6, 6, 4)), F32)
    ws = jnp.asarray(rng.standard_normal((3, 3, 3, 4, 5)), F32)
    pads = ((1, 1), (1, 1))

    def conv(a, b):
        return native.onednn_conv2d(a, b, 1, pads)

    # Mapped images fold into the image axis (one call); mapped kernels take one call each.
    jaxpr = jax.make_jaxpr(jax.vmap(conv, (0, None)))(xs, ws[0])
    assert "f32[6,6,6,4]" in str(jaxpr).replace(" ", "")  # the folded batch: 3 x 2 images
    for axes, a, b in (((0, None), xs, ws[0]), ((None, 0), xs[0], ws), ((0, 0), xs, ws)):
        got = jax.jit(jax.vmap(conv, axes))(a, b)
        want = jnp.stack([conv(a[i] if axes[0] == 0 else a, b[i] if axes[1] == 0 else b) for i in range(3)])
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


SHARDED = r"""
import numpy as np, jax, jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from nstjax import native
from nstjax.errors import NstjaxError
assert jax.device_count() == 4 and native.onednn_status() is None, native.onednn_status()
mesh = Mesh(np.array(jax.devices()), ("batch",))
rng = np.random.default_rng(0)
x = jnp.asarray(rng.standard_normal((8, 12, 12, 32)), jnp.bfloat16)
w = jnp.asarray(rng.standard_normal((3, 3, 32, 48)), jnp.bfloat16)
f = jax.jit(lambda a, b: native.onednn_conv2d(a, b, 1, ((1, 1), (1, 1))))
whole = np.stack([np.asarray(f(x[i : i + 1], w)[0].astype(jnp.float32)) for i in range(8)])
xs = jax.device_put(x, NamedSharding(mesh, P("batch")))
got = f(xs, jax.device_put(w, NamedSharding(mesh, P())))
program = f.lower(xs, w).compile().as_text()
assert got.sharding.spec == P("batch"), got.sharding
assert "all-gather" not in program and "bf16[2,12,12,32]" in program.replace("{3,2,1,0}", "")
np.testing.assert_array_equal(np.asarray(got.astype(jnp.float32)), whole)
print("ok")
"""


def test_a_batch_sharded_over_devices_stays_sharded(onednn):
    # Four CPU devices in a subprocess: each convolves its own two images (no gather of the batch), and
    # the results equal one image at a time (the same primitive run on four threads at once).
    import subprocess
    import sys

    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_a_vgg_layer_in_bfloat16_follows_the_float32_layer(onednn, monkeypatch):
    # Conv3x3 (bias included) as VGG runs it on a CPU with fast bfloat16, against the exact float64 layer:
    # rounding the input and kernel to bfloat16 (u each, relative) costs at most (2u + u²)·Σ|terms|, the
    # accumulation the bound above, rounding the convolution's result, the bias and their sum to bfloat16
    # u·|conv| + u·|b| + u·|y| <= 2u·|y| + 3u·|b| to first order (|conv| <= |y| + |b|).
    monkeypatch.setattr(conv.runtime, "fast_bfloat16", lambda flags=None: True)
    layer = vgg.Conv3x3(features=64, dtype=BF16)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.random((1, 8, 8, 64)), F32)
    params = layer.init(jax.random.PRNGKey(0), x)
    params["params"]["bias"] = jnp.asarray(rng.standard_normal(64), F32)  # initialised to zeros
    assert vgg.conv_plan(8, 8, 64, 64, BF16).method == "onednn"
    got = np.asarray(layer.apply(params, x.astype(BF16)).astype(F32), np.float64)
    w, b = (np.asarray(params["params"][n], np.float64) for n in ("kernel", "bias"))
    want = exact(x, w, 1, ((1, 1), (1, 1))) + b
    size = exact(np.abs(x), np.abs(w), 1, ((1, 1), (1, 1)))
    bound = (2 * U_BF16 + U_BF16**2 + (9 * 64 + 2) * EPS) * size + 2 * U_BF16 * np.abs(want) + 3 * U_BF16 * np.abs(b)
    assert np.all(np.abs(got - want) <= bound * (1 + 4 * U_BF16))  # second-order terms


def _ffi_calls(jaxpr, found):
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "ffi_call":
            found.add(tuple((tuple(v.aval.shape), v.aval.dtype.name) for v in eqn.invars))
        for value in eqn.params.values():  # sub-jaxprs: custom_vjp, custom_vmap, pjit, ...
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    _ffi_calls(inner, found)
    return found


def _kernel_casts(fn, *args) -> int:
    """How many bfloat16 kernels ([3, 3, *, *]) the optimised program of ``fn`` makes (not parameters)."""
    program = jax.jit(fn).lower(*args).compile().as_text()
    return sum(1 for line in program.splitlines() if "= bf16[3,3," in line and "parameter(" not in line)


def test_a_bfloat16_network_convolves_through_onednn(onednn, monkeypatch):
    # The image gradient of a 64 px bfloat16 VGG-19 to relu5_1 on a CPU with fast bfloat16: every layer's
    # forward pass (kernel) and input gradient (transposed kernel) is one oneDNN call, in bfloat16, with the
    # kernels prepared in bfloat16 once (no kernel is cast in the program; without the prepared copies, all are).
    monkeypatch.setattr(conv.runtime, "fast_bfloat16", lambda flags=None: True)
    prepared = jax.eval_shape(lambda: vgg.prepared_params(vgg.init_params(0), ("relu5_1",), dtype=BF16))
    assert prepared["conv5_1"]["kernel_bf16"].dtype == BF16 and "kernel_bf16" not in prepared["conv5_2"]
    image = jax.ShapeDtypeStruct((1, 64, 64, 3), F32)

    def grad(p, x):
        return jax.grad(lambda x: jnp.mean(vgg.features(p, x, ("relu5_1",), dtype=BF16)["relu5_1"].astype(F32)))(x)

    found = _ffi_calls(jax.make_jaxpr(grad)(prepared, image).jaxpr, set())
    assert _kernel_casts(grad, prepared, image) == 0
    bare = {n: {"kernel": v["kernel"], "kernel_t": v["kernel_t"], "bias": v["bias"]} for n, v in prepared.items()}
    assert _ffi_calls(jax.make_jaxpr(grad)(bare, image).jaxpr, set()) == found and _kernel_casts(grad, bare, image) > 0
    want = set()
    for name in list(vgg.CONV_CHANNELS)[: list(vgg.CONV_CHANNELS).index("conv5_1") + 1]:
        (h, w), (c_in, c_out) = vgg.layer_shape(name, 64, 64), vgg.CONV_CHANNELS[name]
        for a, b in ((c_in, c_out), (c_out, c_in)):
            want.add((((1, h, w, a), "bfloat16"), ((3, 3, a, b), "bfloat16")))
    assert found == want


# --------------------------------------------------------------------------- the planner

FAST_BF16 = frozenset({"amx_bf16"})
NEVER = dataclasses.replace(conv.ConvThresholds(), winograd_min_channels=10**9, bf16_gemm_min_channels=10**9)


def vgg_method(dtype, flags=FAST_BF16, onednn=True, h=8, c=64):
    p = conv.plan(h, h, c, c, 3, 1, dtype=dtype, use="vgg", platform="cpu", cpu_flags=flags, thresholds=NEVER,
                  onednn=onednn)  # fmt: skip
    return p.method, jnp.dtype(p.compute_dtype).name


def test_bfloat16_vgg_layers_take_onednn_where_the_cpu_has_fast_bfloat16():
    assert vgg_method(BF16) == ("onednn", "bfloat16")
    assert vgg_method(BF16, h=1, c=3) == ("onednn", "bfloat16")  # small and thin layers too
    assert vgg_method(BF16, onednn=False) == ("xla", "float32")  # without it: the rules before it
    assert vgg_method(BF16, frozenset({"avx2"})) == ("xla", "float32")  # no fast bfloat16: float32 as before
    assert vgg_method(F32) == ("xla", "float32")  # float32 never asks for it
    # The GAN layers and explicit choices are not the planner's VGG rule.
    assert conv.plan(8, 8, 64, 64, 3, 1, dtype=BF16, use="gan", platform="cpu", cpu_flags=FAST_BF16,
                     onednn=True).method != "onednn"  # fmt: skip
    assert conv.plan(8, 8, 64, 64, 3, 1, dtype=BF16, impl="xla", use="vgg", platform="cpu", onednn=True).method == "xla"


def test_onednn_is_asked_about_on_this_machine_only(monkeypatch):
    asked = []
    monkeypatch.setattr(conv.native, "onednn_available", lambda: asked.append(1) or True)
    monkeypatch.setattr(conv.runtime, "fast_bfloat16", lambda flags=None: True)
    assert vgg.conv_plan(8, 8, 64, 64, BF16, platform="cpu").method == "onednn"
    assert asked
    # Flags of another CPU: whether it has oneDNN is unknown, so the rules without it.
    asked.clear()
    assert vgg.conv_plan(8, 8, 64, 64, BF16, platform="cpu", cpu_flags=FAST_BF16).method != "onednn"
    assert not asked
    # float32 layers never build the bridge.
    assert vgg.conv_plan(8, 8, 64, 64, F32, platform="cpu").method != "onednn" and not asked


def test_asked_for_by_name_for_vgg_only():
    assert vgg_method(F32, frozenset(), onednn=False) == ("xla", "float32")
    assert conv.plan(8, 8, 4, 4, 3, 1, dtype=F32, impl="onednn", use="vgg", platform="cpu").method == "onednn"
    assert vgg.vgg_onednn(F32, "onednn") and not vgg.vgg_onednn(F32, "xla")
    with pytest.raises(ValueError, match="VGG's convolutions"):
        conv.plan(8, 8, 4, 4, 3, 1, impl="onednn", use="gan", platform="cpu")


def test_quick_steps_take_onednn_where_the_planner_does(monkeypatch):
    # A cold run's first steps (nstjax.nst.tiered) and the forward-only programs: oneDNN's for every layer
    # where the planner takes it (bfloat16, fast bfloat16, bridge available), XLA's elsewhere.
    from nstjax.nst import config as nst_config
    from nstjax.nst.engine import make_spec, quick_spec

    monkeypatch.setattr(conv.runtime, "fast_bfloat16", lambda flags=None: True)
    monkeypatch.setattr(conv.native, "onednn_available", lambda: True)

    def quick(**settings):
        return quick_spec(make_spec(nst_config.preset("gatys", **settings), "caffe", guided=False)).conv_impl

    assert quick(dtype="bfloat16") == "onednn"
    assert quick(dtype="float32") == "xla"
    assert quick(dtype="bfloat16", conv_impl="winograd") == "winograd"  # an explicit choice stays
    monkeypatch.setattr(conv.native, "onednn_available", lambda: False)
    assert quick(dtype="bfloat16") == "xla"


def test_stylize_asked_for_onednn_where_it_cannot_run_says_so_in_one_line(tmp_path, monkeypatch):
    from PIL import Image
    from typer.testing import CliRunner

    from nstjax.cli import app

    monkeypatch.setenv("NSTJAX_ONEDNN", "0")
    for name in ("content.png", "style.png"):
        Image.fromarray(np.full((24, 24, 3), 128, np.uint8)).save(tmp_path / name)
    result = CliRunner().invoke(app, ["stylize", str(tmp_path / "content.png"), str(tmp_path / "style.png"), "-o",
                                      str(tmp_path / "out.png"), "--size", "24", "--weights", "random", "--steps", "2",
                                      "--conv-impl", "onednn", "--quiet"])  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert result.exit_code != 0 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and "cannot run here: turned off (NSTJAX_ONEDNN=0)" in lines[0]
    assert "Traceback" not in result.output and not (tmp_path / "out.png").exists()


ONEDNN16, WIN16 = ("onednn", "bfloat16"), ("winograd", "bfloat16")


def test_measured_choices_with_onednn_are_their_own_classes(tmp_path):
    calls = []

    def timer(candidates):
        calls.append(candidates)
        return {c: {ONEDNN16: 1.0, WIN16: 0.5}.get(c, 2.0) for c in candidates}

    cache = _tuning.ChoiceCache(tmp_path / "c.json", key="m")
    cache.put("bfloat16:512x512@p10", ("xla", "float32"), {("xla", "float32"): 1.0})  # measured before oneDNN
    assert conv.measured_vgg_choice(32, 32, 512, 512, onednn=True, cache=cache, timer=timer) == WIN16
    assert calls == [(ONEDNN16, WIN16)]  # XLA's float32 and the GEMM lost every class to oneDNN's
    assert cache.get("bfloat16+onednn:512x512@p10") == WIN16
    assert conv.measured_vgg_choice(32, 32, 512, 512, onednn=False, cache=cache, timer=timer) == ("xla", "float32")
    assert len(calls) == 1


# --------------------------------------------------------------------------- where it cannot run

def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("NSTJAX_ONEDNN", "0")
    assert native.onednn_status() == "turned off (NSTJAX_ONEDNN=0)"
    assert not native.onednn_available()
    with pytest.raises(NstjaxError, match="cannot run here: turned off .NSTJAX_ONEDNN=0"):
        native.onednn_conv2d(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2)))
    monkeypatch.setattr(conv.runtime, "fast_bfloat16", lambda flags=None: True)
    assert vgg.conv_plan(8, 8, 64, 64, BF16, platform="cpu").method != "onednn"


def test_a_onednn_root_without_onednn_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("NSTJAX_ONEDNN_ROOT", str(tmp_path))
    with pytest.raises(_build.Unavailable, match=f"NSTJAX_ONEDNN_ROOT={tmp_path} has no"):
        _build.toolchain()


def test_a_failed_build_says_why_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("NSTJAX_CACHE", str(tmp_path / "cache"))
    compiler = tmp_path / "cxx"
    compiler.write_text("#!/bin/sh\necho 'onednn_conv.cc:1:1: error: no such thing' >&2\nexit 1\n")
    compiler.chmod(compiler.stat().st_mode | stat.S_IEXEC)
    tools = _build.Toolchain(str(compiler), tmp_path, tmp_path, tmp_path)
    with pytest.raises(_build.Unavailable, match="building the oneDNN bridge failed: .*error: no such thing"):
        _build.build(tools)
    # A compiler given as a command line ($CXX="ccache g++", say) runs as one.
    wrapped = _build.Toolchain(f"sh {compiler}", tmp_path, tmp_path, tmp_path)
    with pytest.raises(_build.Unavailable, match="error: no such thing"):
        _build.build(wrapped)
    folder = _build.library_path(tools).parent
    assert folder.is_dir() and os.listdir(folder) == []  # no library, no temporary file, no lock


def test_the_library_is_named_by_what_it_was_built_with(tmp_path, monkeypatch):
    monkeypatch.setenv("NSTJAX_CACHE", str(tmp_path))
    a = _build.Toolchain("c++", tmp_path / "include", tmp_path / "lib", tmp_path / "ffi")
    assert _build.library_path(a).parent == tmp_path / "native"
    assert _build.library_path(a) == _build.library_path(dataclasses.replace(a))
    for change in ({"compiler": "clang++"}, {"onednn_lib": tmp_path / "other"}, {"ffi_include": tmp_path / "new"}):
        assert _build.library_path(dataclasses.replace(a, **change)) != _build.library_path(a)


def test_a_missing_onednn_is_said_once(monkeypatch):
    from nstjax.native import _onednn

    def missing():
        raise _build.Unavailable("oneDNN is not installed (pip install 'nstjax[onednn]')")

    monkeypatch.setattr(_onednn, "_loaded", [])  # as in a fresh process
    monkeypatch.setattr(_build, "toolchain", missing)
    with pytest.warns(native.OnednnWarning, match="without oneDNN.*not installed"):
        assert native.onednn_status() == "oneDNN is not installed (pip install 'nstjax[onednn]')"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not native.onednn_available()  # known now: no second warning
