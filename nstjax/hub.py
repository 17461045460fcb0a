"""Downloads and the cache: where nstjax keeps what it fetches, and how it fetches it.

Everything fetched or converted lives under :func:`cache_dir`. A file to fetch
is described by a :class:`RemoteFile` (file name, mirrors, :class:`Checksum`,
size when known), usually read from a manifest in ``nstjax/manifests/``.
:func:`fetch_file` downloads it into the cache:

* resumable: the download grows in ``<file>.part`` and an interrupted one
  continues with an HTTP ``Range`` request (a server without range support, or
  one that answers 416 because the partial file is no prefix of its file,
  makes it start again from zero); a connection dropped midway is resumed a
  few times while it makes progress, after which the partial file is kept for
  the next run;
* checksummed: MD5, SHA-256, a published SHA-256 prefix, or trust on first use
  (nothing published: the SHA-256 seen first is recorded in ``trust.json`` by
  the caller, once it has checked the contents, and every later copy must
  match it). A file is only renamed to its final name once verified; a
  mismatching download is deleted;
* mirrors are tried in order; :class:`DownloadError` tells an unreachable
  network (``offline``) from HTTP errors, dropped transfers and mismatches;
* locked: two processes fetching the same file take turns on an ``flock`` of
  ``<file>.lock`` (:func:`file_lock`); the second finds the verified file and
  downloads nothing.

:func:`extract_archive` unpacks a ``.zip`` or ``.tar(.gz|.bz2|.xz)`` into a
temporary folder beside its destination and renames it into place, so a
half-extracted folder never appears under the final name; members with
absolute paths, ``..`` components, links leading outside or device files are
refused before anything is written.

The library never prints: downloads report ``progress(done, total)``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import NstjaxError
from .io.atomic import atomic_path

try:  # POSIX; elsewhere fetches are not locked against each other
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CHECKSUM_ALGORITHMS",
    "Checksum",
    "DownloadError",
    "FetchedFile",
    "ProgressCallback",
    "RemoteFile",
    "archive_kind",
    "cache_dir",
    "digests_for",
    "downloads_dir",
    "expected_digest",
    "extract_archive",
    "fetch_file",
    "file_digests",
    "file_lock",
    "move_into_place",
    "read_manifest",
    "record_trust",
    "remote_file",
    "sha256_file",
    "timestamp",
    "trust_path",
    "trusted_sha256",
    "verify_digests",
    "writing_to",
]

CHECKSUM_ALGORITHMS = ("md5", "sha256", "sha256-prefix", "tofu-sha256")
_CHUNK = 1 << 20
_MAX_RESUMES = 3  # automatic Range resumes of one URL within a single fetch
_USER_AGENT = "nstjax-fetcher (Python urllib)"

ProgressCallback = Callable[[int, "int | None"], None]
"""``progress(done, total_or_None)``: bytes of a download, or members of an extraction."""


# --------------------------------------------------------------------------
# Cache locations
# --------------------------------------------------------------------------


def cache_dir() -> Path:
    """Cache directory: ``$NSTJAX_CACHE``, else ``$XDG_CACHE_HOME/nstjax``, else ``~/.cache/nstjax``.

    Not created here; writers create it on demand.
    """
    if os.environ.get("NSTJAX_CACHE"):
        return Path(os.environ["NSTJAX_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore relative values
        return Path(xdg) / "nstjax"
    return Path.home() / ".cache" / "nstjax"


def downloads_dir() -> Path:
    """Where verified upstream files (and ``.part`` partial downloads) are kept: ``<cache>/downloads``."""
    return cache_dir() / "downloads"


def trust_path() -> Path:
    """The trust-on-first-use record: ``<cache>/trust.json``."""
    return cache_dir() / "trust.json"


def timestamp() -> str:
    """Now, UTC, ISO 8601 to the second (``2024-05-01T12:00:00+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@contextlib.contextmanager
def writing_to(path: str | os.PathLike) -> Iterator[None]:
    """Report a failed write (full disk, read-only cache, permissions) as an NstjaxError on ``path``."""
    try:
        yield
    except OSError as e:
        raise NstjaxError(f"cannot write ({e.strerror or e})", path) from None


# --------------------------------------------------------------------------
# Describing files
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Checksum:
    """How a downloaded file is verified.

    ``algorithm``: ``"md5"`` or ``"sha256"`` (``hex`` is the full digest),
    ``"sha256-prefix"`` (``hex`` is a published prefix of the SHA-256, as in torch
    hub file names; the full digest is unknown) or ``"tofu-sha256"`` (nothing is
    published; the SHA-256 seen on first use is recorded in ``trust.json``).
    """

    algorithm: str
    hex: str | None = None

    def describe(self) -> str:
        if self.algorithm == "tofu-sha256":
            return "sha256 recorded on first use"
        if self.algorithm == "sha256-prefix":
            return f"sha256 {self.hex}…"
        return f"{self.algorithm} {self.hex}"


@dataclass(frozen=True)
class RemoteFile:
    """A file to download: where from, and how to know it is the right one.

    Attributes:
      filename: its name in the cache (a plain name, no folders).
      urls: mirrors, tried in order.
      checksum: see :class:`Checksum`.
      size: its size in bytes when published (checked before hashing), else None.
      name: what it belongs to (``"gatys"``, ``"facades"``), recorded with a
        trust-on-first-use digest.
      label: how messages name it (``"the keras weights"``); default: the file name.
      offline_hint: appended in brackets to the error when no server could be reached.
    """

    filename: str
    urls: tuple[str, ...]
    checksum: Checksum
    size: int | None = None
    name: str = ""
    label: str = ""
    offline_hint: str = ""

    def __post_init__(self) -> None:
        # The name comes from a manifest and becomes a cache path: no folders, no "..".
        if not self.filename or self.filename in (".", "..") or re.search(r"[/\\\0]", self.filename):
            raise NstjaxError(f"manifest: {self.filename!r} is not a plain file name")
        if self.checksum.algorithm not in CHECKSUM_ALGORITHMS:
            raise NstjaxError(
                f"manifest: unknown checksum algorithm {self.checksum.algorithm!r} for {self.name or self.filename}"
            )


@dataclass(frozen=True)
class FetchedFile:
    """A verified file in the cache (:func:`fetch_file`).

    ``digests``: ``{"sha256": hex}`` plus ``"md5"`` when the checksum is MD5.
    ``verified``: True when it matched the published (or recorded) checksum;
    None for trust on first use with nothing recorded yet. ``url``: where it
    was just downloaded from; None when it was already in the cache.
    """

    path: Path
    digests: dict[str, str] = field(default_factory=dict)
    verified: bool | None = None
    url: str | None = None


def read_manifest(name: str) -> dict[str, Any]:
    """``nstjax/manifests/<name>.json`` (shipped in the wheel as package data) as a dict."""
    path = Path(__file__).resolve().parent / "manifests" / f"{name}.json"
    if not path.is_file():
        raise NstjaxError(f"{name} manifest not found (broken installation?)", path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise NstjaxError(f"unreadable {name} manifest ({e})", path) from None


def remote_file(entry: Mapping[str, Any], **fields: Any) -> RemoteFile:
    """A :class:`RemoteFile` from a manifest entry with ``filename``, ``urls``,
    ``checksum: {algorithm, hex}`` and optionally ``size``; ``fields`` (``name``,
    ``label``, ``offline_hint``) are passed on."""
    try:
        checksum = entry["checksum"]
        return RemoteFile(
            filename=str(entry["filename"]),
            urls=tuple(str(u) for u in entry["urls"]),
            checksum=Checksum(str(checksum["algorithm"]), checksum.get("hex")),
            size=None if entry.get("size") is None else int(entry["size"]),
            **fields,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise NstjaxError(f"manifest entry {fields.get('name', '?')!r} is malformed ({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------
# Digests and trust on first use
# --------------------------------------------------------------------------


def file_digests(path: str | os.PathLike, md5: bool = True) -> dict[str, str]:
    """SHA-256 (and MD5 unless ``md5=False``) of a file, in one pass: ``{"sha256": hex, "md5": hex}``."""
    hashes = {"sha256": hashlib.sha256()}
    if md5:  # MD5 is twice as slow as hardware SHA-256; ask for it only when needed
        hashes["md5"] = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
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


def _verify_path(remote: RemoteFile, path: Path) -> tuple[bool | None, str, dict[str, str]]:
    """(verified, problem when not verified, digests): the size first (cheap), then the checksum."""
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        return False, f"size mismatch for {remote.filename}: expected {remote.size} bytes, got {size}", {}
    digests = digests_for(remote, path)
    ok, expected, got = verify_digests(remote, digests)
    return ok, f"checksum mismatch for {remote.filename}: expected {expected}, got {got}", digests


# --------------------------------------------------------------------------
# Locks
# --------------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(target: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<target>.lock`` (created, and removed on release).

    Another process (or thread) asking for the same lock waits until this one
    is released. The holder removes the lock file before releasing it, so a
    waiter that then wins the lock on the removed file notices (the path no
    longer names its file) and locks afresh. Not re-entrant: do not take the
    same lock twice in one thread.

    Where the lock file cannot be created (a read-only cache, copied from
    another machine) nothing can be written there either, so the caller goes
    on unlocked and only reads.
    """
    lock = Path(os.fspath(target) + ".lock")
    fd = _acquire(lock) if fcntl is not None else None
    try:
        yield
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(lock)
            os.close(fd)  # releases the flock


def _acquire(lock: Path) -> int | None:
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                return None
            raise NstjaxError(f"cannot create lock file ({e.strerror or e})", lock) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            mine = os.fstat(fd)
            try:
                now = os.stat(lock)
            except FileNotFoundError:
                now = None
        except BaseException:
            os.close(fd)
            raise
        if now is not None and (now.st_ino, now.st_dev) == (mine.st_ino, mine.st_dev):
            return fd
        os.close(fd)  # the previous holder removed this file: lock the current one


# --------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------


class DownloadError(NstjaxError):
    """A download failed. ``offline`` is True when no server could be reached at all
    (DNS failure, connection refused, timeout) as opposed to an HTTP error, a
    dropped transfer or a checksum mismatch; ``mismatch`` is True when a file
    arrived but was not the expected one (checksum or size)."""

    def __init__(
        self,
        problem: str,
        path: str | os.PathLike | None = None,
        *,
        offline: bool = False,
        mismatch: bool = False,
    ):
        super().__init__(problem, path)
        self.offline = offline
        self.mismatch = mismatch


_NO_ROUTE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL}


def _is_offline(error: BaseException) -> bool:
    """True for "cannot reach the server" failures (no network: DNS failure, connection
    refused, timeout, no route), False for HTTP, TLS, bad-URL or local-file problems."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, ssl.SSLError):
        return False  # a TLS failure is a configuration problem, not absence of network
    if isinstance(reason, (socket.gaierror, socket.herror, ConnectionError, TimeoutError)):
        return True
    return isinstance(reason, OSError) and reason.errno in _NO_ROUTE_ERRNOS


def _describe(error: BaseException) -> str:
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    return str(reason) or type(reason).__name__


def _parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """``"bytes 100-199/200"`` -> (100, 200); total None for ``*``."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value or "")
    if not match:
        return None
    return int(match.group(1)), None if match.group(2) == "*" else int(match.group(2))


def _download(url: str, part: Path, progress: ProgressCallback | None, timeout: float, size: int | None) -> bool:
    """Download ``url`` into ``part``, resuming an existing ``part`` with HTTP Range.

    A server that answers 206 gets the rest appended; one that answers 200
    ignores ranges, and the file restarts from zero. A transfer that ends early
    (connection dropped, timeout) is resumed up to ``_MAX_RESUMES`` times while it
    makes progress; after that the ``.part`` is kept for a later run. ``size``
    (when published) is the total shown when the server announces none.

    Returns whether any bytes came from before this call (a resume), so a
    checksum failure can retry from scratch once. Raises DownloadError (its
    path is ``url``).
    """
    resumed_old = part.exists() and part.stat().st_size > 0
    resumes = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:  # our partial file is no prefix of this one: start over
                part.unlink()
                resumed_old = False
                continue
            raise DownloadError(f"HTTP {e.code} {e.reason}", url) from None
        except ValueError as e:  # malformed or unsupported URL
            raise DownloadError(f"bad URL ({e})", url) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            raise DownloadError(_describe(e), url, offline=_is_offline(e)) from None

        with response:
            status = getattr(response, "status", None) or 200  # file:// URLs have no status
            content_range = _parse_content_range(response.headers.get("Content-Range"))
            if offset and status == 206 and content_range is not None and content_range[0] == offset:
                mode, total = "ab", content_range[1]
            else:
                # No (usable) range support: start again from the first byte.
                offset, mode, resumed_old = 0, "wb", False
                length = response.headers.get("Content-Length", "")
                total = int(length) if length.strip().isdigit() else None
            shown = total if total is not None else size
            done, dropped = offset, None
            with writing_to(part):  # network errors are caught inside; what escapes is the disk's
                part.parent.mkdir(parents=True, exist_ok=True)
                with open(part, mode) as fh:
                    if progress:
                        progress(done, shown)
                    while True:
                        try:
                            chunk = response.read(_CHUNK)
                        except (OSError, http.client.HTTPException) as e:  # reset, timeout, bad chunking
                            dropped = _describe(e)
                            break
                        if not chunk:
                            break
                        fh.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, shown)

        if total is not None and done > total:
            part.unlink()
            raise DownloadError(f"server sent {done} bytes, more than the {total} it announced", url)
        # http.client reports a body cut short as a clean EOF, so compare with the length.
        if dropped is None and (total is None or done == total):
            return resumed_old
        if done > offset and resumes < _MAX_RESUMES:
            resumes += 1
            continue
        amount = f"{done} of {total}" if total is not None else f"{done}"
        raise DownloadError(
            f"connection dropped after {amount} bytes ({dropped or 'transfer ended early'}); "
            f"the partial download is kept in {part}, run the command again to resume",
            url,
        )


def fetch_file(
    remote: RemoteFile,
    directory: str | os.PathLike | None = None,
    *,
    urls: tuple[str, ...] | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
    timeout: float = 30.0,
) -> FetchedFile:
    """A verified copy of ``remote`` in ``directory`` (default :func:`downloads_dir`), downloaded if needed.

    A verified file already there is returned without any request. The
    download grows in ``<file>.part`` and is renamed to its final name only
    once its size and checksum match, so an unverified or partial file never
    sits under the final name. Two processes fetching the same file take turns
    (:func:`file_lock`): the second finds the first one's verified file.

    Args:
      remote: what to fetch.
      directory: the cache subfolder; created on demand.
      urls: try these instead of ``remote.urls`` (the checksum still applies).
      force: delete any cached copy (and partial download) first.
      progress: ``progress(bytes_done, total_or_None)`` during the download.
      timeout: seconds to wait on the network for any one operation.

    Returns:
      The :class:`FetchedFile`. For trust on first use with nothing recorded,
      ``verified`` is None: the caller checks the contents, then calls
      :func:`record_trust`.

    Raises:
      DownloadError: every URL failed (``offline`` when none could be reached)
        or the file was not the expected one (``mismatch``; the download is deleted).
    """
    directory = Path(directory) if directory is not None else downloads_dir()
    final = directory / remote.filename
    part = final.with_name(final.name + ".part")
    with file_lock(final):
        if force:
            with writing_to(final):
                final.unlink(missing_ok=True)
                part.unlink(missing_ok=True)
        if final.exists():
            ok, _, digests = _verify_path(remote, final)
            if ok is not False:
                return FetchedFile(final, digests, ok)
            with writing_to(final):
                final.unlink()  # stale or damaged: fetch again

        failures: list[DownloadError] = []
        for candidate in urls or remote.urls:
            try:
                resumed = _download(candidate, part, progress, timeout, remote.size)
                ok, problem, digests = _verify_path(remote, part)
                if ok is False and resumed:
                    # The old partial may belong to another version of the file: retry cleanly once.
                    part.unlink()
                    _download(candidate, part, progress, timeout, remote.size)
                    ok, problem, digests = _verify_path(remote, part)
                if ok is False:
                    part.unlink()
                    raise DownloadError(f"{problem}; the download was deleted", candidate, mismatch=True)
                with writing_to(final):
                    os.replace(part, final)
                return FetchedFile(final, digests, ok, candidate)
            except DownloadError as e:
                failures.append(e)

    mismatches = [f for f in failures if f.mismatch]
    if mismatches:
        raise mismatches[0]
    detail = "; ".join(str(f) for f in failures) or "no URL to download from"
    offline = bool(failures) and all(f.offline for f in failures)
    hint = f" ({remote.offline_hint})" if offline and remote.offline_hint else ""
    raise DownloadError(
        f"could not download {remote.label or remote.filename} ({remote.filename}): {detail}{hint}", offline=offline
    )


# --------------------------------------------------------------------------
# Archives
# --------------------------------------------------------------------------

_TAR_FILTER_ERRORS = getattr(tarfile, "FilterError", ())  # Python >= 3.11.4
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def archive_kind(path: str | os.PathLike) -> str:
    """``"zip"`` or ``"tar"`` (any compression) from the file name; NstjaxError otherwise."""
    name = os.fspath(path).lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(_TAR_SUFFIXES):
        return "tar"
    raise NstjaxError("not a .zip or .tar(.gz|.bz2|.xz) archive", path)


def _member_parts(name: str, archive: Path) -> list[str]:
    """The path components of an archive member; NstjaxError for absolute paths and ``..``."""
    unified = name.replace("\\", "/")
    if unified.startswith("/") or re.match(r"[A-Za-z]:", unified):
        raise NstjaxError(f"refusing to extract {name!r}: an absolute path (unsafe archive); nothing was extracted", archive)
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise NstjaxError(
            f"refusing to extract {name!r}: '..' leads outside the destination (unsafe archive); nothing was extracted",
            archive,
        )
    return parts


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _check_link(name: str, parts: list[str], target: str, root: Path, archive: Path) -> None:
    """Refuse a (sym or hard) link whose target is absolute or resolves outside ``root``."""
    unified = target.replace("\\", "/")
    base = os.path.realpath(root.joinpath(*parts[:-1])) if len(parts) > 1 else os.path.realpath(root)
    resolved = os.path.realpath(os.path.join(base, unified))
    if unified.startswith("/") or re.match(r"[A-Za-z]:", unified) or not _inside(resolved, os.path.realpath(root)):
        raise NstjaxError(
            f"refusing to extract link {name!r} -> {target!r}: it points outside the destination (unsafe archive); "
            "nothing was extracted",
            archive,
        )


def _member_path(parts: list[str], root: Path, name: str, archive: Path) -> Path:
    """Where a member goes, after checking that no symlink extracted earlier leads it outside ``root``."""
    dest = root.joinpath(*parts)
    real_root = os.path.realpath(root)
    if not _inside(os.path.realpath(dest.parent), real_root) or dest.is_symlink():
        raise NstjaxError(f"refusing to extract {name!r}: it would be written through a link (unsafe archive)", archive)
    return dest


def _extract_zip(archive: Path, root: Path, progress: ProgressCallback | None) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        # Check every name before writing anything.
        checked = [(info, _member_parts(info.filename, archive)) for info in infos]
        total = len(checked)
        for done, (info, parts) in enumerate(checked, 1):
            if parts:
                mode = info.external_attr >> 16
                if info.is_dir():
                    root.joinpath(*parts).mkdir(parents=True, exist_ok=True)
                elif stat.S_ISLNK(mode):
                    target = zf.read(info).decode("utf-8", "surrogateescape")
                    _check_link(info.filename, parts, target, root, archive)
                    dest = _member_path(parts, root, info.filename, archive)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(target, dest)
                else:
                    dest = _member_path(parts, root, info.filename, archive)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out, _CHUNK)  # the CRC is checked at the member's end
            if progress:
                progress(done, total)


def _extract_tar(archive: Path, root: Path, progress: ProgressCallback | None) -> None:
    safe = getattr(tarfile, "data_filter", None)  # Python >= 3.11.4: also strips odd permissions
    with tarfile.open(archive, "r:*") as tf:
        done = 0
        for member in tf:  # streamed: a .tar.gz is decompressed once
            parts = _member_parts(member.name, archive)
            if member.issym():
                _check_link(member.name, parts, member.linkname, root, archive)
            elif member.islnk():  # a hard link names another member, relative to the archive root
                linked = root.joinpath(*_member_parts(member.linkname, archive))
                if not _inside(os.path.realpath(linked), os.path.realpath(root)):
                    raise NstjaxError(
                        f"refusing to extract link {member.name!r} -> {member.linkname!r}: it points outside the "
                        "destination (unsafe archive); nothing was extracted",
                        archive,
                    )
            elif not (member.isfile() or member.isdir()):
                raise NstjaxError(f"refusing to extract {member.name!r}: a device, FIFO or other special file", archive)
            if parts:
                _member_path(parts, root, member.name, archive)
                if safe is not None:
                    tf.extract(member, root, set_attrs=False, filter=safe)
                else:  # pragma: no cover - older Pythons: the checks above are all there is
                    tf.extract(member, root, set_attrs=False)
            done += 1
            if progress:
                progress(done, None)


def move_into_place(source: str | os.PathLike, destination: str | os.PathLike, *, replace: bool = False) -> Path:
    """Rename the folder ``source`` to ``destination`` (same file system), atomically.

    With ``replace``, an existing ``destination`` is first moved aside under a
    hidden name and removed after the rename; otherwise its existence is an
    NstjaxError. ``destination`` never names a partial folder.
    """
    source, destination = Path(source), Path(destination)
    with writing_to(destination):
        if destination.exists() or destination.is_symlink():
            if not replace:
                raise NstjaxError("already exists", destination)
            old = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:8]}.old")
            os.rename(destination, old)
            try:
                os.rename(source, destination)
            except BaseException:
                os.rename(old, destination)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(source, destination)
    return destination


def extract_archive(
    archive: str | os.PathLike,
    destination: str | os.PathLike,
    *,
    kind: str | None = None,
    root: str | None = None,
    replace: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    """Extract ``archive`` into the new folder ``destination``, atomically; return ``destination``.

    Members are written into a temporary folder beside ``destination``
    (``.<name>.<random>.extracting``), which is renamed to ``destination`` only
    once everything is out: an interrupted or failed extraction (a corrupt
    member, a full disk, Ctrl-C) leaves no folder under the final name and no
    temporary one. Refused before anything is written (zip) or before the
    offending member (tar; the temporary folder is then removed): absolute
    member paths, ``..`` components, links that lead outside, device files.

    Args:
      archive: a ``.zip`` or ``.tar``/``.tar.gz``/``.tgz``/``.tar.bz2``/``.tar.xz``.
      destination: the folder to create (its parent is created if needed).
      kind: ``"zip"`` or ``"tar"``; default: from the file name (:func:`archive_kind`).
      root: a folder inside the archive whose contents become ``destination``
        (CycleGAN zips hold ``<name>/trainA`` …); default: the whole archive.
      replace: replace an existing ``destination`` (see :func:`move_into_place`).
      progress: ``progress(members_done, members_total_or_None)``.

    Raises:
      NstjaxError: unsafe member, corrupt or truncated archive, missing
        ``root``, ``destination`` already exists, or the disk refused a write.
    """
    archive, destination = Path(archive), Path(destination)
    kind = archive_kind(archive) if kind is None else kind
    if kind in ("tar.gz", "tgz", "tar.bz2", "tar.xz"):
        kind = "tar"
    if kind not in ("zip", "tar"):
        raise NstjaxError(f"unknown archive format {kind!r} (zip or tar)", archive)
    if not archive.is_file():
        raise NstjaxError("no such archive", archive)
    if not replace and (destination.exists() or destination.is_symlink()):
        raise NstjaxError("already exists", destination)
    with writing_to(destination):
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".extracting", dir=destination.parent))
    try:
        tree = staging / "tree"
        tree.mkdir()
        try:
            (_extract_zip if kind == "zip" else _extract_tar)(archive, tree, progress)
        except NstjaxError:
            raise
        except _TAR_FILTER_ERRORS as e:  # tarfile's own safety filter, should ours have missed a case
            raise NstjaxError(f"refusing to extract: {e} (unsafe archive); nothing was extracted", archive) from None
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, ValueError, UnicodeError) as e:
            raise NstjaxError(f"corrupt or truncated archive ({type(e).__name__}: {e}); nothing was extracted", archive) from None
        except OSError as e:
            if e.errno is None:  # e.g. gzip.BadGzipFile: the archive, not the disk
                raise NstjaxError(f"corrupt or truncated archive ({e}); nothing was extracted", archive) from None
            raise NstjaxError(f"cannot extract ({e.strerror or e}); nothing was extracted", destination) from None
        content = tree
        if root is not None:
            content = tree.joinpath(*_member_parts(root, archive))
            if not content.is_dir() or content.is_symlink():
                tops = sorted(p.name for p in tree.iterdir())[:5]
                raise NstjaxError(
                    f"has no top folder {root!r} (it holds: {', '.join(tops) or 'nothing'}); nothing was extracted",
                    archive,
                )
        return move_into_place(content, destination, replace=replace)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
