"""VGG-19 (nstjax.vgg) against an independent float64 NumPy forward pass.

The NumPy reference below pads, takes 3x3 windows and contracts them with the
HWIO kernels, applies ReLU and 2x2/2 pooling itself; it shares nothing with the
module but the parameter layout. Shapes are tiny; the forward tests run
eagerly so every primitive compiles once per shape and is reused across the
pooling/padding/preprocessing combinations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nstjax.models import vgg
from nstjax.errors import NstjaxError

IMG_H, IMG_W = 20, 24


@pytest.fixture(scope="module")
def params() -> dict:
    return vgg.init_params(0)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(123).random((1, IMG_H, IMG_W, 3)).astype(np.float32)


def _walk_eqns(jaxpr, acc: list) -> list:
    """Equations of a jaxpr, recursing into sub-jaxprs (jit, remat, custom_vjp…)."""
    for eqn in jaxpr.eqns:
        acc.append(eqn)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                if hasattr(sub, "eqns"):
                    _walk_eqns(sub, acc)
                elif hasattr(sub, "jaxpr"):
                    inner = sub.jaxpr
                    _walk_eqns(inner if hasattr(inner, "eqns") else inner.jaxpr, acc)
    return acc


def _walk_primitives(jaxpr, acc: list[str]) -> list[str]:
    """Primitive names of a jaxpr, recursing into sub-jaxprs."""
    acc.extend(eqn.primitive.name for eqn in _walk_eqns(jaxpr, []))
    return acc


# --------------------------------------------------------------------------- #
# Independent NumPy VGG-19
# --------------------------------------------------------------------------- #

NP_BLOCKS = [(64, 2), (128, 2), (256, 4), (512, 4), (512, 4)]


def np_preprocess(img: np.ndarray, preprocessing: str) -> np.ndarray:
    x = np.asarray(img, np.float64)
    if preprocessing == "caffe":
        return x[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68])
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return (x - mean) / std


def np_conv3x3(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, padding: str) -> np.ndarray:
    """x [H, W, Cin] float64, kernel HWIO -> [H, W, Cout]; stride 1, 'same' size."""
    mode = {"zero": "constant", "reflect": "reflect", "replicate": "edge"}[padding]
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode=mode)
    windows = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(0, 1))  # [H, W, Cin, 3, 3]
    return np.einsum("hwcyx,yxco->hwo", windows, np.asarray(kernel, np.float64)) + np.asarray(bias, np.float64)


def np_pool(x: np.ndarray, pooling: str) -> np.ndarray:
    h, w, c = x.shape
    blocks = x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c)
    return blocks.max(axis=(1, 3)) if pooling == "max" else blocks.mean(axis=(1, 3))


def np_vgg(params, img: np.ndarray, deepest: str, pooling: str, padding: str, preprocessing: str) -> dict:
    """Every activation up to ``deepest`` of one image [H, W, 3]."""
    out = {}
    x = np_preprocess(img, preprocessing)
    for b, (_, count) in enumerate(NP_BLOCKS, 1):
        for n in range(1, count + 1):
            p = params[f"conv{b}_{n}"]
            x = np_conv3x3(x, p["kernel"], p["bias"], padding)
            out[f"conv{b}_{n}"] = x
            if deepest == f"conv{b}_{n}":
                return out
            x = np.maximum(x, 0.0)
            out[f"relu{b}_{n}"] = x
            if deepest == f"relu{b}_{n}":
                return out
        x = np_pool(x, pooling)
        out[f"pool{b}"] = x
        if deepest == f"pool{b}":
            return out
    return out


# --------------------------------------------------------------------------- #
# Layer bookkeeping
# --------------------------------------------------------------------------- #


def test_layer_order_and_counts() -> None:
    expected = []
    for b, (_, count) in enumerate(NP_BLOCKS, 1):
        for n in range(1, count + 1):
            expected += [f"conv{b}_{n}", f"relu{b}_{n}"]
        expected.append(f"pool{b}")
    assert vgg.LAYERS == tuple(expected)
    assert sum(n.startswith("conv") for n in vgg.LAYERS) == 16
    assert sum(n.startswith("relu") for n in vgg.LAYERS) == 16
    assert sum(n.startswith("pool") for n in vgg.LAYERS) == 5
    assert len(vgg.LAYERS) == 37
    assert vgg.CONV_LAYERS == tuple(n for n in expected if n.startswith("conv"))


def test_conv_channels() -> None:
    expected = {
        "conv1_1": (3, 64), "conv1_2": (64, 64),
        "conv2_1": (64, 128), "conv2_2": (128, 128),
        "conv3_1": (128, 256), "conv3_2": (256, 256), "conv3_3": (256, 256), "conv3_4": (256, 256),
        "conv4_1": (256, 512), "conv4_2": (512, 512), "conv4_3": (512, 512), "conv4_4": (512, 512),
        "conv5_1": (512, 512), "conv5_2": (512, 512), "conv5_3": (512, 512), "conv5_4": (512, 512),
    }  # fmt: skip
    assert vgg.CONV_CHANNELS == expected
    assert list(vgg.CONV_CHANNELS) == list(vgg.CONV_LAYERS)


def test_layer_shape_formula() -> None:
    # conv/relu of block b: b-1 floor-halvings; pool b: b floor-halvings
    for h, w in [(33, 45), (64, 17), (7, 100), (1, 1)]:
        for b in range(1, 6):
            for name in vgg.LAYERS:
                if vgg.layer_block(name) != b:
                    continue
                k = b if name.startswith("pool") else b - 1
                eh, ew = h, w
                for _ in range(k):
                    eh, ew = eh // 2, ew // 2
                assert vgg.layer_shape(name, h, w) == (eh, ew), (name, h, w)


@pytest.mark.parametrize("h, w", [(33, 45), (67, 37)])
def test_layer_shape_matches_feature_shapes_for_odd_size(params, h, w) -> None:
    # shapes of every layer through pool5, traced (no arithmetic) with jax.eval_shape
    img = jax.ShapeDtypeStruct((2, h, w, 3), jnp.float32)
    feats = jax.eval_shape(lambda p, x: vgg.features(p, x, vgg.LAYERS, pooling="avg"), params, img)
    assert set(feats) == set(vgg.LAYERS)
    for name in vgg.LAYERS:
        assert feats[name].shape == (2, *vgg.layer_shape(name, h, w), vgg.layer_channels(name)), name
    assert vgg.layer_shape("pool5", 33, 45) == (1, 1)
    assert vgg.layer_shape("relu5_4", 33, 45) == (2, 2)


def test_layer_shape_matches_computed_features_for_odd_size(params) -> None:
    h, w = 13, 19
    img = np.random.default_rng(1).random((1, h, w, 3)).astype(np.float32)
    layers = ("relu1_1", "pool1", "conv2_2", "pool2", "relu3_1", "pool3")
    feats = vgg.features(params, img, layers)
    for name in layers:
        assert feats[name].shape == (1, *vgg.layer_shape(name, h, w), vgg.layer_channels(name)), name


def test_validate_layers() -> None:
    assert vgg.validate_layers(["relu1_1", "conv4_2"]) == ("relu1_1", "conv4_2")
    assert vgg.validate_layers(iter(["pool5"])) == ("pool5",)
    with pytest.raises(NstjaxError, match=r"relu4_5.*did you mean.*relu4_4"):
        vgg.validate_layers(["relu1_1", "relu4_5"])
    with pytest.raises(NstjaxError, match=r"rel1_1.*did you mean.*relu1_1"):
        vgg.validate_layers(["rel1_1"], what="style layer")
    with pytest.raises(NstjaxError, match="style layer"):
        vgg.validate_layers(["rel1_1"], what="style layer")
    with pytest.raises(NstjaxError):
        vgg.features({}, np.zeros((1, 8, 8, 3), np.float32), ("relu9_1",))


@pytest.mark.parametrize(
    "layers, padding, expected",
    [
        ((), "zero", 1),
        (("conv1_1",), "zero", 1),
        (("relu1_2",), "reflect", 2),
        (("pool1",), "zero", 2),
        (("pool1",), "reflect", 2),
        (("relu1_1", "relu3_1"), "zero", 4),
        (("relu3_1", "relu1_1"), "reflect", 8),
        (("pool3",), "replicate", 8),
        (("relu5_1",), "zero", 16),
        (("relu5_1",), "reflect", 32),
        (("conv5_4", "pool2"), "replicate", 16),
        (("pool5",), "zero", 32),
        (("pool5",), "reflect", 32),
    ],
)
def test_min_input_size(layers, padding, expected) -> None:
    assert vgg.min_input_size(layers, padding) == expected


def test_min_input_size_is_minimal() -> None:
    """At the minimum every layer is >= 1 px (>= 2 px at the deepest reflect conv); one less is not."""
    for name in vgg.LAYERS:
        for padding in vgg.PADDINGS:
            m = vgg.min_input_size([name], padding)
            need = 2 if padding == "reflect" and not name.startswith("pool") else 1
            assert min(vgg.layer_shape(name, m, m)) >= need, (name, padding)
            assert min(vgg.layer_shape(name, m - 1, m - 1)) < need, (name, padding)


# --------------------------------------------------------------------------- #
# Forward pass vs NumPy
# --------------------------------------------------------------------------- #

CHECKED = ("conv1_1", "relu1_2", "pool1", "conv2_2", "pool2", "conv3_1", "relu3_4", "pool3", "conv4_1")


@pytest.mark.parametrize("preprocessing", vgg.PREPROCESSINGS)
@pytest.mark.parametrize("pooling", vgg.POOLINGS)
@pytest.mark.parametrize("padding", vgg.PADDINGS)
def test_forward_matches_numpy(params, image, preprocessing, pooling, padding) -> None:
    with jax.default_matmul_precision("float32"):  # no TF32 on GPUs
        got = vgg.features(
            params, image, CHECKED, pooling=pooling, padding=padding, preprocessing=preprocessing
        )
    ref = np_vgg(params, image[0], CHECKED[-1], pooling, padding, preprocessing)
    assert set(got) == set(CHECKED)
    for name in CHECKED:
        out = np.asarray(got[name])
        assert out.dtype == np.float32
        assert out.shape == (1, *ref[name].shape), name
        scale = np.abs(ref[name]).max()
        assert scale > 0, name
        np.testing.assert_allclose(out[0], ref[name], rtol=1e-4, atol=1e-4 * scale, err_msg=name)


def test_caffe_preprocessing_flips_to_bgr(params, image) -> None:
    """A kernel that only reads input channel 0 sees blue for caffe, red for torch."""
    p = {k: {"kernel": np.array(v["kernel"]), "bias": np.array(v["bias"])} for k, v in params.items()}
    k = np.zeros((3, 3, 3, 64), np.float32)
    k[1, 1, 0, 0] = 1.0  # output channel 0 = input channel 0 at the centre
    p["conv1_1"]["kernel"] = k
    caffe = np.asarray(vgg.features(p, image, ("conv1_1",), preprocessing="caffe")["conv1_1"])[0, ..., 0]
    torch = np.asarray(vgg.features(p, image, ("conv1_1",), preprocessing="torch")["conv1_1"])[0, ..., 0]
    np.testing.assert_allclose(caffe, image[0, ..., 2] * 255.0 - 103.939, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(torch, (image[0, ..., 0] - 0.485) / 0.229, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- #
# The convolution's hand-written VJP
# --------------------------------------------------------------------------- #


def _lax_conv(x, kernel, padding, kernel_t=None, method="xla", kernel_w=None, kernel_t_w=None):
    del kernel_t, method, kernel_w, kernel_t_w  # JAX's own transpose rule needs no other kernel forms
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("padding", [((1, 1), (1, 1)), ((0, 0), (0, 0)), ((1, 0), (0, 1))])
@pytest.mark.parametrize("dtype, tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_conv3x3_vjp_matches_autodiff(padding, dtype, tol) -> None:
    """Input and kernel gradients equal JAX's own transpose rule (odd sizes, asymmetric padding)."""
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.standard_normal((2, 7, 9, 5)), dtype)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 5, 4)), dtype)
    weights = jnp.asarray(rng.standard_normal(_lax_conv(x, kernel, padding).shape), jnp.float32)

    def loss(conv, x, kernel):
        return jnp.sum(conv(x, kernel, padding).astype(jnp.float32) * weights)

    ours = jax.grad(lambda x, k: loss(vgg.conv3x3, x, k), argnums=(0, 1))(x, kernel)
    theirs = jax.grad(lambda x, k: loss(_lax_conv, x, k), argnums=(0, 1))(x, kernel)
    np.testing.assert_array_equal(vgg.conv3x3(x, kernel, padding), _lax_conv(x, kernel, padding))
    for name, a, b in zip(("input", "kernel"), ours, theirs):
        assert a.dtype == b.dtype == dtype, name
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * np.abs(b).max(), err_msg=name)


@pytest.mark.parametrize("padding", vgg.PADDINGS)
@pytest.mark.parametrize("prepared", [False, True], ids=["kernel", "kernel_t"])
def test_network_gradient_matches_plain_autodiff(params, image, padding, prepared) -> None:
    """The image gradient through the network equals the one of lax's convolution, for every
    padding, with the transposed kernels computed inside or given with the parameters."""
    layers = ("relu1_1", "relu2_1")
    ours_params = vgg.with_transposed_kernels(params) if prepared else params

    def loss(p, x):
        feats = vgg.features(p, x, layers, padding=padding, pooling="avg")
        return sum(jnp.mean(jnp.square(f)) for f in feats.values())

    ours = jax.grad(loss, argnums=1)(ours_params, image)
    original = vgg.conv3x3
    try:
        vgg.conv3x3 = _lax_conv  # what the network was before the custom VJP
        theirs = jax.grad(loss, argnums=1)(params, image)
    finally:
        vgg.conv3x3 = original
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert np.abs(theirs).max() > 0
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())


def test_backward_convolutions_use_hwio_kernels(params, image) -> None:
    """Every convolution with a 3x3 kernel in the image gradient keeps the forward's HWIO layout.

    JAX's default transpose rule would convolve with the kernel as OIHW instead
    (I/O swapped in the dimension numbers), the slow path inside loops on XLA:CPU.
    """
    fn = jax.grad(lambda x: jnp.sum(vgg.features(params, x, ("relu2_1",), conv_impl="xla")["relu2_1"]))
    eqns = [e for e in _walk_eqns(jax.make_jaxpr(fn)(image).jaxpr, []) if e.primitive.name == "conv_general_dilated"]
    with_kernels = [e for e in eqns if e.invars[1].aval.shape[:2] == (3, 3)]
    assert len(with_kernels) >= 6  # 3 forward + 3 input gradients
    specs = {e.params["dimension_numbers"].rhs_spec for e in with_kernels}
    assert specs == {(3, 2, 0, 1)}, specs  # HWIO: out channels at axis 3, in channels at axis 2


def test_transposed_kernels_given_once(params, image) -> None:
    """With ``kernel_t`` in the parameters, an image gradient transposes no kernel;
    the features are the same and ``kernel_t`` is the flipped, I/O-swapped kernel."""
    prepared = vgg.with_transposed_kernels(params)
    k = params["conv2_1"]["kernel"]
    kt = prepared["conv2_1"]["kernel_t"]
    assert kt.shape == (3, 3, k.shape[3], k.shape[2])
    assert kt[0, 2, 5, 7] == k[2, 0, 7, 5]  # independent index arithmetic
    assert vgg.with_transposed_kernels(prepared)["conv2_1"]["kernel_t"] is kt  # idempotent

    layers = ("relu2_1",)
    np.testing.assert_array_equal(vgg.features(prepared, image, layers)["relu2_1"],
                                  vgg.features(params, image, layers)["relu2_1"])

    def kernel_flips(p):
        fn = jax.grad(lambda p, x: jnp.sum(vgg.features(p, x, layers)["relu2_1"]), argnums=1)
        eqns = _walk_eqns(jax.make_jaxpr(fn)(p, image).jaxpr, [])  # parameters as arguments, as under jit
        return [e for e in eqns if e.primitive.name == "rev" and e.invars[0].aval.shape[:2] == (3, 3)]

    assert len(kernel_flips(params)) == 3  # transposed in every evaluation ...
    assert not kernel_flips(prepared)  # ... or not at all


# --------------------------------------------------------------------------- #
# Nothing past the deepest requested layer
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "layers, n_convs",
    [
        (("relu2_1",), 3),  # conv1_1, conv1_2, conv2_1
        (("relu1_1",), 1),
        (("conv1_2", "relu2_1"), 3),
        (("pool2",), 4),
        (("conv3_2",), 6),
    ],
)
def test_computes_nothing_past_deepest_layer(params, image, layers, n_convs) -> None:
    jaxpr = jax.make_jaxpr(lambda p, x: vgg.features(p, x, layers, conv_impl="xla"))(params, image)
    assert _walk_primitives(jaxpr.jaxpr, []).count("conv_general_dilated") == n_convs


def test_deeper_params_not_needed(params, image) -> None:
    shallow = {k: v for k, v in params.items() if k in ("conv1_1", "conv1_2", "conv2_1", "conv2_2")}
    out = vgg.features(shallow, image, ("relu2_1",))
    ref = vgg.features(params, image, ("relu2_1",))
    np.testing.assert_array_equal(np.asarray(out["relu2_1"]), np.asarray(ref["relu2_1"]))


def test_params_past_deepest_layer_not_needed(params, image) -> None:
    """relu2_1 needs conv1_1, conv1_2, conv2_1 and nothing else."""
    shallow = {k: v for k, v in params.items() if k in ("conv1_1", "conv1_2", "conv2_1")}
    out = vgg.features(shallow, image, ("relu2_1",))
    ref = vgg.features(params, image, ("relu2_1",))
    np.testing.assert_array_equal(np.asarray(out["relu2_1"]), np.asarray(ref["relu2_1"]))


# --------------------------------------------------------------------------- #
# bfloat16 compute
# --------------------------------------------------------------------------- #

BF16_LAYERS = ("relu1_1", "pool1", "relu2_1")


def test_bfloat16_compute(params, image) -> None:
    f32 = vgg.features(params, image, BF16_LAYERS)
    bf16 = jax.jit(lambda p, x: vgg.features(p, x, BF16_LAYERS, dtype=jnp.bfloat16))(params, image)
    for name in BF16_LAYERS:
        assert bf16[name].dtype == jnp.bfloat16, name
        ref = np.asarray(f32[name])
        out = np.asarray(bf16[name].astype(jnp.float32))
        # bfloat16 keeps 8 mantissa bits (~0.4%); through a few layers, within 3%
        # of the layer's largest activation.
        np.testing.assert_allclose(out, ref, rtol=0, atol=3e-2 * np.abs(ref).max(), err_msg=name)
        assert np.abs(out - ref).max() > 0  # really computed in bfloat16

    # with XLA's convolutions, they take bfloat16 operands (tests/test_conv_gemm.py: the other plans) ...
    jaxpr = jax.make_jaxpr(lambda p, x: vgg.features(p, x, ("relu1_1",), dtype=jnp.bfloat16, conv_impl="xla"))(
        params, image
    )
    convs = [e for e in _walk_eqns(jaxpr.jaxpr, []) if e.primitive.name == "conv_general_dilated"]
    assert convs and all(v.aval.dtype == jnp.bfloat16 for e in convs for v in e.invars)
    # ... while parameters stay float32, both the ones passed in and freshly initialised ones
    assert all(v.dtype == np.float32 for p in params.values() for v in p.values())
    model = vgg.VGG19(dtype=jnp.bfloat16)
    fresh = jax.eval_shape(
        lambda key, x: model.init(key, x, ("relu1_2",)), jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3))
    )["params"]
    leaves = jax.tree_util.tree_leaves(fresh)
    assert leaves and all(leaf.dtype == jnp.float32 for leaf in leaves)


# --------------------------------------------------------------------------- #
# Rematerialisation
# --------------------------------------------------------------------------- #

REMAT_LAYERS = ("relu1_2", "relu2_1", "pool2")
REMAT_PRIMITIVES = {"checkpoint", "remat", "remat2"}


def _remat_loss(params, x, remat):
    feats = vgg.features(params, x, REMAT_LAYERS, pooling="avg", remat=remat)
    return sum(jnp.mean(jnp.square(feats[n])) * (i + 1) for i, n in enumerate(REMAT_LAYERS))


def test_remat_modes_same_gradient(params, image) -> None:
    small = {k: params[k] for k in ("conv1_1", "conv1_2", "conv2_1", "conv2_2")}
    grads, prims = {}, {}
    for remat in vgg.REMATS:
        fn = jax.grad(lambda x: _remat_loss(small, x, remat))
        grads[remat] = np.asarray(jax.jit(fn)(image))
        prims[remat] = set(_walk_primitives(jax.make_jaxpr(fn)(image).jaxpr, []))
    ref = grads["none"]
    assert np.abs(ref).max() > 0
    for remat in ("conv", "block"):
        np.testing.assert_allclose(grads[remat], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max(), err_msg=remat)
        assert prims[remat] & REMAT_PRIMITIVES, (remat, sorted(prims[remat]))
    assert not prims["none"] & REMAT_PRIMITIVES


def test_bad_options_raise(params, image) -> None:
    with pytest.raises(ValueError, match="pooling"):
        vgg.features(params, image, ("relu1_1",), pooling="min")
    with pytest.raises(ValueError, match="remat"):
        vgg.features(params, image, ("relu1_1",), remat="all")
    with pytest.raises(ValueError, match="preprocessing"):
        vgg.features(params, image, ("relu1_1",), preprocessing="keras")


# --------------------------------------------------------------------------- #
# init_params
# --------------------------------------------------------------------------- #


def test_init_params(params) -> None:
    again = vgg.init_params(0)
    other = vgg.init_params(1)
    assert set(params) == set(vgg.CONV_LAYERS)
    for name, (c_in, c_out) in vgg.CONV_CHANNELS.items():
        kernel, bias = params[name]["kernel"], params[name]["bias"]
        assert kernel.shape == (3, 3, c_in, c_out) and kernel.dtype == np.float32
        assert bias.shape == (c_out,) and bias.dtype == np.float32
        np.testing.assert_array_equal(bias, 0.0)
        np.testing.assert_array_equal(kernel, again[name]["kernel"])
        assert not np.allclose(kernel, other[name]["kernel"])
        std = np.sqrt(2.0 / (9 * c_in))
        assert kernel.std() == pytest.approx(std, rel=0.05), name
        assert abs(kernel.mean()) < 0.05 * std, name
