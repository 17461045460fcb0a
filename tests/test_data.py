"""The dataset registry (nstjax.data) and ``nstjax data fetch|list``, against a local HTTP server.

The archives are written by the tests in the exact upstream layouts (a CycleGAN
zip holds ``<name>/trainA/*.jpg`` …; the pix2pix facades tarball holds
``facades/train`` …); the manifest entry is patched to point at the local
server with the archive's real SHA-256.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import _local_server
from nstjax import hub
from nstjax.cli.data import app as data_app
from nstjax.data import registry as R

CYCLEGAN_FOLDERS = ("trainA", "trainB", "testA", "testB")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("NSTJAX_CACHE", str(cache))
    return cache


@pytest.fixture
def server():
    with _local_server.serving() as (base, state):
        yield base, state


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def cyclegan_zip(name: str, folders=CYCLEGAN_FOLDERS) -> dict[str, bytes]:
    """Members of a CycleGAN dataset zip: ``<name>/<folder>/<n>_A.jpg`` (as the upstream zips name them)."""
    return {f"{name}/{folder}/{n}_{folder[-1]}.jpg": jpeg(10 * i + n) for i, folder in enumerate(folders) for n in range(2)}


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name in sorted({str(Path(n).parent) + "/" for n in members}):  # upstream zips list folders too
            zf.writestr(name, b"")
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def serve_as(monkeypatch, server, name: str, data: bytes, *, checksum: hub.Checksum | None = None, size=True) -> str:
    """Serve ``data`` and point dataset ``name``'s (only) file at it, with its real SHA-256 unless given."""
    base, state = server
    entry = R.datasets()[name]
    (file,) = entry.files
    url = f"{base}/{file.filename}"
    state.files[f"/{file.filename}"] = data
    checksum = checksum or hub.Checksum("sha256", hashlib.sha256(data).hexdigest())
    patched = replace(file, urls=(url,), checksum=checksum, size=len(data) if size else None)
    monkeypatch.setitem(R.datasets(), name, replace(entry, files=(patched,)))
    return url


def files_in(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_manifest_entries_are_complete_and_cite_their_checksums():
    raw = R.load_manifest()["datasets"]
    names = list(R.datasets())
    for name in ("vangogh2photo", "monet2photo", "cezanne2photo", "ukiyoe2photo", "horse2zebra",
                 "summer2winter_yosemite", "facades", "ade20k", "coco2014_train"):
        assert name in names
    for name, dataset in R.datasets().items():
        assert dataset.description and dataset.licence and dataset.homepage.startswith("http")
        assert set(dataset.used_by) <= {"cyclegan", "sketch2photo", "fast"} and dataset.used_by
        for file, entry in zip(dataset.files, raw[name]["files"]):
            assert file.checksum_note and entry["checksum"]["note"]
            if file.checksum.algorithm == "tofu-sha256":
                assert file.checksum.hex is None and "trust on first use" in file.checksum_note
            else:
                assert file.checksum.algorithm == "sha256" and len(file.checksum.hex) == 64
                assert "tensorflow/datasets" in file.checksum_note and file.size > 0
    vangogh = R.get_dataset("vangogh2photo")
    assert vangogh.layout == CYCLEGAN_FOLDERS and vangogh.files[0].root == "vangogh2photo"
    assert vangogh.files[0].urls[0] == "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/vangogh2photo.zip"
    assert vangogh.files[0].checksum.hex == "362c3473e70be0944bda08d49d660eafdc2854df55d697835b8186d1d79caaff"


def test_fetch_extracts_the_cyclegan_layout_then_hits_the_cache(server, monkeypatch, isolated_cache):
    members = cyclegan_zip("vangogh2photo")
    serve_as(monkeypatch, server, "vangogh2photo", zip_bytes(members))
    calls = []
    folder = R.fetch_dataset("vangogh2photo", progress=lambda done, total: calls.append((done, total)))
    assert folder == isolated_cache / "datasets" / "vangogh2photo" == R.dataset_path("vangogh2photo")
    for name, data in members.items():
        assert (folder / name.removeprefix("vangogh2photo/")).read_bytes() == data
    assert sorted(p.name for p in folder.iterdir()) == [R.MARKER, *sorted(CYCLEGAN_FOLDERS)]
    assert calls[-1][0] == calls[-1][1] > 0
    # Only the dataset is left in the cache: the archive is removed once extracted; no lock or temp files.
    assert files_in(isolated_cache) == sorted(
        [f"datasets/vangogh2photo/{R.MARKER}"] + [f"datasets/{n}" for n in members]
    )
    marker = json.loads((folder / R.MARKER).read_text())
    assert marker["files"][0]["digests"]["sha256"] == R.get_dataset("vangogh2photo").files[0].checksum.hex
    status = next(s for s in R.list_datasets() if s.name == "vangogh2photo")
    assert status.cached and status.problem is None and status.path == folder
    # A second call is a cache hit: no request at all.
    base, state = server
    before = len(state.requests)
    assert R.fetch_dataset("vangogh2photo") == folder
    assert len(state.requests) == before == 1


def test_folder_from_an_older_file_is_replaced(server, monkeypatch, isolated_cache):
    old = cyclegan_zip("ukiyoe2photo")
    serve_as(monkeypatch, server, "ukiyoe2photo", zip_bytes(old))
    folder = R.fetch_dataset("ukiyoe2photo")
    new = {name.replace("_A.jpg", "_new.jpg"): data for name, data in old.items()}
    serve_as(monkeypatch, server, "ukiyoe2photo", zip_bytes(new))  # the manifest now names another file
    status = next(s for s in R.list_datasets() if s.name == "ukiyoe2photo")
    assert not status.cached and "not the one the manifest names" in status.problem
    assert R.fetch_dataset("ukiyoe2photo") == folder
    assert (folder / "trainA" / "0_new.jpg").exists() and not (folder / "trainA" / "0_A.jpg").exists()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["ukiyoe2photo"]  # the old one is gone


def test_checksum_mismatch_is_a_clear_error_and_nothing_is_cached(server, monkeypatch, isolated_cache):
    data = zip_bytes(cyclegan_zip("horse2zebra"))
    wrong = hashlib.sha256(b"the published file").hexdigest()
    url = serve_as(monkeypatch, server, "horse2zebra", data, checksum=hub.Checksum("sha256", wrong))
    with pytest.raises(hub.DownloadError) as error:
        R.fetch_dataset("horse2zebra")
    assert error.value.mismatch and not error.value.offline
    assert str(error.value) == (
        f"{url}: checksum mismatch for horse2zebra.zip: expected sha256 {wrong}, "
        f"got sha256 {hashlib.sha256(data).hexdigest()}; the download was deleted"
    )
    assert files_in(isolated_cache) == []
    assert not R.list_datasets()[4].cached


def test_wrong_layout_installs_nothing(server, monkeypatch, isolated_cache):
    serve_as(monkeypatch, server, "monet2photo", zip_bytes(cyclegan_zip("monet2photo", ("trainA", "trainB", "testA"))))
    with pytest.raises(R.NstjaxError, match=r"monet2photo download does not have the expected layout: no testB/"):
        R.fetch_dataset("monet2photo")
    assert not (isolated_cache / "datasets" / "monet2photo").exists()
    assert files_in(isolated_cache / "datasets") == []


def test_facades_tarball_trust_on_first_use(server, monkeypatch, isolated_cache):
    members = {f"facades/{split}/{n}.jpg": jpeg(n) for split in ("train", "val", "test") for n in range(2)}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    first = buffer.getvalue()
    assert R.get_dataset("facades").files[0].checksum.algorithm == "tofu-sha256"
    serve_as(monkeypatch, server, "facades", first, checksum=hub.Checksum("tofu-sha256"), size=False)
    folder = R.fetch_dataset("facades")
    assert (folder / "val" / "1.jpg").read_bytes() == members["facades/val/1.jpg"]
    assert hub.trusted_sha256("facades.tar.gz") == hashlib.sha256(first).hexdigest()
    assert next(s for s in R.list_datasets() if s.name == "facades").cached
    # Upstream changes: the recorded SHA-256 no longer matches, and the old folder stays.
    server[1].files["/facades.tar.gz"] = first[:-1] + bytes([first[-1] ^ 1])
    with pytest.raises(hub.DownloadError, match="recorded on first use in"):
        R.fetch_dataset("facades", force=True)
    assert (folder / "val" / "1.jpg").exists()


def test_cli_list_and_fetch(server, monkeypatch, isolated_cache):
    serve_as(monkeypatch, server, "summer2winter_yosemite", zip_bytes(cyclegan_zip("summer2winter_yosemite")))
    runner = CliRunner()

    def row(name: str) -> list[str]:
        listing = runner.invoke(data_app, ["list"])
        assert listing.exit_code == 0, listing.output
        return next(line for line in listing.stdout.splitlines() if line.startswith(name + " ")).split()[:5]

    size = R.get_dataset("summer2winter_yosemite").size
    assert 1000 <= size < 1_000_000  # a few tiny JPEGs
    assert row("summer2winter_yosemite") == ["summer2winter_yosemite", "cyclegan", f"{size / 1000:.1f}", "KB", "no"]
    assert row("coco2014_train") == ["coco2014_train", "fast", "13.5", "GB", "no"]
    result = runner.invoke(data_app, ["fetch", "summer2winter_yosemite"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(isolated_cache / "datasets" / "summer2winter_yosemite")
    assert "100%" in result.stderr  # the download bar
    assert row("summer2winter_yosemite")[-1] == "yes"
    unknown = runner.invoke(data_app, ["fetch", "vangogh"])
    assert unknown.exit_code == 2
    assert error_lines(unknown) == [f"error: unknown dataset 'vangogh'; choose one of: {', '.join(R.datasets())}"]


def test_no_network_is_one_line_with_a_hint(monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/ade.zip"
    entry = R.datasets()["ade20k"]
    monkeypatch.setitem(R.datasets(), "ade20k", replace(entry, files=(replace(entry.files[0], urls=(closed,)),)))
    result = CliRunner().invoke(data_app, ["fetch", "ade20k"])
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert line.startswith(f"error: could not download the ade20k dataset (ADEChallengeData2016.zip): {closed}: ")
    assert "(no network? download" in line and "nstjax data fetch ade20k" in line


def test_synth_command_writes_matched_pairs(tmp_path):
    from nstjax.cli import app
    from nstjax.labels import load_palette, read_label_map

    result = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "syn"), "--count", "3", "--size", "48", "--seed", "7"])
    assert result.exit_code == 0, result.output
    labels = sorted(p.name for p in (tmp_path / "syn" / "labels").iterdir())
    photos = sorted(p.name for p in (tmp_path / "syn" / "photos").iterdir())
    assert labels == photos == ["landscape_000007.png", "landscape_000008.png", "landscape_000009.png"]
    assert "synthetic" in (tmp_path / "syn" / "README.txt").read_text().lower()
    ids = read_label_map(tmp_path / "syn" / "labels" / labels[0], load_palette("landscape"))
    assert ids.shape == (48, 48) and "synthetic pairs" in result.stdout
    bad = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "syn2"), "--size", "8"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: ")
