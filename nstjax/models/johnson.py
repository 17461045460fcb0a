"""The image transformation network of Johnson, Alahi & Fei-Fei (2016), in Flax Linen.

Structure (as the PyTorch example ``fast_neural_style``'s ``TransformerNet``
builds it, the network most feed-forward style models in circulation use)::

    c9s1-32  -> IN -> ReLU        9x9 convolution, stride 1, 32 channels
    d64      -> IN -> ReLU        3x3, stride 2
    d128     -> IN -> ReLU        3x3, stride 2
    5 x residual block (128)      conv3x3 -> IN -> ReLU -> conv3x3 -> IN, plus the input
    u64      -> IN -> ReLU        nearest-neighbour x2 upsampling, then 3x3 convolution
    u32      -> IN -> ReLU
    c9s1-3                        9x9 convolution to RGB

* Every convolution pads its input by reflection (``kernel // 2`` on each side)
  and has a bias. The upsampling layers upsample *then* convolve (no transposed
  convolutions: no checkerboard artefacts).
* IN is instance normalisation with a learnt per-channel scale and shift
  (``InstanceNorm2d(affine=True)``: biased variance, eps 1e-5).
* Pixel scale: like the example, the network works on 0–255 pixel values, so
  the example's trained weights (``*.pth``) convert as they are
  (:func:`params_from_torch`). Images in and out of :class:`TransformerNet` are
  RGB in [0, 1]: the input is multiplied by ``pixel_scale`` and the output
  divided by it.
* Output range: ``"linear"`` (the example) leaves the last convolution's output
  as is, so it can leave [0, 1] and is clipped when saved; ``"tanh"`` (the paper)
  squashes it into [0, 1] with ``(1 + tanh(y / pixel_scale)) / 2``.
* Sizes: the two stride-2 layers and the two upsamplings give back the input's
  size when height and width are multiples of 4 (:data:`SIZE_MULTIPLE`);
  :func:`stylize` pads other sizes by reflection and crops the result.

Speed: the upsampling layers and the last 9x9 convolution are computed in
reorganised but equal forms (:func:`upsample_conv3x3`, :func:`split_conv`),
which XLA:CPU runs several times faster; 2.5x for the whole network at 256 px.

Parameters are float32; the arithmetic runs in ``dtype`` (float32 or bfloat16).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import NstjaxError
from .conv import conv2d
from .layers import instance_norm, reflect_pad, upsample_nearest  # the last two re-exported (__all__)

__all__ = [
    "OUTPUTS",
    "SIZE_MULTIPLE",
    "Conv",
    "ConvLayer",
    "InstanceNorm",
    "ResidualBlock",
    "TransformerNet",
    "UpsampleConvLayer",
    "init_transformer",
    "pad_to_multiple",
    "params_from_torch",
    "params_to_torch",
    "reflect_pad",
    "split_conv",
    "stylize",
    "torch_like_init",
    "upsample_conv3x3",
    "upsample_nearest",
]

OUTPUTS = ("linear", "tanh")
SIZE_MULTIPLE = 4
"""Height and width that the network maps to themselves (two stride-2 layers)."""

RESIDUAL_BLOCKS = 5


def pad_to_multiple(images, multiple: int):
    """``(padded, (H, W))``: images [B, H, W, C] padded at the bottom/right to multiples of ``multiple``.

    Reflection padding (edge padding when the image is too small to reflect), so
    a network with strides sees no artificial border; crop its output back with
    ``[:, :H, :W]``. NumPy in, NumPy out; JAX in, JAX out.
    """
    xp = jnp if isinstance(images, jax.Array) else np
    _, h, w, _ = images.shape
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "edge"
        images = xp.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=mode)
    return images, (h, w)


class InstanceNorm(nn.Module):
    """Instance normalisation with a learnt per-channel scale and shift.

    Each image's channels are normalised over their H×W positions with the biased
    variance plus ``epsilon`` (``torch.nn.InstanceNorm2d(affine=True)``); statistics
    are computed in float32 whatever the compute dtype
    (:func:`~nstjax.models.layers.instance_norm`). Parameters ``scale`` (init 1) and
    ``bias`` (init 0), float32 [C].
    """

    epsilon: float = 1e-5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones_init(), (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (c,), jnp.float32)
        return instance_norm(x, self.epsilon, scale, bias, self.dtype)


def _phase_taps() -> np.ndarray:
    """``M[r, p, d]`` = 1 when, after nearest x2 upsampling, output row ``2i + p`` reads through tap
    ``d - 1`` (of a 3x3 kernel) the input row ``i + r - 1``; the same holds for columns."""
    taps = np.zeros((3, 2, 3), np.float32)
    for p in (0, 1):
        for d in (-1, 0, 1):
            r = (p + d) // 2  # (2i + p + d) // 2 - i
            taps[r + 1, p, d + 1] = 1.0
    return taps


_PHASE_TAPS = _phase_taps()


def _phase_kernel(kernel: jax.Array) -> jax.Array:
    """A 3x3 kernel [3, 3, Cin, Cout] -> the [3, 3, Cin, 4·Cout] kernel of its four output phases."""
    cin, cout = kernel.shape[2:]
    taps = jnp.asarray(_PHASE_TAPS, kernel.dtype)
    phases = jnp.einsum("apd,bqe,deio->abipqo", taps, taps, kernel)  # [3, 3, Cin, 2, 2, Cout]
    return phases.reshape(3, 3, cin, 4 * cout)


def upsample_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``conv3x3(reflect_pad(upsample_nearest(x, 2), 1), kernel)`` without building the upsampled image.

    Each of the four output phases (even/odd row, even/odd column) is a 3x3
    convolution of ``x`` itself with the taps that land on the same input pixel
    summed, so one convolution at the low resolution with ``4·Cout`` channels,
    followed by depth-to-space, gives the same result (up to float rounding).
    Reflection padding of the upsampled image by one pixel equals edge padding of
    ``x``. XLA:CPU runs this 1.3–3.4x faster than the convolution at full
    resolution (wider outputs suit its kernels). ``x`` [B, H, W, Cin] -> [B, 2H, 2W, Cout].
    """
    b, h, w, _ = x.shape
    cout = kernel.shape[-1]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    z = conv2d(xp, _phase_kernel(kernel))
    return z.reshape(b, h, w, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, cout)


def split_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A stride-1 VALID k×k convolution (k a multiple of 3) as one 3x3 convolution plus shifted sums.

    The k×k kernel is cut into (k/3)² 3x3 blocks; one 3x3 convolution computes
    every block's response at once (``(k/3)²·Cout`` channels), and the output sums
    each block's response shifted by its offset. Same result up to float rounding;
    for the 9x9 convolution to 3 channels that ends the network, XLA:CPU runs it
    about 6x faster than the direct 9x9 convolution (few output channels and a
    large window suit its kernels badly). ``x`` [B, H, W, Cin] -> [B, H-k+1, W-k+1, Cout].
    """
    k, _, cin, cout = kernel.shape
    n = k // 3
    blocks = kernel.reshape(n, 3, n, 3, cin, cout).transpose(1, 3, 4, 0, 2, 5).reshape(3, 3, cin, n * n * cout)
    z = conv2d(x, blocks)
    b, hz, wz, _ = z.shape
    h, w = hz - (k - 3), wz - (k - 3)
    z = z.reshape(b, hz, wz, n, n, cout)
    out = z[:, :h, :w, 0, 0]
    for a in range(n):
        for c in range(n):
            if a or c:
                out = out + z[:, 3 * a : 3 * a + h, 3 * c : 3 * c + w, a, c]
    return out


class Conv(nn.Module):
    """A convolution with bias, its input padded by reflection (``kernel // 2``), optionally upsampled first.

    Parameters ``kernel`` [k, k, Cin, Cout] (HWIO) and ``bias`` [Cout], float32.
    The arithmetic is the plain convolution's; :func:`split_conv` and
    :func:`upsample_conv3x3` only reorganise it for speed.
    """

    features: int
    kernel: int
    stride: int = 1
    upsample: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        kernel = kernel.astype(self.dtype)
        x = x.astype(self.dtype)
        if self.upsample == 2 and k == 3 and self.stride == 1:
            y = upsample_conv3x3(x, kernel)
        else:
            if self.upsample > 1:
                x = upsample_nearest(x, self.upsample)
            x = reflect_pad(x, k // 2)
            if self.stride == 1 and k > 3 and k % 3 == 0 and self.features < 16:
                y = split_conv(x, kernel)
            else:
                y = conv2d(x, kernel, self.stride)
        return y + bias.astype(self.dtype)


class ConvLayer(nn.Module):
    """Reflection padding by ``kernel // 2``, then a ``kernel``×``kernel`` convolution with ``stride``."""

    features: int
    kernel: int
    stride: int = 1
    dtype: Any = jnp.float32
    upsample: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return Conv(self.features, self.kernel, self.stride, self.upsample, self.dtype, name="conv")(x)


class UpsampleConvLayer(nn.Module):
    """Nearest-neighbour upsampling by ``upsample``, then a :class:`ConvLayer` (stride 1)."""

    features: int
    kernel: int
    upsample: int = 2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return ConvLayer(self.features, self.kernel, 1, self.dtype, self.upsample, name="layer")(x)


class ResidualBlock(nn.Module):
    """``x + IN(conv(ReLU(IN(conv(x)))))`` with 3x3 convolutions keeping the channel count."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        y = nn.relu(InstanceNorm(dtype=self.dtype, name="in1")(ConvLayer(c, 3, 1, self.dtype, name="conv1")(x)))
        y = InstanceNorm(dtype=self.dtype, name="in2")(ConvLayer(c, 3, 1, self.dtype, name="conv2")(y))
        return x + y


class TransformerNet(nn.Module):
    """Johnson et al.'s image transformation network.

    Attributes:
      output: ``"linear"`` (PyTorch example) or ``"tanh"`` (paper); see the module docstring.
      pixel_scale: the pixel value of white inside the network (255 like the example).
      dtype: compute dtype; parameters stay float32.

    Submodule names follow the example's ``state_dict`` (``conv1``, ``in1``, …,
    ``res1`` … ``res5``, ``deconv1``, ``in4``, ``deconv2``, ``in5``, ``deconv3``).
    """

    output: str = "linear"
    pixel_scale: float = 255.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        """``images`` float [B, H, W, 3] RGB in [0, 1], H and W multiples of 4 -> float32 [B, H, W, 3].

        With ``output="linear"`` the result is not clipped.
        """
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        d = self.dtype
        x = (images.astype(jnp.float32) * self.pixel_scale).astype(d)
        y = nn.relu(InstanceNorm(dtype=d, name="in1")(ConvLayer(32, 9, 1, d, name="conv1")(x)))
        y = nn.relu(InstanceNorm(dtype=d, name="in2")(ConvLayer(64, 3, 2, d, name="conv2")(y)))
        y = nn.relu(InstanceNorm(dtype=d, name="in3")(ConvLayer(128, 3, 2, d, name="conv3")(y)))
        for i in range(1, RESIDUAL_BLOCKS + 1):
            y = ResidualBlock(d, name=f"res{i}")(y)
        y = nn.relu(InstanceNorm(dtype=d, name="in4")(UpsampleConvLayer(64, 3, 2, d, name="deconv1")(y)))
        y = nn.relu(InstanceNorm(dtype=d, name="in5")(UpsampleConvLayer(32, 3, 2, d, name="deconv2")(y)))
        y = ConvLayer(3, 9, 1, d, name="deconv3")(y).astype(jnp.float32)
        if self.output == "tanh":
            return (1.0 + jnp.tanh(y / self.pixel_scale)) * 0.5
        return y / self.pixel_scale


def torch_like_init(shapes: Any, seed: int) -> dict[str, Any]:
    """Seeded float32 NumPy parameters for a tree of parameter shapes, initialised as PyTorch does by default.

    Convolution kernels ``[kh, kw, Cin, Cout]`` and their biases: uniform in
    ``±1/sqrt(kh·kw·Cin)`` (``nn.Conv2d``'s default); instance-norm ``scale`` 1 and
    ``bias`` 0 (``InstanceNorm2d(affine=True)``'s). NumPy's generator makes them the
    same on every backend, and no program is compiled (Flax's ``init`` would run
    and compile the whole forward pass).
    """
    rng = np.random.default_rng(seed)

    out: dict[str, Any] = {}
    flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
    fan_in: dict[tuple, int] = {}
    for path, leaf in flat:
        keys = tuple(p.key for p in path)
        if keys[-1] == "kernel":
            fan_in[keys[:-1]] = int(np.prod(leaf.shape[:-1]))
    for path, leaf in flat:
        keys = tuple(p.key for p in path)
        if keys[:-1] in fan_in:  # a convolution's kernel or bias
            bound = 1.0 / np.sqrt(fan_in[keys[:-1]])
            value = rng.uniform(-bound, bound, leaf.shape)
        elif keys[-1] == "scale":
            value = np.ones(leaf.shape)
        else:
            value = np.zeros(leaf.shape)
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value.astype(np.float32)
    return out


def init_transformer(seed: int = 0, *, output: str = "linear") -> dict[str, Any]:
    """Fresh :class:`TransformerNet` parameters, seeded (:func:`torch_like_init`), float32 NumPy."""
    shapes = jax.eval_shape(TransformerNet(output=output).init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    return torch_like_init(shapes["params"], seed)


def stylize(params: Any, images: jax.Array, *, output: str = "linear", pixel_scale: float = 255.0,
            dtype: Any = jnp.float32, clip: bool = True) -> jax.Array:
    """Run the network on images of any size: pad to a multiple of 4 by reflection, run, crop.

    Args:
      params: :class:`TransformerNet` parameters (arrays, passed as data).
      images: float [B, H, W, 3] RGB in [0, 1].
      clip: clip the result to [0, 1] (what gets displayed or saved).

    Returns:
      float32 [B, H, W, 3].
    """
    images, (h, w) = pad_to_multiple(jnp.asarray(images), SIZE_MULTIPLE)
    out = TransformerNet(output=output, pixel_scale=pixel_scale, dtype=dtype).apply({"params": params}, images)
    out = out[:, :h, :w]
    return jnp.clip(out, 0.0, 1.0) if clip else out


# --------------------------------------------------------------------------- PyTorch state dicts

_TORCH_KEY = re.compile(
    r"^(?P<module>(?:res[1-5]\.)?(?:conv[1-3]|deconv[1-3]|in[1-5]))(?:\.conv2d)?\.(?P<kind>weight|bias)$"
)


def _flax_path(module: str) -> tuple[str, ...]:
    """``res2.conv1`` -> ``("res2", "conv1", "conv")``; ``deconv1`` -> ``("deconv1", "layer", "conv")``."""
    parts = module.split(".")
    leaf = parts[-1]
    if leaf.startswith("in"):
        return tuple(parts)
    if leaf in ("deconv1", "deconv2"):
        return (*parts, "layer", "conv")
    return (*parts, "conv")


def params_from_torch(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`TransformerNet` parameters from a PyTorch ``fast_neural_style`` ``state_dict``.

    Accepts NumPy arrays or torch tensors. Convolution weights ``[O, I, kh, kw]``
    become HWIO kernels; instance-norm ``weight``/``bias`` become ``scale``/``bias``.
    The deprecated ``running_mean``/``running_var`` entries of old checkpoints are
    ignored.

    Raises:
      NstjaxError: a key that is not part of the network, or a missing one.
    """
    params: dict[str, Any] = {}
    for key, value in state_dict.items():
        if re.search(r"\.running_(mean|var)$|num_batches_tracked$", key):
            continue
        match = _TORCH_KEY.match(key)
        if match is None:
            raise NstjaxError(f"unexpected entry {key!r}: not a fast_neural_style TransformerNet state dict")
        array = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value, np.float32)
        path = _flax_path(match["module"])
        kind = match["kind"]
        if path[-1] == "conv":
            name = "kernel" if kind == "weight" else "bias"
            array = array.transpose(2, 3, 1, 0) if kind == "weight" else array
        else:
            name = "scale" if kind == "weight" else "bias"
        node = params
        for part in path:
            node = node.setdefault(part, {})
        node[name] = array
    expected = jax.tree_util.tree_structure(init_transformer())
    if jax.tree_util.tree_structure(params) != expected:
        raise NstjaxError("incomplete fast_neural_style TransformerNet state dict (some layers are missing)")
    reference = init_transformer()
    for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree_util.tree_leaves(reference)):
        if got.shape != want.shape:
            raise NstjaxError(f"{jax.tree_util.keystr(path)} has shape {got.shape}, expected {want.shape}")
    return params


def params_to_torch(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The inverse of :func:`params_from_torch`: a ``state_dict`` of NumPy arrays (OIHW kernels)."""
    out: dict[str, np.ndarray] = {}
    for path, value in jax.tree_util.tree_leaves_with_path(params):
        keys = [p.key for p in path]
        value = np.asarray(value, np.float32)
        if keys[-2] == "conv":
            module = [k for k in keys[:-2] if k != "layer"]
            torch_module = ".".join(module) + ".conv2d"
            kind = "weight" if keys[-1] == "kernel" else "bias"
            out[f"{torch_module}.{kind}"] = value.transpose(3, 2, 0, 1) if kind == "weight" else value
        else:
            kind = "weight" if keys[-1] == "scale" else "bias"
            out[".".join(keys[:-1]) + f".{kind}"] = value
    return out
