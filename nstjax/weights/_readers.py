"""Readers for weights files: Keras HDF5, PyTorch state dicts and ONNX models.

Each reader finds the VGG's convolutions in the file (by layer names where the
format has them, by order and shape otherwise), works out the network (13
convolutions: VGG-16, 16: VGG-19) and, where the file says it, the input
convention, and returns a :class:`FoundWeights` with HWIO kernels. Nothing is
written here; every problem is one :class:`~nstjax.errors.NstjaxError` line.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NstjaxError
from ..io import pth
from ..models.vgg import CONV_CHANNELS, conv_layers
from ._params import Params, as_float32, check_layer, network_by_count, validate_params

__all__ = ["FoundWeights", "METADATA_KEY", "read_weights_file", "sniff"]

METADATA_KEY = "__metadata__"
"""The entry of a converted ``.npz`` that holds its JSON metadata."""

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
_EXPECTED_FILES = "expected a Keras .h5, a PyTorch .pth, an ONNX model or an nstjax .npz"
_LAYOUT_NAMES = {"keras-h5": "Keras HDF5", "torchvision-pth": "torchvision", "gatys-pth": "gatys", "onnx": "ONNX"}


@dataclass(frozen=True)
class FoundWeights:
    """What a reader found in a file.

    ``params``: float32 HWIO ``{"conv1_1": {"kernel", "bias"}, …}``; ``network``:
    ``"vgg16"``/``"vgg19"``; ``layout``: ``"keras-h5"``, ``"torchvision-pth"``,
    ``"gatys-pth"`` or ``"onnx"``; ``convention``: ``"caffe"``/``"torch"`` where
    the file tells, else None; ``origins``: layer -> the file's own name for it;
    ``producer``: what wrote the file, where it says (ONNX).
    """

    params: Params
    network: str
    layout: str
    convention: str | None
    origins: dict[str, str] = field(default_factory=dict)
    producer: str = ""


def sniff(path: Path) -> str:
    """``"npz"`` (converted), ``"hdf5"``, ``"torch"`` or ``"onnx"``; NstjaxError for anything else."""
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
        if f"{METADATA_KEY}.npy" in names or any(n.endswith(".npy") for n in names):
            return "npz"
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "torch"
        raise NstjaxError(f"is a zip archive but not a weights file ({_EXPECTED_FILES})", path)
    if pth.is_torch_checkpoint(path):
        return "torch"
    # An ONNX model is a protobuf ModelProto: no magic, but field 1 (ir_version, a varint) comes first.
    if path.suffix.lower() == ".onnx" or head[:1] == b"\x08":
        return "onnx"
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


def read_weights_file(path: Path, kind: str, layout: str | None = None) -> FoundWeights:
    """Read an upstream file of sniffed ``kind`` (``"hdf5"``, ``"torch"``, ``"onnx"``).

    ``layout``: the layout expected (a source's), checked against what is found.
    """
    if kind == "hdf5":
        if layout not in (None, "keras-h5"):
            raise NstjaxError(f"is a Keras HDF5 file, not a {_LAYOUT_NAMES[layout]} file", path)
        found = _read_keras_h5(path)
    elif kind == "torch":
        if layout not in (None, "torchvision-pth", "gatys-pth"):
            raise NstjaxError(f"is a PyTorch checkpoint, not a {_LAYOUT_NAMES[layout]} file", path)
        found = _read_torch(path, layout)
    elif kind == "onnx":
        if layout not in (None, "onnx"):
            raise NstjaxError(f"is an ONNX model, not a {_LAYOUT_NAMES[layout]} file", path)
        found = _read_onnx(path)
    else:
        raise NstjaxError(f"cannot read {kind} as upstream weights", path)
    validate_params(found.params, path, found.origins, found.network)
    return FoundWeights(as_float32(found.params, found.network), found.network, found.layout, found.convention,
                        found.origins, found.producer)  # fmt: skip


# --------------------------------------------------------------------------
# Keras HDF5
# --------------------------------------------------------------------------


def _keras_layer(layer: str) -> str:
    """``conv3_2`` -> Keras's ``block3_conv2``."""
    block, n = layer[4:].split("_")
    return f"block{block}_conv{n}"


def _strs(values: Any) -> list[str]:
    """An HDF5 string-array attribute as a list of str."""
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values).tolist()]


def _read_keras_h5(path: Path) -> FoundWeights:
    """A Keras HDF5 weights file (``save_weights`` or a full-model ``.h5``) of VGG-16 or VGG-19.

    The root (or ``model_weights`` in a full-model file) lists its layers in the
    ``layer_names`` attribute; each layer group lists its datasets in
    ``weight_names``: ``block1_conv1_W_1:0``/``block1_conv1_b_1:0`` directly in the
    group (Keras 1 era, as in the published notop files) or
    ``block1_conv1/kernel:0`` in a nested group (Keras 2 / tf.keras). Kernels are
    already HWIO. ``block3_conv4`` present: VGG-19, else VGG-16. Caffe convention.
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
            vgg19_only = {"block3_conv4", "block4_conv4", "block5_conv4"}
            network = "vgg19" if layer_names & vgg19_only or not layer_names & {"block5_conv3"} else "vgg16"
            for layer in conv_layers(network):
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
                check_layer(layer, params[layer], path, f" ({keras_name})")  # fail at the first bad layer
    except NstjaxError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise NstjaxError(f"corrupt or unreadable HDF5 file ({e})", path) from None
    return FoundWeights(params, network, "keras-h5", "caffe", origins)


# --------------------------------------------------------------------------
# PyTorch state dicts
# --------------------------------------------------------------------------

_FEATURE_KEY = re.compile(r"^features\.(\d+)\.(weight|bias)$")
_GATYS_KEY = re.compile(r"^conv\d_\d\.(weight|bias)$")


def _read_torch(path: Path, layout: str | None) -> FoundWeights:
    """A torchvision (``features.N.weight``) or Gatys (``conv1_1.weight``) state dict of VGG-16 or VGG-19.

    torchvision's ``features`` is a Sequential of conv, ReLU pairs with a pool
    closing each block, so its convolutions are the 4-D ``features.N.weight`` in
    index order: 13 make VGG-16 (``features.0`` … ``features.28``), 16 VGG-19.
    Kernels are OIHW and transposed to HWIO; ``classifier.*`` is never read.
    torchvision: torch convention; Gatys' normalised VGG-19: caffe.
    """
    seen: list[str] = []

    def include(key: str) -> bool:
        seen.append(key)
        key = key.removeprefix("module.")  # DataParallel checkpoints prefix "module."
        return bool(_FEATURE_KEY.match(key) or _GATYS_KEY.match(key))

    state = {k.removeprefix("module."): v for k, v in pth.load_state_dict(path, include=include).items()}
    if "features.0.weight" in state:
        found_layout = "torchvision-pth"
        indices = sorted({int(m.group(1)) for k in state if (m := _FEATURE_KEY.match(k)) and k.endswith(".weight")})
        prefixes = [f"features.{i}" for i in indices]
    elif "conv1_1.weight" in state:
        found_layout = "gatys-pth"
        prefixes = [k.removesuffix(".weight") for k in state if _GATYS_KEY.match(k) and k.endswith(".weight")]
    elif layout is not None:
        raise NstjaxError(f"missing layer conv1_1 (key {'features.0' if layout == 'torchvision-pth' else 'conv1_1'}.weight)", path)
    else:
        first = ", ".join(seen[:4]) or "none"
        raise NstjaxError(
            "PyTorch state dict has neither torchvision VGG-16/VGG-19 keys (features.0.weight …) nor Gatys keys "
            f"(conv1_1.weight …); its first keys are: {first}",
            path,
        )
    if layout is not None and found_layout != layout:
        raise NstjaxError(f"holds {_LAYOUT_NAMES[found_layout]}-layout weights, not {_LAYOUT_NAMES[layout]}", path)
    if found_layout == "gatys-pth":
        network = "vgg19" if {"conv3_4", "conv4_4", "conv5_4"} & set(prefixes) or "conv5_3" not in prefixes else "vgg16"
        names = {layer: layer for layer in conv_layers(network)}
    else:
        network = network_by_count(len(prefixes)) or "vgg19"  # a wrong count is reported layer by layer below
        names = dict(zip(conv_layers(network), prefixes))
    params: Params = {}
    origins: dict[str, str] = {}
    for layer in conv_layers(network):
        prefix = names.get(layer, f"{layer} (absent)")
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
        check_layer(layer, params[layer], path, f" ({prefix})")  # fail at the first bad layer
    return FoundWeights(params, network, found_layout, "torch" if found_layout == "torchvision-pth" else "caffe",
                        origins)  # fmt: skip


# --------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------

# Which convention an exporter's model expects: Keras applications take Caffe inputs; torchvision, torch's.
_ONNX_PRODUCERS = {"tf2onnx": "caffe", "keras2onnx": "caffe", "pytorch": "torch"}


def _read_onnx(path: Path) -> FoundWeights:
    """The 3x3 convolutions of an ONNX model (tf2onnx and torch.onnx exports), in graph order.

    Each ``Conv`` node's weight (OIHW) and bias come from the graph's
    initializers (or ``Constant`` nodes). The model must hold exactly the 13
    (VGG-16) or 16 (VGG-19) 3x3 stride-1 convolutions of a VGG with its channel
    sequence; a classifier head (``Gemm``/``MatMul``) is ignored. The convention
    follows the producer (tf2onnx/keras2onnx: caffe; pytorch: torch), else None.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise NstjaxError("reading ONNX models needs the onnx package: pip install 'nstjax[onnx]'", path) from None
    try:
        model = onnx.load(str(path), load_external_data=False)
        graph = model.graph
        constants = {t.name: t for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                constants[node.output[0]] = node.attribute[0].t
    except Exception as e:  # protobuf's DecodeError and friends: all mean "not a readable model"
        raise NstjaxError(f"corrupt or truncated ONNX file, or not ONNX ({type(e).__name__})", path) from None
    if not graph.node:
        raise NstjaxError(f"is not an ONNX model with a graph ({_EXPECTED_FILES})", path)
    convs: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    other_convs = 0
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        if len(node.input) < 2 or node.input[1] not in constants:
            other_convs += 1
            continue
        weight = numpy_helper.to_array(constants[node.input[1]])
        bias = numpy_helper.to_array(constants[node.input[2]]) if len(node.input) > 2 and node.input[2] in constants else None
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        strided = any(s != 1 for s in attrs.get("strides", [1, 1])) or attrs.get("group", 1) != 1
        if weight.ndim != 4 or weight.shape[2:] != (3, 3) or strided:
            other_convs += 1
            continue
        convs.append((node.name or node.output[0], weight, bias))
    network = network_by_count(len(convs))
    channels = [tuple(int(d) for d in w.shape[:2][::-1]) for _, w, _ in convs]  # (Cin, Cout)
    if network is None or other_convs or channels != list(CONV_CHANNELS[n] for n in conv_layers(network)):
        summary = ", ".join(f"{ci}->{co}" for ci, co in channels[:6]) + (" …" if len(channels) > 6 else "")
        raise NstjaxError(
            f"is an ONNX model with {len(convs)} 3x3 convolutions ({summary or 'none'})"
            f"{f' and {other_convs} other convolutions' if other_convs else ''}, not a VGG-16 (13) or VGG-19 (16)",
            path,
        )
    params: Params = {}
    origins: dict[str, str] = {}
    for layer, (name, weight, bias) in zip(conv_layers(network), convs):
        origins[layer] = name
        if bias is None:
            bias = np.zeros(weight.shape[0], np.float32)
        params[layer] = {"kernel": weight.transpose(2, 3, 1, 0), "bias": bias}  # OIHW -> HWIO
    producer = f"{model.producer_name} {model.producer_version}".strip()
    convention = _ONNX_PRODUCERS.get(model.producer_name.lower())
    return FoundWeights(params, network, "onnx", convention, origins, producer)

