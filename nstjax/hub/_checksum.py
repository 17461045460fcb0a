"""Digests of files, what a file is expected to hash to, and the trust-on-first-use record."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import NstjaxError
from ..io.atomic import atomic_path
from ._cache import CHUNK_BYTES, timestamp, trust_path, writing_to
from ._lock import file_lock
from ._manifest import RemoteFile


def file_digests(path: str | os.PathLike, md5: bool = True) -> dict[str, str]:
    """SHA-256 (and MD5 unless ``md5=False``) of a file, in one pass: ``{"sha256": hex, "md5": hex}``."""
    hashes = {"sha256": hashlib.sha256()}
    if md5:  # MD5 is twice as slow as hardware SHA-256; ask for it only when needed
        hashes["md5"] = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            for h in hashes.values():
                h.update(chunk)
    return {name: h.hexdigest() for name, h in hashes.items()}


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    return file_digests(path, md5=False)["sha256"]


def digests_for(remote: RemoteFile, path: str | os.PathLike) -> dict[str, str]:
    """The digests needed to verify and describe ``path`` as ``remote`` (MD5 only when it is the checksum)."""
    return file_digests(path, md5=remote.checksum.algorithm == "md5")


def _read_trust() -> dict[str, Any]:
    path = trust_path()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return dict(data["files"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        # Not silently re-trusting: a damaged record must be looked at.
        raise NstjaxError(f"unreadable trust-on-first-use record ({e}); delete it to re-trust", path) from None


def trusted_sha256(filename: str) -> str | None:
    """The SHA-256 recorded on first use for ``filename``, or None."""
    entry = _read_trust().get(filename)
    return entry.get("sha256") if isinstance(entry, Mapping) else None


def record_trust(remote: RemoteFile, sha256: str) -> None:
    """Record ``sha256`` as the trusted digest of ``remote.filename`` (atomic, locked).

    Callers record only after checking the contents (a converted weights file,
    an extracted dataset), so an error page is never trusted.
    """
    path = trust_path()
    with writing_to(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path):  # read-modify-write: two processes must not lose each other's record
        files = _read_trust()
        files[remote.filename] = {"source": remote.name, "sha256": sha256, "recorded": timestamp()}
        with writing_to(path), atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"format_version": 1, "files": files}, indent=2, sort_keys=True) + "\n")


def expected_digest(remote: RemoteFile) -> tuple[str, str | None]:
    """(digest name, expected hex or prefix) for ``remote``; hex None means nothing known yet."""
    algorithm = remote.checksum.algorithm
    if algorithm == "md5":
        return "md5", remote.checksum.hex
    if algorithm in ("sha256", "sha256-prefix"):
        return "sha256", remote.checksum.hex
    return "sha256", trusted_sha256(remote.filename)  # tofu-sha256 (checked in RemoteFile)


def verify_digests(remote: RemoteFile, digests: Mapping[str, str]) -> tuple[bool | None, str, str]:
    """Compare a file's digests with what is expected of ``remote``.

    Returns (verified, expected description, actual description); verified is
    None when nothing is known yet (trust on first use, not recorded).
    """
    name, expected = expected_digest(remote)
    got = digests.get(name, "")
    if expected is None:
        return None, "nothing recorded yet", f"{name} {got}"
    prefix = remote.checksum.algorithm == "sha256-prefix"
    ok = got.startswith(expected.lower()) if prefix else got == expected.lower()
    what = f"{name} {expected}" + ("…" if prefix else "")
    if remote.checksum.algorithm == "tofu-sha256":
        what += f" (recorded on first use in {trust_path()})"
    return ok, what, f"{name} {got}"


def verify_path(remote: RemoteFile, path: Path) -> tuple[bool | None, str, dict[str, str]]:
    """(verified, problem when not verified, digests): the size first (cheap), then the checksum."""
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        return False, f"size mismatch for {remote.filename}: expected {remote.size} bytes, got {size}", {}
    digests = digests_for(remote, path)
    ok, expected, got = verify_digests(remote, digests)
    return ok, f"checksum mismatch for {remote.filename}: expected {expected}, got {got}", digests
