"""ImageNet VGG-19 weights: sources, conversion, cache and resolution.

Style transfer needs a VGG-19 trained on ImageNet. Three published files are
supported (see ``nstjax/manifests/vgg19.json`` and ``docs/weights.md``):

* ``keras`` (default): the original Caffe weights of Simonyan & Zisserman as
  converted for Keras (HDF5). Caffe input convention.
* ``torchvision``: PyTorch's ``vgg19-dcbb9e9d.pth`` state dict. Torch convention.
* ``gatys``: the normalised VGG-19 (``vgg_conv.pth``) of Gatys et al. Caffe
  convention. It has no published checksum, so its SHA-256 is recorded on first
  use and checked afterwards ("trust on first use").

Input conventions (applied by :func:`nstjax.models.vgg.preprocess`, never by permuting
weights): ``"caffe"`` means BGR channel order, 0-255 scale, minus the ImageNet
mean ``[103.939, 116.779, 123.68]`` (BGR); ``"torch"`` means RGB in [0, 1],
``(x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]``. Kernels keep their
upstream input-channel order, so caffe kernels expect BGR.

Downloading (resumable, checksummed, locked, mirrors in order) is
:func:`nstjax.hub.fetch_file`'s job; this module describes the files and
converts them. Every file is converted once into a ``.npz`` in the cache
(:func:`cache_dir`) holding float32 arrays ``"conv1_1/kernel"`` [3, 3, Cin, Cout]
(HWIO) and ``"conv1_1/bias"`` [Cout] for the 16 convolutions, plus a JSON
metadata string (``"__metadata__"``) that records where the weights came from
and a SHA-256 of the arrays themselves, so that a corrupt or partial cache file
is detected and rebuilt rather than used. Cache layout::

    <cache>/vgg19-<source>.npz          converted weights
    <cache>/downloads/<upstream file>   verified upstream file (kept for rebuilds)
    <cache>/downloads/<file>.part       partial download, resumed with HTTP Range
    <cache>/trust.json                  SHA-256 recorded on first use (gatys)

All writes are atomic (temp file + rename).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import hub
from ..errors import NstjaxError, NstjaxWarning
from ..hub import Checksum, DownloadError, ProgressCallback, cache_dir, downloads_dir, writing_to
from ..io import pth
from ..io.atomic import atomic_path
from .vgg import BLOCKS, CONV_CHANNELS, CONV_LAYERS

__all__ = [
    "Checksum",
    "Source",
    "SourceStatus",
    "VGGWeights",
    "WeightsDownloadError",
    "WeightsWarning",
    "RandomWeightsWarning",
    "cache_dir",
    "converted_path",
    "downloads_dir",
    "sources",
    "get_source",
    "load_manifest",
    "list_sources",
    "fetch",
    "fetch_upstream",
    "convert",
    "load_weights",
    "random_weights",
    "resolve_weights",
    "validate_params",
    "DEFAULT_SOURCE",
]

FORMAT = "nstjax-vgg19"
FORMAT_VERSION = 1
"""Version of the converted ``.npz`` layout; bump when it changes."""

DEFAULT_SOURCE = "keras"
AUTO_ORDER = ("keras", "torchvision", "gatys")
"""Order in which ``auto`` looks for cached weights (keras preferred)."""

_METADATA_KEY = "__metadata__"


class WeightsWarning(NstjaxWarning):
    """Something about the weights the user should know (rebuilt cache, unverified file)."""


class RandomWeightsWarning(WeightsWarning):
    """``auto`` fell back to random weights: results are not real style transfer."""


WeightsDownloadError = DownloadError
"""The weights' name for :class:`nstjax.hub.DownloadError` (the same class):
``offline`` is True when no server could be reached at all, as opposed to an
HTTP error, a dropped transfer or a checksum mismatch."""


# --------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One supported upstream weights file, as described by the manifest."""

    name: str
    description: str
    filename: str
    urls: tuple[str, ...]
    checksum: Checksum
    convention: str  # "caffe" | "torch": the input convention the kernels expect
    layout: str  # "keras-h5" | "torchvision-pth" | "gatys-pth"
    licence: str

    @property
    def remote(self) -> hub.RemoteFile:
        """The upstream file as :func:`nstjax.hub.fetch_file` downloads it."""
        return hub.RemoteFile(
            filename=self.filename,
            urls=self.urls,
            checksum=self.checksum,
            name=self.name,
            label=f"the {self.name} weights",
            offline_hint=(
                f"no network? download {self.filename} on another machine and run `nstjax weights convert FILE`"
            ),
        )


_SOURCES: dict[str, Source] | None = None


def load_manifest() -> dict[str, Any]:
    """The raw manifest (``nstjax/manifests/vgg19.json``) as a dict."""
    return hub.read_manifest("vgg19")


def sources() -> dict[str, Source]:
    """Supported sources by name, in manifest order (``keras``, ``torchvision``, ``gatys``).

    The dict is built once and shared; tests may patch entries in it.
    """
    global _SOURCES
    if _SOURCES is None:
        manifest = load_manifest()
        _SOURCES = {}
        for name, entry in manifest["sources"].items():
            remote = hub.remote_file(entry, name=name)  # checks the file name and checksum algorithm
            _SOURCES[name] = Source(
                name=name,
                description=entry["description"],
                filename=remote.filename,
                urls=remote.urls,
                checksum=remote.checksum,
                convention=entry["convention"],
                layout=entry["layout"],
                licence=entry["licence"],
            )
    return _SOURCES


def get_source(name: str) -> Source:
    """The :class:`Source` called ``name``; NstjaxError listing the valid names otherwise."""
    try:
        return sources()[name]
    except KeyError:
        raise NstjaxError(f"unknown weights source {name!r}; choose one of: {', '.join(sources())}") from None


def converted_path(source: str) -> Path:
    """Where the converted weights of ``source`` live in the cache."""
    return cache_dir() / f"vgg19-{get_source(source).name}.npz"


# --------------------------------------------------------------------------
# Checksums (the generic parts are in nstjax.hub)
# --------------------------------------------------------------------------


def _source_digests(src: Source, path: Path) -> dict[str, str]:
    """The digests needed to verify and describe a file of ``src``."""
    return hub.digests_for(src.remote, path)


def _verify_digests(src: Source, digests: Mapping[str, str]) -> tuple[bool | None, str, str]:
    return hub.verify_digests(src.remote, digests)


def _metadata_verified(src: Source, meta: Mapping[str, Any]) -> bool | None:
    """Whether a converted file's recorded upstream digests match what is expected now."""
    digests = {"md5": str(meta.get("upstream_md5", "")), "sha256": str(meta.get("upstream_sha256", ""))}
    try:
        return _verify_digests(src, digests)[0]
    except NstjaxError:
        return False


# --------------------------------------------------------------------------
# Parameter validation
# --------------------------------------------------------------------------

Params = dict[str, dict[str, np.ndarray]]


def validate_params(
    params: Any, path: str | os.PathLike | None = None, origins: Mapping[str, str] | None = None
) -> None:
    """Check that ``params`` is a complete VGG-19 in the Flax layout.

    Every one of the 16 layers must be present with a float kernel of shape
    ``(3, 3, Cin, Cout)`` and a bias of shape ``(Cout,)``, all finite.
    ``origins`` optionally maps layer names to upstream names for the message.

    Raises:
      NstjaxError: naming ``path`` and the layer, e.g. ``missing layer conv3_4``
        or ``conv2_1 kernel has shape (3, 3, 64, 64), expected (3, 3, 64, 128)``.
    """
    if not isinstance(params, Mapping):
        raise NstjaxError(f"weights must be a mapping of layers, got {type(params).__name__}", path)
    for layer in CONV_LAYERS:  # network order, so the first problem is reported
        where = f" ({origins[layer]})" if origins and layer in origins else ""
        if params.get(layer) is None:
            raise NstjaxError(f"missing layer {layer}{where}", path)
        _check_layer(layer, params[layer], path, where)


def _check_layer(layer: str, entry: Any, path: str | os.PathLike | None, where: str = "") -> None:
    """Shape, dtype and finiteness of one layer's ``{"kernel", "bias"}`` (see validate_params)."""
    c_in, c_out = CONV_CHANNELS[layer]
    for kind, expected in (("kernel", (3, 3, c_in, c_out)), ("bias", (c_out,))):
        if not isinstance(entry, Mapping) or kind not in entry:
            raise NstjaxError(f"layer {layer}{where} has no {kind}", path)
        value = np.asarray(entry[kind])
        if tuple(value.shape) != expected:
            raise NstjaxError(f"{layer} {kind}{where} has shape {tuple(value.shape)}, expected {expected}", path)
        if not np.issubdtype(value.dtype, np.floating):
            raise NstjaxError(f"{layer} {kind}{where} has dtype {value.dtype}, expected floating point", path)
        if not np.all(np.isfinite(value)):
            raise NstjaxError(f"{layer} {kind}{where} contains NaN or infinite values", path)


def _as_float32(params: Mapping[str, Mapping[str, Any]]) -> Params:
    return {
        layer: {kind: np.ascontiguousarray(np.asarray(params[layer][kind]), dtype=np.float32) for kind in ("kernel", "bias")}
        for layer in CONV_LAYERS
    }


# --------------------------------------------------------------------------
# File type detection and upstream readers
# --------------------------------------------------------------------------

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_OTHER_FORMATS = (  # (magic, offset, description) for a helpful "not a weights file"
    (b"\xff\xd8\xff", 0, "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", 0, "a PNG image"),
    (b"GIF8", 0, "a GIF image"),
    (b"WEBP", 8, "a WebP image"),
    (b"II*\x00", 0, "a TIFF image"),
    (b"MM\x00*", 0, "a TIFF image"),
    (b"BM", 0, "a BMP image"),
    (b"%PDF", 0, "a PDF document"),
    (b"\x1f\x8b", 0, "a gzip archive"),
    (b"\x93NUMPY", 0, "a single NumPy .npy array"),
    (b"<", 0, "a text/HTML file (an error page saved instead of the weights?)"),
)
_EXPECTED_FILES = "expected a Keras .h5, a PyTorch .pth or an nstjax .npz"


def _sniff(path: Path) -> str:
    """``"npz"`` (converted), ``"hdf5"`` or ``"torch"``; NstjaxError for anything else."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except FileNotFoundError:
        raise NstjaxError("no such file", path) from None
    except IsADirectoryError:
        raise NstjaxError(f"is a directory, not a weights file ({_EXPECTED_FILES})", path) from None
    except OSError as e:
        raise NstjaxError(f"cannot read file ({e.strerror or e})", path) from None
    if not head:
        raise NstjaxError("is empty, not a weights file", path)
    if head.startswith(_HDF5_SIGNATURE):
        return "hdf5"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise NstjaxError(f"corrupt or truncated zip file ({e}); {_EXPECTED_FILES}", path) from None
        if f"{_METADATA_KEY}.npy" in names or any(n.endswith(".npy") for n in names):
            return "npz"
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "torch"
        raise NstjaxError(f"is a zip archive but not a weights file ({_EXPECTED_FILES})", path)
    if pth.is_torch_checkpoint(path):
        return "torch"
    for magic, offset, what in _OTHER_FORMATS:
        if head[offset : offset + len(magic)] == magic:
            raise NstjaxError(f"is {what}, not a weights file ({_EXPECTED_FILES})", path)
    try:  # HDF5 files may start with a user block, so ask h5py last.
        import h5py

        if h5py.is_hdf5(path):
            return "hdf5"
    except (OSError, ImportError):
        pass
    raise NstjaxError(f"unrecognised file format, not a weights file ({_EXPECTED_FILES})", path)


def _keras_layer(layer: str) -> str:
    """``conv3_2`` -> Keras's ``block3_conv2``."""
    block, n = layer[4:].split("_")
    return f"block{block}_conv{n}"


def _strs(values: Any) -> list[str]:
    """An HDF5 string-array attribute as a list of str."""
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values).tolist()]


def _read_keras_h5(path: Path) -> tuple[Params, dict[str, str]]:
    """Read a Keras HDF5 weights file (``save_weights`` or a full-model ``.h5``).

    The root (or ``model_weights`` in a full-model file) lists its layers in the
    ``layer_names`` attribute; each layer group lists its datasets in
    ``weight_names``: ``block1_conv1_W_1:0``/``block1_conv1_b_1:0`` directly in the
    group (Keras 1 era, as in the published notop file) or
    ``block1_conv1/kernel:0`` in a nested group (Keras 2 / tf.keras). Kernels are
    already HWIO. Returns (params, {layer: keras layer name}).
    """
    import h5py

    params: Params = {}
    origins: dict[str, str] = {}
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in root.attrs:
                raise NstjaxError(
                    "HDF5 file has no Keras 'layer_names' attribute, so it is not a Keras 2 / tf.keras "
                    "weights file (Keras 3 .weights.h5 files are not supported)",
                    path,
                )
            layer_names = set(_strs(root.attrs["layer_names"]))
            for layer in CONV_LAYERS:
                keras_name = origins[layer] = _keras_layer(layer)
                if keras_name not in layer_names or keras_name not in root:
                    raise NstjaxError(f"missing layer {layer} (Keras layer {keras_name})", path)
                group = root[keras_name]
                arrays = {}
                for weight in _strs(group.attrs.get("weight_names", [])):
                    if weight not in group:
                        raise NstjaxError(f"Keras layer {keras_name} lists weight {weight!r} but has no such dataset", path)
                    arrays[weight] = np.asarray(group[weight])
                # Pick kernel and bias by rank rather than by name: names differ across Keras versions.
                kernels = [a for a in arrays.values() if a.ndim == 4]
                biases = [a for a in arrays.values() if a.ndim == 1]
                if len(kernels) != 1 or len(biases) != 1 or len(arrays) != 2:
                    shapes = {k: tuple(a.shape) for k, a in arrays.items()}
                    raise NstjaxError(
                        f"Keras layer {keras_name} ({layer}) should hold one 4-D kernel and one bias, has {shapes}", path
                    )
                params[layer] = {"kernel": kernels[0], "bias": biases[0]}
                _check_layer(layer, params[layer], path, f" ({keras_name})")  # fail at the first bad layer
    except NstjaxError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise NstjaxError(f"corrupt or unreadable HDF5 file ({e})", path) from None
    return params, origins


def _torchvision_keys() -> dict[str, str]:
    """``conv1_1 -> "features.0"`` … ``conv5_4 -> "features.34"`` (torchvision's ``vgg19``).

    ``features`` is a Sequential of conv, ReLU pairs with a max-pool closing each block.
    """
    keys, index = {}, 0
    for b, (_, count) in enumerate(BLOCKS, 1):
        for n in range(1, count + 1):
            keys[f"conv{b}_{n}"] = f"features.{index}"
            index += 2  # conv, relu
        index += 1  # pool
    return keys


_TORCH_LAYOUTS = {
    "torchvision": _torchvision_keys(),
    "gatys": {layer: layer for layer in CONV_LAYERS},  # conv1_1.weight, conv1_1.bias, …
}


def _read_torch(path: Path, hint: str | None) -> tuple[str, Params, dict[str, str]]:
    """Read a torchvision or Gatys state dict; returns (source, params HWIO, origins).

    Conv weights are OIHW in torch and transposed to HWIO; nothing else changes
    (the input-channel order stays as trained). ``classifier.*`` and other keys
    are never read.
    """
    wanted = {f"{prefix}.{kind}" for layout in _TORCH_LAYOUTS.values() for prefix in layout.values() for kind in ("weight", "bias")}
    seen: list[str] = []

    def include(key: str) -> bool:
        seen.append(key)
        return key.removeprefix("module.") in wanted  # DataParallel checkpoints prefix "module."

    state = {k.removeprefix("module."): v for k, v in pth.load_state_dict(path, include=include).items()}
    if hint is not None and hint not in _TORCH_LAYOUTS:
        raise NstjaxError(f"is a PyTorch checkpoint, which cannot hold {hint} weights", path)
    if "features.0.weight" in state:
        source = "torchvision"
    elif "conv1_1.weight" in state:
        source = "gatys"
    elif hint is not None:
        source = hint  # report the first missing key of the expected layout
    else:
        first = ", ".join(seen[:4]) or "none"
        raise NstjaxError(
            "PyTorch state dict has neither torchvision VGG-19 keys (features.0.weight …) nor Gatys keys "
            f"(conv1_1.weight …); its first keys are: {first}",
            path,
        )
    if hint is not None and source != hint:
        raise NstjaxError(f"holds {source}-layout weights, not {hint}", path)
    params: Params = {}
    origins: dict[str, str] = {}
    for layer, prefix in _TORCH_LAYOUTS[source].items():
        origins[layer] = prefix
        weight, bias = state.get(f"{prefix}.weight"), state.get(f"{prefix}.bias")
        if weight is None or bias is None:
            raise NstjaxError(f"missing layer {layer} (key {prefix}.{'weight' if weight is None else 'bias'})", path)
        c_in, c_out = CONV_CHANNELS[layer]
        if weight.ndim != 4:
            raise NstjaxError(
                f"{layer} kernel ({prefix}.weight) has shape {weight.shape}, expected OIHW {(c_out, c_in, 3, 3)}", path
            )
        params[layer] = {"kernel": weight.transpose(2, 3, 1, 0), "bias": bias}  # OIHW -> HWIO
        _check_layer(layer, params[layer], path, f" ({prefix})")  # fail at the first bad layer
    return source, params, origins


def _read_upstream(path: Path, kind: str, hint: str | None) -> tuple[Source, Params]:
    """Read and validate an upstream file of the given sniffed ``kind``."""
    if hint is not None:
        get_source(hint)
    if kind == "hdf5":
        if hint not in (None, "keras"):
            raise NstjaxError(f"is a Keras HDF5 file, not a {hint} file", path)
        name, (params, origins) = "keras", _read_keras_h5(path)
    elif kind == "torch":
        if hint == "keras":
            raise NstjaxError("is a PyTorch checkpoint, not a Keras HDF5 file", path)
        name, params, origins = _read_torch(path, hint)
    else:
        raise NstjaxError(f"cannot read {kind} as upstream weights", path)
    validate_params(params, path, origins)
    return get_source(name), _as_float32(params)


# --------------------------------------------------------------------------
# Converted .npz format
# --------------------------------------------------------------------------


class _CorruptWeights(NstjaxError):
    """A converted file that cannot be trusted (truncated, bad checksum, unreadable)."""


def _params_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of the arrays, in sorted order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.reshape(-1).view(np.uint8))  # the raw bytes, without copying them
    return h.hexdigest()


def _flatten(params: Params) -> dict[str, np.ndarray]:
    return {f"{layer}/{kind}": params[layer][kind] for layer in CONV_LAYERS for kind in ("kernel", "bias")}


def _write_converted(params: Params, metadata: Mapping[str, Any], dest: Path) -> Path:
    """Atomically write ``params`` + ``metadata`` (plus the arrays' SHA-256) to ``dest``."""
    arrays = _flatten(_as_float32(params))
    meta = {**metadata, "params_sha256": _params_sha256(arrays)}
    with writing_to(dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
            # A file object, so NumPy never appends ".npz" to a name the user chose.
            np.savez(fh, **arrays, **{_METADATA_KEY: np.array(json.dumps(meta, sort_keys=True))})
    return dest


def _read_converted(path: Path) -> tuple[Params, dict[str, Any]]:
    """Load and check a converted ``.npz``; returns (params, metadata).

    Raises _CorruptWeights when the file cannot be read or its arrays do not
    match the recorded SHA-256, NstjaxError when it is readable but not valid
    VGG-19 weights (e.g. a missing layer).
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            if _METADATA_KEY not in z.files:
                raise NstjaxError("is a .npz without nstjax metadata, not a converted weights file", path)
            meta = json.loads(str(z[_METADATA_KEY][()]))
            arrays = {name: z[name] for name in z.files if name != _METADATA_KEY}
    except NstjaxError:
        raise
    except FileNotFoundError:
        raise NstjaxError("no such file", path) from None
    except Exception as e:  # zipfile/zlib/ValueError/EOFError/OSError: all mean "damaged"
        raise _CorruptWeights(f"corrupt or truncated converted weights file ({type(e).__name__}: {e})", path) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NstjaxError("is not an nstjax converted weights file (bad metadata)", path)
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise NstjaxError(
            f"was written by a newer nstjax (format version {meta['format_version']} > {FORMAT_VERSION})", path
        )
    if _params_sha256(arrays) != meta.get("params_sha256"):
        raise _CorruptWeights("contents do not match the checksum recorded at conversion (corrupt file)", path)
    params: Params = {}
    for layer in CONV_LAYERS:
        entry = {kind: arrays[f"{layer}/{kind}"] for kind in ("kernel", "bias") if f"{layer}/{kind}" in arrays}
        if entry:
            params[layer] = entry
    validate_params(params, path)
    return _as_float32(params), meta


def _metadata(src: Source, filename: str, digests: Mapping[str, str], verified: bool | None) -> dict[str, Any]:
    name, _ = hub.expected_digest(src.remote)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source": src.name,
        "convention": src.convention,
        "layout": "flax-hwio",
        "upstream_filename": filename,
        "upstream_checksum": {"algorithm": src.checksum.algorithm, "hex": digests[name]},
        **({"upstream_md5": digests["md5"]} if "md5" in digests else {}),
        "upstream_sha256": digests["sha256"],
        "verified": verified,
        "created": hub.timestamp(),
    }


# --------------------------------------------------------------------------
# Weights objects
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class VGGWeights:
    """VGG-19 parameters ready for :func:`nstjax.models.vgg.features`.

    Attributes:
      params: ``{"conv1_1": {"kernel": float32 [3, 3, Cin, Cout], "bias": float32 [Cout]}, …}``
        (NumPy, HWIO, input channels in the source's order).
      preprocessing: ``"caffe"`` or ``"torch"``: pass to ``features(preprocessing=…)``.
      source: ``"keras"``, ``"torchvision"``, ``"gatys"`` or ``"random"``.
      metadata: provenance (path, upstream checksums, verified, seed for random, …).
    """

    params: Params
    preprocessing: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def is_random(self) -> bool:
        """True for random features, which do not give real style transfer."""
        return self.source == "random"


def random_weights(seed: int = 0, *, reason: str | None = None) -> VGGWeights:
    """Seeded He-normal weights (:func:`nstjax.models.vgg.init_params`), torch preprocessing.

    The torch convention keeps inputs near unit variance, which is what He
    initialisation assumes.
    """
    from .vgg import init_params

    params = _as_float32(init_params(int(seed)))
    meta: dict[str, Any] = {"source": "random", "seed": int(seed), "convention": "torch"}
    if reason:
        meta["reason"] = reason
    return VGGWeights(params, "torch", "random", meta)


def _weights_from_converted(path: Path) -> VGGWeights:
    params, meta = _read_converted(path)
    src = sources().get(meta.get("source", ""))
    verified = _metadata_verified(src, meta) if src is not None else None
    convention = meta.get("convention")
    if convention not in ("caffe", "torch"):
        raise NstjaxError(f"metadata has unknown input convention {convention!r}", path)
    return VGGWeights(params, convention, meta.get("source", "unknown"), {**meta, "path": str(path), "verified": verified})


def _emit(warn: bool | Callable[[str], None] | None, message: str, category: type[Warning] = WeightsWarning) -> None:
    if not warn:
        return
    if callable(warn):
        warn(message)
    else:
        warnings.warn(message, category, stacklevel=4)


# --------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------


def _download_urls(url: str | None) -> tuple[str, ...] | None:
    """URLs to try instead of the manifest's mirrors: ``url``, else ``$NSTJAX_WEIGHTS_URL``."""
    if url:
        return (url,)
    if os.environ.get("NSTJAX_WEIGHTS_URL"):
        return (os.environ["NSTJAX_WEIGHTS_URL"],)
    return None


def _ensure_download(
    src: Source, *, url: str | None, force: bool, progress: ProgressCallback | None, timeout: float
) -> hub.FetchedFile:
    return hub.fetch_file(
        src.remote, downloads_dir(), urls=_download_urls(url), force=force, progress=progress, timeout=timeout
    )


def fetch_upstream(
    source: str = DEFAULT_SOURCE,
    *,
    url: str | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download and verify the upstream file of ``source`` (no conversion); return its path.

    The file lands in ``downloads_dir()``; a verified copy already there is
    returned without any request. Arguments and errors as :func:`fetch`.
    """
    return _ensure_download(get_source(source), url=url, force=force, progress=progress, timeout=timeout).path


def _convert_download(src: Source, download: Path, dest: Path, digests: Mapping[str, str]) -> Path:
    """Convert a verified download of ``src`` (with its ``digests``) into ``dest``.

    Records the SHA-256 on first use for trust-on-first-use sources.
    """
    read_src, params = _read_upstream(download, _sniff(download), src.name)
    verified, _, _ = _verify_digests(read_src, digests)
    if verified is None and src.checksum.algorithm == "tofu-sha256":
        hub.record_trust(src.remote, digests["sha256"])
        verified = True
    return _write_converted(params, _metadata(read_src, download.name, digests, verified), dest)


def fetch(
    source: str = DEFAULT_SOURCE,
    *,
    url: str | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download, verify and convert the weights of ``source``; return the converted file.

    Does nothing when a valid, verified converted file is already cached (unless
    ``force``). A verified upstream file already in ``downloads_dir()`` is reused.
    Mirrors are tried in manifest order.

    Args:
      source: ``"keras"``, ``"torchvision"`` or ``"gatys"``.
      url: download from this URL instead (also ``$NSTJAX_WEIGHTS_URL``); the
        checksum is still checked.
      force: download and convert again even if cached.
      progress: ``progress(bytes_done, total_or_None)`` during the download.
      timeout: seconds to wait on the network for any one operation.

    Raises:
      WeightsDownloadError: every URL failed (``.offline`` tells whether the
        network was unreachable) or the checksum did not match (the bad file is
        deleted; nothing is cached).
      NstjaxError: the download is not valid weights of that source.
    """
    src = get_source(source)
    dest = converted_path(src.name)
    if not force and dest.exists():
        with contextlib.suppress(NstjaxError):  # damaged or unverified: rebuilt below
            _, meta = _read_converted(dest)
            if _metadata_verified(src, meta):
                return dest
    download = _ensure_download(src, url=url, force=force, progress=progress, timeout=timeout)
    return _convert_download(src, download.path, dest, download.digests)


# --------------------------------------------------------------------------
# Conversion of local files
# --------------------------------------------------------------------------


def convert(
    path: str | os.PathLike,
    source: str | None = None,
    out: str | os.PathLike | None = None,
) -> Path:
    """Convert a local upstream file (or re-install a converted one); return the output path.

    The layout is detected: HDF5 -> ``keras``; a PyTorch state dict with
    ``features.*`` keys -> ``torchvision``, with ``conv1_1.weight`` … -> ``gatys``;
    an nstjax ``.npz`` -> already converted (validated and copied).

    Args:
      path: the file to convert.
      source: expected source; an error if the file's layout disagrees.
      out: output ``.npz``; default: the cache entry of the source
        (:func:`converted_path`), where ``load_weights("auto")`` finds it.

    A file whose checksum differs from the published one is still converted
    (fine-tuned or re-saved weights are legitimate) but recorded as unverified,
    with a :class:`WeightsWarning`. For ``gatys`` the first file converted sets
    the trusted SHA-256.
    """
    path = Path(path)
    kind = _sniff(path)
    if kind == "npz":
        params, meta = _read_converted(path)
        if source is not None and meta.get("source") != get_source(source).name:
            raise NstjaxError(f"holds {meta.get('source')} weights, not {source}", path)
        dest = Path(out) if out is not None else converted_path(meta["source"])
        if not (dest.exists() and dest.resolve() == path.resolve()):
            with writing_to(dest):
                dest.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(dest) as tmp:
                    shutil.copyfile(path, tmp)
        return dest

    src, params = _read_upstream(path, kind, source)
    digests = _source_digests(src, path)
    verified, expected, got = _verify_digests(src, digests)
    if verified is None and src.checksum.algorithm == "tofu-sha256":
        hub.record_trust(src.remote, digests["sha256"])
        verified = True
    elif verified is False:
        _emit(
            True,
            f"{path}: not the published {src.name} file (expected {expected}, got {got}); "
            "converted anyway and marked unverified",
        )
    dest = Path(out) if out is not None else converted_path(src.name)
    return _write_converted(params, _metadata(src, path.name, digests, verified), dest)


# --------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------


def _random_warning(reason: str, seed: int) -> str:
    keras = sources()[DEFAULT_SOURCE]
    return (
        f"NO IMAGENET VGG-19 WEIGHTS AVAILABLE ({reason}); using RANDOM weights (seed {seed}). "
        "The results are NOT real neural style transfer. To get the real weights run "
        "`nstjax weights fetch` on a machine with internet access (and copy its cache directory "
        f"{cache_dir()} here), or download {keras.filename} ({keras.urls[0]}) yourself and run "
        "`nstjax weights convert FILE`. Ask for the 'random' weights explicitly to silence this."
    )


def _load_path(path: Path) -> VGGWeights:
    kind = _sniff(path)
    if kind == "npz":
        return _weights_from_converted(path)
    src, params = _read_upstream(path, kind, None)
    digests = _source_digests(src, path)
    verified, _, _ = _verify_digests(src, digests)
    meta = {**_metadata(src, path.name, digests, verified), "path": str(path)}
    return VGGWeights(params, src.convention, src.name, meta)


def _load_source(src: Source, *, allow_download: bool, warn: Any) -> VGGWeights:
    """Cached converted weights of ``src``; rebuilt from the cached download or fetched if needed."""
    dest = converted_path(src.name)
    if dest.exists():
        try:
            weights = _weights_from_converted(dest)
        except NstjaxError as e:
            _emit(warn, f"{e}; rebuilding it")
            dest.unlink(missing_ok=True)
        else:
            if weights.metadata.get("verified") is False:
                _emit(warn, f"{dest}: cached {src.name} weights were converted from a file that is not the published one")
            return weights
    download = downloads_dir() / src.filename
    if allow_download:
        return _weights_from_converted(fetch(src.name))
    if download.exists():
        digests = _source_digests(src, download)
        if _verify_digests(src, digests)[0] is not False:
            return _weights_from_converted(_convert_download(src, download, dest, digests))
    raise NstjaxError(
        f"no cached {src.name} weights and downloads are disabled; run `nstjax weights fetch {src.name}` "
        "(needs internet) or `nstjax weights convert FILE`",
        dest,
    )


def _load_auto(seed: int, allow_download: bool, warn: Any) -> VGGWeights:
    for name in AUTO_ORDER:
        src = sources().get(name)
        if src is None:
            continue
        if converted_path(name).exists() or (downloads_dir() / src.filename).exists():
            try:
                return _load_source(src, allow_download=False, warn=warn)
            except NstjaxError as e:
                _emit(warn, f"skipping cached {name} weights: {e}")
    if allow_download:
        try:
            return _load_source(sources()[DEFAULT_SOURCE], allow_download=True, warn=warn)
        except WeightsDownloadError as e:
            if not e.offline:  # checksum or server errors must not silently become random features
                raise
            reason = f"no cached weights and no network: {e.problem}"
    else:
        reason = "no cached weights and downloads are disabled"
    _emit(warn, _random_warning(reason, seed), RandomWeightsWarning)
    return random_weights(seed, reason=reason)


def resolve_weights(weights: Any, seed: int = 0) -> VGGWeights:
    """``weights`` itself when it is already loaded (anything with ``params`` and
    ``preprocessing``), else :func:`load_weights` of it (a spec, a path or ``None``)."""
    if hasattr(weights, "params") and hasattr(weights, "preprocessing"):
        return weights
    return load_weights(weights, seed=seed)


def load_weights(
    spec: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    allow_download: bool = True,
    warn: bool | Callable[[str], None] = True,
) -> VGGWeights:
    """Resolve a weights spec to :class:`VGGWeights`.

    Specs:
      * ``None``: ``$NSTJAX_WEIGHTS`` if set, else ``"auto"``.
      * ``"auto"``: cached ImageNet weights (keras, then torchvision, then gatys),
        else download keras, else, only when the network is unreachable (or
        ``allow_download=False``), random weights with a loud
        :class:`RandomWeightsWarning`. Checksum errors are raised, never papered over.
      * ``"keras"`` / ``"torchvision"`` / ``"gatys"``: that source from the cache,
        fetched if missing (a corrupt cache file is rebuilt, with a warning).
      * ``"random"``: seeded He-normal weights (``seed``), torch preprocessing.
      * a path: a converted ``.npz`` or any supported upstream file (layout
        detected, converted in memory). Source names win over same-named files;
        write ``./keras`` for a file called ``keras``.

    Args:
      warn: True: :func:`warnings.warn`; a callable: called with each message;
        False: silent.

    Raises:
      NstjaxError: one line naming the file and problem (missing layer, bad
        shape, not a weights file, checksum mismatch, …).
    """
    if spec is None:
        spec = os.environ.get("NSTJAX_WEIGHTS", "").strip() or "auto"
    if isinstance(spec, os.PathLike):
        return _load_path(Path(spec))
    if not isinstance(spec, str):
        raise NstjaxError(f"weights spec must be a string or path, got {type(spec).__name__}")
    name = spec.strip()
    if name.lower() in ("auto", "random", *sources()):
        name = name.lower()  # names are case-insensitive; files that clash need a ./ prefix
    if name == "random":
        return random_weights(seed)
    if name == "auto":
        return _load_auto(seed, allow_download, warn)
    if name in sources():
        return _load_source(sources()[name], allow_download=allow_download, warn=warn)
    path = Path(name).expanduser()
    if not path.exists():
        choices = ", ".join(["auto", "random", *sources()])
        raise NstjaxError(f"no such weights file, and not a weights source ({choices})", name)
    return _load_path(path)


# --------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceStatus:
    """State of one source in the cache (see :func:`list_sources`).

    ``cached``: a valid converted file exists at ``path``. ``verified``: its
    upstream file matched the published checksum (for ``gatys``: the one recorded
    on first use); None when not cached. ``problem``: why a file at ``path`` is unusable.
    """

    name: str
    convention: str
    url: str
    filename: str
    path: Path
    cached: bool
    verified: bool | None
    problem: str | None = None
    download_cached: bool = False


def list_sources() -> list[SourceStatus]:
    """Every source of the manifest with its cache state (reads and checks cached files)."""
    out = []
    for src in sources().values():
        path = converted_path(src.name)
        cached, verified, problem = False, None, None
        if path.exists():
            try:
                _, meta = _read_converted(path)
                cached, verified = True, _metadata_verified(src, meta)
            except NstjaxError as e:
                problem = e.problem
        out.append(
            SourceStatus(
                name=src.name,
                convention=src.convention,
                url=src.urls[0],
                filename=src.filename,
                path=path,
                cached=cached,
                verified=verified,
                problem=problem,
                download_cached=(downloads_dir() / src.filename).exists(),
            )
        )
    return out

