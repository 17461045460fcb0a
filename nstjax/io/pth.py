"""Read PyTorch checkpoints (``torch.save`` of a state dict) without torch.

A ``.pth`` file is a pickle, and unpickling runs whatever callables the pickle
names. This reader uses a restricted :class:`pickle.Unpickler`: ``find_class``
only hands out this module's own stand-ins for the handful of globals a plain
state dict references (the tensor-rebuild helpers, the ``torch.*Storage``
types, ``collections.OrderedDict``); any other global (``os.system``,
``builtins.eval``, a model class) is refused with an :class:`NstjaxError`
before it can be called. Tensors come back as NumPy arrays.

Two on-disk formats are understood:

* the zip format (torch >= 1.6): ``<archive>/data.pkl`` holds the pickle, whose
  storages are persistent ids ``("storage", StorageType, key, location, numel)``
  pointing at raw little-endian records ``<archive>/data/<key>``;
* the legacy format (torch < 1.6, e.g. the 2017 ``vgg_conv.pth`` of Gatys et
  al.): consecutive pickles (magic number, protocol version, system info, the
  object, the sorted storage keys), then for each key an int64 element count
  followed by the raw storage bytes.

The very old tar format (torch < 0.1.10) is rejected with a clear error.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import tarfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import NstjaxError

__all__ = ["load_state_dict", "is_torch_checkpoint", "LEGACY_MAGIC"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
"""First pickle of a legacy (non-zip) torch checkpoint."""
_LEGACY_PROTOCOL_VERSION = 1001
# The magic number pickled as a LONG1 payload; used to sniff legacy files.
_LEGACY_MAGIC_BYTES = LEGACY_MAGIC.to_bytes(10, "little")

# Element dtypes by torch name. "bfloat16" has no NumPy dtype: it is read as
# uint16 and widened to float32 (bfloat16 is the top half of a float32).
_DTYPES: dict[str, str] = {
    "float32": "f4",
    "float64": "f8",
    "float16": "f2",
    "bfloat16": "u2",
    "int64": "i8",
    "int32": "i4",
    "int16": "i2",
    "int8": "i1",
    "uint8": "u1",
    "uint16": "u2",
    "uint32": "u4",
    "uint64": "u8",
    "bool": "?",
}
_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    # Untyped storages hold bytes; the tensor's dtype comes with _rebuild_tensor_v3.
    "UntypedStorage": "uint8",
}
# torch.<dtype> globals that _rebuild_tensor_v3 may reference.
_TORCH_DTYPE_NAMES = {
    **{name: name for name in _DTYPES},
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "long": "int64",
    "int": "int32",
    "short": "int16",
}


class _PthError(Exception):
    """Internal: a malformed checkpoint; turned into NstjaxError with the path."""


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co.: only carries the element dtype."""

    name: str
    dtype: str


@dataclass(frozen=True)
class _DType:
    """Stand-in for a ``torch.<dtype>`` object (used by ``_rebuild_tensor_v3``)."""

    name: str


@dataclass
class _Storage:
    """A storage the pickle refers to; its bytes are read after unpickling."""

    key: str
    dtype: str
    numel: int
    view: tuple[int, int] | None = None  # legacy storage views: (offset, numel), in elements


@dataclass
class _Tensor:
    """A tensor the pickle describes: a strided view of a storage (sizes in elements)."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str  # element dtype of the tensor (== storage dtype except for untyped storages)
    negate: bool = False


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)  # torch.Size pickles as a tuple, but be lenient
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise _PthError(f"tensor {what} is not a tuple of non-negative integers: {value!r}")
    return tuple(value)


def _rebuild_tensor(storage, storage_offset, size, stride, *, dtype=None, metadata=None):
    if not isinstance(storage, _Storage):
        raise _PthError(f"tensor storage is {type(storage).__name__}, not a storage")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise _PthError(f"bad tensor storage offset {storage_offset!r}")
    size = _int_tuple(size, "size")
    stride = _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise _PthError(f"tensor size {size} and stride {stride} differ in length")
    negate = False
    if metadata:
        # Lazy conjugate/negative bits; only "neg" can apply to real tensors.
        if not isinstance(metadata, Mapping) or metadata.get("conj"):
            raise _PthError(f"unsupported tensor metadata {metadata!r}")
        negate = bool(metadata.get("neg"))
    return _Tensor(storage, storage_offset, size, stride, dtype or storage.dtype, negate)


def _rebuild_tensor_v1(storage, storage_offset, size, stride):
    """``torch._utils._rebuild_tensor`` (torch 0.3 era)."""
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    """``torch._utils._rebuild_tensor_v2``: requires_grad and hooks are irrelevant here."""
    return _rebuild_tensor(storage, storage_offset, size, stride, metadata=metadata)


def _rebuild_tensor_v3(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None
):
    """``torch._utils._rebuild_tensor_v3``: an untyped (byte) storage plus a dtype."""
    if not isinstance(dtype, _DType):
        raise _PthError(f"tensor dtype is {dtype!r}, not a torch dtype")
    if not isinstance(storage, _Storage) or storage.dtype != "uint8":
        raise _PthError("_rebuild_tensor_v3 needs an untyped storage")
    itemsize = np.dtype(_DTYPES[dtype.name]).itemsize
    if storage.numel % itemsize:
        raise _PthError(f"untyped storage of {storage.numel} bytes is not a whole number of {dtype.name}")
    # Reinterpret the byte storage as elements of the tensor's dtype.
    typed = _Storage(storage.key, dtype.name, storage.numel // itemsize, storage.view)
    return _rebuild_tensor(typed, storage_offset, size, stride, metadata=metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    """``torch._utils._rebuild_parameter``: a Parameter is just its tensor here."""
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor_v1,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
    ("torch.storage", "UntypedStorage"): _StorageType("UntypedStorage", "uint8"),
    **{("torch", name): _DType(dtype) for name, dtype in _TORCH_DTYPE_NAMES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only build state dicts (see module docstring).

    ``storages`` collects every storage the pickle mentions, by key, so that
    the caller can read their bytes afterwards.
    """

    def __init__(self, file: BinaryIO, path: Path, legacy: bool):
        super().__init__(file, encoding="utf-8")
        self._path = path
        self._legacy = legacy
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise NstjaxError(
                f"refuses pickle global '{module}.{name}': only plain tensor state dicts are "
                "loaded (the file may be malicious, or a whole pickled model rather than a state_dict)",
                self._path,
            ) from None

    def persistent_load(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or not pid:
            raise _PthError(f"unexpected persistent id {pid!r}")
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind != "storage":
            raise _PthError(f"unsupported persistent id {kind!r} (only storages are allowed)")
        view = None
        if self._legacy and len(pid) == 6:
            _, storage_type, key, _location, numel, view_meta = pid
            if view_meta is not None:
                # (view key, offset, numel): a slice of the root storage.
                if not (isinstance(view_meta, tuple) and len(view_meta) == 3):
                    raise _PthError(f"bad storage view {view_meta!r}")
                view = (int(view_meta[1]), int(view_meta[2]))
        elif len(pid) == 5:
            _, storage_type, key, _location, numel = pid
        else:
            raise _PthError(f"unexpected storage id {pid!r}")
        if not isinstance(storage_type, _StorageType):
            raise _PthError(f"unexpected storage type {storage_type!r}")
        key = key.decode("ascii") if isinstance(key, bytes) else key
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise _PthError(f"unexpected storage id {pid!r}")
        known = self.storages.get(key)
        if known is None:
            known = self.storages[key] = _Storage(key, storage_type.dtype, numel)
        elif known.dtype != storage_type.dtype:
            raise _PthError(f"storage {key} is used with two dtypes")
        if view is None:
            return known
        offset, count = view
        if offset < 0 or count < 0 or offset + count > known.numel:
            raise _PthError(f"storage view {view} exceeds storage {key}")
        return _Storage(key, known.dtype, count, (offset, count))


def is_torch_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like a torch checkpoint (zip with ``data.pkl``, or legacy pickle)."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return _find_data_pkl(zf) is not None
        with open(path, "rb") as fh:
            head = fh.read(32)
    except OSError:
        return False
    return head[:1] == b"\x80" and _LEGACY_MAGIC_BYTES in head


def _find_data_pkl(zf: zipfile.ZipFile) -> str | None:
    names = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") <= 1]
    names = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    return names[0] if len(names) == 1 else None


def load_state_dict(
    path: str | os.PathLike, *, include: Callable[[str], bool] | None = None
) -> dict[str, np.ndarray]:
    """Read the tensors of a torch state dict file as NumPy arrays.

    Args:
      path: a ``.pth``/``.pt`` written by ``torch.save(model.state_dict(), …)``
        (zip or legacy format). A checkpoint dict whose ``"state_dict"`` or
        ``"model"`` entry is the state dict also works.
      include: if given, only keys for which it returns True are read (their
        storages are the only ones loaded, which skips e.g. VGG's 400 MB
        classifier). It sees every tensor key.

    Returns:
      ``{key: array}`` in file order, arrays in their stored shape and dtype
      (float32/float16/float64/integers/bool; bfloat16 is widened to float32).
      Non-tensor entries are skipped.

    Raises:
      NstjaxError: naming ``path``, for a file that is not a torch checkpoint,
        is truncated or malformed, or whose pickle references any global other
        than the tensor-rebuild helpers (nothing it names is ever called).
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path, include)
        with open(path, "rb") as fh:
            head = fh.read(32)
            if head[:1] == b"\x80" and _LEGACY_MAGIC_BYTES in head:
                fh.seek(0)
                return _load_legacy(fh, path, include)
        if tarfile.is_tarfile(path):
            raise NstjaxError(
                "is a tar-format torch checkpoint (torch < 0.1.10), which is not supported; "
                "re-save it with a recent torch: torch.save(torch.load(f), f)",
                path,
            )
        raise NstjaxError("not a PyTorch checkpoint (neither a torch zip archive nor a legacy torch pickle)", path)
    except NstjaxError:
        raise
    except FileNotFoundError:
        raise NstjaxError("no such file", path) from None
    except IsADirectoryError:
        raise NstjaxError("is a directory, not a checkpoint file", path) from None
    except _PthError as e:
        raise NstjaxError(f"malformed PyTorch checkpoint: {e}", path) from None
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error, ValueError, TypeError,
            KeyError, IndexError, AttributeError, OverflowError, MemoryError, OSError) as e:
        # Any failure inside unpickling means a truncated or malformed file.
        raise NstjaxError(f"corrupt or truncated PyTorch checkpoint ({type(e).__name__}: {e})", path) from None


def _load_zip(path: Path, include: Callable[[str], bool] | None) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        pkl = _find_data_pkl(zf)
        if pkl is None:
            raise NstjaxError("is a zip file but not a torch checkpoint (no <archive>/data.pkl)", path)
        prefix = pkl[: -len("data.pkl")]
        if any(n.startswith(prefix + "code/") for n in zf.namelist()):
            raise NstjaxError("is a TorchScript archive (torch.jit.save), not a state dict", path)
        byteorder = "little"
        if prefix + "byteorder" in zf.namelist():
            byteorder = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise _PthError(f"unknown byteorder {byteorder!r}")
        unpickler = _RestrictedUnpickler(io.BytesIO(zf.read(pkl)), path, legacy=False)
        obj = unpickler.load()
        tensors = _select(_state_dict_of(obj), include)

        def read(storage: _Storage) -> bytes:
            name = f"{prefix}data/{storage.key}"
            try:
                info = zf.getinfo(name)
            except KeyError:
                raise _PthError(f"storage record {name} is missing") from None
            itemsize = np.dtype(_DTYPES[storage.dtype]).itemsize
            # Check the size before reading, so a hostile record cannot make us read gigabytes.
            if info.file_size != storage.numel * itemsize:
                raise _PthError(
                    f"storage record {name} has {info.file_size} bytes, expected {storage.numel * itemsize}"
                )
            return zf.read(name)

        data = {}
        for storage in {t.storage.key: t.storage for t in tensors.values()}.values():
            root = unpickler.storages[storage.key]
            data[storage.key] = read(root)
        return _materialize(tensors, data, unpickler.storages, byteorder)


def _load_legacy(fh: BinaryIO, path: Path, include: Callable[[str], bool] | None) -> dict[str, np.ndarray]:
    # The leading pickles are plain ints/dicts; still go through the restricted unpickler.
    def small_pickle() -> Any:
        return _RestrictedUnpickler(fh, path, legacy=True).load()

    if small_pickle() != LEGACY_MAGIC:
        raise _PthError("bad magic number")
    if small_pickle() != _LEGACY_PROTOCOL_VERSION:
        raise _PthError("unsupported legacy protocol version")
    sys_info = small_pickle()
    little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, Mapping) else True
    unpickler = _RestrictedUnpickler(fh, path, legacy=True)
    obj = unpickler.load()
    keys = small_pickle()
    if not isinstance(keys, list):
        raise _PthError("storage key list is missing")
    tensors = _select(_state_dict_of(obj), include)
    wanted = {t.storage.key for t in tensors.values()}
    endian = "<" if little else ">"
    data: dict[str, bytes] = {}
    for key in keys:
        key = key.decode("ascii") if isinstance(key, bytes) else str(key)
        storage = unpickler.storages.get(key)
        if storage is None:
            raise _PthError(f"storage {key} is listed but never used")
        itemsize = np.dtype(_DTYPES[storage.dtype]).itemsize
        (numel,) = struct.unpack(endian + "q", _read_exact(fh, 8))
        if numel != storage.numel:
            raise _PthError(f"storage {key} has {numel} elements, expected {storage.numel}")
        if key in wanted:
            data[key] = _read_exact(fh, numel * itemsize)
        else:
            fh.seek(numel * itemsize, os.SEEK_CUR)  # skip storages nobody asked for
    missing = wanted - data.keys()
    if missing:
        raise _PthError(f"storage data missing for {sorted(missing)}")
    return _materialize(tensors, data, unpickler.storages, "little" if little else "big")


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise EOFError(f"file ends {n - len(data)} bytes early")
    return data


def _state_dict_of(obj: Any) -> Mapping[str, Any]:
    """The mapping of tensors in ``obj``: the object itself or its ``state_dict``/``model`` entry."""
    if isinstance(obj, Mapping):
        if any(isinstance(v, _Tensor) for v in obj.values()):
            return obj
        for key in ("state_dict", "model", "model_state_dict", "params"):
            if isinstance(obj.get(key), Mapping):
                return _state_dict_of(obj[key])
        if not obj:
            return obj
    raise _PthError(f"no state dict of tensors found (top-level object is {type(obj).__name__})")


def _select(state: Mapping[str, Any], include: Callable[[str], bool] | None) -> dict[str, _Tensor]:
    out = {}
    for key, value in state.items():
        if not isinstance(value, _Tensor):
            continue
        key = key.decode("utf-8") if isinstance(key, bytes) else str(key)
        if include is None or include(key):
            out[key] = value
    return out


def _materialize(
    tensors: dict[str, _Tensor], data: dict[str, bytes], storages: dict[str, _Storage], byteorder: str
) -> dict[str, np.ndarray]:
    """Turn tensor descriptions into NumPy arrays (copies, C-contiguous)."""
    endian = "<" if byteorder == "little" else ">"
    out = {}
    for key, t in tensors.items():
        itemsize = np.dtype(_DTYPES[t.dtype]).itemsize
        flat = np.frombuffer(data[t.storage.key], dtype=np.dtype(endian + _DTYPES[t.dtype]))
        if t.storage.view is not None:
            start, count = t.storage.view
            flat = flat[start : start + count]
        # The last element this view touches must lie inside the storage.
        if 0 not in t.size:
            last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
            if last >= flat.size:
                raise _PthError(f"tensor {key!r} reads past the end of its storage")
        if 0 in t.size:
            arr = np.zeros(t.size, flat.dtype)
        else:
            arr = np.lib.stride_tricks.as_strided(
                flat[t.offset :], shape=t.size, strides=tuple(s * itemsize for s in t.stride), writeable=False
            ).copy()
        arr = arr.astype(arr.dtype.newbyteorder("="), copy=False)
        if t.dtype == "bfloat16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        if t.negate:
            arr = -arr
        out[key] = arr if arr.flags.c_contiguous and arr.flags.writeable else arr.copy()  # keeps 0-d shapes
    return out
