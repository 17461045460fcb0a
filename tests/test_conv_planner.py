"""The convolution planner (nstjax.models.conv.plan) and the algorithms it picks among.

* :func:`~nstjax.models.conv.plan` picks what its threshold table says, on both sides of
  each threshold, with the table's values injected (small ones, so the shapes stay tiny);
  the default table is read at the call, so replacing it retunes every caller.
* Every algorithm equals the exact convolution in value, input gradient and kernel
  gradient, in float32 on tiny shapes: XLA's (plain, and with per-tap kernel gradients),
  the im2col GEMM (with its own or the per-tap kernel gradient, and with XLA's forward
  pass), the shifted sum, Winograd (the GAN layers' and VGG's), and VGG's ``conv3x3`` for
  each method. The reference is computed in float64 with NumPy.

Tolerances, from the arithmetic (ε = 2⁻²⁴, float32's unit roundoff): a float32 sum of n
products, in any order and with float32 accumulation, is within (n + 1)·ε·Σ|terms| of the
exact sum (first order: one rounding per product and at most n - 1 per addition path). The
direct methods (XLA, GEMM, shifted sum, per-tap products) are such sums, so each element is
checked against (n + 2)·ε·Σ|terms| (one more rounding for a cast back to float32), Σ|terms|
being the same convolution of the operands' absolute values. n is k·k·Cin for the value,
k·k·Cout for the input gradient, B·Ho·Wo for the kernel gradient. Winograd is not a
reordering of those sums: its 16 products per tile sum over c channels (c = Cin for the
value, Cout for the input gradient) transformed operands at most 4·max|x| (Bᵀ·B: two ±1
entries per row and axis) and 2.25·max|w| (G·Gᵀ: row sums of |G| at most 1.5), and each
output adds 9 of them (Aᵀ·A: three ±1 entries per row and axis), so each value is a sum of
magnitude at most M = 81·c·max|x|·max|w| computed with at most c + 12 roundings on any path:
it is checked against (c + 12)·ε·M.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nstjax.models import conv, layers, vgg
from nstjax.models.conv import ConvThresholds, plan

EPS = 2.0**-24

# --------------------------------------------------------------------------- the plan at its thresholds

# A table where nothing triggers unless a test lowers it: every floor out of reach, every ceiling at 0
# (trained_winograd_min_pixels only narrows Winograd, which its other floors already rule out: 0).
NEVER = ConvThresholds(
    winograd_min_channels=10**9, winograd_min_macs=10**18, tap_gradient_min_channels=10**9,
    tap_gradient_min_rows=10**9, tap_gradient_min_macs=10**18, products_min_macs=10**18, tiny_output_pixels=0,
    xla_min_pixels=10**9, xla_min_in_channels=10**9, bf16_gemm_min_channels=10**9, bf16_gemm_min_macs=10**18,
    bf16_gemm_max_pixels=0, trained_winograd_min_pixels=0, plane_gradient_max_channels=0,
    plane_gradient_min_macs=10**18,
)  # fmt: skip
FAST_BF16, SLOW = frozenset({"amx_bf16"}), frozenset({"avx2"})


def gan(h, w, c_in, c_out, k, stride, **table):
    p = plan(h, w, c_in, c_out, k, stride, use="gan", platform="cpu", thresholds=dataclasses.replace(NEVER, **table))
    return p.method, p.xla_forward


def vgg_plan(h, w, c_in, c_out, dtype, flags=FAST_BF16, **table):
    p = plan(h, w, c_in, c_out, 3, 1, dtype=dtype, use="vgg", platform="cpu", cpu_flags=flags,
             thresholds=dataclasses.replace(NEVER, **table))  # fmt: skip
    return p.method, jnp.dtype(p.compute_dtype).name


def test_gan_products_floor() -> None:
    # 4x4 output, 3x3 stride 2, 2 -> 3 channels: 16 * 9 * 6 = 864 MACs.
    assert gan(4, 4, 2, 3, 3, 2, products_min_macs=864) == ("gemm", False)
    assert gan(4, 4, 2, 3, 3, 2, products_min_macs=865) == ("xla", False)
    # Fewer outputs than inputs at stride 1: the shifted sum (3 -> 2: 16 * 9 * 6 MACs as well).
    assert gan(4, 4, 3, 2, 3, 1, products_min_macs=864) == ("shift", False)


def test_gan_shifted_sum_only_where_the_output_outnumbers_its_channels() -> None:
    # Narrowing stride-1 layers: the shifted sum copies the kernel transposed (k·k·Cin·Cout values), im2col the
    # input k·k times (k·k·Cin·pixels); the second is the smaller copy while pixels <= Cout.
    on = dict(products_min_macs=0)
    assert gan(8, 8, 1024, 512, 2, 1, **on) == ("gemm", False)  # pix2pix's inner transposed-convolution phases
    assert gan(16, 32, 1024, 512, 2, 1, **on) == ("gemm", False)  # 512 pixels, 512 channels
    assert gan(16, 33, 1024, 512, 2, 1, **on) == ("shift", False)
    assert gan(4, 4, 64, 3, 7, 1, **on) == ("shift", False)  # an RGB head
    assert gan(1, 2, 64, 3, 7, 1, **on) == ("gemm", False)
    assert plan(8, 8, 1024, 512, 2, 1, impl="gemm", use="gan").method == "gemm"  # the forced products too
    assert plan(64, 64, 1024, 512, 2, 1, impl="gemm", use="gan").method == "shift"


def test_gan_generic_path_takes_the_products_at_any_size() -> None:
    assert gan(4, 4, 2, 3, 3, 2, tiny_output_pixels=16) == ("gemm", False)
    assert gan(4, 4, 2, 3, 3, 2, tiny_output_pixels=15) == ("xla", False)
    assert gan(40, 40, 8, 1, 4, 1) == ("shift", False)  # one-channel stride-1 outputs (PatchGAN logits)
    assert gan(40, 40, 8, 1, 4, 2) == ("xla", False)  # ... but not strided ones


def test_gan_winograd_thresholds() -> None:
    # 3x3 stride 1, 8 -> 8 channels at 4x4: 16 * 9 * 64 = 9216 MACs.
    on = dict(products_min_macs=0, winograd_min_channels=8, winograd_min_macs=9216)
    assert gan(4, 4, 8, 8, 3, 1, **on) == ("winograd", False)
    assert gan(4, 4, 8, 8, 3, 1, **{**on, "winograd_min_macs": 9217}) == ("gemm", False)
    assert gan(4, 4, 8, 8, 3, 1, **{**on, "winograd_min_channels": 9}) == ("gemm", False)
    assert gan(4, 4, 8, 9, 3, 1, **{**on, "winograd_min_channels": 9}) == ("gemm", False)  # both sides count
    assert gan(4, 4, 8, 8, 3, 2, **on) == ("gemm", False)  # stride 2: never
    assert gan(4, 4, 8, 8, 4, 1, **on) == ("gemm", False)  # 4x4: never
    # Trained kernels are transformed every step: only outputs of trained_winograd_min_pixels amortize that.
    assert gan(4, 4, 8, 8, 3, 1, **on, trained_winograd_min_pixels=16) == ("winograd", False)
    assert gan(4, 4, 8, 8, 3, 1, **on, trained_winograd_min_pixels=17) == ("gemm", False)
    # VGG's kernels are transformed once a run: the floor does not apply there.
    assert vgg_plan(4, 4, 8, 8, jnp.float32, winograd_min_channels=8, winograd_min_macs=9216,
                    trained_winograd_min_pixels=10**9) == ("winograd", "float32")  # fmt: skip


def test_gan_large_outputs_keep_xla() -> None:
    on = dict(products_min_macs=0, xla_min_pixels=64, xla_min_in_channels=8)
    assert gan(8, 8, 8, 16, 3, 1, **on) == ("xla", False)
    assert gan(8, 7, 8, 16, 3, 1, **on) == ("gemm", False)  # 56 pixels
    assert gan(8, 8, 7, 16, 3, 1, **on) == ("gemm", True)  # 7 input channels; the products' forward is XLA's
    assert gan(8, 8, 16, 8, 4, 1, **on) == ("xla", False)  # narrowing the channels, kernels of 3 or more
    assert gan(8, 8, 16, 8, 2, 1, **on) == ("shift", False)  # ... but 2x2 (transposed convolutions' phases)
    # Strided layers keep the products, with XLA's forward pass from xla_min_pixels for kernels of 3 or more.
    assert gan(8, 8, 8, 16, 3, 2, **on) == ("gemm", True)
    assert gan(8, 7, 8, 16, 3, 2, **on) == ("gemm", False)
    assert gan(8, 8, 8, 16, 2, 2, **on) == ("gemm", False)


def test_vgg_bfloat16_gemm_thresholds() -> None:
    # 8x8 px, 4 -> 4 channels: 64 * 9 * 16 = 9216 MACs.
    on = dict(bf16_gemm_min_channels=4, bf16_gemm_min_macs=9216, bf16_gemm_max_pixels=64)
    bf16 = jnp.bfloat16
    assert vgg_plan(8, 8, 4, 4, bf16, **on) == ("gemm", "bfloat16")
    assert vgg_plan(8, 8, 4, 4, bf16, **{**on, "bf16_gemm_min_channels": 5}) == ("xla", "float32")
    assert vgg_plan(8, 8, 4, 4, bf16, **{**on, "bf16_gemm_min_macs": 9217}) == ("xla", "float32")
    assert vgg_plan(8, 8, 4, 4, bf16, **{**on, "bf16_gemm_max_pixels": 63}) == ("xla", "float32")
    assert vgg_plan(8, 8, 4, 4, bf16, SLOW, **on) == ("xla", "float32")  # no fast bfloat16 on this CPU
    assert vgg_plan(8, 8, 4, 4, jnp.float32, **on) == ("xla", "float32")  # float32 never takes the GEMM
    # Winograd by the same two thresholds as the GAN layers', in float32.
    win = dict(winograd_min_channels=4, winograd_min_macs=9216)
    assert vgg_plan(8, 8, 4, 4, bf16, SLOW, **win) == ("winograd", "float32")
    # With fast bfloat16, Winograd's products are bfloat16 (before the GEMM, which loses to it: benchmarks.md).
    assert vgg_plan(8, 8, 4, 4, bf16, **win, **on) == ("winograd", "bfloat16")
    assert vgg_plan(8, 8, 4, 4, jnp.float32, **{**win, "winograd_min_macs": 9217}) == ("xla", "float32")
    # VGG never uses float32 products, whatever the GAN row says.
    assert vgg_plan(8, 8, 4, 4, jnp.float32, products_min_macs=0, tiny_output_pixels=10**6) == ("xla", "float32")


def test_explicit_choices_and_accelerators_ignore_the_table() -> None:
    low = dataclasses.replace(NEVER, products_min_macs=0, winograd_min_channels=1, winograd_min_macs=0)
    for use in conv.USES:
        assert plan(8, 8, 8, 8, 3, 1, use=use, platform="gpu", thresholds=low).method == "xla"
        assert plan(8, 8, 8, 8, 3, 1, impl="xla", use=use, platform="cpu", thresholds=low).method == "xla"
        assert plan(8, 8, 8, 8, 3, 1, impl="gemm", use=use, platform="cpu", thresholds=NEVER).method == "gemm"
        assert plan(8, 8, 8, 8, 3, 1, impl="winograd", use=use, platform="gpu").method == "winograd"
    with pytest.raises(ValueError, match="conv_impl"):
        plan(8, 8, 8, 8, 3, impl="cudnn")
    with pytest.raises(ValueError, match="use"):
        plan(8, 8, 8, 8, 3, use="resnet")


def test_callers_read_the_table_at_the_call(monkeypatch) -> None:
    # The public wrappers of both callers follow a replaced table (and with the shipped one, the shipped answers).
    assert layers.conv_method(8, 8, 2, 3, 3, 2, platform="cpu") == "xla"
    assert vgg.conv_plan(128, 128, 64, 64, jnp.float32, platform="cpu").method == "winograd"
    monkeypatch.setattr(conv, "THRESHOLDS", dataclasses.replace(NEVER, products_min_macs=0))
    assert layers.conv_method(8, 8, 2, 3, 3, 2, platform="cpu") == "gemm"
    assert vgg.conv_plan(128, 128, 64, 64, jnp.float32, platform="cpu").method == "xla"


# --------------------------------------------------------------------------- every algorithm against the exact convolution


def exact(x, w, g, stride, pads):
    """(value, input gradient, kernel gradient) of the cross-correlation, in float64 NumPy, for the output
    cotangent ``g``: the taps summed one by one."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    k = w.shape[0]
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    ho, wo = (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
    y, dxp, dw = 0.0, np.zeros_like(xp), np.zeros_like(w)
    for i in range(k):
        for j in range(k):
            window = (slice(None), slice(i, i + stride * (ho - 1) + 1, stride), slice(j, j + stride * (wo - 1) + 1, stride))
            y = y + np.einsum("bhwc,co->bhwo", xp[window], w[i, j])
            dxp[window] += np.einsum("bhwo,co->bhwc", g, w[i, j])
            dw[i, j] = np.einsum("bhwc,bhwo->co", xp[window], g)
    (t, _), (l, _) = pads
    return y, dxp[:, t : t + x.shape[1], l : l + x.shape[2]], dw


def check(fn, x, w, stride, pads, *, winograd_value=False, winograd_dx=False) -> None:
    """``fn(x, w)``'s value and both gradients against :func:`exact`, to the module docstring's bounds."""
    y, vjp = jax.vjp(fn, jnp.asarray(x), jnp.asarray(w))
    g = np.random.default_rng(7).standard_normal(y.shape).astype(np.float32)
    dx, dw = vjp(jnp.asarray(g))
    want = exact(x, w, g, stride, pads)
    size = exact(np.abs(x), np.abs(w), np.abs(g), stride, pads)  # Σ|terms| of each element
    b, k, c_in, c_out = x.shape[0], w.shape[0], w.shape[2], w.shape[3]
    direct = {"value": k * k * c_in, "input gradient": k * k * c_out, "kernel gradient": b * y.shape[1] * y.shape[2]}
    winograd = {"value": (winograd_value, c_in, np.abs(x).max() * np.abs(w).max()),
                "input gradient": (winograd_dx, c_out, np.abs(g).max() * np.abs(w).max())}  # fmt: skip
    for (name, n), got, exact_value, total in zip(direct.items(), (y, dx, dw), want, size, strict=True):
        used, c, scale = winograd.get(name, (False, 0, 0.0))
        bound = (c + 12) * EPS * 81 * c * scale if used else (n + 2) * EPS * total
        err = np.abs(np.asarray(got, np.float64) - exact_value)
        assert got.shape == exact_value.shape, name
        assert np.all(err <= bound), (name, float((err - bound).max()))


def operands(h, w, c_in, c_out, k, seed=0, batch=2):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, h, w, c_in)).astype(np.float32),
            rng.standard_normal((k, k, c_in, c_out)).astype(np.float32))  # fmt: skip


ON_CPU = pytest.mark.skipif(jax.default_backend() != "cpu", reason="the per-tap gradients and XLA's forward are CPU paths")
TAPS_ALWAYS = dict(tap_gradient_min_channels=1, tap_gradient_min_rows=1, tap_gradient_min_macs=0)
PLANES_ALWAYS = dict(plane_gradient_max_channels=10**9, plane_gradient_min_macs=0)

# (name, impl, stride, padding, channels in -> out, kernel, table overrides or None, Winograd value / input gradient)
CASES = [
    ("xla", "xla", 2, ((1, 0), (2, 1)), (4, 5), 3, None, False),
    ("xla, per-tap kernel gradient", "xla", 1, ((0, 0), (1, 2)), (4, 5), 3, TAPS_ALWAYS, False),
    ("gemm", "gemm", 2, ((1, 2), (0, 1)), (4, 5), 4, None, False),
    ("gemm, per-tap kernel gradient", "gemm", 1, ((1, 1), (2, 0)), (4, 5), 3, TAPS_ALWAYS, False),
    ("gemm, XLA's forward", "auto", 2, ((1, 1), (1, 1)), (4, 5), 3,
     dict(products_min_macs=0, xla_min_pixels=1), False),
    ("shift", "gemm", 1, ((2, 1), (0, 1)), (5, 3), 3, None, False),
    ("winograd", "winograd", 1, ((2, 1), (0, 2)), (4, 5), 3, None, True),
    ("winograd, per-tap kernel gradient", "winograd", 1, ((1, 1), (1, 1)), (4, 5), 3, TAPS_ALWAYS, True),
    # The planes of the thinner side: the input's (any stride), or the output gradient's (stride 1).
    ("xla, planes kernel gradient", "xla", 2, ((1, 0), (2, 1)), (2, 5), 3, PLANES_ALWAYS, False),
    ("xla, planes kernel gradient (output side)", "xla", 1, ((0, 0), (1, 2)), (5, 2), 4, PLANES_ALWAYS, False),
    ("gemm, planes kernel gradient", "gemm", 2, ((1, 2), (0, 1)), (3, 5), 4, PLANES_ALWAYS, False),
    ("shift, planes kernel gradient", "gemm", 1, ((2, 1), (0, 1)), (5, 1), 3, PLANES_ALWAYS, False),
    # A 1x1 layer's kernel gradient is one product whatever the table says.
    ("xla, per-tap kernel gradient (1x1)", "auto", 2, ((1, 0), (0, 1)), (4, 5), 1, {}, False),
]  # fmt: skip


@pytest.mark.parametrize("name, impl, stride, pads, channels, k, table, winograd", CASES, ids=[c[0] for c in CASES])
def test_convolve_equals_the_exact_convolution(monkeypatch, name, impl, stride, pads, channels, k, table, winograd):
    if table is not None:
        if jax.default_backend() != "cpu":
            pytest.skip("the per-tap gradients and XLA's forward are CPU paths")
        monkeypatch.setattr(conv, "THRESHOLDS", dataclasses.replace(NEVER, **table))
    x, w = operands(7, 6, *channels, k)
    ho, wo = (7 + sum(pads[0]) - k) // stride + 1, (6 + sum(pads[1]) - k) // stride + 1
    how = plan(ho, wo, *channels, k, stride, impl=impl)
    assert how.method == name.split(",")[0] and how.xla_forward == ("XLA's forward" in name)

    def fn(a, b):
        return conv.convolve(a, b, stride, pads, impl)

    check(fn, x, w, stride, pads, winograd_value=winograd, winograd_dx=winograd)
    if "per-tap" in name:  # the kernel gradient really is k*k products of [Cout, Cin]
        jaxpr = jax.make_jaxpr(lambda a, b: jax.vjp(fn, a, b)[1](fn(a, b)))(x, w)
        taps = [e for e in _eqns(jaxpr.jaxpr)
                if e.primitive.name == "dot_general" and e.outvars[0].aval.shape == channels[::-1]]  # fmt: skip
        assert len(taps) == k * k
    if "planes" in name:  # ... or one product of k*k planes of the thin side against the other side
        jaxpr = jax.make_jaxpr(lambda a, b: jax.vjp(fn, a, b)[1](fn(a, b)))(x, w)
        thin, wide = sorted(channels)
        planes = [e for e in _eqns(jaxpr.jaxpr)
                  if e.primitive.name == "dot_general" and e.outvars[0].aval.shape == (k * k * thin, wide)]  # fmt: skip
        assert len(planes) == 1


def _eqns(jaxpr):
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _eqns(inner)


@pytest.mark.parametrize("method", ["xla", "gemm", "winograd", "onednn"])
@pytest.mark.parametrize("given", [False, True], ids=["computed", "precomputed"])
def test_vgg_conv3x3_equals_the_exact_convolution(request, method, given) -> None:
    if method == "onednn":
        request.getfixturevalue("onednn")  # float32 here: oneDNN's direct convolution is a plain sum too
    x, w = operands(6, 7, 4, 5, 3, seed=1)
    pads = ((1, 0), (2, 1))
    forms = {}
    if given:  # as with_transposed_kernels / with_winograd_kernels precompute them
        kt = conv.transposed_kernel(w)
        forms = dict(kernel_t=kt, kernel_w=conv.winograd_kernel(w), kernel_t_w=conv.winograd_kernel(kt))
    check(lambda a, b: conv.conv3x3(a, b, pads, method=method, **forms), x, w, 1, pads,
          winograd_value=method == "winograd", winograd_dx=method == "winograd")  # fmt: skip


# --------------------------------------------------------------------------- choices measured on this machine
# (bfloat16 VGG layers on CPUs with fast bfloat16; the timings are injected, never measured in a test)

from nstjax.models import _tuning  # noqa: E402

XLA32, WIN32, WIN16, GEMM16 = ("xla", "float32"), ("winograd", "float32"), ("winograd", "bfloat16"), ("gemm", "bfloat16")


def test_fastest_prefers_earlier_candidates_within_the_margin() -> None:
    order = (XLA32, WIN32, WIN16)
    assert _tuning.fastest({XLA32: 1.0, WIN32: 0.5, WIN16: 0.3}, order) == WIN16
    # 4 % faster is noise: the earlier (faster-compiling) candidate stays.
    assert _tuning.fastest({XLA32: 1.0, WIN32: 0.96, WIN16: 2.0}, order) == XLA32
    assert _tuning.fastest({XLA32: float("inf"), WIN32: 0.9}, order) == WIN32  # a failed candidate loses
    with pytest.raises(ValueError):
        _tuning.fastest({XLA32: float("inf")}, order)


def test_shape_classes_round_pixels_to_a_power_of_two() -> None:
    assert _tuning.shape_class(64, 64, 256, 256) == "256x256@p12"
    assert _tuning.shape_class(48, 64, 256, 256) == "256x256@p12"  # 3072 px: log2 11.58 -> 12
    assert _tuning.shape_class(32, 64, 256, 256) == "256x256@p11"
    h, w, c_in, c_out = _tuning.class_shape("128x256@p11")
    assert (h * w, c_in, c_out) == (2**11, 128, 256)


def test_a_measured_choice_is_kept_per_machine(tmp_path) -> None:
    calls = []

    def timer(candidates):
        calls.append(candidates)
        return {c: {XLA32: 3.0, WIN32: 2.0, WIN16: 1.0, GEMM16: 0.5}[c] for c in candidates}

    path = tmp_path / "choices.json"
    cache = _tuning.ChoiceCache(path, key="machine A")
    # 64x64 px: the GEMM is a candidate (bf16_gemm_max_pixels) and wins; 128x128 px: it is not tried.
    assert conv.measured_vgg_choice(64, 64, 256, 256, cache=cache, timer=timer) == GEMM16
    assert conv.measured_vgg_choice(128, 128, 128, 128, cache=cache, timer=timer) == WIN16
    assert calls[0] == (XLA32, WIN16, GEMM16) and calls[1] == (XLA32, WIN16)
    # Same class again (a 4:3 neighbour), and a new process on the same machine: no measuring.
    assert conv.measured_vgg_choice(48, 64, 256, 256, cache=cache, timer=timer) == GEMM16
    again = _tuning.ChoiceCache(path, key="machine A")
    assert conv.measured_vgg_choice(64, 64, 256, 256, cache=again, timer=timer) == GEMM16
    assert len(calls) == 2
    # Another machine (CPU model, flags, jax) measures for itself, and both are kept in the file.
    other = _tuning.ChoiceCache(path, key="machine B")
    assert conv.measured_vgg_choice(64, 64, 256, 256, cache=other, timer=lambda c: {XLA32: 1.0}) == XLA32
    # float32 layers are their own classes, between XLA's and float32 Winograd.
    assert conv.measured_vgg_choice(64, 64, 256, 256, jnp.float32, cache=cache, timer=timer) == WIN32
    assert calls[-1] == (XLA32, WIN32)
    assert len(_tuning.ChoiceCache(path, key="machine A")._load()) == 3
    assert _tuning.ChoiceCache(path, key="machine B").get("bfloat16:256x256@p12") == XLA32


def test_a_damaged_choice_file_is_measured_anew(tmp_path) -> None:
    path = tmp_path / "choices.json"
    path.write_text("{not json", encoding="utf-8")
    cache = _tuning.ChoiceCache(path, key="m")
    assert conv.measured_vgg_choice(64, 64, 256, 256, cache=cache, timer=lambda c: {WIN16: 1.0}) == WIN16
    assert _tuning.ChoiceCache(path, key="m").get("bfloat16:256x256@p12") == WIN16


def test_plan_takes_the_measured_choice_on_this_machine_only(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NSTJAX_CONV_TUNING", "1")  # tests run with the fixed rules (conftest)
    monkeypatch.setattr(conv.native, "onednn_available", lambda: False)  # as without the onednn extra
    cache = _tuning.ChoiceCache(tmp_path / "c.json", key="m")
    cache.put("bfloat16:256x256@p12", XLA32, {XLA32: 1.0})
    monkeypatch.setattr(conv, "_CHOICES", cache)
    monkeypatch.setattr(conv.runtime, "fast_bfloat16", lambda flags=None: True)
    assert vgg.conv_plan(64, 64, 256, 256, jnp.bfloat16, platform="cpu").method == "xla"
    assert jnp.dtype(vgg.conv_plan(64, 64, 256, 256, jnp.bfloat16, platform="cpu").compute_dtype) == jnp.float32
    # Asked about another CPU (explicit flags), or with tuning off: the fixed rule (bfloat16 Winograd here).
    assert vgg.conv_plan(64, 64, 256, 256, jnp.bfloat16, platform="cpu", cpu_flags=FAST_BF16).method == "winograd"
    monkeypatch.setenv("NSTJAX_CONV_TUNING", "0")
    assert vgg.conv_plan(64, 64, 256, 256, jnp.bfloat16, platform="cpu").method == "winograd"
    # float32 is never measured: the fixed rule, whatever the cache holds.
    monkeypatch.setenv("NSTJAX_CONV_TUNING", "1")
    cache.put("float32:64x64@p14", XLA32, {XLA32: 1.0})
    assert vgg.conv_plan(128, 128, 64, 64, jnp.float32, platform="cpu").method == "winograd"


def test_estimates_never_wait_for_a_measurement(tmp_path, monkeypatch) -> None:
    # measure=False (the memory estimate before a run): a choice measured before, else the fixed rule; no timing.
    monkeypatch.setenv("NSTJAX_CONV_TUNING", "1")
    monkeypatch.setattr(conv.native, "onednn_available", lambda: False)
    monkeypatch.setattr(conv.runtime, "fast_bfloat16", lambda flags=None: True)
    cache = _tuning.ChoiceCache(tmp_path / "c.json", key="m")
    monkeypatch.setattr(conv, "_CHOICES", cache)
    monkeypatch.setattr(conv, "time_candidates", lambda *a, **k: pytest.fail("measured"))
    assert vgg.conv_plan(64, 64, 256, 256, jnp.bfloat16, platform="cpu", measure=False).method == "winograd"
    cache.put("bfloat16:256x256@p12", XLA32, {XLA32: 1.0})
    assert vgg.conv_plan(64, 64, 256, 256, jnp.bfloat16, platform="cpu", measure=False).method == "xla"
    assert conv.measured_vgg_choice(32, 32, 256, 256, cache=cache, measure=False) is None


def test_timing_works_while_the_caller_traces() -> None:
    import time

    def run(candidate):
        pause = {XLA32: 0.02, WIN16: 0.002}[candidate]
        if candidate == GEMM16:
            raise RuntimeError("cannot compile")

        def call():
            (jnp.ones(3) * 2).block_until_ready()  # eager JAX work: would fail if it joined the caller's trace
            time.sleep(pause)

        return call

    seen = {}

    @jax.jit
    def traced(x):
        # plan() runs inside traces like this one; the timing runs eagerly in a worker thread.
        seen.update(_tuning.time_candidates(run, (XLA32, WIN16, GEMM16), repeats=2))
        return x + 1

    assert float(traced(jnp.zeros(()))) == 1.0
    assert seen[GEMM16] == float("inf") and seen[WIN16] < seen[XLA32]
    assert _tuning.fastest(seen, (XLA32, WIN16, GEMM16)) == WIN16
