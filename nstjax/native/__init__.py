"""Native kernels, called from XLA:CPU through JAX's FFI: oneDNN's convolution and a one-pass Adam (the
``onednn`` extra).

XLA:CPU converts bfloat16 convolutions to float32; oneDNN runs them on the CPU's
bfloat16 units (AMX, AVX512-BF16), several times faster (docs/benchmarks.md,
"bfloat16 through oneDNN"). The bridge is a small C++ file built against the
installed oneDNN on first use (:mod:`nstjax.native._build`); where oneDNN or a
compiler is missing, :func:`onednn_status` says so and the planner
(:func:`nstjax.models.conv.plan`) does without it. The same library updates the GAN trainers'
parameters with Adam in one pass per array (:func:`fused_adam_update`; XLA:CPU's own fusions
take 13 passes, docs/benchmarks.md, "GAN steps: one pass of Adam").
"""

from ._build import INSTALL_HINT
from ._adam import fused_adam_available, fused_adam_status, fused_adam_update
from ._onednn import TARGET, OnednnWarning, onednn_available, onednn_conv2d, onednn_status

__all__ = ["INSTALL_HINT", "TARGET", "OnednnWarning", "fused_adam_available", "fused_adam_status",
           "fused_adam_update", "onednn_available", "onednn_conv2d", "onednn_status"]
