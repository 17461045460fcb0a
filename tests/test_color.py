"""Colour transforms: YIQ, luminance, luminance/chroma recombination, colour matching."""

from __future__ import annotations

import numpy as np
import pytest

from nstjax.io.color import (
    RGB_TO_YIQ,
    YIQ_TO_RGB,
    _color_affine,
    combine_luminance,
    luminance,
    luminance_image,
    match_color,
    match_luminance,
    rgb_to_yiq,
    yiq_to_rgb,
)


def _image(seed: int, h: int = 24, w: int = 32) -> np.ndarray:
    """A colourful float32 [h, w, 3] image in [0, 1] with correlated channels."""
    rng = np.random.default_rng(seed)
    base = rng.random((h, w, 1), dtype=np.float32)
    mix = rng.random((h, w, 3), dtype=np.float32)
    tint = rng.random(3).astype(np.float32)
    return np.clip(0.5 * base + 0.3 * mix * tint + 0.1 * tint, 0, 1).astype(np.float32)


# --------------------------------------------------------------------------- #
# YIQ and luminance
# --------------------------------------------------------------------------- #


def test_matrices_are_an_exact_inverse_pair() -> None:
    np.testing.assert_allclose(RGB_TO_YIQ @ YIQ_TO_RGB, np.eye(3), atol=1e-15)
    np.testing.assert_allclose(RGB_TO_YIQ.sum(axis=1), [1, 0, 0], atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_yiq_round_trip(dtype: type) -> None:
    img = _image(0).astype(dtype)
    yiq = rgb_to_yiq(img)
    assert yiq.shape == img.shape and yiq.dtype == dtype
    back = yiq_to_rgb(yiq)
    assert back.dtype == dtype
    np.testing.assert_allclose(back, img, atol=1e-6 if dtype == np.float32 else 1e-12)


def test_yiq_works_on_any_leading_shape() -> None:
    batch = np.stack([_image(1, 4, 5), _image(2, 4, 5)])  # [2, 4, 5, 3]
    np.testing.assert_allclose(rgb_to_yiq(batch)[1], rgb_to_yiq(batch[1]), atol=1e-7)
    assert rgb_to_yiq(np.ones(3, np.float32)).shape == (3,)
    with pytest.raises(ValueError, match="3"):
        rgb_to_yiq(np.zeros((4, 4), np.float32))


@pytest.mark.parametrize("g", [0.0, 0.2, 0.5, 0.73, 1.0])
def test_grey_has_luminance_g_and_no_chroma(g: float) -> None:
    grey = np.full((2, 2, 3), g, dtype=np.float32)
    yiq = rgb_to_yiq(grey)
    np.testing.assert_allclose(yiq[..., 0], g, atol=1e-7)
    np.testing.assert_allclose(yiq[..., 1:], 0, atol=1e-7)
    y = luminance(grey)
    assert y.shape == (2, 2, 1)
    np.testing.assert_allclose(y, g, atol=1e-7)


def test_white_and_primaries() -> None:
    np.testing.assert_allclose(luminance(np.ones(3, np.float32)), [1.0], atol=1e-7)
    np.testing.assert_allclose(luminance(np.eye(3, dtype=np.float32))[:, 0], [0.299, 0.587, 0.114], atol=1e-7)


def test_luminance_image_is_grey_with_same_y() -> None:
    img = _image(3)
    grey = luminance_image(img)
    assert grey.shape == img.shape and grey.dtype == np.float32
    np.testing.assert_array_equal(grey[..., 0], grey[..., 1])
    np.testing.assert_array_equal(grey[..., 1], grey[..., 2])
    np.testing.assert_allclose(grey[..., :1], luminance(img), atol=1e-7)
    np.testing.assert_allclose(rgb_to_yiq(grey)[..., 0], luminance(img)[..., 0], atol=1e-6)
    np.testing.assert_allclose(rgb_to_yiq(grey)[..., 1:], 0, atol=1e-6)


def test_combine_luminance_takes_y_from_luma_and_iq_from_chroma() -> None:
    luma, chroma = _image(4), _image(5)
    out = combine_luminance(luma, chroma)
    assert out.shape == luma.shape and out.dtype == np.float32
    yiq_out = rgb_to_yiq(out.astype(np.float64))
    np.testing.assert_allclose(yiq_out[..., 0], rgb_to_yiq(luma.astype(np.float64))[..., 0], atol=1e-6)
    np.testing.assert_allclose(yiq_out[..., 1:], rgb_to_yiq(chroma.astype(np.float64))[..., 1:], atol=1e-6)
    # Same as swapping the Y channel in YIQ and converting back.
    swapped = rgb_to_yiq(chroma)
    swapped[..., 0] = rgb_to_yiq(luma)[..., 0]
    np.testing.assert_allclose(out, yiq_to_rgb(swapped), atol=1e-6)
    # Identity when both are the same image; a grey luma keeps its Y exactly.
    np.testing.assert_allclose(combine_luminance(luma, luma), luma, atol=1e-6)


def test_combine_luminance_is_not_clipped() -> None:
    white = np.ones((1, 1, 3), np.float32)
    red = np.array([[[1, 0, 0]]], np.float32)
    out = combine_luminance(white, red)  # Y = 1 with a saturated red's chroma
    assert out.max() > 1.0


# --------------------------------------------------------------------------- #
# Luminance and colour matching
# --------------------------------------------------------------------------- #


def test_match_luminance_equalises_mean_and_std() -> None:
    style_y = luminance(_image(6, 30, 20)) * 0.3 + 0.6  # bright, low contrast
    content_y = luminance(_image(7))
    out = match_luminance(style_y, content_y)
    assert out.shape == style_y.shape and out.dtype == np.float32
    np.testing.assert_allclose(out.mean(), content_y.mean(), atol=1e-6)
    np.testing.assert_allclose(out.std(), content_y.std(), atol=1e-6)
    # An affine, increasing remap: the ordering of pixels is unchanged.
    np.testing.assert_array_equal(np.argsort(out, axis=None), np.argsort(style_y, axis=None))


def test_match_luminance_constant_style() -> None:
    out = match_luminance(np.full((4, 4, 1), 0.9), luminance(_image(8)))
    np.testing.assert_allclose(out, luminance(_image(8)).mean(), atol=1e-6)


@pytest.mark.parametrize("method", ["cholesky", "eigen"])
def test_match_color_matches_mean_and_covariance(method: str) -> None:
    source, target = _image(9, 40, 30), _image(10, 24, 32)  # different sizes
    out = match_color(source, target, method=method)
    assert out.shape == source.shape and out.dtype == np.float32
    px_out, px_t = out.reshape(-1, 3).astype(np.float64), target.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(px_out.mean(axis=0), px_t.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(np.cov(px_out, rowvar=False), np.cov(px_t, rowvar=False), atol=1e-5)


def test_match_color_transform_matrices() -> None:
    source, target = _image(11), _image(12)
    xs = source.reshape(-1, 3).astype(np.float64)
    xt = target.reshape(-1, 3).astype(np.float64)
    cov_s, cov_t = np.cov(xs, rowvar=False), np.cov(xt, rowvar=False)

    def sqrtm(c: np.ndarray) -> np.ndarray:
        w, q = np.linalg.eigh(c)
        return q @ np.diag(np.sqrt(w)) @ q.T

    a_chol, mu_s, mu_t = _color_affine(source, target, "cholesky", 0.0)
    np.testing.assert_allclose(mu_s, xs.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(mu_t, xt.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(a_chol, np.tril(a_chol), atol=1e-12)  # L_t L_s^-1 is lower triangular
    np.testing.assert_allclose(a_chol @ cov_s @ a_chol.T, cov_t, atol=1e-10)

    a_eig, _, _ = _color_affine(source, target, "eigen", 0.0)
    root_t, root_s = sqrtm(cov_t), sqrtm(cov_s)
    np.testing.assert_allclose(root_t, root_t.T, atol=1e-12)  # symmetric square roots
    np.testing.assert_allclose(root_t @ root_t, cov_t, atol=1e-12)
    np.testing.assert_allclose(a_eig, root_t @ np.linalg.inv(root_s), atol=1e-8)
    np.testing.assert_allclose(a_eig @ cov_s @ a_eig.T, cov_t, atol=1e-10)


def test_match_color_eigen_is_symmetric_when_covariances_commute() -> None:
    # target = 2 * source + c has Sigma_t = 4 Sigma_s, so A = Sigma_t^1/2 Sigma_s^-1/2 = 2 I
    # (symmetric); the Cholesky variant gives the same A here.
    source = _image(13)
    target = 2 * source.astype(np.float64) + 0.1  # float64 so Sigma_t is exactly 4 Sigma_s
    for method in ("eigen", "cholesky"):
        a, _, _ = _color_affine(source, target, method, 0.0)
        np.testing.assert_allclose(a, 2 * np.eye(3), atol=1e-9)
        np.testing.assert_allclose(match_color(source, target, method=method), target, atol=1e-5)


@pytest.mark.parametrize("method", ["cholesky", "eigen"])
def test_match_color_grey_source_is_regularised(method: str) -> None:
    grey = np.repeat(luminance(_image(14)), 3, axis=-1)  # rank-1 colour covariance
    target = _image(15)
    with np.errstate(all="raise"):
        out = match_color(grey, target, method=method)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out.reshape(-1, 3).mean(axis=0), target.reshape(-1, 3).mean(axis=0), atol=1e-5)
    # Flat target: every pixel becomes the target colour.
    flat = np.full((5, 5, 3), (0.2, 0.4, 0.6), np.float32)
    np.testing.assert_allclose(match_color(_image(16), flat, method=method), np.broadcast_to(flat[0, 0], (24, 32, 3)), atol=1e-3)


def test_match_color_is_not_clipped() -> None:
    rng = np.random.default_rng(17)
    source = rng.random((16, 16, 3)).astype(np.float32)
    target = np.where(rng.random((16, 16, 1)) < 0.5, 0.0, 1.0) * np.ones(3, np.float32)  # high variance
    target = (target * 0.9 + 0.05 + 0.05 * rng.random((16, 16, 3))).astype(np.float32)
    out = match_color(source, target)
    assert out.min() < 0.0 or out.max() > 1.0


def test_match_color_rejects_bad_method() -> None:
    with pytest.raises(ValueError, match="method"):
        match_color(_image(0), _image(1), method="pca")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- #
# jax.numpy inputs
# --------------------------------------------------------------------------- #


def test_colour_transforms_accept_jax_arrays() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    img, other = _image(18), _image(19)
    j_img, j_other = jnp.asarray(img), jnp.asarray(other)
    cases = {
        "rgb_to_yiq": (rgb_to_yiq(j_img), rgb_to_yiq(img)),
        "yiq_to_rgb": (yiq_to_rgb(j_img), yiq_to_rgb(img)),
        "luminance": (luminance(j_img), luminance(img)),
        "luminance_image": (luminance_image(j_img), luminance_image(img)),
        "combine_luminance": (combine_luminance(j_img, j_other), combine_luminance(img, other)),
    }
    for name, (got, want) in cases.items():
        assert isinstance(got, jax.Array), name
        assert got.dtype == jnp.float32, name
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-6, err_msg=name)

    # Also inside jit (traced arrays), e.g. as part of a loss.
    round_trip = jax.jit(lambda x: yiq_to_rgb(rgb_to_yiq(x)))
    np.testing.assert_allclose(np.asarray(round_trip(j_img)), img, atol=1e-6)
    jit_combine = jax.jit(combine_luminance)
    np.testing.assert_allclose(np.asarray(jit_combine(j_img, j_other)), combine_luminance(img, other), atol=1e-6)


def test_matching_accepts_jax_arrays() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    source, target = _image(20), _image(21)
    out = match_color(jnp.asarray(source), jnp.asarray(target))
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, match_color(source, target), atol=1e-6)
    y = match_luminance(jnp.asarray(luminance(source)), jnp.asarray(luminance(target)))
    np.testing.assert_allclose(y, match_luminance(luminance(source), luminance(target)), atol=1e-6)
