"""nstjax's pix2pix against the PyTorch reference (references/pix2pix_torch.py), from the same parameters.

The reference is written the way junyanz/pytorch-CycleGAN-and-pix2pix writes it
(UnetGenerator of nested UnetSkipConnectionBlocks with BatchNorm2d, the
conditional NLayerDiscriminator on cat(input, image), GANLoss('vanilla'), L1 x 100,
Adam(2e-4, (0.5, 0.999)), Pix2PixModel.optimize_parameters: D step, then G step
against the updated D). The PyTorch networks are initialised by the authors'
'normal' rule (conv weights N(0, 0.02), batch-norm weights N(1, 0.02), zero biases)
and converted to nstjax's layout with the small functions below: conv weights
[O, I, kh, kw] -> [kh, kw, I, O], transposed-conv weights [I, O, kh, kw] ->
[kh, kw, I, O], batch norm weight / bias -> scale / bias. Batch norm runs in
training mode with the batch's statistics on both sides.

**Dropout.** Each framework draws its own dropout masks, so the forward checks
use networks without dropout (depth 5 at 32 px, where the paper's rule
``depth - 5`` gives no dropout block; ``dropout_blocks=0`` / ``use_dropout=False``
at depth 6). The train step has one dropout block (tests/test_sketch2photo.py's
TINY_PIX2PIX, whose compiled step it shares): the masks nstjax draws with the
step's key are read off its Dropout layers and given to the reference's, so
placement and 1/(1 - p) scaling are compared, not the random numbers.

**Discriminator norm.** nstjax's pix2pix PatchGAN uses instance norm where the
authors' uses batch norm (documented in docs/sketch2photo.md), so the forward and
train-step checks build the reference's ``norm="instance"`` discriminator (the
CycleGAN one, with the authors' zero-initialised biases before the norms, which
nstjax drops: they are checked to be zero and to make no difference). A separate
test checks the documented claim that the authors' batch-norm discriminator is the
same network at batch size 1 with unit batch-norm scales.

Precision: float32 on both sides, matmul precision "highest" (in JAX, not around the train
step, whose compiled program is shared: see ``jax_highest``). Tolerances are stated
at each assertion. Tiny shapes: 32 px, batch 2, ngf = ndf = 8, K = 17 classes.
"""

from __future__ import annotations

import sys
from copy import deepcopy
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "references"))
import pix2pix_torch as ref  # noqa: E402

from _adam_step import check_first_adam_step  # noqa: E402
from nstjax.models.patchgan import PatchGAN  # noqa: E402
from nstjax.models.pix2pix import Pix2PixUnet, pix2pix_dropout_blocks  # noqa: E402
from nstjax.sketch2photo import init_state, make_networks, step_keys, train_step_fn  # noqa: E402
from nstjax.train import data_mesh, replicate, shard_batch  # noqa: E402
from test_sketch2photo import BATCH, K, TINY_PIX2PIX  # noqa: E402

CONFIG = TINY_PIX2PIX  # 32 px, ngf = ndf = 8, depth 5, one dropout block, lr 1e-3: tests/test_sketch2photo.py's
S = CONFIG.size
P = CONFIG.pix2pix


@pytest.fixture(autouse=True, scope="module")
def torch_settings():
    torch.set_float32_matmul_precision("highest")
    # One thread: the reference is tiny, and PyTorch's spinning OpenMP threads cost seconds on shared CPUs.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def jax_highest():
    # Not around the train step: the matmul precision is part of jax.jit's cache key, and the step must be
    # the program tests/test_sketch2photo.py's training compiles (XLA:CPU computes float32 in float32 anyway).
    with jax.default_matmul_precision("highest"):
        yield


# ----------------------------------------------------------------------------- conversion


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().copy()  # a copy: the optimiser updates PyTorch's tensors in place


def _conv(m, bias: bool, check_zero: bool = True) -> dict:
    out = {"kernel": _np(m.weight).transpose(2, 3, 1, 0)}
    if bias:
        out["bias"] = _np(m.bias)
    elif check_zero:  # nstjax has no bias here: the reference must have none, or a zero one (before a norm)
        assert m.bias is None or not _np(m.bias).any()
    return out


def _conv_t(m, bias: bool) -> dict:
    assert (m.bias is not None) == bias
    out = {"kernel": _np(m.weight).transpose(2, 3, 0, 1)}
    if bias:
        out["bias"] = _np(m.bias)
    return out


def _bn(m) -> dict:
    return {"scale": _np(m.weight), "bias": _np(m.bias)}


def unet_params(g: ref.UnetGenerator) -> dict:
    """nstjax's Pix2PixUnet parameters: level i (outermost first) -> down{i}, down_norm{i}, up{i}, up_norm{i}."""
    levels = g.levels()
    params = {}
    for i, block in enumerate(levels):
        layers = list(block.model)  # this level's own layers; the next level is one element of it
        conv = next(m for m in layers if isinstance(m, torch.nn.Conv2d))
        up = next(m for m in layers if isinstance(m, torch.nn.ConvTranspose2d))
        norms = [m for m in layers if isinstance(m, torch.nn.BatchNorm2d)]
        assert conv.bias is None  # BatchNorm2d: the authors' use_bias is False, the outermost included
        params[f"down{i}"] = _conv(conv, False)
        params[f"up{i}"] = _conv_t(up, bias=i == 0)
        if 0 < i < len(levels) - 1:
            params[f"down_norm{i}"] = _bn(norms[0])
        if i > 0:
            params[f"up_norm{i}"] = _bn(norms[-1])
    return params


def patchgan_params(d, check_zero: bool = True) -> dict:
    """nstjax's PatchGAN parameters: conv0 (biased), conv1 … conv{n} (no bias: they precede a norm), head."""
    convs = [m for m in d.model if isinstance(m, torch.nn.Conv2d)]
    params = {f"conv{i}": _conv(m, i == 0, check_zero) for i, m in enumerate(convs[:-1])}
    params["head"] = _conv(convs[-1], True)
    return params


def nchw(x: np.ndarray):
    return torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc(t) -> np.ndarray:
    return _np(t).transpose(0, 2, 3, 1)


def images(seed: int, shape=(BATCH, S, S, 3)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def label_maps(seed: int) -> np.ndarray:
    """Blocky int32 [BATCH, S, S] label maps in [0, K), as sketches are."""
    rng = np.random.default_rng(seed)
    maps = [np.kron(rng.integers(0, K, (S // 8, S // 8)), np.ones((8, 8), np.int32)) for _ in range(BATCH)]
    return np.stack(maps).astype(np.int32)


def _shapes(tree):
    return jax.tree.map(np.shape, tree)


# ----------------------------------------------------------------------------- networks


@pytest.mark.parametrize("depth, size", [(5, 32), (6, 64)])
@pytest.mark.usefixtures("jax_highest")
def test_unet_generator_matches_reference(depth, size):
    # depth 5: the paper's rule gives no dropout block; depth 6 (one 8 ngf middle level): dropout off both sides.
    torch.manual_seed(depth)
    g = ref.init_weights(ref.UnetGenerator(3, 3, depth, ngf=8, use_dropout=depth == 5)).train()
    assert not any(isinstance(m, torch.nn.Dropout) for m in g.modules())
    assert pix2pix_dropout_blocks(5) == 0
    net = Pix2PixUnet(ngf=8, depth=depth, dropout_blocks=None if depth == 5 else 0)
    x = images(depth, (BATCH, size, size, 3))
    params = unet_params(g)
    # The mapping covers every nstjax parameter, with its shape; and every reference parameter.
    expect = jax.eval_shape(net.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)))["params"]
    assert _shapes(params) == jax.tree.map(lambda s: s.shape, dict(expect))
    assert sum(x.size for x in jax.tree.leaves(params)) == sum(p.numel() for p in g.parameters())
    got = net.apply({"params": params}, jnp.asarray(x))
    want = nhwc(g(nchw(x)))
    assert got.shape == want.shape == (BATCH, size, size, 3)
    # Outputs in (-1, 1) after 2 x depth convolutions and batch norms: float32 rounding only.
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=2e-5)


@pytest.mark.usefixtures("jax_highest")
def test_conditional_discriminator_matches_reference():
    torch.manual_seed(7)
    d = ref.init_weights(ref.patch_discriminator(K + 3, ndf=8, n_layers=P.n_layers_d, norm="instance"))
    disc = make_networks(CONFIG, K)["discriminator"]  # what nstjax's pix2pix trains
    seg = np.eye(K, dtype=np.float32)[label_maps(7)]
    y = images(8)
    got = disc.apply({"params": patchgan_params(d)}, jnp.concatenate([seg, y], -1))  # [input | image]
    want = nhwc(d(torch.cat((nchw(seg), nchw(y)), 1)))  # the authors' cat((real_A, fake_B), 1)
    assert got.shape == want.shape == (BATCH, 2, 2, 1)
    # Logits of order 0.1 after five convolutions: float32 rounding only.
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)


@pytest.mark.usefixtures("jax_highest")
def test_authors_batch_norm_discriminator_is_instance_norm_at_batch_one():
    # docs/sketch2photo.md: at the authors' batch size of 1, their batch-norm PatchGAN is nstjax's instance-norm
    # one up to batch norm's affine parameters (unit scales and zero biases here).
    torch.manual_seed(9)
    d = ref.patch_discriminator(6, ndf=8, norm="batch")
    ref.init_weights(d).train()
    norms = [m for m in d.model if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 3 and all(m.weight.std() > 0 for m in norms)  # the authors' init: N(1, 0.02)
    for m in norms:
        torch.nn.init.ones_(m.weight)
    params = patchgan_params(d)  # the middle convolutions have no bias with batch norm, as nstjax's
    x = images(9, (BATCH, S, S, 6))
    net = PatchGAN(ndf=8)
    for b in (1, 2):
        got = np.asarray(net.apply({"params": params}, jnp.asarray(x[:b])))
        want = nhwc(d(nchw(x[:b])))
        if b == 1:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        else:  # with more images, batch statistics are no longer per-image ones
            assert np.abs(got - want).max() > 1e-3


# ----------------------------------------------------------------------------- one training step


class _FixedDropout(torch.nn.Module):
    """Dropout(0.5) in training mode with a given keep mask (NCHW): ``x * mask / 0.5``, as torch's Dropout computes."""

    def __init__(self, keep: np.ndarray):
        super().__init__()
        self.keep = torch.tensor(np.ascontiguousarray(keep.transpose(0, 3, 1, 2)), dtype=torch.float32)

    def forward(self, x):
        return x * self.keep / 0.5


def nstjax_dropout_masks(params: dict, x: np.ndarray, key) -> list[np.ndarray]:
    """The keep masks [B, h, w, C] (bool) nstjax's generator draws with ``key``, innermost dropout block first.

    Read off the Dropout layers' outputs (zero exactly where dropped; their batch-normed inputs are never 0).
    """
    masks = []

    def grab(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if isinstance(context.module, nn.Dropout):
            assert np.all(np.asarray(args[0]) != 0)
            masks.append(np.asarray(out) != 0)
        return out

    with nn.intercept_methods(grab):
        make_networks(CONFIG, K)["generator"].apply({"params": params}, jnp.asarray(x), rngs={"dropout": key})
    return masks


def reference_model(seed: int = 0) -> ref.Pix2Pix:
    torch.manual_seed(seed)
    g = ref.init_weights(ref.UnetGenerator(K, 3, P.depth, ngf=P.ngf, dropout_blocks=P.dropout_blocks))
    d = ref.init_weights(ref.patch_discriminator(K + 3, ndf=P.ndf, n_layers=P.n_layers_d, norm="instance"))
    return ref.Pix2Pix(g, d, lr=P.lr, beta1=P.beta1, lambda_L1=P.lambda_l1)


def test_one_training_step_matches_the_reference():
    assert P.depth == 5 and P.dropout_blocks == 1 and P.gan == "bce" and P.input == "labels"
    assert (P.beta1, P.beta2, P.lambda_l1) == (0.5, 0.999, 100.0)  # the paper's Adam betas and L1 weight
    model = reference_model()
    state = init_state(CONFIG, K, CONFIG.train.steps, CONFIG.train.decay_steps(CONFIG.train.steps))
    g0, d0 = {"generator": unet_params(model.netG)}, {"discriminator": patchgan_params(model.netD)}
    assert _shapes((g0, d0)) == _shapes((state.g.params, state.d.params))
    state = state.replace(g=state.g.replace(params=g0), d=state.d.replace(params=d0))
    labels, real = label_maps(10), images(11)
    seg = np.eye(K, dtype=np.float32)[labels]

    # The step's dropout masks, given to the reference's Dropout layers (one here, innermost-first order).
    masks = nstjax_dropout_masks(g0["generator"], seg, step_keys(state.key, state.step)[0])
    assert len(masks) == 1 and 0.3 < masks[0].mean() < 0.7
    _fix_dropout(model, masks)

    # Placed as nstjax.sketch2photo.train places them, with the same call: the compiled step is
    # tests/test_sketch2photo.py's pix2pix one.
    mesh = data_mesh()
    step = train_step_fn(CONFIG, K)
    state, metrics = step(replicate(state, mesh), shard_batch({"labels": labels, "image": real}, mesh), vgg_params=None)
    metrics, state = jax.device_get((metrics, state))
    model.set_input(nchw(seg), nchw(real))
    model.optimize_parameters()
    theirs = model.losses()
    # The reference in float64: the exact gradients (tests/_adam_step.py).
    exact = reference_model()
    _fix_dropout(exact, masks)
    exact.netG.double()
    exact.netD.double()
    exact.set_input(nchw(seg).double(), nchw(real).double())
    exact.optimize_parameters()

    # Every loss term to 1e-5 relative (float32 means over 2x32x32x3 values or 2x2x2 logits, in other orders).
    # The authors log D_real / D_fake before the 0.5 of loss_D; nstjax's d_real / d_fake include it.
    np.testing.assert_allclose(metrics["g_gan"], theirs["G_GAN"], rtol=1e-5)
    np.testing.assert_allclose(metrics["g_l1"], theirs["G_L1"], rtol=1e-5)
    np.testing.assert_allclose(metrics["d_real"], 0.5 * theirs["D_real"], rtol=1e-5)
    np.testing.assert_allclose(metrics["d_fake"], 0.5 * theirs["D_fake"], rtol=1e-5)
    np.testing.assert_allclose(metrics["d_total"], model.loss_D.item(), rtol=1e-5)
    np.testing.assert_allclose(metrics["g_total"], model.loss_G.item(), rtol=1e-5)
    assert float(metrics["lr_g"]) == float(metrics["lr_d"]) == pytest.approx(P.lr)  # step 0: no decay yet

    # Parameters of both networks after one Adam step each (the G step against the updated D on both sides),
    # by tests/_adam_step.py's rule: gradients within 1e-2 of each tensor's largest float64 gradient, updates
    # equal (1e-6) and of size ~lr wherever the gradient is above that, within 2 lr elsewhere.
    def tree(m, grads=False):
        g, d = (_grads(n) if grads else n for n in (m.netG, m.netD))
        return {"generator": unet_params(g), "discriminator": patchgan_params(d, check_zero=False)}

    ours = {**state.g.params, **state.d.params}
    # Adam's first moment after one step is (1 - beta1) * g: nstjax's gradient, exactly (beta1 = 0.5).
    grads = jax.tree.map(lambda m: m / (1 - P.beta1), {**state.g.opt_state[0].mu, **state.d.opt_state[0].mu})
    compared, zero, total = check_first_adam_step(
        before={**g0, **d0}, ours=ours, theirs=tree(model), grad_ours=grads, grad_theirs=tree(model, grads=True),
        grad_exact=tree(exact, grads=True), lr=P.lr,
    )  # fmt: skip
    # Exactly zero gradients: kernel taps that only ever see the zero padding (3/4 of the 1x1 bottleneck's
    # down4 and up4 kernels). Of the rest, the big kernels' gradients are heavy-tailed: ~25 % below 1e-2 of
    # their peak.
    assert zero < 0.4 * total and compared > 0.65 * (total - zero), (compared, zero, total)

    # The reference's middle discriminator biases (zero at init, before instance norms, absent in nstjax)
    # moved by Adam on rounding-noise gradients; the norms cancel them: zeroing them changes no logit.
    d = deepcopy(model.netD)
    x = nchw(np.concatenate([seg, real], -1))
    moved = _np(d(x))
    norm_biases = [m.bias for m in d.model if isinstance(m, torch.nn.Conv2d)][1:-1]
    assert norm_biases and all(float(b.abs().max()) > 0.1 * P.lr for b in norm_biases)  # they did move
    with torch.no_grad():
        for b in norm_biases:
            b.zero_()
    np.testing.assert_allclose(_np(d(x)), moved, rtol=1e-4, atol=1e-5)


def _fix_dropout(model: ref.Pix2Pix, masks: list[np.ndarray]) -> None:
    """Gives the reference's Dropout layers (innermost first) nstjax's keep masks."""
    drops = [(blk.model, j) for blk in reversed(model.netG.levels()) for j, m in enumerate(blk.model)
             if isinstance(m, torch.nn.Dropout)]  # fmt: skip
    assert len(drops) == len(masks)
    for (seq, j), keep in zip(drops, masks):
        seq[j] = _FixedDropout(keep)


def _grads(net):
    """A copy of ``net`` whose parameters are the gradients of its last backward pass."""
    copy = deepcopy(net)
    for p, q in zip(net.parameters(), copy.parameters()):
        q.data = p.grad.clone() if p.grad is not None else torch.zeros_like(p)
    return copy
