"""Losses (nstjax.losses) against independent float64 NumPy references.

Every expected value here is computed with NumPy from the formulas in the
module docstring; the code under test is never used to build one. Shapes are
tiny and reused so each jitted function compiles once.
"""

from __future__ import annotations

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from nstjax.losses import (
    content_loss,
    gram_matrix,
    style_layer_loss,
    style_loss,
    total_variation_loss,
    weighted_mean,
)

B, H, W, C = 2, 5, 7, 4  # non-square spatial size


def _feats(seed: int, b: int = B, h: int = H, w: int = W, c: int = C) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((b, h, w, c)).astype(np.float32)


def _mask(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


# --------------------------------------------------------------------------- #
# NumPy references (float64)
# --------------------------------------------------------------------------- #


def np_gram(f: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """[B, h, w, C] (, mask [B, h, w] or [h, w]) -> [B, C, C]."""
    f = np.asarray(f, np.float64)
    b, h, w, c = f.shape
    out = np.empty((b, c, c))
    for i in range(b):
        if mask is None:
            fi = f[i].reshape(h * w, c)
            out[i] = fi.T @ fi / (c * h * w)
        else:
            m = np.asarray(mask, np.float64)
            m = m if m.ndim == 2 else m[i]
            fi = (f[i] * m[..., None]).reshape(h * w, c)
            out[i] = fi.T @ fi / (c * m.sum())
    return out


def np_content(f: np.ndarray, p: np.ndarray) -> np.ndarray:
    d = np.asarray(f, np.float64) - np.asarray(p, np.float64)
    return np.array([np.mean(d[i] ** 2) for i in range(d.shape[0])])


def np_style_layer(g: np.ndarray, a: np.ndarray) -> np.ndarray:
    g, a = np.asarray(g, np.float64), np.asarray(a, np.float64)
    a = np.broadcast_to(a, g.shape)
    return np.array([np.mean((g[i] - a[i]) ** 2) for i in range(g.shape[0])])


def np_tv(img: np.ndarray) -> np.ndarray:
    x = np.asarray(img, np.float64)
    out = []
    for i in range(x.shape[0]):
        dy = x[i, 1:] - x[i, :-1]
        dx = x[i, :, 1:] - x[i, :, :-1]
        out.append(np.mean(dy**2) + np.mean(dx**2))
    return np.array(out)


# --------------------------------------------------------------------------- #
# Jitted entry points (one compile per shape signature)
# --------------------------------------------------------------------------- #

gram_j = jax.jit(gram_matrix)
content_j = jax.jit(content_loss)
style_layer_j = jax.jit(style_layer_loss)
tv_j = jax.jit(total_variation_loss)


# --------------------------------------------------------------------------- #
# Gram matrices
# --------------------------------------------------------------------------- #


def test_gram_matches_numpy() -> None:
    f = _feats(0)
    g = np.asarray(gram_j(f))
    assert g.shape == (B, C, C) and g.dtype == np.float32
    np.testing.assert_allclose(g, np_gram(f), rtol=1e-5, atol=1e-6)
    # the two batch elements are really different (no batch mixing)
    assert not np.allclose(g[0], g[1])


def test_guided_gram_batch_mask_matches_numpy() -> None:
    f, m = _feats(1), _mask(2, B, H, W)
    g = np.asarray(gram_j(f, m))
    assert g.shape == (B, C, C) and g.dtype == np.float32
    np.testing.assert_allclose(g, np_gram(f, m), rtol=1e-5, atol=1e-6)
    assert not np.allclose(g, np_gram(f), rtol=1e-2)  # the mask matters


def test_guided_gram_shared_2d_mask_matches_numpy() -> None:
    f, m = _feats(3), _mask(4, H, W)
    g = np.asarray(gram_j(f, m))
    np.testing.assert_allclose(g, np_gram(f, m), rtol=1e-5, atol=1e-6)


def test_all_ones_mask_is_plain_gram() -> None:
    f = _feats(5)
    plain = np.asarray(gram_j(f))
    guided = np.asarray(gram_j(f, np.ones((B, H, W), np.float32)))
    np.testing.assert_allclose(guided, plain, rtol=1e-6, atol=1e-6)


def test_zero_mask_gives_no_nan() -> None:
    f = _feats(6)
    m = np.zeros((B, H, W), np.float32)
    g = np.asarray(gram_j(f, m))
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(g, 0.0)
    # and its gradient is finite too
    grad = jax.grad(lambda x: jnp.sum(gram_matrix(x, m)))(jnp.asarray(f))
    assert np.all(np.isfinite(np.asarray(grad)))


def np_gram_vjp(f: np.ndarray, cotangent: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The features' cotangent of ``np_gram`` for a Gram cotangent [B, C, C] (float64).

    ``G = Fᵀ F / n`` with ``F`` the (masked) features, so ``dF = F (dG + dGᵀ) / n``,
    times the mask again on the way back to the unmasked features.
    """
    f = np.asarray(f, np.float64)
    b, h, w, c = f.shape
    out = np.empty_like(f)
    for i in range(b):
        m = np.ones((h, w)) if mask is None else np.asarray(mask, np.float64)
        m = m if m.ndim == 2 else m[i]
        fi = (f[i] * m[..., None]).reshape(h * w, c)
        sym = cotangent[i] + cotangent[i].T
        out[i] = ((fi @ sym) / (c * m.sum())).reshape(h, w, c) * m[..., None]
    return out


@pytest.mark.parametrize("hw", [(5, 7), (64, 64), (128, 128)], ids=["one-product", "chunks-1", "chunks-4"])
@pytest.mark.parametrize("masked", [False, True], ids=["plain", "guided"])
def test_gram_value_and_vjp_match_numpy(hw: tuple[int, int], masked: bool) -> None:
    # (128, 128): 16384 positions, four partial products of 4096 (GRAM_CHUNK_ROWS);
    # the hand-written VJP against the formula, with an asymmetric cotangent.
    h, w = hw
    f = _feats(20, 2, h, w, 3)
    m = _mask(21, 2, h, w) if masked else None
    cot = np.random.default_rng(22).standard_normal((2, 3, 3)).astype(np.float32)
    value, vjp = jax.vjp(lambda x: gram_matrix(x, m), jnp.asarray(f))
    np.testing.assert_allclose(np.asarray(value), np_gram(f, m), rtol=2e-5, atol=1e-6)
    (grad,) = vjp(jnp.asarray(cot))
    np.testing.assert_allclose(np.asarray(grad), np_gram_vjp(f, cot, m), rtol=2e-5, atol=1e-7)


def test_gram_vjp_keeps_the_features_layout() -> None:
    # The backward pass is one [h·w, C]·[C, C] product; JAX's own rule for the einsum
    # made XLA:CPU transpose the features to [C, h·w] and back (slow copies). No
    # transpose of anything bigger than a C×C matrix may appear in the gradient.
    f = jnp.zeros((1, 16, 16, 8), jnp.float32)
    jaxpr = jax.make_jaxpr(jax.grad(lambda x: jnp.sum(gram_matrix(x) ** 2)))(f)

    def transposes(jx):
        for eqn in jx.eqns:
            if eqn.primitive.name == "transpose":
                yield eqn.invars[0].aval.size
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                yield from transposes(sub)

    sizes = list(transposes(jaxpr.jaxpr))
    assert sizes and max(sizes) <= 8 * 8


def test_bfloat16_features_give_float32_close_to_float32() -> None:
    f = _feats(7)
    m = _mask(8, B, H, W)
    for mask in (None, m):
        ref = np.asarray(gram_j(f, mask))
        out = gram_j(jnp.asarray(f, jnp.bfloat16), mask)
        assert out.dtype == jnp.float32
        # bfloat16 has an 8-bit mantissa: ~0.4% per element, products ~1%.
        np.testing.assert_allclose(np.asarray(out), ref, rtol=0, atol=2e-2 * np.abs(ref).max())


# --------------------------------------------------------------------------- #
# Per-layer losses
# --------------------------------------------------------------------------- #


def test_content_loss_matches_numpy() -> None:
    f, p = _feats(10), _feats(11, b=1)  # target broadcasts over the batch
    out = np.asarray(content_j(f, p))
    assert out.shape == (B,) and out.dtype == np.float32
    np.testing.assert_allclose(out, np_content(f, np.broadcast_to(p, f.shape)), rtol=1e-5)
    assert out[0] != pytest.approx(out[1])
    # bfloat16 features: float32 result
    assert content_j(jnp.asarray(f, jnp.bfloat16), p).dtype == jnp.float32


def test_style_layer_loss_matches_numpy() -> None:
    g = np.random.default_rng(12).standard_normal((B, C, C)).astype(np.float32)
    a = np.random.default_rng(13).standard_normal((1, C, C)).astype(np.float32)
    out = np.asarray(style_layer_j(g, a))
    assert out.shape == (B,)
    np.testing.assert_allclose(out, np_style_layer(g, a), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(style_layer_j(g, g)), 0.0, atol=0)


def test_total_variation_matches_numpy() -> None:
    img = np.random.default_rng(14).random((B, 6, 9, 3)).astype(np.float32)
    out = np.asarray(tv_j(img))
    assert out.shape == (B,)
    np.testing.assert_allclose(out, np_tv(img), rtol=1e-5)
    # constant image: zero; a single vertical edge: known value
    flat = np.full((1, 6, 9, 3), 0.3, np.float32)
    assert float(tv_j(flat)[0]) == 0.0
    edge = np.zeros((1, 6, 9, 3), np.float32)
    edge[:, :, 4:] = 1.0  # one jump of 1 between columns 3 and 4, in 6 rows × 3 channels
    np.testing.assert_allclose(float(tv_j(edge)[0]), (6 * 3) / (6 * 8 * 3), rtol=1e-6)


def test_weighted_mean() -> None:
    values = {"a": jnp.array([1.0, 2.0]), "b": jnp.array([4.0, 8.0]), "c": jnp.array([100.0, 100.0])}
    weights = {"a": 1.0, "b": 3.0}  # "c" is not in weights: ignored
    out = np.asarray(weighted_mean(values, weights))
    np.testing.assert_allclose(out, [(1 + 12) / 4, (2 + 24) / 4], rtol=1e-6)


# --------------------------------------------------------------------------- #
# Multi-layer, multi-term style loss
# --------------------------------------------------------------------------- #

# two layers with different sizes and channel counts
LAYER_SHAPES = {"l1": (6, 8, 4), "l2": (3, 4, 5)}
LAYER_WEIGHTS = {"l1": 0.7, "l2": 1.9}
T = 3


def _style_problem(seed: int):
    rng = np.random.default_rng(seed)
    feats = {n: rng.standard_normal((B, h, w, c)).astype(np.float32) for n, (h, w, c) in LAYER_SHAPES.items()}
    targets = {n: (0.3 * rng.standard_normal((T, c, c))).astype(np.float32) for n, (h, w, c) in LAYER_SHAPES.items()}
    masks = {n: rng.random((T, h, w)).astype(np.float32) for n, (h, w, c) in LAYER_SHAPES.items()}
    term_w = np.array([0.5, 1.5, 2.0], np.float32)
    return feats, targets, masks, term_w


def np_style_loss(feats, targets, layer_weights, masks=None, term_weights=None) -> np.ndarray:
    n_terms = next(iter(targets.values())).shape[0]
    tw = np.ones(n_terms) if term_weights is None else np.asarray(term_weights, np.float64)
    total = np.zeros(next(iter(feats.values())).shape[0])
    for t in range(n_terms):
        acc = 0.0
        for name, wl in layer_weights.items():
            g = np_gram(feats[name], None if masks is None else masks[name][t])
            acc = acc + wl * np_style_layer(g, targets[name][t][None])
        total += tw[t] * acc / sum(layer_weights.values())
    return total



def test_style_loss_multi_layer_multi_term_matches_numpy() -> None:
    feats, targets, masks, term_w = _style_problem(20)
    out = np.asarray(style_loss(feats, targets, LAYER_WEIGHTS, masks, jnp.asarray(term_w)))
    assert out.shape == (B,) and out.dtype == np.float32
    np.testing.assert_allclose(out, np_style_loss(feats, targets, LAYER_WEIGHTS, masks, term_w), rtol=1e-5)


def test_style_loss_without_masks_or_term_weights_matches_numpy() -> None:
    feats, targets, _, _ = _style_problem(21)
    out = np.asarray(style_loss(feats, targets, LAYER_WEIGHTS))
    np.testing.assert_allclose(out, np_style_loss(feats, targets, LAYER_WEIGHTS), rtol=1e-5)


def test_style_loss_region_a_ignores_region_b() -> None:
    """Gradient of region A's term w.r.t. the features is exactly zero outside A."""
    rng = np.random.default_rng(22)
    h, w, c = LAYER_SHAPES["l1"]
    f = rng.standard_normal((1, h, w, c)).astype(np.float32)
    mask_a = np.zeros((h, w), np.float32)
    mask_a[:, : w // 2] = rng.uniform(0.2, 1.0, (h, w // 2))  # soft mask on the left half
    mask_b = np.zeros((h, w), np.float32)
    mask_b[:, w // 2 :] = 1.0  # right half, disjoint from A
    target_a = (0.3 * rng.standard_normal((1, c, c))).astype(np.float32)
    lw = {"l1": 1.0}

    def loss_a(x):
        return style_loss({"l1": x}, {"l1": target_a}, lw, {"l1": mask_a[None]})[0]

    grad = np.asarray(jax.grad(loss_a)(jnp.asarray(f)))
    outside = mask_a == 0
    np.testing.assert_array_equal(grad[0][outside], 0.0)
    assert np.all(np.abs(grad[0][~outside]).sum(axis=-1) > 0)

    # and the value does not change when region B's pixels change
    f2 = f.copy()
    f2[0][mask_b > 0] = rng.standard_normal((int((mask_b > 0).sum()), c))
    assert float(loss_a(jnp.asarray(f2))) == float(loss_a(jnp.asarray(f)))


# --------------------------------------------------------------------------- #
# Normalisation claims of the module docstring
# --------------------------------------------------------------------------- #


def _tile(x: np.ndarray) -> np.ndarray:
    return np.tile(x, (1, 2, 2, 1))


def test_gram_and_style_loss_invariant_to_tiling() -> None:
    f = _feats(30)
    g, g2 = np.asarray(gram_matrix(f)), np.asarray(gram_matrix(_tile(f)))
    np.testing.assert_allclose(g2, g, rtol=1e-5, atol=1e-7)
    # the reference says so too (sanity of the claim, independent of the code)
    np.testing.assert_allclose(np_gram(_tile(f)), np_gram(f), rtol=1e-12)
    target = {"l": (0.3 * np.random.default_rng(31).standard_normal((1, C, C))).astype(np.float32)}
    s1 = style_loss({"l": f}, target, {"l": 1.0})
    s2 = style_loss({"l": _tile(f)}, target, {"l": 1.0})
    np.testing.assert_allclose(np.asarray(s2), np.asarray(s1), rtol=1e-5)


def test_guided_gram_invariant_to_tiling() -> None:
    f, m = _feats(32), _mask(33, B, H, W)
    g = np.asarray(gram_matrix(f, m))
    g2 = np.asarray(gram_matrix(_tile(f), np.tile(m, (1, 2, 2))))
    np.testing.assert_allclose(g2, g, rtol=1e-5, atol=1e-7)


def test_content_loss_invariant_to_tiling() -> None:
    f, p = _feats(34), _feats(35)
    np.testing.assert_allclose(
        np.asarray(content_loss(_tile(f), _tile(p))), np.asarray(content_loss(f, p)), rtol=1e-6
    )


def test_total_variation_approximately_invariant_to_tiling() -> None:
    # TV is a per-pixel mean, so tiling an image 2x2 leaves it unchanged up to
    # the seams and the pair count (n-1 neighbour pairs per row become 2n-1),
    # rather than growing 4x as a sum would. The image is periodic, so the
    # seam differences are ordinary neighbour differences; tolerance 5%.
    y, x = np.mgrid[0:16, 0:16] / 16.0
    two_pi = 2 * np.pi
    img = np.stack(
        [
            0.5 + 0.2 * np.sin(two_pi * x),
            0.5 + 0.2 * np.cos(two_pi * y),
            0.5 + 0.1 * np.sin(two_pi * (x + y)),
        ],
        -1,
    )[None].astype(np.float32)
    t1, t2 = float(tv_j(img)[0]), float(total_variation_loss(_tile(img))[0])
    assert t1 > 0
    assert t2 == pytest.approx(t1, rel=0.05)
    np.testing.assert_allclose(t2, np_tv(_tile(img))[0], rtol=1e-5)


def test_style_loss_does_not_grow_with_an_identical_layer() -> None:
    f = _feats(36)
    target = (0.3 * np.random.default_rng(37).standard_normal((1, C, C))).astype(np.float32)
    one = style_loss({"a": f}, {"a": target}, {"a": 1.0})
    two = style_loss({"a": f, "b": f}, {"a": target, "b": target}, {"a": 1.0, "b": 1.0})
    np.testing.assert_allclose(np.asarray(two), np.asarray(one), rtol=1e-6)
    assert float(one[0]) > 0
