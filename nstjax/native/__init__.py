"""Native kernels, called from XLA:CPU through JAX's FFI: oneDNN's convolution (the ``onednn`` extra).

XLA:CPU converts bfloat16 convolutions to float32; oneDNN runs them on the CPU's
bfloat16 units (AMX, AVX512-BF16), several times faster (docs/benchmarks.md,
"bfloat16 through oneDNN"). The bridge is a small C++ file built against the
installed oneDNN on first use (:mod:`nstjax.native._build`); where oneDNN or a
compiler is missing, :func:`onednn_status` says so and the planner
(:func:`nstjax.models.conv.plan`) does without it.
"""

from ._build import INSTALL_HINT
from ._onednn import TARGET, OnednnWarning, onednn_available, onednn_conv2d, onednn_status

__all__ = ["INSTALL_HINT", "TARGET", "OnednnWarning", "onednn_available", "onednn_conv2d", "onednn_status"]
