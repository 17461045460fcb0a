"""SPADE / GauGAN (Park et al. 2019): label map -> photo, in Flax Linen.

The networks of NVlabs/SPADE, re-written for NHWC arrays:

* :class:`SPADE` — spatially-adaptive normalisation: a parameter-free norm
  (``"batch"``: batch statistics while training, running averages at inference,
  as SPADE's synchronised batch norm; or ``"instance"``), then
  ``x * (1 + gamma) + beta`` where ``gamma`` and ``beta`` are 3x3 convolutions of
  a shared 3x3 convolution + ReLU (``hidden`` channels, 128 in the paper) of the
  one-hot label map resized (nearest) to the feature size.
* :class:`SPADEResBlock` — ``shortcut(x) + conv_1(lrelu(SPADE_1(conv_0(lrelu(SPADE_0(x))))))``
  with 3x3 convolutions, ``fmiddle = min(fin, fout)``, and a learned shortcut
  (``SPADE_s`` then a 1x1 convolution without bias) when ``fin != fout``. With
  ``spectral`` (the paper's default) every convolution of the block is
  spectral-normalised.
* :class:`SPADEGenerator` — a label map (or, with the VAE, a latent ``z``) at
  ``1 / 2**n_up`` of the output size, ``head_0``, ``G_middle_0``, ``G_middle_1``,
  ``up_0`` … ``up_3`` residual blocks (16, 16, 16, 8, 4, 2, 1 times ``ngf``
  channels) with nearest x2 upsamplings between them, then LeakyReLU, a 3x3
  convolution to RGB and tanh.
* :class:`ConvEncoder` — the VAE's image encoder (GauGAN's "style filter"):
  stride-2 3x3 spectral-normalised convolutions with instance norm down to 4x4,
  then two dense layers giving ``mu`` and ``logvar`` of ``z``.
* :class:`MultiscaleDiscriminator` — two (``num_d``) PatchGANs
  (:class:`nstjax.models.patchgan.PatchGAN`, 4x4 kernels, padding 2, spectral
  norm + instance norm in the middle layers) on the label map concatenated with
  the image, the second on a 3x3/2 average-pooled copy; each returns its
  LeakyReLU features (for feature matching) and logits.

Where NVlabs fixes a number that only makes sense at 256 px, it is a setting
here so that small sizes (32-64 px in tests) work:

* ``n_up`` (upsamplings, NVlabs: 5 for ``normal``, 6 ``more``, 7 ``most``). Below 5,
  the first upsamplings are left out: ``head_0`` … run at the base resolution and
  the last blocks keep their places (``up_3`` at full size).
* ``hidden``: the SPADE shared convolution's channels (128).
* ConvEncoder's input side ``size`` (256, which NVlabs always resizes to,
  bilinearly) and so its depth: ``log2(size / 4)`` stride-2 layers.

State: spectral norm's power-iteration vectors (``u``, ``sigma``) and the batch
norm's running statistics (``mean``, ``var``) live in the ``"batch_stats"``
collection. Call with ``train=True`` and ``mutable=["batch_stats"]`` while
training (one power iteration and one running-average update per call, as
PyTorch modules in train mode do) and keep the returned collection.

Conventions: NHWC; label maps one-hot float ``[B, H, W, K]``; images in [-1, 1];
float32 parameters, convolutions in ``dtype``, statistics in float32, outputs
float32.
"""

from __future__ import annotations

from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .patchgan import PatchGAN
from .layers import Conv, instance_norm

__all__ = [
    "ConvEncoder",
    "MultiscaleDiscriminator",
    "ParamFreeNorm",
    "ParamFreeNormName",
    "SPADE",
    "SPADEGenerator",
    "SPADEResBlock",
    "avg_pool_3x3",
    "encoder_layers",
    "resize_nearest",
    "spade_multiple",
]

ParamFreeNormName = Literal["batch", "instance"]

_SLOTS = 7  # places an x2 upsampling can take in the NVlabs generator (see SPADEGenerator)


def spade_multiple(n_up: int) -> int:
    """Height and width of :class:`SPADEGenerator` outputs must be multiples of this (``2 ** n_up``)."""
    return 2**n_up


def encoder_layers(size: int) -> int:
    """Stride-2 layers of a :class:`ConvEncoder` whose input is ``size`` px: down to 4x4."""
    n = int(round(np.log2(size / 4)))
    if n < 1 or 4 * 2**n != size:
        raise ValueError(f"the encoder's input size must be 4 times a power of two (8, 16, … 256), got {size}")
    return n


def resize_nearest(x: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """PyTorch's ``F.interpolate(mode="nearest")`` on ``x`` [B, H, W, C]: output pixel ``i`` takes ``floor(i * H / h)``.

    (For downsampling by an integer factor that is the top-left pixel of each block,
    not the centre as :func:`nstjax.labels.resize_labels` takes.)
    """
    h, w = shape
    in_h, in_w = x.shape[1], x.shape[2]
    if (h, w) == (in_h, in_w):
        return x
    rows = np.minimum(np.arange(h) * in_h // h, in_h - 1)
    cols = np.minimum(np.arange(w) * in_w // w, in_w - 1)
    return x[:, rows][:, :, cols]


def avg_pool_3x3(x: jax.Array) -> jax.Array:
    """3x3 average pooling, stride 2, padding 1, padded zeros not counted (``count_include_pad=False``)."""
    window, strides, pad = (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
    ones = jnp.ones((1, x.shape[1], x.shape[2], 1), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, pad)
    return total / count


def _upsample2x(x: jax.Array) -> jax.Array:
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class ParamFreeNorm(nn.Module):
    """Normalisation without affine parameters: ``"instance"`` or ``"batch"`` (PyTorch's, momentum 0.1).

    ``"batch"``: while training (``train=True``) each channel is normalised with the
    batch's mean and (biased) variance over B, H, W, and the running averages in
    ``batch_stats`` (``mean``, ``var`` with the unbiased variance) are updated;
    at inference the running averages are used. Under ``jax.jit`` with a batch
    sharded over devices the statistics are those of the global batch (synchronised
    batch norm, as SPADE trains). Statistics in float32; output in ``x``'s dtype.
    """

    kind: ParamFreeNormName = "batch"
    momentum: float = 0.1
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.kind == "instance":
            return instance_norm(x, self.eps)
        if self.kind != "batch":
            raise ValueError(f"unknown parameter-free norm {self.kind!r} (batch or instance)")
        c = x.shape[-1]
        running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        running_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        x32 = x.astype(jnp.float32)
        if train:
            mean = jnp.mean(x32, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(x32 - mean), axis=(0, 1, 2))
            if not self.is_initializing():
                n = x.shape[0] * x.shape[1] * x.shape[2]
                unbiased = var * n / max(n - 1, 1)
                running_mean.value = (1 - self.momentum) * running_mean.value + self.momentum * mean
                running_var.value = (1 - self.momentum) * running_var.value + self.momentum * unbiased
        else:
            mean, var = running_mean.value, running_var.value
        return ((x32 - mean) * jax.lax.rsqrt(var + self.eps)).astype(x.dtype)


class _SNConv(nn.Module):
    """A :class:`~nstjax.models.layers.Conv`, spectral-normalised when ``spectral``."""

    features: int
    kernel: int
    padding: Any = 0
    use_bias: bool = True
    spectral: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv = Conv(self.features, self.kernel, padding=self.padding, use_bias=self.use_bias, dtype=self.dtype,
                    name="conv")  # fmt: skip
        if not self.spectral:
            return conv(x)
        return nn.SpectralNorm(conv, collection_name="batch_stats", name="sn")(x, update_stats=train)


class SPADE(nn.Module):
    """Spatially-adaptive normalisation of ``x`` [B, h, w, C] by the one-hot label map ``seg`` [B, H, W, K].

    Parameters: ``mlp_shared`` (3x3, K -> hidden, then ReLU), ``mlp_gamma`` and
    ``mlp_beta`` (3x3, hidden -> C), all with biases.
    """

    hidden: int = 128
    norm: ParamFreeNormName = "batch"
    kernel: int = 3
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, seg: jax.Array, train: bool) -> jax.Array:
        normalized = ParamFreeNorm(self.norm, name="param_free_norm")(x, train)
        seg = resize_nearest(seg, x.shape[1:3])
        pad = self.kernel // 2
        actv = nn.relu(Conv(self.hidden, self.kernel, padding=pad, dtype=self.dtype, name="mlp_shared")(seg.astype(self.dtype)))
        gamma = Conv(x.shape[-1], self.kernel, padding=pad, dtype=self.dtype, name="mlp_gamma")(actv)
        beta = Conv(x.shape[-1], self.kernel, padding=pad, dtype=self.dtype, name="mlp_beta")(actv)
        return normalized * (1 + gamma.astype(normalized.dtype)) + beta.astype(normalized.dtype)


class SPADEResBlock(nn.Module):
    """NVlabs' ``SPADEResnetBlock``: ``x`` [B, h, w, fin] -> [B, h, w, fout].

    Parameters: ``norm_0``, ``conv_0`` (3x3, fin -> min(fin, fout)), ``norm_1``,
    ``conv_1`` (3x3 -> fout) and, when fin != fout, ``norm_s`` and ``conv_s`` (1x1, no bias).
    """

    fout: int
    hidden: int = 128
    norm: ParamFreeNormName = "batch"
    spectral: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, seg: jax.Array, train: bool) -> jax.Array:
        fin = x.shape[-1]
        fmiddle = min(fin, self.fout)
        spade = dict(hidden=self.hidden, norm=self.norm, dtype=self.dtype)
        conv = dict(spectral=self.spectral, dtype=self.dtype)
        if fin != self.fout:
            x_s = SPADE(**spade, name="norm_s")(x, seg, train)
            x_s = _SNConv(self.fout, 1, use_bias=False, **conv, name="conv_s")(x_s, train)
        else:
            x_s = x
        dx = nn.leaky_relu(SPADE(**spade, name="norm_0")(x, seg, train), 0.2)
        dx = _SNConv(fmiddle, 3, padding=1, **conv, name="conv_0")(dx, train)
        dx = nn.leaky_relu(SPADE(**spade, name="norm_1")(dx, seg, train), 0.2)
        dx = _SNConv(self.fout, 3, padding=1, **conv, name="conv_1")(dx, train)
        return x_s + dx


class SPADEGenerator(nn.Module):
    """NVlabs' ``SPADEGenerator``: one-hot labels [B, H, W, K] (and ``z`` [B, z_dim] with ``use_vae``) -> [B, H, W, 3].

    H and W must be multiples of ``2 ** n_up`` (:func:`spade_multiple`). The input
    of ``head_0`` is ``fc`` of the label map resized (nearest) to
    ``H / 2**n_up x W / 2**n_up`` (a 3x3 convolution to ``16 ngf`` channels) or,
    with ``use_vae``, a dense layer of ``z`` reshaped to that size (its parameters
    then fix the output size). ``z=None`` with ``use_vae`` draws ``z ~ N(0, 1)``
    from the ``"noise"`` RNG stream.

    Upsampling places (``n_up``): NVlabs' ``normal`` (5) upsamples after ``head_0``
    and before each of ``up_0`` … ``up_3``; ``more`` (6) also between the two
    ``G_middle`` blocks; ``most`` (7) adds an ``up_4`` block (``ngf / 2``) at the
    end. With ``n_up < 5`` the first of the ``normal`` places are left out.

    Output float32 in (-1, 1).
    """

    ngf: int = 64
    n_up: int = 5
    hidden: int = 128
    norm: ParamFreeNormName = "batch"
    spectral: bool = True
    use_vae: bool = False
    z_dim: int = 256
    dtype: Any = jnp.float32

    def _places(self) -> tuple[bool, ...]:
        """For each of the 7 places (after head_0, between the G_middles, before up_0 … up_3, before up_4)."""
        if not 1 <= self.n_up <= _SLOTS:
            raise ValueError(f"n_up must be 1-7 upsamplings, got {self.n_up}")
        normal = [0, 2, 3, 4, 5]
        if self.n_up >= 5:
            chosen = set(normal) | ({1} if self.n_up >= 6 else set()) | ({6} if self.n_up == 7 else set())
        else:
            chosen = set(normal[5 - self.n_up :])
        return tuple(i in chosen for i in range(_SLOTS))

    @nn.compact
    def __call__(self, seg: jax.Array, z: jax.Array | None = None, train: bool = False) -> jax.Array:
        places = self._places()
        nf, dt = self.ngf, self.dtype
        b, h, w, _ = seg.shape
        m = spade_multiple(self.n_up)
        if h % m or w % m:
            raise ValueError(f"label maps must be multiples of {m} px for n_up={self.n_up}, got {h}x{w}")
        sh, sw = h // m, w // m
        block = dict(hidden=self.hidden, norm=self.norm, spectral=self.spectral, dtype=dt)
        if self.use_vae:
            if z is None:
                z = jax.random.normal(self.make_rng("noise"), (b, self.z_dim), jnp.float32)
            x = nn.Dense(16 * nf * sh * sw, dtype=dt, param_dtype=jnp.float32, name="fc")(z.astype(dt))
            x = x.reshape(b, sh, sw, 16 * nf)
        else:
            x = Conv(16 * nf, 3, padding=1, dtype=dt, name="fc")(resize_nearest(seg, (sh, sw)).astype(dt))

        def up(x, place):
            return _upsample2x(x) if places[place] else x

        x = SPADEResBlock(16 * nf, **block, name="head_0")(x, seg, train)
        x = up(x, 0)
        x = SPADEResBlock(16 * nf, **block, name="G_middle_0")(x, seg, train)
        x = up(x, 1)
        x = SPADEResBlock(16 * nf, **block, name="G_middle_1")(x, seg, train)
        for i, mult in enumerate((8, 4, 2, 1)):
            x = up(x, 2 + i)
            x = SPADEResBlock(mult * nf, **block, name=f"up_{i}")(x, seg, train)
        if self.n_up == _SLOTS:
            x = up(x, 6)
            x = SPADEResBlock(nf // 2, **block, name="up_4")(x, seg, train)
        x = Conv(3, 3, padding=1, dtype=dt, name="conv_img")(nn.leaky_relu(x, 0.2))
        return jnp.tanh(x.astype(jnp.float32))


class ConvEncoder(nn.Module):
    """NVlabs' ``ConvEncoder`` (the VAE): images [B, H, W, 3] in [-1, 1] -> (mu, logvar), float32 [B, z_dim] each.

    The image is resized bilinearly to ``size`` x ``size`` (NVlabs: 256) when it is
    not that size; then ``encoder_layers(size)`` stride-2 3x3 convolutions
    (``layer1`` …; channels ``ngf * [1, 2, 4, 8, 8, 8, …]``), each
    spectral-normalised (``spectral``), instance-normalised without bias and
    followed by LeakyReLU(0.2), down to 4x4; then ``fc_mu`` and ``fc_var``.
    The flattening order is H, W, C (NHWC); NVlabs' is C, H, W (the parity tests
    permute the dense kernels).
    """

    ngf: int = 64
    size: int = 256
    z_dim: int = 256
    spectral: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, image: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        n = encoder_layers(self.size)
        x = image.astype(jnp.float32)
        if x.shape[1:3] != (self.size, self.size):
            x = jax.image.resize(x, (x.shape[0], self.size, self.size, x.shape[3]), "bilinear", antialias=False)
        x = x.astype(self.dtype)
        for i in range(n):
            width = self.ngf * min(2**i, 8)
            conv = Conv(width, 3, stride=2, padding=1, use_bias=False, dtype=self.dtype, name=f"layer{i + 1}")
            if self.spectral:
                x = nn.SpectralNorm(conv, collection_name="batch_stats", name=f"sn{i + 1}")(x, update_stats=train)
            else:
                x = conv(x)
            x = nn.leaky_relu(instance_norm(x), 0.2)
        x = x.reshape(x.shape[0], -1)
        dense = dict(dtype=self.dtype, param_dtype=jnp.float32)
        mu = nn.Dense(self.z_dim, **dense, name="fc_mu")(x).astype(jnp.float32)
        logvar = nn.Dense(self.z_dim, **dense, name="fc_var")(x).astype(jnp.float32)
        return mu, logvar


class MultiscaleDiscriminator(nn.Module):
    """NVlabs' ``MultiscaleDiscriminator`` of ``NLayerDiscriminator`` s (``n_layers_D=4``), from :class:`PatchGAN`.

    Input: the label map and the image concatenated on channels, [B, H, W, K + 3].
    Returns one ``(features, logits)`` per scale (``num_d``; scale ``i`` sees the
    input average-pooled ``i`` times by :func:`avg_pool_3x3`): ``features`` is the
    list of the ``n_layers + 1`` LeakyReLU outputs, ``logits`` [B, h, w, 1]; float32.
    Parameters ``d0``, ``d1``, … (each a PatchGAN with ``padding=2``, spectral norm
    and instance norm in its middle layers).
    """

    ndf: int = 64
    n_layers: int = 3
    num_d: int = 2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> list[tuple[list[jax.Array], jax.Array]]:
        out = []
        for i in range(self.num_d):
            d = PatchGAN(ndf=self.ndf, n_layers=self.n_layers, norm="instance", spectral_norm=True, padding=2,
                         return_features=True, dtype=self.dtype, name=f"d{i}")  # fmt: skip
            logits, features = d(x, update_stats=train)
            out.append((features, logits))
            if i + 1 < self.num_d:
                x = avg_pool_3x3(x)
        return out
