"""oneDNN's convolution as a JAX function, through XLA's FFI (CPU only)."""

from __future__ import annotations

import ctypes
import os
import threading
import warnings
from typing import Any

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ..errors import NstjaxError, NstjaxWarning
from . import _build

__all__ = ["ADAM_TARGET", "TARGET", "OnednnWarning", "load_library", "onednn_available", "onednn_conv2d",
           "onednn_status"]


class OnednnWarning(NstjaxWarning):
    """oneDNN's convolution was wanted (bfloat16 on a CPU with fast bfloat16) but cannot run: said once a process."""


TARGET = "nstjax_onednn_conv2d"
"""The name XLA knows the handler by (``NstjaxOnednnConv2d`` in ``onednn_conv.cc``)."""
ADAM_TARGET = "nstjax_fused_adam"
"""The fused Adam's handler (``NstjaxFusedAdam`` in ``fused_adam.cc``), in the same library."""

_lock = threading.Lock()
_loaded: list[str | None] = []  # [None] once registered, [reason] once known to be unavailable (+ [reason] warned)


def load_library() -> str | None:
    """Builds (first time on a machine) and loads the native library, registering its handlers with XLA.

    None once loaded, else why it cannot be (one line, remembered for the process). No
    warning: :func:`onednn_status` warns where the missing library costs speed.
    """
    with _lock:
        if not _loaded:
            try:
                library = ctypes.cdll.LoadLibrary(str(_build.build(_build.toolchain())))
                jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(library.NstjaxOnednnConv2d), platform="cpu")
                jax.ffi.register_ffi_target(ADAM_TARGET, jax.ffi.pycapsule(library.NstjaxFusedAdam), platform="cpu")
                _loaded.append(None)
            except _build.Unavailable as e:
                _loaded.append(str(e))
            except OSError as e:  # the library would not load (a oneDNN moved since it was built, ...)
                _loaded.append(f"cannot load the oneDNN bridge ({e})")
        return _loaded[0]


def onednn_status() -> str | None:
    """None when :func:`onednn_conv2d` can run here, else why not (one line).

    Off with ``NSTJAX_ONEDNN=0``. The first call on a machine builds the bridge
    (:mod:`nstjax.native._build`, a few seconds); later ones load it. Where it cannot be
    had (not installed, no compiler), the first call also warns (:class:`OnednnWarning`):
    the planner asks only for bfloat16 on CPUs with fast bfloat16, where it matters.
    """
    if os.environ.get("NSTJAX_ONEDNN", "1") == "0":
        return "turned off (NSTJAX_ONEDNN=0)"
    if jax.default_backend() != "cpu":
        return "oneDNN is used on CPU only"
    reason = load_library()
    with _lock:
        warn = reason is not None and len(_loaded) == 1
        if warn:
            _loaded.append(reason)  # warned
    if warn:
        warnings.warn(OnednnWarning(f"bfloat16 convolutions run without oneDNN, several times slower on "
                                    f"this CPU: {reason}"), stacklevel=3)  # fmt: skip
    return reason


def onednn_available() -> bool:
    """Whether :func:`onednn_conv2d` can run here (:func:`onednn_status` says why not)."""
    return onednn_status() is None


def onednn_conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1,
                  padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0)),
                  dtype: Any = None) -> jax.Array:  # fmt: skip
    """The cross-correlation of ``x`` [B, H, W, Cin] with ``kernel`` [kh, kw, Cin, Cout] (HWIO), by oneDNN.

    float32 or bfloat16 operands, products accumulated in float32, result [B, Ho, Wo, Cout]
    in ``dtype`` (default ``x``'s). ``padding``: ``((top, bottom), (left, right))`` zeros.
    oneDNN chooses the kernel for this CPU (AMX, AVX512-BF16, AVX-512, AVX2). No
    derivatives: callers give it a VJP (:func:`nstjax.models.conv.conv3x3`). Raises
    :class:`~nstjax.errors.NstjaxError` where :func:`onednn_status` says it cannot run.
    """
    reason = onednn_status()
    if reason is not None:
        raise NstjaxError(f"oneDNN's convolution cannot run here: {reason}")
    (top, bottom), (left, right) = padding
    settings = (int(stride), int(top), int(bottom), int(left), int(right), jnp.dtype(x.dtype if dtype is None else dtype))
    # With several devices the batch may be sharded over them: keep it so (see _sharded).
    impl = _sharded if jax.device_count() > 1 else _call
    return _mapped_into_the_batch(lambda a, k: impl(a, k, *settings))(x, kernel)


def _mapped_into_the_batch(run):
    """``run(x, kernel)`` whose ``vmap`` folds the mapped axis into the image axis: one call for all images
    (custom_partitioning has no batching rule of its own, and one call per member would be slower)."""

    @jax.custom_batching.custom_vmap
    def conv(x, kernel):
        return run(x, kernel)

    @conv.def_vmap
    def _(axis_size, in_batched, x, kernel):
        x_mapped, kernel_mapped = in_batched
        if kernel_mapped:  # a kernel per member: one call each
            x = x if x_mapped else jnp.broadcast_to(x, (axis_size, *x.shape))
            return jax.lax.map(lambda pair: conv(*pair), (x, kernel)), True
        if not x_mapped:
            return conv(x, kernel), False
        y = conv(x.reshape(-1, *x.shape[2:]), kernel)
        return y.reshape(axis_size, -1, *y.shape[1:]), True

    return conv


def _call(x, kernel, stride, top, bottom, left, right, dtype):
    k_h, k_w = kernel.shape[:2]
    b, h, w, _ = x.shape
    out = (b, (h + top + bottom - k_h) // stride + 1, (w + left + right - k_w) // stride + 1, kernel.shape[3])
    call = jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct(out, dtype), vmap_method="sequential")
    return call(x, kernel, stride=np.int64(stride), pad_top=np.int64(top), pad_bottom=np.int64(bottom),
                pad_left=np.int64(left), pad_right=np.int64(right))


# XLA's partitioner knows nothing of a custom call, so on a batch sharded over devices it would gather the
# whole batch onto every device and convolve it there (measured: an all-gather before the call). The rule:
# images stay on their devices; the kernel and each image's rows, columns and channels are whole on each.
@functools.partial(custom_partitioning, static_argnums=(2, 3, 4, 5, 6, 7))
def _sharded(x, kernel, stride, top, bottom, left, right, dtype):
    return _call(x, kernel, stride, top, bottom, left, right, dtype)


def _batch_only(mesh, sharding):
    spec = tuple(getattr(sharding, "spec", ())) or (None,)
    return NamedSharding(mesh, P(spec[0]))


def _infer(stride, top, bottom, left, right, dtype, mesh, arg_shapes, result_shape):
    return _batch_only(mesh, arg_shapes[0].sharding)


def _partition(stride, top, bottom, left, right, dtype, mesh, arg_shapes, result_shape):
    images = _batch_only(mesh, arg_shapes[0].sharding)

    def per_device(x, kernel):
        return _call(x, kernel, stride, top, bottom, left, right, dtype)

    return mesh, per_device, images, (images, NamedSharding(mesh, P()))


_sharded.def_partition(partition=_partition, infer_sharding_from_operands=_infer,
                       sharding_rule="b h w c, i j c o -> b y z o",  # replicated factors in order (Shardy wants it)
                       need_replication_factors=("h", "w", "c", "i", "j", "o", "y", "z"))  # fmt: skip
