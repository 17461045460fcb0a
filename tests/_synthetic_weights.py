"""Write synthetic VGG-19 weight files in each exact upstream layout (test helpers).

Real weights cannot be downloaded in tests, so these helpers write seeded random
VGG-19 parameters in the layouts of the published files:

* Keras HDF5, old naming (``block1_conv1_W_1:0`` datasets directly in the layer
  group, as in ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``), new
  naming (``block1_conv1/kernel:0`` in a nested group) and a full-model file
  (everything under ``model_weights``). Kernels HWIO.
* torchvision state dict (``features.{0,2,5,…,34}.{weight,bias}``, OIHW, plus
  ``classifier.*``), written by ``torch.save`` or by :func:`write_pth_zip`, a
  small pure-Python writer of torch's zip format (so the reader is also tested
  where torch is not installed).
* Gatys state dict (``conv1_1.weight`` …, OIHW).

Parameters are kept in the upstream layout, so tests can run an independent
reference forward pass on exactly what was written. Kernels of caffe-convention
sources (keras, gatys) are meant for BGR input; nothing here permutes channels.
"""

from __future__ import annotations

import functools
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np

# VGG-19 configuration E, spelled out independently of nstjax.vgg.
BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))
LAYERS = [f"conv{b}_{n}" for b, (_, count) in enumerate(BLOCKS, 1) for n in range(1, count + 1)]
TORCHVISION_INDEX = dict(zip(LAYERS, (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)))


def channels() -> dict[str, tuple[int, int]]:
    out, c_in = {}, 3
    for b, (c_out, count) in enumerate(BLOCKS, 1):
        for n in range(1, count + 1):
            out[f"conv{b}_{n}"] = (c_in, c_out)
            c_in = c_out
    return out


@functools.cache
def _hwio_params(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {}
    for layer, (c_in, c_out) in channels().items():
        # Uniform with the He variance 2 / fan_in (cheaper to draw than a Gaussian).
        limit = np.float32(np.sqrt(3 * 2.0 / (9 * c_in)))
        kernel = (rng.random((3, 3, c_in, c_out), dtype=np.float32) * 2 - 1) * limit
        bias = (rng.random(c_out, dtype=np.float32) - np.float32(0.5)) * np.float32(0.2)
        out[layer] = (kernel, bias)
    return out


def hwio_params(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Seeded He-scaled kernels [3, 3, Cin, Cout] and small non-zero biases [Cout], float32.

    Fresh copies each call (callers may modify them).
    """
    return {k: (w.copy(), b.copy()) for k, (w, b) in _hwio_params(seed).items()}


def oihw_params(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Like :func:`hwio_params` but kernels in torch's [Cout, Cin, 3, 3] layout."""
    return {k: (np.ascontiguousarray(w.transpose(3, 2, 0, 1)), b.copy()) for k, (w, b) in _hwio_params(seed).items()}


def first_layers(params: dict, last: str) -> dict:
    """The layers of ``params`` up to and including ``last`` (small files for error tests)."""
    return {k: v for k, v in params.items() if LAYERS.index(k) <= LAYERS.index(last)}


def keras_name(layer: str) -> str:
    block, n = layer[4:].split("_")
    return f"block{block}_conv{n}"


def write_keras_h5(
    path: Path,
    params: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    naming: str = "old",
    full_model: bool = False,
    skip: tuple[str, ...] = (),
) -> Path:
    """A Keras HDF5 weights file; ``params`` HWIO. Layers in ``skip`` or not in ``params`` are left out."""
    with h5py.File(path, "w") as f:
        if full_model:
            f.attrs["model_config"] = b'{"class_name": "Functional"}'
            root = f.create_group("model_weights")
            f.create_group("optimizer_weights")
        else:
            root = f
        root.attrs["keras_version"] = b"2.1.0"
        root.attrs["backend"] = b"tensorflow"
        names = ["input_1"]
        for b, (_, count) in enumerate(BLOCKS, 1):
            names += [f"block{b}_conv{n}" for n in range(1, count + 1)] + [f"block{b}_pool"]
        names = [n for n in names if "_conv" not in n or (n in {keras_name(l) for l in params} - {keras_name(l) for l in skip})]
        root.attrs["layer_names"] = np.array([n.encode() for n in names])
        for name in names:
            group = root.create_group(name)
            layer = f"conv{name[5]}_{name[-1]}" if "_conv" in name else None
            if layer is None:
                group.attrs["weight_names"] = np.array([], dtype="S1")  # input/pool layers
                continue
            kernel, bias = params[layer]
            if naming == "old":
                weight_names = [f"{name}_W_1:0", f"{name}_b_1:0"]
            else:
                weight_names = [f"{name}/kernel:0", f"{name}/bias:0"]
            group.attrs["weight_names"] = np.array([w.encode() for w in weight_names])
            group.create_dataset(weight_names[0], data=kernel)  # "a/b:0" makes the nested group
            group.create_dataset(weight_names[1], data=bias)
    return path


def torchvision_state(params: dict[str, tuple[np.ndarray, np.ndarray]], *, classifier: bool = True) -> OrderedDict:
    """torchvision ``vgg19().state_dict()`` layout from OIHW params (tiny classifier).

    ``params`` may hold only some layers (for error tests); the rest are left out.
    """
    state = OrderedDict()
    for layer, (w, b) in params.items():
        state[f"features.{TORCHVISION_INDEX[layer]}.weight"] = w
        state[f"features.{TORCHVISION_INDEX[layer]}.bias"] = b
    if classifier:  # the real classifier is 25088x4096…; the reader must ignore it anyway
        rng = np.random.default_rng(1)
        for i, shape in ((0, (8, 6)), (3, (8, 8)), (6, (10, 8))):
            state[f"classifier.{i}.weight"] = rng.standard_normal(shape).astype(np.float32)
            state[f"classifier.{i}.bias"] = np.zeros(shape[0], np.float32)
    return state


def gatys_state(params: dict[str, tuple[np.ndarray, np.ndarray]]) -> OrderedDict:
    """Gatys ``vgg_conv.pth`` layout from OIHW params."""
    state = OrderedDict()
    for layer, (w, b) in params.items():
        state[f"{layer}.weight"] = w
        state[f"{layer}.bias"] = b
    return state


def write_pth_torch(path: Path, state: dict[str, np.ndarray], *, legacy: bool = False) -> Path:
    """``torch.save`` the state dict (zip format, or the pre-1.6 legacy format)."""
    import torch

    tensors = OrderedDict((k, torch.from_numpy(np.ascontiguousarray(v))) for k, v in state.items())
    torch.save(tensors, path, _use_new_zipfile_serialization=not legacy)
    return path


# ---- a minimal pure-Python writer of torch's zip checkpoint format ----------

_STORAGE_NAMES = {"float32": "FloatStorage", "float16": "HalfStorage", "float64": "DoubleStorage", "int64": "LongStorage"}


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(s: str) -> bytes:
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def _tuple(items) -> bytes:
    return b"(" + b"".join(items) + b"t"


def state_dict_pickle(state: dict[str, np.ndarray], *, fortran: bool = False, offset: int = 0):
    """Protocol-2 pickle of an OrderedDict of tensors, opcode by opcode, as torch writes it.

    Returns (pickle bytes, {storage key: raw bytes}). ``fortran`` stores each
    array column-major (non-default strides); ``offset`` puts that many junk
    elements in front of each storage (non-zero storage offset).
    """
    out = [b"\x80\x02", _global("collections", "OrderedDict"), b")R", b"("]
    storages = {}
    for i, (key, value) in enumerate(state.items()):
        a = np.asarray(value)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)  # torch storages are little-endian
        junk = np.full(offset, 7, a.dtype).tobytes()
        storages[str(i)] = junk + a.tobytes(order="F" if fortran else "C")
        # Element strides of the stored order: C makes the last axis densest, F the first.
        dims = a.shape[::-1] if not fortran else a.shape
        strides = [int(np.prod(dims[:k])) for k in range(len(dims))]
        strides = strides[::-1] if not fortran else strides
        storage_id = _tuple(
            [_str("storage"), _global("torch", _STORAGE_NAMES[a.dtype.name]), _str(str(i)), _str("cpu"), _int(offset + a.size)]
        )
        out += [
            _str(key),
            _global("torch._utils", "_rebuild_tensor_v2"),
            b"(",
            storage_id + b"Q",  # BINPERSID
            _int(offset),
            _tuple(_int(n) for n in a.shape),
            _tuple(_int(s) for s in strides),
            b"\x89",  # requires_grad False
            _global("collections", "OrderedDict") + b")R",  # backward hooks
            b"tR",
        ]
    out.append(b"u.")  # SETITEMS, STOP
    return b"".join(out), storages


def write_pth_zip(
    path: Path,
    state: dict[str, np.ndarray] | None = None,
    *,
    pickle_bytes: bytes | None = None,
    storages: dict[str, bytes] | None = None,
    archive: str = "archive",
    fortran: bool = False,
    offset: int = 0,
) -> Path:
    """A torch zip checkpoint without torch: ``<archive>/data.pkl`` + ``<archive>/data/<key>``.

    Either ``state`` (pickled like torch does) or raw ``pickle_bytes`` (+ ``storages``).
    """
    if pickle_bytes is None:
        pickle_bytes, storages = state_dict_pickle(state, fortran=fortran, offset=offset)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{archive}/data.pkl", pickle_bytes)
        zf.writestr(f"{archive}/byteorder", "little")
        for key, data in (storages or {}).items():
            zf.writestr(f"{archive}/data/{key}", data)
        zf.writestr(f"{archive}/version", "3\n")
    return path


def call_pickle(module: str, name: str, *args: str) -> bytes:
    """A pickle that calls ``module.name(*args)`` when loaded by a plain unpickler."""
    return b"\x80\x02" + _global(module, name) + _tuple(_str(a) for a in args) + b"R."


def write_malicious_pth(path: Path, module: str, name: str, *args: str, legacy: bool = False) -> Path:
    """A ``.pth`` whose pickle calls ``module.name(*args)`` (e.g. ``os.system``)."""
    payload = call_pickle(module, name, *args)
    if not legacy:
        return write_pth_zip(path, pickle_bytes=payload)
    with open(path, "wb") as fh:
        fh.write(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
        fh.write(pickle.dumps(1001, protocol=2))
        fh.write(pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2))
        fh.write(payload)
    return path
