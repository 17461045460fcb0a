"""One Adam step of nstjax against a PyTorch reference, compared by a rule that holds on any CPU.

Adam's first update is ``lr * g / (|g| + eps)``: about ``+-lr`` whatever ``|g|`` is, so each
parameter keeps only its gradient's sign. In float32 a few activations lie within rounding of a
ReLU's kink (or a max-pool's tie), and which side they land on depends on the CPU's kernels and the
summation order. Each switch moves the gradients of the layers before it by up to a few 1e-3 of
the tensor's largest element; without one, float32 gradients are within ~1e-5 of it. Measured
against the reference run in float64 on a 2-core Intel Xeon: CycleGAN 3.1e-3 (one ReLU switched),
pix2pix 6e-6 and SPADE 3e-6 (none); the VGG image gradient of tests/test_parity.py 4.1e-3 at one
of 20 points. A gradient element below that may move either way; one above it has a fixed sign.

The rule, for each parameter tensor, with ``tol = GRAD_TOL * max |g64|`` (``g64``: the reference's
gradient in float64):

1. both float32 gradients (nstjax's, read from Adam's first moment, and the reference's) are
   within ``tol`` of ``g64``: the loss and its gradient are the same function;
2. where ``|g64| > tol`` both signs are ``g64``'s, so the updated parameters agree to 1e-6
   (float32 rounding of parameters up to ~1 and of ``lr * g / (|g| + eps)``), and each moved by
   more than 0.99 of that on both sides: the step happened;
3. every element differs by at most ``2 lr`` (opposite signs).

A tensor whose exact gradient is zero (a bias a normalisation cancels) has only rounding noise
for a gradient; those are found by ``max |g64| <= CANCELLED * scale`` (``scale``: the network's
largest gradient) and held to rule 3 and to float32-noise-sized gradients on both sides.
"""

from __future__ import annotations

import jax
import numpy as np

GRAD_TOL = 1e-2
"""Of each tensor's largest float64 gradient: 2.4x the largest switch measured (see above)."""

CANCELLED = 1e-9
"""float64 rounding is ~1e-16 of the terms; a float32-level (1e-7) gradient is far above this."""

UPDATE_ATOL = 1e-6
ADAM_EPS = 1e-8  # optax's and torch's default


def flat(tree) -> dict:
    return dict(jax.tree_util.tree_flatten_with_path(tree)[0])


def check_first_adam_step(*, before, ours, theirs, grad_ours, grad_theirs, grad_exact, lr: float,
                          what: str = "") -> tuple[int, int, int]:
    """Checks one Adam step by the rule above; returns (elements compared, elements whose float64
    gradient is exactly 0: kernel taps that only see zero padding, elements).

    All arguments but ``lr`` are pytrees of the same structure (nstjax's layout): parameters before
    the step, nstjax's and the reference's after it, and the three gradients.
    """
    b, o, t, go, gt = (flat(x) for x in (before, ours, theirs, grad_ours, grad_theirs))
    exact = {k: np.asarray(v, np.float64) for k, v in flat(grad_exact).items()}
    assert set(exact) == set(b) == set(o) == set(t) == set(go) == set(gt), what
    scale = max(np.abs(g).max() for g in exact.values())
    compared = zero = total = 0
    for path, g in exact.items():
        name = what + jax.tree_util.keystr(path)
        mine, ref = np.asarray(o[path], np.float64), np.asarray(t[path], np.float64)
        assert np.abs(mine - ref).max() <= 2 * lr + UPDATE_ATOL, name
        total += g.size
        zero += int((g == 0).sum())
        peak = np.abs(g).max()
        if peak <= CANCELLED * scale:
            for label, other in (("nstjax", go), ("reference", gt)):
                noise = np.abs(np.asarray(other[path])).max()
                assert noise <= 1e-5 * scale, f"{name}: {label}'s gradient ({noise:.3g}) is not rounding noise"
            continue
        tol = GRAD_TOL * peak
        for label, other in (("nstjax", go), ("reference", gt)):
            err = np.abs(np.asarray(other[path], np.float64) - g).max()
            assert err <= tol, f"{name}: {label}'s float32 gradient is {err:.3g} from float64's (allowed {tol:.3g})"
        sig = np.abs(g) > tol
        np.testing.assert_allclose(mine[sig], ref[sig], rtol=0, atol=UPDATE_ATOL, err_msg=name)
        start = np.asarray(b[path], np.float64)[sig]
        size = lr * np.abs(g[sig]) / (np.abs(g[sig]) + ADAM_EPS)  # lr where |g| >> eps
        for side in (mine, ref):
            assert np.all(np.abs(side[sig] - start) > 0.99 * size), f"{name}: did not move by Adam's step"
        compared += int(sig.sum())
    return compared, zero, total


def _adam_direction(mu, nu, count: int, b1: float, b2: float, eps: float = 1e-8) -> np.ndarray:
    """optax.adam's step direction ``m_hat / (sqrt(v_hat) + eps)`` after ``count`` steps, in float64."""
    m_hat = np.asarray(mu, np.float64) / (1 - b1**count)
    v_hat = np.asarray(nu, np.float64) / (1 - b2**count)
    return m_hat / (np.sqrt(v_hat) + eps)


def check_two_data_parallel_steps(initial: dict, one_step, two_steps, other, *, b1: float, b2: float, lr1: float,
                                  lr2: float, what: str = "") -> tuple[int, int]:
    """Two Adam steps of the same training on another device layout (``other``) against one device.

    ``initial``: ``{"g": params, "d": params}`` before step 1; ``one_step``, ``two_steps``: the
    one-device train states after one and two steps; ``other``: the other layout's after two. Every
    state has ``g`` and ``d`` (:class:`nstjax.train.NetState`, optax adam state first). Only float
    rounding differs between layouts, so, per tensor:

    1. Adam's moments (the gradients) agree: ``mu`` within ``GRAD_TOL`` of its largest element, ``nu``
       (squares) within ``2 GRAD_TOL``: a kink switch (module docstring) is the largest difference.
    2. Undoing step 2 with each state's own moments gives the parameters after step 1 (checked on the
       one-device run against ``one_step`` to 1e-6; float64 arithmetic, float32 parameters).
    3. Those agree to 1e-6 where step 1's gradient is significant (``|g1| > GRAD_TOL * max |g1|``:
       its sign is fixed) and moved by Adam's step size there (~lr1); elsewhere by at most ``2 lr1``.

    Returns (elements compared in 3, elements).
    """
    compared = total = 0
    for net in ("g", "d"):
        first, second, theirs = (getattr(s, net) for s in (one_step, two_steps, other))
        mu1 = flat(first.opt_state[0].mu)
        mine_mu, mine_nu = flat(second.opt_state[0].mu), flat(second.opt_state[0].nu)
        their_mu, their_nu = flat(theirs.opt_state[0].mu), flat(theirs.opt_state[0].nu)
        p1, p2_mine, p2_theirs = flat(first.params), flat(second.params), flat(theirs.params)
        assert int(second.opt_state[0].count) == int(theirs.opt_state[0].count) == 2
        for path, g1 in mu1.items():
            name = f"{what}{net}{jax.tree_util.keystr(path)}"
            for x, y, k, label in ((mine_mu, their_mu, 1, "mu"), (mine_nu, their_nu, 2, "nu")):
                a, b = np.asarray(x[path], np.float64), np.asarray(y[path], np.float64)
                assert np.abs(a - b).max() <= k * GRAD_TOL * np.abs(a).max(), (
                    f"{name} {label}: differs by {np.abs(a - b).max() / max(np.abs(a).max(), 1e-30):.2e} of its largest"
                )
            g1 = np.asarray(g1, np.float64) / (1 - b1)
            undo = {}
            for label, p2, mu, nu in (("one", p2_mine, mine_mu, mine_nu), ("other", p2_theirs, their_mu, their_nu)):
                undo[label] = np.asarray(p2[path], np.float64) + lr2 * _adam_direction(mu[path], nu[path], 2, b1, b2)
            np.testing.assert_allclose(undo["one"], p1[path], rtol=0, atol=UPDATE_ATOL, err_msg=f"{name} undo")
            diff = np.abs(undo["other"] - undo["one"])
            assert diff.max() <= 2 * lr1 + UPDATE_ATOL, name
            sig = np.abs(g1) > GRAD_TOL * np.abs(g1).max()
            assert diff[sig].max(initial=0) <= UPDATE_ATOL, name
            moved = np.abs(np.asarray(p1[path], np.float64) - flat(initial[net])[path])
            assert np.all(moved[sig] > 0.99 * lr1 * np.abs(g1[sig]) / (np.abs(g1[sig]) + ADAM_EPS)), name
            compared += int(sig.sum())
            total += g1.size
    return compared, total
