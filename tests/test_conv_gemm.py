"""The GEMM (im2col) convolution and the per-layer choice between it and XLA's convolution.

* :func:`nstjax.models.vgg.gemm_conv` through :func:`~nstjax.models.vgg.conv3x3`
  (forward and the custom VJP's input and kernel gradients) equals
  ``lax.conv_general_dilated`` with JAX's own autodiff, for every padding the
  network uses: ``(1, 1)`` (zero padding), ``(0, 0)`` (reflect/replicate inputs
  are padded first), and their input gradients' ``(1, 1)`` / ``(2, 2)``, plus an
  asymmetric one. Float32 to ``F32_RTOL`` of the largest magnitude; bfloat16
  operands (float32 accumulation, bfloat16 result) within ``BF16_RTOL`` of the
  float32 convolution of the same bfloat16 inputs: one bfloat16 rounding of the
  result (2^-8 relative) plus the different summation order.
* :func:`~nstjax.models.vgg.conv_plan` picks what the CPU has, with the CPU's
  flags injected (this machine may have no AMX / AVX512-BF16): the traced
  network really contains bfloat16 GEMMs with float32 accumulation where the
  flags say so, and float32 convolutions elsewhere.
* ``conv_impl`` travels from the config (and CLI options) to the network.

Tracing only (``make_jaxpr``) wherever a check is structural; the numeric ones
use tiny shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nstjax import native, runtime
from nstjax.errors import NstjaxError
from nstjax.models import vgg
from nstjax.nst import config as nst_config
from nstjax.nst.engine import make_spec
from test_winograd import assert_no_kink_within_rounding

F32_RTOL = 2e-6
BF16_RTOL = 1.2e-2

# Forward paddings of the network and the paddings of their input gradients (2 - p per side).
PADDINGS = [((1, 1), (1, 1)), ((0, 0), (0, 0)), ((2, 2), (2, 2)), ((1, 0), (2, 1))]


def lax_conv(x, kernel, padding):
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"), preferred_element_type=jnp.float32
    )


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def operands():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 9, 8)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 8, 5)).astype(np.float32)
    return x, kernel


@pytest.mark.parametrize("padding", PADDINGS, ids=str)
def test_gemm_matches_lax_float32(operands, padding) -> None:
    x, kernel = operands
    weights = np.random.default_rng(4).standard_normal(lax_conv(x, kernel, padding).shape).astype(np.float32)

    def loss(conv, x, k):
        return jnp.sum(conv(x, k) * weights)

    ours = jax.jit(jax.value_and_grad(lambda x, k: loss(lambda a, b: vgg.conv3x3(a, b, padding, method="gemm"), x, k),
                                      argnums=(0, 1)))
    theirs = jax.jit(jax.value_and_grad(lambda x, k: loss(lambda a, b: lax_conv(a, b, padding), x, k), argnums=(0, 1)))
    np.testing.assert_array_equal(vgg.gemm_conv(x, kernel, padding).shape, lax_conv(x, kernel, padding).shape)
    assert rel(vgg.gemm_conv(x, kernel, padding), lax_conv(x, kernel, padding)) < F32_RTOL
    (v1, (dx1, dk1)), (v2, (dx2, dk2)) = ours(x, kernel), theirs(x, kernel)
    assert dx1.shape == x.shape and dk1.shape == kernel.shape
    assert rel(v1, v2) < F32_RTOL
    assert rel(dx1, dx2) < F32_RTOL, "input gradient"
    assert rel(dk1, dk2) < F32_RTOL, "kernel gradient"


@pytest.mark.parametrize("padding", PADDINGS[:3], ids=str)
def test_gemm_bfloat16_accumulates_in_float32(operands, padding) -> None:
    x, kernel = (jnp.asarray(a, jnp.bfloat16) for a in operands)
    out = vgg.gemm_conv(x, kernel, padding)
    assert out.dtype == jnp.bfloat16
    exact = lax_conv(x.astype(jnp.float32), kernel.astype(jnp.float32), padding)
    assert 0 < rel(out, exact) < BF16_RTOL
    # The product is one dot_general with bfloat16 operands and a float32 result.
    dots = [e for e in jax.make_jaxpr(vgg.gemm_conv, static_argnums=2)(x, kernel, padding).jaxpr.eqns
            if e.primitive.name == "dot_general"]
    assert len(dots) == 1
    assert [v.aval.dtype for v in dots[0].invars] == [jnp.bfloat16, jnp.bfloat16]
    assert dots[0].outvars[0].aval.dtype == jnp.float32
    # Input gradient through conv3x3's VJP: the GEMM with the transposed kernel, in bfloat16.
    g = jnp.asarray(np.random.default_rng(5).standard_normal(out.shape), jnp.bfloat16)
    _, vjp = jax.vjp(lambda a: vgg.conv3x3(a, kernel, padding, method="gemm"), x)
    (dx,) = vjp(g)
    _, vjp_exact = jax.vjp(lambda a: lax_conv(a, kernel.astype(jnp.float32), padding), x.astype(jnp.float32))
    (dx_exact,) = vjp_exact(g.astype(jnp.float32))
    assert dx.dtype == jnp.bfloat16
    assert rel(dx, dx_exact) < BF16_RTOL


def test_network_with_gemm_equals_xla() -> None:
    """Features and image gradient through two layers: conv_impl="gemm" against "xla", zero and reflect
    padding (eagerly: each primitive compiles once and is reused)."""
    params = {k: v for k, v in vgg.init_params(0).items() if k in ("conv1_1", "conv1_2")}
    image = np.random.default_rng(6).random((1, 10, 12, 3)).astype(np.float32)
    out = {}
    for padding in ("zero", "reflect"):
        # No ReLU input within 10x the two methods' difference of 0 (seen: 110x), so no ReLU can decide
        # differently on any CPU and the image gradients compare to rounding.
        assert_no_kink_within_rounding(params, image, padding, "gemm")
        for impl in ("xla", "gemm"):
            def loss(x, padding=padding, impl=impl):
                f = vgg.features(params, x, ("relu1_2",), padding=padding, conv_impl=impl)
                return jnp.mean(jnp.square(f["relu1_2"]))

            out[padding, impl] = jax.value_and_grad(loss)(image)
    for padding in ("zero", "reflect"):
        (v1, g1), (v2, g2) = out[padding, "gemm"], out[padding, "xla"]
        assert np.abs(np.asarray(g2)).max() > 0
        assert rel(v1, v2) < 1e-5, padding
        assert rel(g1, g2) < 1e-5, padding


# --------------------------------------------------------------------------- the choice


AMX = frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
AVX512_BF16 = frozenset({"avx512f", "avx512_bf16"})
AVX2 = frozenset({"avx2", "fma"})


def plan(h, c_in, c_out, dtype, impl="auto", **kw):
    p = vgg.conv_plan(h, h, c_in, c_out, dtype, impl, **kw)
    return p.method, jnp.dtype(p.compute_dtype).name


def test_conv_plan_by_cpu() -> None:
    f32, bf16 = jnp.float32, jnp.bfloat16
    cpu = dict(platform="cpu")
    # float32 on any CPU: Winograd for every layer with 64 channels or more on both sides, large enough.
    for flags in (AVX2, AMX):
        assert plan(16, 512, 512, f32, cpu_flags=flags, **cpu) == ("winograd", "float32")
        assert plan(8, 512, 512, f32, cpu_flags=flags, **cpu) == ("xla", "float32")  # under WINOGRAD_MIN_MACS
        assert plan(64, 256, 256, f32, cpu_flags=flags, **cpu) == ("winograd", "float32")
        assert plan(256, 64, 64, f32, cpu_flags=flags, **cpu) == ("winograd", "float32")
        assert plan(16, 3, 64, f32, cpu_flags=flags, **cpu) == ("xla", "float32")  # conv1_1: too thin
        assert plan(16, 64, 3, f32, cpu_flags=flags, **cpu) == ("xla", "float32")  # its input gradient
        assert plan(2, 512, 512, f32, cpu_flags=flags, **cpu) == ("xla", "float32")  # too small to pay
    # bfloat16 where the CPU multiplies it natively (the fixed rule, flags given): Winograd with bfloat16
    # products where Winograd pays, else bfloat16 GEMMs up to 64x64 px from 100 M MACs, else float32.
    for flags in (AMX, AVX512_BF16):
        assert plan(16, 512, 512, bf16, cpu_flags=flags, **cpu) == ("winograd", "bfloat16")
        assert plan(64, 128, 256, bf16, cpu_flags=flags, **cpu) == ("winograd", "bfloat16")
        assert plan(128, 64, 128, bf16, cpu_flags=flags, **cpu) == ("winograd", "bfloat16")
        assert plan(8, 512, 512, bf16, cpu_flags=flags, **cpu) == ("gemm", "bfloat16")  # 151 M MACs
        assert plan(128, 3, 64, bf16, cpu_flags=flags, **cpu) == ("xla", "float32")
    # bfloat16 without it (this AMD EPYC, most AVX2 machines): float32 arithmetic, the float32 plan.
    assert plan(16, 512, 512, bf16, cpu_flags=AVX2, **cpu) == ("winograd", "float32")
    assert plan(64, 256, 256, bf16, cpu_flags=AVX2, **cpu) == ("winograd", "float32")
    assert plan(64, 3, 64, bf16, cpu_flags=AVX2, **cpu) == ("xla", "float32")
    # Accelerators keep XLA's convolutions in the network's dtype.
    for platform in ("gpu", "tpu"):
        assert plan(16, 512, 512, bf16, platform=platform, cpu_flags=AMX) == ("xla", "bfloat16")
        assert plan(16, 512, 512, f32, platform=platform) == ("xla", "float32")
    # An explicit choice wins everywhere.
    assert plan(256, 64, 64, bf16, "gemm", **cpu, cpu_flags=AVX2) == ("gemm", "bfloat16")
    assert plan(16, 512, 512, f32, "xla", **cpu, cpu_flags=AMX) == ("xla", "float32")
    assert plan(16, 3, 64, f32, "winograd", platform="gpu") == ("winograd", "float32")
    with pytest.raises(ValueError, match="conv_impl"):
        vgg.conv_plan(8, 8, 64, 64, f32, "cudnn")


def test_fast_bfloat16_flags() -> None:
    assert runtime.fast_bfloat16(AMX) and runtime.fast_bfloat16(AVX512_BF16) and runtime.fast_bfloat16({"amx_bf16"})
    assert not runtime.fast_bfloat16(AVX2) and not runtime.fast_bfloat16(())
    flags = runtime.cpu_flags()
    assert isinstance(flags, frozenset)
    assert runtime.fast_bfloat16() == bool(flags & {"amx_bf16", "avx512_bf16"})


WINOGRAD_DIMS = (((3,), (0,)), ((), ()))  # [B, h, w, Cin] x [Cin, Cout]: one of a Winograd layer's 16 products


def _conv_ops(jaxpr):
    """(kind, operand dtypes, result dtype) of every convolution (``conv_general_dilated``), every
    matrix product that maps pixels to output channels as an im2col GEMM (``dot_general``) or as
    one of Winograd's 16 products (``winograd``), recursively. Kernel gradients (unused, XLA drops
    them) are products over pixels, left out, and convolutions, so only convolutions include dead code."""
    out = []
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        dims = eqn.params.get("dimension_numbers") if name == "dot_general" else None
        kind = {(((1,), (0,)), ((), ())): "dot_general", WINOGRAD_DIMS: "winograd"}.get(dims)
        if kind == "dot_general" and eqn.invars[1].aval.shape[0] > eqn.invars[0].aval.shape[0]:
            kind = None  # contracts over pixels: a kernel gradient (plane_kernel_gradient), dead code XLA drops
        if name == "conv_general_dilated":
            kind = name
        if kind:
            out.append((kind, tuple(v.aval.dtype.name for v in eqn.invars), eqn.outvars[0].aval.dtype.name))
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    out += _conv_ops(inner)
                elif hasattr(getattr(inner, "jaxpr", None), "eqns"):
                    out += _conv_ops(inner.jaxpr)
    return out


@pytest.mark.parametrize("flags, expect", [(AMX, "bf16"), (AVX2, "f32")], ids=["amx", "avx2"])
def test_auto_network_uses_what_the_cpu_has(monkeypatch, flags, expect) -> None:
    """A 128 px bfloat16 image gradient as traced on CPU, with the CPU's flags injected, without the oneDNN
    bridge (with it, every layer is a oneDNN call: test_onednn.py)."""
    monkeypatch.setattr(runtime, "cpu_flags", lambda: flags)
    monkeypatch.setattr(native, "onednn_available", lambda: False)
    params = jax.eval_shape(lambda: vgg.with_transposed_kernels(vgg.init_params(0)))
    image = jax.ShapeDtypeStruct((1, 128, 128, 3), jnp.float32)

    def grad(p, x):
        def loss(x):
            f = vgg.features(p, x, ("relu4_2",), dtype=jnp.bfloat16)["relu4_2"]
            return jnp.mean(jnp.square(f.astype(jnp.float32)))

        return jax.grad(loss)(x)

    with jax.default_device(jax.devices("cpu")[0]):
        ops = _conv_ops(jax.make_jaxpr(grad)(params, image).jaxpr)
    convs = [o for o in ops if o[0] == "conv_general_dilated"]
    gemms = [o for o in ops if o[0] == "dot_general"]
    winograd = [o for o in ops if o[0] == "winograd"]
    # Winograd for conv1_2 .. conv4_2 (all past the 250 M MAC floor at 128 px): (layers) x (forward, input
    # gradient) x 16 products, accumulated in float32, with bfloat16 operands where the CPU has fast bfloat16.
    assert len(winograd) == 9 * 2 * 16 and all(o[2] == "float32" for o in winograd)
    assert not gemms  # the GEMM only takes bfloat16 layers Winograd does not (none at 128 px)
    operands = ("bfloat16", "bfloat16") if expect == "bf16" else ("float32", "float32")
    assert all(o[1] == operands for o in winograd)
    # conv1_1 is XLA's in float32 (and, with bfloat16 products, the kernel gradients XLA drops are bfloat16).
    assert ("float32", "float32") in {o[1] for o in convs}
    if expect == "f32":
        assert all(o[1] == ("float32", "float32") for o in ops)


def test_conv_impl_from_config_and_options() -> None:
    config = nst_config.from_flags("gatys", conv_impl="gemm")
    assert config.conv_impl == "gemm"
    assert nst_config.preset("cpu").conv_impl == "auto"
    assert make_spec(config, "torch", guided=False).conv_impl == "gemm"
    with pytest.raises(NstjaxError, match="conv_impl"):
        nst_config.preset("gatys", conv_impl="cudnn")


# --------------------------------------------------------------------------- unpadded convolutions on CPU


def _conv_paddings(fn, *args) -> list:
    return [tuple(map(tuple, e.params["padding"])) for e in jax.make_jaxpr(fn)(*args).eqns
            if e.primitive.name == "conv_general_dilated"]  # fmt: skip


@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, "VALID"), (7, 1, "VALID"), (3, 2, "VALID"),
                                                     (4, 2, ((1, 1), (0, 0))), (3, 1, "SAME")])
def test_conv2d_never_runs_an_unpadded_convolution_on_cpu(kernel, stride, padding) -> None:
    # XLA:CPU's slow path for sides without padding (3-5x) is avoided by padding `stride` zeros before and
    # dropping the extra first output row/column: same values and gradients as XLA's unpadded convolution.
    from nstjax.models.layers import conv2d

    rng = np.random.default_rng(kernel * 10 + stride)
    x = jnp.asarray(rng.standard_normal((2, 13, 12, 5)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((kernel, kernel, 5, 6)), jnp.float32)

    def plain(x, k):
        return jax.lax.conv_general_dilated(x, k, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))

    y_ref, vjp_ref = jax.vjp(plain, x, k)
    y, vjp = jax.vjp(lambda x, k: conv2d(x, k, stride, padding), x, k)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    g = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
    for got, want in zip(vjp(g), vjp_ref(g), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    # The traced forward convolution has padding on every side that had none.
    (pads,) = _conv_paddings(lambda x, k: conv2d(x, k, stride, padding), x, k)
    assert all(lo + hi > 0 for lo, hi in pads), pads


@pytest.mark.parametrize(
    "shape, kernel, stride, padding, impl",
    [((1, 48, 48, 32, 40), 3, 1, "VALID", "xla"), ((2, 48, 44, 40, 32), 3, 1, "SAME", "xla"),
     ((1, 34, 34, 32, 48), 4, 1, ((1, 2), (2, 1)), "xla"), ((1, 80, 80, 32, 48), 3, 2, 1, "gemm"),
     ((1, 72, 72, 32, 40), 4, 2, 1, "gemm")],
)  # fmt: skip
def test_kernel_gradient_as_tap_products_equals_xlas(shape, kernel, stride, padding, impl) -> None:
    # Large layers take their kernel gradient as per-tap products (conv2d, and the products' backward);
    # values and both gradients equal XLA's plain convolution, and the layers here are large enough
    # that the tap products are really used (the jaxpr holds k*k products whose output is [Cout, Cin]).
    from nstjax.models import conv, layers

    b, h, w, c_in, c_out = shape
    rng = np.random.default_rng(h + kernel)
    x = jnp.asarray(rng.standard_normal((b, h, w, c_in)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((kernel, kernel, c_in, c_out)) * 0.1, jnp.float32)

    def plain(x, k):
        pads = conv.explicit_padding(padding, kernel, stride, h, w)
        return jax.lax.conv_general_dilated(x, k, (stride, stride), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def ours(x, k):
        return layers.convolve(x, k, stride, padding, impl)

    y_ref, vjp_ref = jax.vjp(plain, x, k)
    y, vjp = jax.vjp(ours, x, k)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-4)
    g = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
    dx, dk = vjp(g)
    dx_ref, dk_ref = vjp_ref(g)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dk, dk_ref, rtol=1e-5, atol=2e-3)  # sums over B*Ho*Wo ~ 1e3-5e3 terms

    grad_jaxpr = jax.make_jaxpr(lambda x, k: jax.grad(lambda k: jnp.sum(ours(x, k) * g))(k))(x, k)
    tap_products = [e for e in grad_jaxpr.eqns
                    if e.primitive.name == "dot_general" and e.outvars[0].aval.shape == (c_out, c_in)]  # fmt: skip
    if jax.default_backend() == "cpu":
        assert len(tap_products) == kernel * kernel
