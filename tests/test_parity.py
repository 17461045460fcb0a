"""Parity with an independent eager PyTorch implementation (``scripts/torch_reference.py``).

Same seeded random VGG-19 parameters (``vgg.init_params(0)``), same small
random images, float32 with matmul/convolution precision pinned to "highest"
on both sides. Compared, each relative to the largest magnitude of the
reference value (``max|a - b| / max|b|``):

* activations of every ReLU layer, both preprocessings, max and average pooling,
  zero/reflect/replicate padding (tolerance ``ACT_RTOL``);
* each loss term (content, style, tv) and the total (``LOSS_RTOL``) and the
  gradient of the total with respect to the image (``GRAD_RTOL``), three
  preprocessing/pooling/padding combinations (the GEMM convolutions that
  ``conv_impl="auto"`` uses for large images' deep layers on CPU equal XLA's:
  ``tests/test_conv_gemm.py``);
* 20 Adam steps (learning rate 0.02) from the same start: the loss at every
  step (``ADAM_LOSS_RTOL``) and the image after 5 and 20 steps (max absolute
  difference in [0, 1] pixel units, ``ADAM5_ATOL`` / ``ADAM20_ATOL``; mean
  ``ADAM20_MEAN_ATOL``). See the test for why the 20-step bound is looser.

Everything is tiny (content 32x40, style 36x36) so the file runs in well under
a minute on two CPU cores.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from nstjax.models import vgg  # noqa: E402
from nstjax.nst.config import preset  # noqa: E402
from nstjax.nst.engine import (  # noqa: E402
    Targets,
    make_spec,
    objective,
    plain_targets,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import torch_reference as ref  # noqa: E402

ACT_RTOL = 1e-5
LOSS_RTOL = 1e-5
GRAD_RTOL = 1e-4
ADAM_LOSS_RTOL = 1e-4  # loss at each of the 20 steps
ADAM5_ATOL = 1e-5  # image after 5 steps, max |difference|
ADAM20_ATOL = 1e-3  # image after 20 steps, max |difference|
ADAM20_MEAN_ATOL = 2e-5  # image after 20 steps, mean |difference|

CONTENT_HW = (32, 40)
STYLE_HW = (36, 36)
RELUS = tuple(n for n in vgg.LAYERS if n.startswith("relu"))
WEIGHTS = dict(content_weight=1.0, style_weight=5e3, tv_weight=10.0)


@pytest.fixture(scope="module", autouse=True)
def highest_precision():
    threads = torch.get_num_threads()
    # One torch thread: these images are tiny, and OpenMP spinning on a busy 2-core machine is slow.
    torch.set_num_threads(1)
    try:
        with jax.default_matmul_precision("highest"), ref.highest_precision():
            yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def params():
    return vgg.init_params(0)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    content = rng.random((*CONTENT_HW, 3), dtype=np.float32)
    style = rng.random((*STYLE_HW, 3), dtype=np.float32)
    # The optimised image: near the content image, like a few steps in.
    image = np.clip(content + 0.1 * rng.standard_normal(content.shape).astype(np.float32), 0, 1)
    return content, style, image


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def nhwc(t):
    return t.detach().permute(0, 2, 3, 1).numpy()


# Every preprocessing x pooling pair once, and every padding.
ACTIVATION_CASES = [
    dict(preprocessing="caffe", pooling="max", padding="zero"),
    dict(preprocessing="caffe", pooling="avg", padding="replicate"),
    dict(preprocessing="torch", pooling="max", padding="reflect"),
    dict(preprocessing="torch", pooling="avg", padding="zero"),
]


@pytest.mark.parametrize("case", ACTIVATION_CASES, ids=lambda c: "-".join(c.values()))
def test_relu_activations_match(params, images, case):
    content = images[0]
    ours = jax.jit(lambda p, x: vgg.features(p, x, RELUS, **case))(params, jnp.asarray(content)[None])
    model = ref.ReferenceVGG(params, last="relu5_4", **case)
    with torch.no_grad():
        theirs = model(ref.to_tensor(content), RELUS)
    assert set(ours) == set(theirs) == set(RELUS)
    for name in RELUS:
        a, b = np.asarray(ours[name]), nhwc(theirs[name])
        assert a.shape == b.shape, name
        assert rel_err(a, b) < ACT_RTOL, (name, rel_err(a, b))


LOSS_CASES = [
    dict(preprocessing="caffe", pooling="max", padding="zero"),
    dict(preprocessing="torch", pooling="avg", padding="zero"),  # also the Adam test's
    dict(preprocessing="torch", pooling="max", padding="reflect"),
]
LOSS_WEIGHTS = {k: WEIGHTS[f"{k}_weight"] for k in ("content", "style", "tv")}


def make_nstjax_spec(*, preprocessing, pooling, padding, optimizer="lbfgs"):
    config = preset("gatys", pooling=pooling, padding=padding, optimizer=optimizer, **WEIGHTS)
    return make_spec(config, preprocessing, guided=False)


def targets_for(params, content, style, spec) -> Targets:
    return plain_targets(params, content[None], style[None], spec)


# One compiled program per case for the targets, one for the gradient (shared with the Adam test).
@functools.partial(jax.jit, static_argnames=("spec",))
def nstjax_targets(params, content, style, spec) -> Targets:
    return targets_for(params, content, style, spec)


@functools.partial(jax.jit, static_argnames=("spec",))
def nstjax_value_and_grad(params, targets, image, loss_weights, spec):
    def total(x):
        return objective(x, params, targets, loss_weights, spec)

    return jax.value_and_grad(total, has_aux=True)(image)


@pytest.mark.parametrize("case", LOSS_CASES, ids=lambda c: "-".join(c.values()))
def test_losses_and_gradient_match(params, images, case):
    content, style, image = images
    spec = make_nstjax_spec(**case)
    targets = nstjax_targets(params, content, style, spec=spec)
    (value, terms), grad = nstjax_value_and_grad(params, targets, image[None], LOSS_WEIGHTS, spec=spec)
    theirs = ref.reference_losses(image, content, style, params, case["preprocessing"], grad=True,
                                  pooling=case["pooling"], padding=case["padding"], **WEIGHTS)
    for key in ("content", "style", "tv"):
        assert theirs[key] > 0, key
        assert rel_err(terms[key][0], theirs[key]) < LOSS_RTOL, (key, float(terms[key][0]), theirs[key])
    assert rel_err(value, theirs["total"]) < LOSS_RTOL
    assert rel_err(grad, theirs["grad"]) < GRAD_RTOL, rel_err(grad, theirs["grad"])


def test_twenty_adam_steps_match(params, images):
    """Adam from the content image, default learning rate 0.02, average pooling.

    nstjax's side is its own pieces: the jitted objective gradient and
    ``spec.optimizer_transform()`` (``optax.adam``), stepped from Python so the
    program compiled for the loss test is reused.

    Adam divides by |gradient|, so float32 rounding differences (1e-7) grow with
    every step on this rough random-feature landscape: about 1e-6 after 5 steps,
    up to ~2e-4 in a few pixels after 20. With max pooling the gradient is
    discontinuous and the two runs part ways within a few steps, so it is not used here.
    """
    content, style, _ = images
    case = dict(preprocessing="torch", pooling="avg", padding="zero")
    spec = make_nstjax_spec(**case)
    transform = make_nstjax_spec(**case, optimizer="adam").optimizer_transform()
    targets = nstjax_targets(params, content, style, spec=spec)
    x = jnp.asarray(content)[None]
    state = transform.init(x)
    ours, history = {}, []
    for step in range(1, 21):
        (value, _), grad = nstjax_value_and_grad(params, targets, x, LOSS_WEIGHTS, spec=spec)
        history.append(float(value))
        updates, state = transform.update(grad, state, x)
        x = optax.apply_updates(x, updates)
        ours[step] = np.asarray(x[0])

    loss_fn = ref.build_loss(content, style, params, "torch", pooling="avg", padding="zero", **WEIGHTS)
    image = ref.to_tensor(content).requires_grad_(True)
    opt = ref.make_optimizer(image, "adam", learning_rate=0.02)
    theirs, theirs_history = {}, []
    for step in range(1, 21):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(image)["total"]
        loss.backward()
        theirs_history.append(float(loss.detach()))
        opt.step()
        theirs[step] = ref.to_numpy(image)

    assert np.abs(ours[20] - content).max() > 0.1  # it moved
    np.testing.assert_allclose(history, theirs_history, rtol=ADAM_LOSS_RTOL)
    assert np.abs(ours[5] - theirs[5]).max() < ADAM5_ATOL, np.abs(ours[5] - theirs[5]).max()
    assert np.abs(ours[20] - theirs[20]).max() < ADAM20_ATOL, np.abs(ours[20] - theirs[20]).max()
    assert np.abs(ours[20] - theirs[20]).mean() < ADAM20_MEAN_ATOL, np.abs(ours[20] - theirs[20]).mean()
