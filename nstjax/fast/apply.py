"""Using a trained feed-forward style network: load its export, stylise arrays, images, folders and videos.

A network comes from ``nstjax fast train`` (``RUN_DIR/export``) or from a
PyTorch ``fast_neural_style`` checkpoint converted by :func:`import_torch_model`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import NstjaxError, NstjaxWarning
from ..io.pth import load_state_dict
from ..models import johnson
from ..train import RunDir, load_export
from ..io.media import MediaProgress, MediaResult, plan_jobs, run_jobs

__all__ = [
    "FEW_STEPS",
    "FastModel",
    "UndertrainedWarning",
    "apply_fast",
    "import_torch_model",
    "load_fast_model",
    "stylize_array",
]

FEW_STEPS = 1000
"""A network trained for fewer steps than this is warned about when loaded: the paper trains 40,000
(2 epochs of COCO in batches of 4), and a few hundred steps give a dark, nearly uniform image."""


class UndertrainedWarning(NstjaxWarning):
    """The network was trained for only a few steps (:data:`FEW_STEPS`): expect a dark, flat image."""


@dataclasses.dataclass(frozen=True)
class FastModel:
    """A trained transformer network ready to run.

    params: :class:`~nstjax.models.johnson.TransformerNet` parameters (JAX arrays on the default device).
    output, pixel_scale: how the network was built.
    info: the export's config (style name, training size and step, loss settings).
    """

    params: Any
    output: str = "linear"
    pixel_scale: float = 255.0
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.info.get("style", "fast"))


def load_fast_model(run_dir: str | os.PathLike) -> FastModel:
    """The network exported by a ``fast train`` run (``RUN_DIR`` or ``RUN_DIR/export``).

    Raises:
      NstjaxError: no export there, an export of another system, or damaged parameters.
    """
    params, config = load_export(run_dir)
    if config.get("system") != "fast":
        raise NstjaxError(f"holds a {config.get('system', 'unknown')!r} model, not a fast style network", run_dir)
    model = config.get("model", {})
    reference = johnson.init_transformer()
    if jax.tree_util.tree_structure(params) != jax.tree_util.tree_structure(reference):
        raise NstjaxError("the exported parameters do not fit the transformer network", run_dir)
    step = config.get("step")
    if isinstance(step, int) and step < FEW_STEPS:  # imported networks record no step
        warnings.warn(
            f"{_run_name(run_dir)} trained for only {step} steps: expect a dark, flat image (the paper: 40,000; "
            "add with --resume --steps N)",
            UndertrainedWarning,
            stacklevel=2,
        )
    return FastModel(jax.tree.map(jnp.asarray, params), model.get("output", "linear"),
                     float(model.get("pixel_scale", 255.0)), dict(config))


def _run_name(run_dir: str | os.PathLike) -> str:
    """The run folder's name (``starry`` for ``runs/starry/export``), at most 24 characters: a warning stays
    within one 150-character line."""
    path = Path(run_dir)
    name = path.parent.name if path.name == "export" and path.parent.name else path.name
    return name if len(name) <= 24 else name[:23] + "…"


@functools.partial(jax.jit, static_argnames=("output", "pixel_scale", "dtype"))
def _stylize(params, images, *, output: str, pixel_scale: float, dtype: str):
    dt = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32
    return johnson.stylize(params, images, output=output, pixel_scale=pixel_scale, dtype=dt)


def stylize_array(model: FastModel, images: np.ndarray, *, dtype: str = "float32") -> np.ndarray:
    """Stylise images float [B, H, W, 3] RGB in [0, 1] -> float32 [B, H, W, 3] in [0, 1].

    Compiled once per image shape (and dtype); the parameters are an argument.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise NstjaxError(f"images must be [B, H, W, 3] RGB arrays, got shape {images.shape}")
    out = _stylize(model.params, images, output=model.output, pixel_scale=model.pixel_scale, dtype=dtype)
    return np.asarray(out)


def apply_fast(
    model: FastModel | str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    size: int | None = None,
    batch_size: int = 4,
    blend: float = 0.0,
    motion: float = 0.1,
    quality: int = 95,
    video_quality: int = 18,
    dtype: str = "float32",
    progress: Callable[[MediaProgress], None] | None = None,
) -> list[MediaResult]:
    """Stylise images, folders and videos with a trained network; see :mod:`nstjax.io.media` for outputs.

    Args:
      model: a loaded :class:`FastModel`, or a run directory / export folder.
      size, batch_size, blend, motion, quality, video_quality, progress: see
        :func:`nstjax.io.media.run_jobs`.
      dtype: compute dtype (``"bfloat16"`` for speed on accelerators).

    The inputs and outputs are checked before the model is loaded.
    """
    jobs = plan_jobs(inputs, output)
    if not isinstance(model, FastModel):
        model = load_fast_model(model)

    def run(frames: np.ndarray) -> np.ndarray:
        return stylize_array(model, frames, dtype=dtype)

    return run_jobs(jobs, lambda job: run, size=size, batch_size=batch_size, blend=blend, motion=motion,
                    quality=quality, video_quality=video_quality, progress=progress)


def import_torch_model(checkpoint: str | os.PathLike, run_dir: str | os.PathLike, *, name: str | None = None) -> Path:
    """Convert a PyTorch ``fast_neural_style`` checkpoint (``*.pth``/``*.model``) into a run's export.

    ``run_dir`` must be new or empty; afterwards ``fast apply RUN_DIR …`` uses the
    network. The checkpoint is read without torch and without running pickled code.
    Returns the export folder.
    """
    checkpoint = Path(checkpoint)
    state = load_state_dict(checkpoint)
    try:
        params = johnson.params_from_torch(state)
    except NstjaxError as exc:
        raise NstjaxError(exc.problem, checkpoint) from None
    name = name or checkpoint.stem
    config = {
        "system": "fast",
        "model": {"output": "linear", "pixel_scale": 255.0},
        "style": name,
        "imported_from": checkpoint.name,
    }
    run = RunDir.open(run_dir, {"system": "fast", "imported_from": checkpoint.name}, resume=False)
    try:
        return run.export(params, config)
    finally:
        run.close()
