"""nstjax.hub: locked downloads across processes, safe and atomic archive extraction."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

import _local_server
from nstjax import hub
from nstjax.errors import NstjaxError


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("NSTJAX_CACHE", str(cache))
    return cache


def files_in(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file() or p.is_symlink())


# ---- two processes, one download ------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import json, sys
    from nstjax import hub
    url, sha, size, directory = sys.argv[1:]
    remote = hub.RemoteFile("blob.bin", (url,), hub.Checksum("sha256", sha), size=int(size))
    print("ready", flush=True)
    got = hub.fetch_file(remote, directory, timeout=20)
    print(json.dumps({"path": str(got.path), "sha256": got.digests["sha256"], "url": got.url}), flush=True)
    """
)


def test_two_processes_fetching_the_same_file_download_it_once(tmp_path):
    data = os.urandom(300_000)
    sha = hashlib.sha256(data).hexdigest()
    directory = tmp_path / "cache" / "downloads"
    with _local_server.serving() as (base, state):
        state.files["/blob.bin"] = data
        state.release.clear()  # hold the first download until both processes are running
        args = [sys.executable, "-c", _CHILD, base + "/blob.bin", sha, str(len(data)), str(directory)]
        children = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        try:
            for child in children:
                assert child.stdout.readline().strip() == "ready", child.stderr.read()
            deadline = time.monotonic() + 20
            while not state.requests and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.3)  # the other process is now waiting on the lock, not downloading
            assert len(state.requests) == 1
            state.release.set()
            outputs = []
            for child in children:
                out, err = child.communicate(timeout=30)
                assert child.returncode == 0, err
                outputs.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for child in children:
                child.kill()
        assert state.requests == [("/blob.bin", None)]  # exactly one download
    assert {o["path"] for o in outputs} == {str(directory / "blob.bin")}
    assert {o["sha256"] for o in outputs} == {sha}
    # One downloaded it; the other waited and found the verified file.
    assert sorted(o["url"] is None for o in outputs) == [False, True]
    assert (directory / "blob.bin").read_bytes() == data
    assert files_in(directory) == ["blob.bin"]  # no .part, no .lock left


def test_lock_file_is_removed_and_reusable(tmp_path):
    target = tmp_path / "x"
    with hub.file_lock(target):
        assert (tmp_path / "x.lock").exists()
    assert not (tmp_path / "x.lock").exists()
    with hub.file_lock(target):  # a removed lock file is recreated
        pass


def test_sha256_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc" * 1000)
    assert hub.sha256_file(path) == hashlib.sha256(b"abc" * 1000).hexdigest()
    assert hub.file_digests(path)["md5"] == hashlib.md5(b"abc" * 1000).hexdigest()


# ---- archives -----------------------------------------------------------------------------

MEMBERS = {"data/a/x.txt": b"x" * 100, "data/b/y.txt": b"y" * 50, "data/top.txt": b"top"}


def write_zip(path: Path, members: dict[str, bytes], *, symlinks: dict[str, str] = {}) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
        for name, target in symlinks.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def write_tar(path: Path, members: dict[str, bytes], *, symlinks: dict[str, str] = {}) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in symlinks.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return path


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_extraction_with_root_and_progress(kind, tmp_path):
    writer = write_zip if kind == "zip" else write_tar
    archive = writer(tmp_path / f"a.{kind}", MEMBERS, symlinks={"data/link": "a/x.txt"})
    calls = []
    dest = hub.extract_archive(archive, tmp_path / "out" / "d", root="data", progress=lambda d, t: calls.append((d, t)))
    assert dest == tmp_path / "out" / "d"
    assert files_in(dest) == ["a/x.txt", "b/y.txt", "link", "top.txt"]
    assert (dest / "a" / "x.txt").read_bytes() == MEMBERS["data/a/x.txt"]
    assert (dest / "link").is_symlink() and (dest / "link").read_bytes() == MEMBERS["data/a/x.txt"]
    assert calls[-1][0] == len(MEMBERS) + 1 and calls[-1][1] == (len(MEMBERS) + 1 if kind == "zip" else None)
    assert os.listdir(tmp_path / "out") == ["d"]  # no temporary folder left
    with pytest.raises(NstjaxError, match="already exists"):
        hub.extract_archive(archive, dest, root="data")
    hub.extract_archive(writer(tmp_path / f"b.{kind}", {"data/new.txt": b"n"}), dest, root="data", replace=True)
    assert files_in(dest) == ["new.txt"] and os.listdir(tmp_path / "out") == ["d"]
    with pytest.raises(NstjaxError, match="has no top folder 'other'"):
        hub.extract_archive(archive, tmp_path / "out" / "e", root="other")
    assert os.listdir(tmp_path / "out") == ["d"]


@pytest.mark.parametrize(
    ("members", "symlinks", "message"),
    [
        ({"ok.txt": b"fine", "../evil": b"evil"}, {}, r"refusing to extract '\.\./evil': '\.\.' leads outside"),
        ({"ok.txt": b"fine", "d/../../evil": b"evil"}, {}, r"'\.\.' leads outside"),
        ({"ok.txt": b"fine", "{abs}": b"evil"}, {}, r"refusing to extract '.*evil': an absolute path"),
        ({"ok.txt": b"fine"}, {"link": "../../evil"}, r"refusing to extract link 'link' -> '\.\./\.\./evil': it points outside"),
        ({"ok.txt": b"fine"}, {"link": "{abs}"}, r"refusing to extract link .*: it points outside"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-outside", "symlink-absolute"],
)
@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_unsafe_members_are_refused_and_nothing_is_extracted(kind, members, symlinks, message, tmp_path):
    evil = tmp_path / "evil"
    members = {name.replace("{abs}", str(evil)): data for name, data in members.items()}
    symlinks = {name: target.replace("{abs}", str(evil)) for name, target in symlinks.items()}
    work = tmp_path / "work"
    work.mkdir()
    writer = write_zip if kind == "zip" else write_tar
    archive = writer(tmp_path / f"bad.{kind}", members, symlinks=symlinks)
    with pytest.raises(NstjaxError, match=message) as error:
        hub.extract_archive(archive, work / "out" / "dest")
    assert str(error.value).startswith(f"{archive}: ") and "\n" not in str(error.value)
    assert not evil.exists() and not (work / "evil").exists()
    assert os.listdir(work / "out") == []  # neither the destination nor a temporary folder


def test_interrupted_extraction_leaves_no_final_folder(tmp_path):
    archive = write_zip(tmp_path / "c.zip", {"d/first.txt": b"a" * 1000, "d/second.txt": b"b" * 1000})
    raw = bytearray(archive.read_bytes())
    raw[raw.index(b"b" * 1000) + 500] ^= 0xFF  # the second member's data no longer matches its CRC
    archive.write_bytes(bytes(raw))
    seen = []
    with pytest.raises(NstjaxError, match="corrupt or truncated archive .*nothing was extracted"):
        hub.extract_archive(archive, tmp_path / "out" / "dest", progress=lambda d, t: seen.append(d))
    assert seen == [1]  # the first member had been written when the second failed
    assert os.listdir(tmp_path / "out") == []


def test_truncated_tar_gz_leaves_no_final_folder(tmp_path):
    archive = write_tar(tmp_path / "t.tar.gz", {f"d/{i}.bin": os.urandom(20_000) for i in range(4)})
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(NstjaxError, match="corrupt or truncated archive"):
        hub.extract_archive(archive, tmp_path / "out" / "dest")
    assert os.listdir(tmp_path / "out") == []


def test_not_an_archive(tmp_path):
    with pytest.raises(NstjaxError, match="not a .zip or .tar"):
        hub.extract_archive(tmp_path / "x.rar", tmp_path / "d")
    (tmp_path / "x.zip").write_bytes(b"not a zip at all")
    with pytest.raises(NstjaxError, match="corrupt or truncated archive"):
        hub.extract_archive(tmp_path / "x.zip", tmp_path / "d")
    assert not (tmp_path / "d").exists()
