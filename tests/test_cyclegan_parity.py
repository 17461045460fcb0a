"""nstjax's CycleGAN against the PyTorch reference (references/cyclegan_torch.py), from the same parameters.

The reference is written the way junyanz/pytorch-CycleGAN-and-pix2pix writes it
(nn.Sequential ResNet generator with ReflectionPad2d and InstanceNorm2d,
NLayerDiscriminator, GANLoss('lsgan'), ImagePool, optimize_parameters). The
PyTorch networks are initialised by the authors' rule (N(0, 0.02), zero biases)
and converted to nstjax's layout: conv weights [O, I, kh, kw] -> [kh, kw, I, O],
transposed-conv weights [I, O, kh, kw] -> [kh, kw, I, O]. nstjax has no bias
before a non-affine instance norm (it cancels); the reference's are zero at
init and the tests check that they make no difference to any output.

Names: the authors' netG_A / netG_B / netD_A / netD_B are nstjax's g_ab / g_ba /
d_b / d_a (netD_A judges domain B), and their loss_idt_A (|G_A(B) - B|) is
nstjax's g_idt_b.

Precision: float32 on both sides, matmul precision pinned to "highest"
(jax.default_matmul_precision; torch.set_float32_matmul_precision). Tolerances
are stated at each assertion.

The tiny configuration (ngf 8, ndf 8, 2 blocks, 32 px, batch 4) is the one
tests/test_cyclegan.py trains with, so the jitted train step compiles once for
both files.
"""

from __future__ import annotations

import sys
from copy import deepcopy
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "references"))
import cyclegan_torch as ref  # noqa: E402

from _adam_step import check_first_adam_step  # noqa: E402
from nstjax.cyclegan import CycleGANConfig, CycleGANState, LossConfig, ModelConfig, init_state, train_step_fn  # noqa: E402
from nstjax.losses.gan import discriminator_loss, fake_loss, generator_loss, real_loss  # noqa: E402
from nstjax.models.patchgan import PatchGAN, patch_grid  # noqa: E402
from nstjax.models.layers import conv_transpose_stride2  # noqa: E402
from nstjax.models.resnet_generator import ResnetGenerator  # noqa: E402
from nstjax.models.unet import UnetGenerator  # noqa: E402
from nstjax.train import TrainSettings, data_mesh, replicate, shard_batch  # noqa: E402

TINY = ModelConfig(ngf=8, ndf=8, blocks=2, size=32)
BATCH = 4


@pytest.fixture(autouse=True, scope="module")
def highest_precision():
    torch.set_float32_matmul_precision("highest")
    # One thread: the reference is tiny here, and PyTorch's OpenMP threads spin-wait, which costs seconds
    # per step when the CPUs are shared (8 s instead of 0.3 s for this step under load).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with jax.default_matmul_precision("highest"):
        yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- conversion


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().copy()  # a copy: the optimiser updates PyTorch's tensors in place


# nstjax drops the biases before instance norms; the reference's are zero at init (checked while this is
# True). After an Adam step they are not (their gradient is rounding noise), and they make no difference.
CHECK_ZERO_BIASES = [True]


def _conv(m, bias: bool) -> dict:
    out = {"kernel": _np(m.weight).transpose(2, 3, 1, 0)}
    if bias:
        out["bias"] = _np(m.bias)
    elif CHECK_ZERO_BIASES[0]:
        assert m.bias is None or not _np(m.bias).any()
    return out


def _conv_t(m) -> dict:
    if CHECK_ZERO_BIASES[0]:
        assert m.bias is None or not _np(m.bias).any()
    return {"kernel": _np(m.weight).transpose(2, 3, 0, 1)}


def resnet_params(g: ref.ResnetGenerator) -> dict:
    layers = list(g.model)
    convs = [m for m in layers if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    blocks = [m for m in layers if isinstance(m, ref.ResnetBlock)]
    params = {"stem": _conv(convs[0], False), "down1": _conv(convs[1], False), "down2": _conv(convs[2], False)}
    for i, block in enumerate(blocks):
        c1, c2 = [m for m in block.conv_block if isinstance(m, torch.nn.Conv2d)]
        params[f"block{i}"] = {"conv1": _conv(c1, False), "conv2": _conv(c2, False)}
    ups = convs[3:5]
    for i, m in enumerate(ups, 1):
        params[f"up{i}"] = _conv_t(m) if isinstance(m, torch.nn.ConvTranspose2d) else _conv(m, False)
    params["head"] = _conv(convs[5], True)
    return params


def patchgan_params(d: ref.NLayerDiscriminator) -> dict:
    convs = [m for m in d.model if isinstance(m, torch.nn.Conv2d)]
    params = {f"conv{i}": _conv(m, i == 0) for i, m in enumerate(convs[:-1])}
    params["head"] = _conv(convs[-1], True)
    return params


def unet_params(g: ref.GDLUnetGenerator) -> dict:
    params = {f"down{i}": _conv(m.conv, False) for i, m in enumerate(g.down)}
    params.update({f"up{i}": _conv(m.conv, False) for i, m in enumerate(g.up)})
    params["head"] = _conv(g.head.conv, True)
    return params


def nchw(x: np.ndarray):
    return torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc(t) -> np.ndarray:
    return _np(t).transpose(0, 2, 3, 1)


def images(seed: int, shape=(BATCH, 32, 32, 3)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


# ----------------------------------------------------------------------------- networks


@pytest.mark.parametrize("impl", ["auto", "xla", "gemm"])
@pytest.mark.parametrize("k, pad, out_pad", [(2, 0, 0), (3, 1, 1), (4, 1, 0), (6, 2, 0)])
def test_transposed_convolution_is_pytorchs(k, pad, out_pad, impl):
    # Value and both gradients against PyTorch's conv_transpose2d in float64, for the odd kernel (one
    # convolution to 4 Cout channels) and even ones (four phase convolutions with their own kernel gradient).
    rng = np.random.default_rng(k)
    x = rng.standard_normal((2, 5, 7, 6)).astype(np.float32)
    w = rng.standard_normal((6, 4, k, k)).astype(np.float32)  # PyTorch: [Cin, Cout, k, k]
    g = rng.standard_normal((2, 4, 10, 14)).astype(np.float32)  # the output's gradient, NCHW

    def torch_side(x, w, g):  # (value, dx, dw) in float64, NHWC / HWIO
        xt = torch.tensor(x.transpose(0, 3, 1, 2), dtype=torch.float64, requires_grad=True)
        wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
        y = torch.nn.functional.conv_transpose2d(xt, wt, stride=2, padding=pad, output_padding=out_pad)
        (y * torch.tensor(g, dtype=torch.float64)).sum().backward()
        return (y.detach().numpy().transpose(0, 2, 3, 1), xt.grad.numpy().transpose(0, 2, 3, 1),
                wt.grad.numpy().transpose(2, 3, 0, 1))  # fmt: skip

    exact = torch_side(x, w, g)
    # Each result is a sum of n products, so float32 (with any summation order) is within (n + 2) eps of
    # the sum of their magnitudes, which is the same computation on |x|, |w|, |g|.
    magnitude = torch_side(np.abs(x), np.abs(w), np.abs(g))
    terms = (k * k * 6, k * k * 4, 2 * 5 * 7)

    fn = lambda a, b: conv_transpose_stride2(a, b, pad, out_pad, impl)  # noqa: E731
    y, vjp = jax.vjp(fn, jnp.asarray(x), jnp.asarray(w.transpose(2, 3, 0, 1)))
    got = (y, *vjp(jnp.asarray(g.transpose(0, 2, 3, 1))))
    assert got[0].shape == (2, 10, 14, 4)
    for name, ours, want, size, n in zip(("value", "dx", "dw"), got, exact, magnitude, terms, strict=True):
        err = np.abs(np.asarray(ours, np.float64) - want)
        assert ours.shape == want.shape and np.all(err <= (n + 2) * np.finfo(np.float32).eps * size), name


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_resnet_generator_matches_reference(upsample):
    torch.manual_seed(1)
    g = ref.init_weights(ref.ResnetGenerator(ngf=8, n_blocks=2, upsample=upsample))
    x = images(1)
    got = ResnetGenerator(ngf=8, blocks=2, upsample=upsample).apply({"params": resnet_params(g)}, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(got), nhwc(g(nchw(x))), atol=1e-5)  # outputs in (-1, 1)


def test_default_resnet_generator_has_the_papers_layout():
    # ngf 64, 9 blocks: the authors' resnet_9blocks (11.38M parameters; 5,248 fewer here without the
    # biases before instance norms), and the same function at 64 px.
    torch.manual_seed(2)
    g = ref.init_weights(ref.ResnetGenerator())
    params = resnet_params(g)
    shapes = jax.tree.map(np.shape, params)
    expect = jax.eval_shape(ResnetGenerator().init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))["params"]
    assert shapes == jax.tree.map(lambda s: s.shape, expect)
    n_ours = sum(x.size for x in jax.tree.leaves(params))
    n_ref = sum(p.numel() for p in g.parameters())
    biases_before_norms = 64 + 128 + 256 + 9 * 2 * 256 + 128 + 64
    assert n_ref == 11_378_179 and n_ours == n_ref - biases_before_norms
    x = images(2, (1, 64, 64, 3))
    # XLA's convolutions: on CPU "auto" would compute the big layers as matrix products, which
    # tests/test_cyclegan.py checks against XLA's convolutions directly (cheaper to compile there).
    got = jax.jit(ResnetGenerator(conv_impl="xla").apply)({"params": params}, jnp.asarray(x))
    # 25 convolutions and instance norms deep: float32 rounding grows to ~1e-5 (outputs in (-1, 1)).
    np.testing.assert_allclose(np.asarray(got), nhwc(g(nchw(x))), atol=5e-5)


def test_patchgan_matches_reference_and_has_70px_patches():
    torch.manual_seed(3)
    d = ref.init_weights(ref.NLayerDiscriminator(ndf=8))
    x = images(3, (2, 64, 64, 3))
    got = PatchGAN(ndf=8).apply({"params": patchgan_params(d)}, jnp.asarray(x))
    want = nhwc(d(nchw(x)))
    assert got.shape == want.shape == (2, 6, 6, 1) and patch_grid(64) == 6 and patch_grid(256) == 30
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("depth", [3, 4])
def test_gdl_unet_matches_reference(depth):
    torch.manual_seed(4)
    g = ref.init_weights(ref.GDLUnetGenerator(ngf=8, depth=depth))
    x = images(4, (2, 32, 48, 3))
    got = UnetGenerator(ngf=8, depth=depth).apply({"params": unet_params(g)}, jnp.asarray(x))
    assert got.shape == (2, 32, 48, 3)
    np.testing.assert_allclose(np.asarray(got), nhwc(g(nchw(x))), atol=1e-5)


# ----------------------------------------------------------------------------- losses


def test_gan_losses_match_their_definitions():
    rng = np.random.default_rng(5)
    real, fake = rng.standard_normal((2, 3, 3, 1)), rng.standard_normal((2, 3, 3, 1))
    r, f = torch.tensor(real), torch.tensor(fake)
    mse, bce = torch.nn.functional.mse_loss, torch.nn.functional.binary_cross_entropy_with_logits
    expect = {
        ("lsgan", "real"): mse(r, torch.ones_like(r)), ("lsgan", "fake"): mse(f, torch.zeros_like(f)),
        ("lsgan", "g"): mse(f, torch.ones_like(f)),
        ("bce", "real"): bce(r, torch.ones_like(r)), ("bce", "fake"): bce(f, torch.zeros_like(f)),
        ("bce", "g"): bce(f, torch.ones_like(f)),
        ("hinge", "real"): torch.relu(1 - r).mean(), ("hinge", "fake"): torch.relu(1 + f).mean(),
        ("hinge", "g"): -f.mean(),
    }  # fmt: skip
    for (kind, term), value in expect.items():
        got = {"real": lambda: real_loss(kind, real), "fake": lambda: fake_loss(kind, fake),
               "g": lambda: generator_loss(kind, fake)}[term]()  # fmt: skip
        np.testing.assert_allclose(float(got), float(value), rtol=1e-6, err_msg=f"{kind} {term}")
        if term == "real":
            total = float(discriminator_loss(kind, real, fake))
            np.testing.assert_allclose(total, float(value) + float(expect[(kind, "fake")]), rtol=1e-6)
    # Multi-scale logits: the mean of the per-scale losses.
    two = generator_loss("hinge", [fake, 2 * fake])
    np.testing.assert_allclose(float(two), -1.5 * fake.mean(), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown GAN loss"):
        real_loss("wgan", real)


# ----------------------------------------------------------------------------- one training step


def reference_model(seed: int = 0):
    torch.manual_seed(seed)
    g_a = ref.init_weights(ref.ResnetGenerator(ngf=8, n_blocks=2))
    g_b = ref.init_weights(ref.ResnetGenerator(ngf=8, n_blocks=2))
    d_a = ref.init_weights(ref.NLayerDiscriminator(ndf=8))
    d_b = ref.init_weights(ref.NLayerDiscriminator(ndf=8))
    return ref.CycleGAN(g_a, g_b, d_a, d_b)


def state_from(model: ref.CycleGAN, config: CycleGANConfig) -> CycleGANState:
    state = init_state(config, total_steps=100, decay_steps=50)  # step 0: the learning rate is 2e-4
    g = {"g_ab": resnet_params(model.netG_A), "g_ba": resnet_params(model.netG_B)}
    d = {"d_a": patchgan_params(model.netD_B), "d_b": patchgan_params(model.netD_A)}
    shapes = jax.tree.map(np.shape, (g, d))
    assert shapes == jax.tree.map(np.shape, (state.g.params, state.d.params))
    return replicate(state.replace(g=state.g.replace(params=g), d=state.d.replace(params=d)), data_mesh())


@pytest.fixture(scope="module")
def one_step():
    """One training step of nstjax and of the reference (float32), from the same parameters and batch.

    The reference also runs in float64: its gradients are the exact ones the float32 gradients of both
    sides are held to (tests/_adam_step.py).
    """
    config = CycleGANConfig(model=TINY, loss=LossConfig(), train=TrainSettings(steps=100, batch_size=BATCH))
    model = reference_model()
    state = state_from(model, config)
    before = {**jax.device_get(state.g.params), **jax.device_get(state.d.params)}  # the step donates the state
    a, b = images(10), images(11)
    model.set_input(nchw(a), nchw(b))
    model.optimize_parameters()  # G step with D frozen, then D step on (empty-pool) fakes
    exact = reference_model()
    for net in (exact.netG_A, exact.netG_B, exact.netD_A, exact.netD_B):
        net.double()
    exact.set_input(nchw(a).double(), nchw(b).double())
    exact.optimize_parameters()

    step = train_step_fn(config.model, config.loss, config.optim, config.dtype)
    # Placed as nstjax.train.fit places them (replicated state, batch split over the mesh): the same compiled
    # program as tests/test_cyclegan.py's runs.
    state, metrics = step(state, shard_batch({"a": a, "b": b}, data_mesh()))
    return {"config": config, "model": model, "exact": exact, "before": before, "state": jax.device_get(state),
            "metrics": jax.device_get(metrics)}  # fmt: skip


def reference_tree(model: ref.CycleGAN, grads: bool = False) -> dict:
    """The reference's four networks in nstjax's layout: parameters, or (``grads``) their last gradients."""
    nets = {"g_ab": model.netG_A, "g_ba": model.netG_B, "d_a": model.netD_B, "d_b": model.netD_A}
    CHECK_ZERO_BIASES[0] = False  # after a step the biases before instance norms are not zero (see below)
    try:
        return {name: (resnet_params if name.startswith("g") else patchgan_params)(_grads(net) if grads else net)
                for name, net in nets.items()}  # fmt: skip
    finally:
        CHECK_ZERO_BIASES[0] = True


def _grads(net):
    """A copy of ``net`` whose parameters are the gradients of its last backward pass."""
    copy = deepcopy(net)
    for p, q in zip(net.parameters(), copy.parameters()):
        q.data = p.grad.clone()
    return copy


def test_one_training_step_has_the_reference_losses(one_step):
    metrics, ref_losses = one_step["metrics"], one_step["model"].losses()
    names = {"G_A": "g_gan_ab", "G_B": "g_gan_ba", "cycle_A": "g_cycle_a", "cycle_B": "g_cycle_b",
             "idt_A": "g_idt_b", "idt_B": "g_idt_a", "D_A": "d_b", "D_B": "d_a"}  # fmt: skip
    for theirs, ours in names.items():
        # Every loss term to 1e-5 relative: float32 sums of 4x32x32x3 positive values (relative rounding
        # ~1e-7 whatever the order), no cancellation.
        np.testing.assert_allclose(metrics[ours], ref_losses[theirs], rtol=1e-5, err_msg=ours)
    assert float(metrics["lr"]) == pytest.approx(2e-4)


def test_one_training_step_matches_the_reference(one_step):
    # Parameters after one Adam step of both pairs, by tests/_adam_step.py's rule: gradients of both sides
    # within 1e-2 of each tensor's largest float64 gradient (kink switches measured up to 3.1e-3 here), the
    # updates equal (1e-6) and of size ~lr wherever the gradient is above that, within 2 lr elsewhere.
    state, model = one_step["state"], one_step["model"]
    beta1 = one_step["config"].optim.beta1
    ours = {**state.g.params, **state.d.params}
    # Adam's first moment after one step is (1 - beta1) * g: nstjax's gradient, exactly (beta1 = 0.5).
    grads = jax.tree.map(lambda m: m / (1 - beta1), {**state.g.opt_state[0].mu, **state.d.opt_state[0].mu})
    compared, _, total = check_first_adam_step(
        before=one_step["before"], ours=ours, theirs=reference_tree(model), grad_ours=grads,
        grad_theirs=reference_tree(model, grads=True), grad_exact=reference_tree(one_step["exact"], grads=True),
        lr=float(one_step["metrics"]["lr"]),
    )  # fmt: skip
    assert compared > 0.9 * total, (compared, total)  # ~4 % of each tensor's gradients are below 1e-2 of its peak

    # The reference's biases before instance norms (zero at init, absent in nstjax) moved by +-lr on rounding-noise
    # gradients; the norms cancel them: zeroing them changes no output (float32 rounding only).
    g = deepcopy(model.netG_A)
    x = nchw(images(12))
    moved = _np(g(x))
    norm_biases = [m.bias for m in g.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))][:-1]
    assert all(float(b.abs().max()) > 0.1 * 2e-4 for b in norm_biases)  # they did move
    with torch.no_grad():
        for b in norm_biases:
            b.zero_()
    np.testing.assert_allclose(_np(g(x)), moved, atol=1e-5)
