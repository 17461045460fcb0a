"""The torch-free, code-execution-free ``.pth`` reader (nstjax._pth)."""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import _synthetic_weights as sw
from nstjax.io import pth as _pth
from nstjax.errors import NstjaxError

try:
    import torch
except ImportError:  # the reader needs no torch; only the torch-written fixtures do
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")


def _one_line(error: pytest.ExceptionInfo, path) -> str:
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


# ---- reading real torch files ------------------------------------------------


@needs_torch
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_reads_torch_saved_tensors_of_every_kind(tmp_path, legacy):
    base = torch.arange(20, dtype=torch.float32)
    state = OrderedDict(
        f32=torch.randn(4, 3, 3, 3),
        f16=torch.randn(5, 2).half(),
        f64=torch.randn(3, dtype=torch.float64),
        bf16=torch.randn(6).bfloat16(),
        i64=torch.tensor([1, -2, 3]),
        flag=torch.tensor([True, False]),
        transposed=torch.randn(3, 4).t(),  # non-contiguous strides
        sliced=base[5:11].view(2, 3),  # storage offset 5 into a shared storage
        other_view=base[::4],  # same storage, stride 4
        param=torch.nn.Parameter(torch.ones(2, 2)),
        empty=torch.zeros(0, 7),
        scalar=torch.tensor(3.5),
    )
    path = tmp_path / "t.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    got = _pth.load_state_dict(path)
    assert list(got) == list(state)
    for key, tensor in state.items():
        ref = tensor.detach()
        ref = ref.float().numpy() if ref.dtype == torch.bfloat16 else ref.numpy()
        assert got[key].dtype == ref.dtype, key
        assert got[key].shape == ref.shape, key
        np.testing.assert_array_equal(got[key], ref, err_msg=key)
        assert got[key].flags.c_contiguous and got[key].flags.writeable


@needs_torch
def test_reads_torchvision_layout_written_by_torch(tmp_path):
    state = sw.torchvision_state(sw.oihw_params(0))
    path = sw.write_pth_torch(tmp_path / "vgg19.pth", state)
    got = _pth.load_state_dict(path)
    assert list(got) == list(state)
    for key in state:
        np.testing.assert_array_equal(got[key], state[key])


@needs_torch
def test_checkpoint_dict_with_state_dict_entry(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": OrderedDict(w=torch.ones(2))}, path)
    assert list(_pth.load_state_dict(path)) == ["w"]


def test_pure_python_writer_roundtrip_with_strides_and_offset(tmp_path):
    state = OrderedDict(
        a=np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        b=np.linspace(0, 1, 6).astype(np.float16).reshape(3, 2),
        c=np.arange(5, dtype=np.float64),
    )
    path = sw.write_pth_zip(tmp_path / "m.pth", state, fortran=True, offset=3)
    got = _pth.load_state_dict(path)
    for key in state:
        assert got[key].dtype == state[key].dtype
        np.testing.assert_array_equal(got[key], state[key])
    if torch is not None:  # the hand-written file is a real torch checkpoint
        loaded = torch.load(path, weights_only=True)
        np.testing.assert_array_equal(loaded["a"].numpy(), state["a"])


def test_include_reads_only_selected_storages(tmp_path):
    state = OrderedDict(keep=np.ones(3, np.float32), skip=np.zeros(4, np.float32))
    pickle_bytes, storages = sw.state_dict_pickle(state)
    del storages["1"]  # the skipped tensor's data is absent: it must never be read
    path = sw.write_pth_zip(tmp_path / "p.pth", pickle_bytes=pickle_bytes, storages=storages)
    seen = []
    got = _pth.load_state_dict(path, include=lambda k: seen.append(k) or k == "keep")
    assert list(got) == ["keep"] and seen == ["keep", "skip"]
    with pytest.raises(NstjaxError, match="storage record archive/data/1 is missing"):
        _pth.load_state_dict(path)


def test_is_torch_checkpoint(tmp_path):
    path = sw.write_pth_zip(tmp_path / "m.pth", OrderedDict(a=np.ones(1, np.float32)))
    assert _pth.is_torch_checkpoint(path)
    (tmp_path / "x.bin").write_bytes(b"\x00" * 100)
    assert not _pth.is_torch_checkpoint(tmp_path / "x.bin")


# ---- the pickle guard ------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_refuses_os_system_and_does_not_run_it(tmp_path, legacy):
    marker = tmp_path / "pwned"
    path = sw.write_malicious_pth(tmp_path / "evil.pth", "os", "system", f"touch {marker}", legacy=legacy)
    with pytest.raises(NstjaxError) as error:
        _pth.load_state_dict(path)
    message = _one_line(error, path)
    assert "refuses pickle global 'os.system'" in message
    assert not marker.exists()
    # Control: an ordinary unpickler really would have run it.
    if not legacy:
        with zipfile.ZipFile(path) as zf:
            pickle.loads(zf.read("archive/data.pkl"))
        assert marker.exists()


def test_refuses_builtins_eval(tmp_path):
    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').close()"
    path = sw.write_malicious_pth(tmp_path / "evil.pth", "builtins", "eval", code)
    with pytest.raises(NstjaxError, match="refuses pickle global 'builtins.eval'"):
        _pth.load_state_dict(path)
    assert not marker.exists()


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_refuses_exploit_pickled_by_python(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(OrderedDict(w=_Exploit(marker)), protocol=2)
    path = sw.write_pth_zip(tmp_path / "evil.pth", pickle_bytes=payload)
    with pytest.raises(NstjaxError, match=r"refuses pickle global '(posix|os|nt)\.system'"):
        _pth.load_state_dict(path)
    assert not marker.exists()


@needs_torch
def test_refuses_whole_pickled_model(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(torch.nn.Conv2d(3, 4, 3), path)
    with pytest.raises(NstjaxError, match=r"refuses pickle global 'torch\.nn\.modules\.conv\.Conv2d'.*state_dict"):
        _pth.load_state_dict(path)


@needs_torch
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_refuses_torchscript(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(NstjaxError, match="TorchScript"):
        _pth.load_state_dict(path)


# ---- malformed files ----------------------------------------------------------------


def test_storage_size_mismatch(tmp_path):
    pickle_bytes, storages = sw.state_dict_pickle(OrderedDict(a=np.ones(4, np.float32)))
    storages["0"] = storages["0"][:-4]
    path = sw.write_pth_zip(tmp_path / "p.pth", pickle_bytes=pickle_bytes, storages=storages)
    with pytest.raises(NstjaxError, match="has 12 bytes, expected 16"):
        _pth.load_state_dict(path)


def test_tensor_past_end_of_storage(tmp_path):
    pickle_bytes, storages = sw.state_dict_pickle(OrderedDict(a=np.ones(4, np.float32)))
    # Same pickle, but claim the tensor has 5 elements of a 4-element storage.
    pickle_bytes = pickle_bytes.replace(b"(J\x04\x00\x00\x00t", b"(J\x05\x00\x00\x00t")
    path = sw.write_pth_zip(tmp_path / "p.pth", pickle_bytes=pickle_bytes, storages=storages)
    with pytest.raises(NstjaxError, match="reads past the end of its storage"):
        _pth.load_state_dict(path)


def test_truncated_zip_checkpoint(tmp_path):
    path = sw.write_pth_zip(tmp_path / "p.pth", OrderedDict(a=np.ones(1000, np.float32)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NstjaxError) as error:
        _pth.load_state_dict(path)
    _one_line(error, path)


@needs_torch
def test_truncated_legacy_checkpoint(tmp_path):
    path = sw.write_pth_torch(tmp_path / "p.pth", OrderedDict(a=np.ones(1000, np.float32)), legacy=True)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(NstjaxError, match="corrupt or truncated") as error:
        _pth.load_state_dict(path)
    _one_line(error, path)


def test_not_a_checkpoint(tmp_path):
    jpeg = tmp_path / "photo.pth"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))
    with pytest.raises(NstjaxError, match="not a PyTorch checkpoint") as error:
        _pth.load_state_dict(jpeg)
    _one_line(error, jpeg)
    with pytest.raises(NstjaxError, match="no such file"):
        _pth.load_state_dict(tmp_path / "missing.pth")
    other_zip = tmp_path / "other.pth"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(NstjaxError, match="not a torch checkpoint"):
        _pth.load_state_dict(other_zip)


def test_tar_format_is_rejected_clearly(tmp_path):
    path = tmp_path / "old.pth"
    with tarfile.open(path, "w") as tf:
        info = tarfile.TarInfo("sys_info")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(NstjaxError, match="tar-format"):
        _pth.load_state_dict(path)


def test_non_state_dict_object(tmp_path):
    path = sw.write_pth_zip(tmp_path / "p.pth", pickle_bytes=pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(NstjaxError, match="no state dict of tensors found"):
        _pth.load_state_dict(path)
