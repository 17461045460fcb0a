"""Colour transforms for style transfer: YIQ, luminance-only transfer, colour histogram matching.

Images are float arrays ``[..., 3]``, RGB in [0, 1] (sRGB-encoded), so
batches ``[N, H, W, 3]`` and flat pixel lists ``[P, 3]`` work as well.

The per-pixel transforms (:func:`rgb_to_yiq`, :func:`yiq_to_rgb`,
:func:`luminance`, :func:`luminance_image`, :func:`combine_luminance`) are a
matrix product with a NumPy constant, so they also accept ``jax.numpy`` arrays
(and work under ``jit``) and return the same kind of array they were given.
The statistics functions (:func:`match_luminance`, :func:`match_color`) are
preprocessing steps: they accept jax arrays too but compute in float64 NumPy and
return NumPy.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import numpy as np

__all__ = [
    "RGB_TO_YIQ",
    "YIQ_TO_RGB",
    "rgb_to_yiq",
    "yiq_to_rgb",
    "luminance",
    "luminance_image",
    "combine_luminance",
    "match_luminance",
    "match_color",
]

ArrayT = TypeVar("ArrayT")

# --------------------------------------------------------------------------- #
# Colour: YIQ and luminance (Gatys et al. 2016, "Preserving Color in Neural
# Artistic Style Transfer", section 3 "Luminance-only transfer")
# --------------------------------------------------------------------------- #

#: NTSC (FCC 1953) RGB -> YIQ matrix, rows Y, I, Q; ``yiq = M @ rgb``.
#: The Y row sums to 1 (white -> Y = 1, grey g -> Y = g); the I and Q rows sum
#: to 0 (greys have no chroma).
RGB_TO_YIQ: np.ndarray = np.array(
    [
        [0.299, 0.587, 0.114],
        [0.5959, -0.2746, -0.3213],
        [0.2115, -0.5227, 0.3112],
    ],
    dtype=np.float64,
)
#: Exact inverse of :data:`RGB_TO_YIQ`, computed in float64 (not the rounded
#: textbook inverse), so ``yiq_to_rgb(rgb_to_yiq(x))`` reproduces ``x`` to
#: float rounding (~1e-7 in float32).
YIQ_TO_RGB: np.ndarray = np.linalg.inv(RGB_TO_YIQ)

# Projections onto the luminance / chroma parts of RGB space, built in YIQ:
# P_Y = M^-1 diag(1,0,0) M and P_C = M^-1 diag(0,1,1) M = I - P_Y.
_PROJ_Y: np.ndarray = YIQ_TO_RGB[:, :1] @ RGB_TO_YIQ[:1, :]
_PROJ_C: np.ndarray = YIQ_TO_RGB[:, 1:] @ RGB_TO_YIQ[1:, :]
_Y_ROW: np.ndarray = RGB_TO_YIQ[:1, :]


def _apply_matrix(image: Any, matrix: np.ndarray) -> Any:
    """``image @ matrix.T`` over the last axis, for NumPy or jax arrays.

    The NumPy constant is cast to float64 only for float64 input and to float32
    otherwise, so float32 NumPy stays float32 and jax arrays (which implement
    ``@`` with a NumPy operand) stay jax arrays of their own precision.
    """
    if not hasattr(image, "dtype") or not hasattr(image, "__matmul__"):
        image = np.asarray(image, dtype=np.float32)
    if image.shape[-1] != 3:
        raise ValueError(f"expected [..., 3] RGB/YIQ values, got shape {tuple(image.shape)}")
    dtype = np.float64 if image.dtype == np.float64 else np.float32
    return image @ matrix.T.astype(dtype)


def rgb_to_yiq(image: ArrayT) -> ArrayT:
    """RGB ``[..., 3]`` -> YIQ ``[..., 3]`` (channels Y, I, Q).

    ``Y = 0.299 R + 0.587 G + 0.114 B`` is the luminance; I and Q are the two
    chroma axes (see :data:`RGB_TO_YIQ`). For RGB in [0, 1]: Y in [0, 1],
    I in about [-0.596, 0.596], Q in about [-0.523, 0.523].
    Accepts NumPy or jax arrays; returns the same kind.
    """
    return _apply_matrix(image, RGB_TO_YIQ)


def yiq_to_rgb(image: ArrayT) -> ArrayT:
    """YIQ ``[..., 3]`` -> RGB ``[..., 3]``; the exact inverse of :func:`rgb_to_yiq`.

    Not clipped: a YIQ triple need not correspond to an in-gamut RGB colour.
    Accepts NumPy or jax arrays; returns the same kind.
    """
    return _apply_matrix(image, YIQ_TO_RGB)


def luminance(image: ArrayT) -> ArrayT:
    """The Y (luminance) channel of an RGB ``[..., 3]`` image, shape ``[..., 1]``.

    ``Y = 0.299 R + 0.587 G + 0.114 B``; white -> 1, grey ``g`` -> ``g``.
    Accepts NumPy or jax arrays; returns the same kind.
    """
    return _apply_matrix(image, _Y_ROW)


def luminance_image(image: ArrayT) -> ArrayT:
    """The grey image ``[..., 3]`` with every channel equal to Y of ``image``.

    This is what the network sees in luminance-only transfer: VGG expects
    three channels, and R = G = B = Y has luminance Y and zero chroma.
    Accepts NumPy or jax arrays; returns the same kind.
    """
    y = luminance(image)
    return y * np.ones(3, dtype=np.float64 if y.dtype == np.float64 else np.float32)


def combine_luminance(luma: ArrayT, chroma_source: Any) -> ArrayT:
    """RGB with the luminance of ``luma`` and the chroma of ``chroma_source``.

    Both are RGB ``[..., 3]`` arrays of the same (or broadcastable) shape. In
    YIQ terms the result is ``(Y(luma), I(chroma_source), Q(chroma_source))``
    converted back to RGB; it is computed directly in RGB as
    ``P_Y luma + P_C chroma_source`` with the projections
    ``P_Y = M^-1 diag(1, 0, 0) M`` and ``P_C = M^-1 diag(0, 1, 1) M``.

    Typical use (Gatys et al. 2016): ``luma`` is the stylised output of a
    luminance-only run, ``chroma_source`` the content image, so the result
    has the style's texture in the content's colours.

    The result is **not clipped**: a bright Y combined with strong chroma can
    leave [0, 1]. Clip (or let :func:`save_image` clip) for display.
    Accepts NumPy or jax arrays; returns the kind of ``luma``.
    """
    return _apply_matrix(luma, _PROJ_Y) + _apply_matrix(chroma_source, _PROJ_C)


def match_luminance(style_y: Any, content_y: Any) -> np.ndarray:
    """Affinely remap the style luminance to the content luminance's mean and std.

    Gatys et al. 2016, section 3: before luminance-only transfer the style
    luminance ``L_s`` is matched to the content luminance ``L_c`` by

        ``L_s' = (sigma_c / sigma_s) * (L_s - mu_s) + mu_c``

    with means and (population, ``ddof=0``) standard deviations over all
    elements, so that differences in overall brightness and contrast between
    the two images do not get transferred as "style".

    Args:
        style_y, content_y: luminance arrays of any shape (e.g. ``[H, W, 1]``
            from :func:`luminance`, or 3-channel :func:`luminance_image` s,
            whose identical channels give the same statistics); they may
            differ in size. NumPy or jax.

    Returns:
        float32 NumPy array shaped like ``style_y``. Not clipped (clipping
        would change the matched statistics). A constant style luminance
        (``sigma_s == 0``) just becomes the content mean.
    """
    s = np.asarray(style_y, dtype=np.float64)
    c = np.asarray(content_y, dtype=np.float64)
    sigma_s = s.std()
    scale = c.std() / sigma_s if sigma_s > 0 else 0.0
    return (scale * (s - s.mean()) + c.mean()).astype(np.float32)


def _color_affine(
    source: Any,
    target: Any,
    method: Literal["cholesky", "eigen"],
    eps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A, mu_s, mu_t)`` of the colour transfer ``x' = A (x - mu_s) + mu_t`` (float64)."""
    if method not in ("cholesky", "eigen"):
        raise ValueError(f"method must be 'cholesky' or 'eigen', got {method!r}")
    xs = np.asarray(source, dtype=np.float64)
    xt = np.asarray(target, dtype=np.float64)
    for name, x in (("source", xs), ("target", xt)):
        if x.shape[-1] != 3:
            raise ValueError(f"{name} must be [..., 3] RGB, got shape {x.shape}")
        if x.size < 6:
            raise ValueError(f"{name} needs at least 2 pixels for a covariance")
    xs, xt = xs.reshape(-1, 3), xt.reshape(-1, 3)
    mu_s, mu_t = xs.mean(axis=0), xt.mean(axis=0)
    # Sample covariances (ddof=1, like np.cov), plus a small ridge so that
    # singular ones (grey or single-colour images) are still invertible.
    ridge = eps * np.eye(3)
    cov_s = np.cov(xs, rowvar=False) + ridge
    cov_t = np.cov(xt, rowvar=False) + ridge
    if method == "cholesky":
        a = np.linalg.cholesky(cov_t) @ np.linalg.inv(np.linalg.cholesky(cov_s))
    else:
        a = _sym_power(cov_t, 0.5) @ _sym_power(cov_s, -0.5)
    return a, mu_s, mu_t


def _sym_power(cov: np.ndarray, power: float) -> np.ndarray:
    """``cov ** power`` for a symmetric positive-definite 3x3 matrix, via ``eigh``.

    The result is symmetric (``Q diag(w ** power) Q^T``). Eigenvalues are
    floored at a tiny positive value against round-off below zero.
    """
    w, q = np.linalg.eigh(cov)
    w = np.maximum(w, np.finfo(np.float64).tiny)
    return (q * w**power) @ q.T


def match_color(
    source: Any,
    target: Any,
    *,
    method: Literal["cholesky", "eigen"] = "cholesky",
    eps: float = 1e-7,
) -> np.ndarray:
    """Recolour ``source`` so its colour mean and covariance equal ``target``'s.

    Gatys et al. 2016, section 2 ("colour histogram matching"): before
    transfer the *style* image (``source``) is recoloured to the palette of
    the *content* image (``target``) with the affine map, per RGB pixel ``x``,

        ``x' = A (x - mu_s) + mu_t``,   ``A Sigma_s A^T = Sigma_t``,

    where ``mu`` are the per-channel means and ``Sigma`` the 3x3 RGB
    covariances (``ddof=1``, as ``np.cov``). Two choices of ``A``:

    * ``"cholesky"``: ``A = L_t L_s^{-1}``, with ``Sigma = L L^T`` the
      Cholesky factorisations (``A`` lower triangular).
    * ``"eigen"``: ``A = Sigma_t^{1/2} Sigma_s^{-1/2}`` with symmetric
      matrix square roots from the eigendecomposition
      ``Sigma^{1/2} = Q Lambda^{1/2} Q^T`` (the "Image Analogies" colour
      transform). Each root is symmetric; their product ``A`` generally
      is not.

    A ridge ``eps * I`` is added to both covariances so that singular ones
    (a grey or flat-coloured image has rank < 3) can be factorised. For
    full-rank images it perturbs the matched covariance by only about
    ``eps * |A|^2``; a grey source cannot gain colour variance it does not
    have, so then only its mean and in-span statistics are matched.

    The result is **not clipped** to [0, 1]: clipping would change the very
    mean and covariance just matched, and the VGG network takes any real
    input, so out-of-gamut values are harmless until the final save.

    Args:
        source: RGB ``[..., 3]`` (e.g. the style image ``[H, W, 3]``), NumPy or jax.
        target: RGB ``[..., 3]`` (e.g. the content image); any pixel count.
        method: ``"cholesky"`` or ``"eigen"``.
        eps: ridge added to the covariance diagonals.

    Returns:
        float32 NumPy array shaped like ``source``.
    """
    a, mu_s, mu_t = _color_affine(source, target, method, eps)
    xs = np.asarray(source, dtype=np.float64)
    out = (xs - mu_s) @ a.T + mu_t
    return out.astype(np.float32)
