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

One job per module: ``_cache`` (locations, timestamps, write errors), ``_manifest``
(describing files), ``_checksum`` (digests, trust on first use), ``_lock``,
``_download`` and ``_extract``; the names below are the package's interface.
"""

from ._cache import cache_dir, downloads_dir, timestamp, trust_path, writing_to
from ._checksum import (
    digests_for,
    expected_digest,
    file_digests,
    record_trust,
    sha256_file,
    trusted_sha256,
    verify_digests,
)
from ._download import DownloadError, fetch_file
from ._extract import archive_kind, extract_archive, move_into_place
from ._lock import file_lock
from ._manifest import (
    CHECKSUM_ALGORITHMS,
    Checksum,
    FetchedFile,
    ProgressCallback,
    RemoteFile,
    read_manifest,
    remote_file,
)

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
