"""Resumable, checksummed, locked downloads from a list of mirrors (:func:`fetch_file`)."""

from __future__ import annotations

import errno
import http.client
import os
import re
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import NstjaxError
from ._cache import CHUNK_BYTES, downloads_dir, writing_to
from ._checksum import verify_path
from ._lock import file_lock
from ._manifest import FetchedFile, ProgressCallback, RemoteFile

_MAX_RESUMES = 3  # automatic Range resumes of one URL within a single fetch
_USER_AGENT = "nstjax-fetcher (Python urllib)"


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


def _transfer(url: str, part: Path, progress: ProgressCallback | None, timeout: float, size: int | None) -> bool:
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
                            chunk = response.read(CHUNK_BYTES)
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
            ok, _, digests = verify_path(remote, final)
            if ok is not False:
                return FetchedFile(final, digests, ok)
            with writing_to(final):
                final.unlink()  # stale or damaged: fetch again

        failures: list[DownloadError] = []
        for candidate in urls or remote.urls:
            try:
                resumed = _transfer(candidate, part, progress, timeout, remote.size)
                ok, problem, digests = verify_path(remote, part)
                if ok is False and resumed:
                    # The old partial may belong to another version of the file: retry cleanly once.
                    part.unlink()
                    _transfer(candidate, part, progress, timeout, remote.size)
                    ok, problem, digests = verify_path(remote, part)
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
