"""The datasets nstjax can download, from ``nstjax/manifests/datasets.json``.

Each entry names one or more published files (URLs, size, checksum, archive
format, the folder inside the archive that holds the data), the folders that
must exist once extracted, who uses it (``cyclegan``, ``sketch2photo``,
``fast``), its licence or terms and its homepage. :func:`fetch_dataset`
downloads (resumable, checksummed, locked: :func:`nstjax.hub.fetch_file`) and
extracts atomically into ``<cache>/datasets/<name>/``::

    <cache>/downloads/<archive>(.part)      while downloading (removed once extracted)
    <cache>/datasets/<name>/                the extracted data, e.g. trainA/ trainB/ testA/ testB/
    <cache>/datasets/<name>/.nstjax-dataset.json   what it was extracted from (written last)
    <cache>/trust.json                      SHA-256 recorded on first use (no published checksum)

The folder appears under its final name only when complete: it is built in a
hidden temporary folder beside it and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import hub
from ..errors import NstjaxError
from ..hub import Checksum, ProgressCallback

__all__ = [
    "MARKER",
    "Dataset",
    "DatasetFile",
    "DatasetStatus",
    "dataset_path",
    "datasets",
    "datasets_dir",
    "fetch_dataset",
    "get_dataset",
    "list_datasets",
    "load_manifest",
]

MARKER = ".nstjax-dataset.json"
"""Written into an extracted dataset folder, last: what it came from."""

_FORMAT = "nstjax-dataset"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class DatasetFile:
    """One published file of a dataset.

    ``archive``: ``"zip"``, ``"tar"``, ``"tar.gz"`` … or None for a plain file
    (copied as is). ``root``: the folder inside the archive whose contents form
    the dataset folder (None: the whole archive). ``checksum_note``: where the
    checksum comes from.
    """

    filename: str
    urls: tuple[str, ...]
    checksum: Checksum
    size: int | None = None
    archive: str | None = None
    root: str | None = None
    checksum_note: str = ""

    def remote(self, dataset: str) -> hub.RemoteFile:
        """This file as :func:`nstjax.hub.fetch_file` downloads it."""
        return hub.RemoteFile(
            filename=self.filename,
            urls=self.urls,
            checksum=self.checksum,
            size=self.size,
            name=dataset,
            label=f"the {dataset} dataset",
            offline_hint=(
                f"no network? download {self.urls[0] if self.urls else self.filename} on another machine "
                f"and copy it to {hub.downloads_dir() / self.filename}, then run `nstjax data fetch {dataset}` again"
            ),
        )


@dataclass(frozen=True)
class Dataset:
    """A manifest entry. ``layout``: folders (relative, ``/``-separated) that must exist once extracted."""

    name: str
    description: str
    used_by: tuple[str, ...]
    files: tuple[DatasetFile, ...]
    layout: tuple[str, ...]
    licence: str
    homepage: str
    layout_note: str = ""

    @property
    def size(self) -> int | None:
        """Bytes to download, None when a file's size is not published."""
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[misc]


@dataclass(frozen=True)
class DatasetStatus:
    """A dataset and its state in the cache (:func:`list_datasets`).

    ``cached``: a complete extracted folder at ``path`` that came from the files
    the manifest names now. ``problem``: why a folder at ``path`` is not used
    (an older or unverified file); :func:`fetch_dataset` replaces it.
    ``partial_bytes``: bytes of interrupted downloads waiting to be resumed.
    """

    dataset: Dataset
    path: Path
    cached: bool
    problem: str | None = None
    partial_bytes: int = 0

    @property
    def name(self) -> str:
        return self.dataset.name


_DATASETS: dict[str, Dataset] | None = None


def load_manifest() -> dict[str, Any]:
    """The raw manifest (``nstjax/manifests/datasets.json``) as a dict."""
    return hub.read_manifest("datasets")


def _dataset(name: str, entry: Mapping[str, Any]) -> Dataset:
    try:
        files = []
        for f in entry["files"]:
            remote = hub.remote_file(f, name=name)  # checks the file name and checksum algorithm
            files.append(
                DatasetFile(
                    filename=remote.filename,
                    urls=remote.urls,
                    checksum=remote.checksum,
                    size=remote.size,
                    archive=f.get("archive"),
                    root=f.get("root"),
                    checksum_note=str(f["checksum"].get("note", "")),
                )
            )
        return Dataset(
            name=name,
            description=str(entry["description"]),
            used_by=tuple(entry["used_by"]),
            files=tuple(files),
            layout=tuple(entry.get("layout", ())),
            licence=str(entry["licence"]),
            homepage=str(entry["homepage"]),
            layout_note=str(entry.get("layout_note", "")),
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise NstjaxError(f"datasets manifest: entry {name!r} is malformed ({type(e).__name__}: {e})") from None


def datasets() -> dict[str, Dataset]:
    """Every dataset by name, in manifest order. Built once and shared; tests may patch entries."""
    global _DATASETS
    if _DATASETS is None:
        _DATASETS = {name: _dataset(name, entry) for name, entry in load_manifest()["datasets"].items()}
    return _DATASETS


def get_dataset(name: str) -> Dataset:
    """The :class:`Dataset` called ``name``; NstjaxError listing the valid names otherwise."""
    try:
        return datasets()[name]
    except KeyError:
        raise NstjaxError(f"unknown dataset {name!r}; choose one of: {', '.join(datasets())}") from None


def datasets_dir() -> Path:
    """``<cache>/datasets``."""
    return hub.cache_dir() / "datasets"


def dataset_path(name: str) -> Path:
    """Where dataset ``name`` is (or would be) extracted: ``<cache>/datasets/<name>``."""
    return datasets_dir() / get_dataset(name).name


# --------------------------------------------------------------------------
# Cache state
# --------------------------------------------------------------------------


def _check_folder(dataset: Dataset, folder: Path) -> str | None:
    """None when ``folder`` is a complete extraction of the files the manifest names now, else why not."""
    if not folder.is_dir():
        return "not fetched"
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        recorded = {f["filename"]: f for f in marker["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable {MARKER} (not made by nstjax data fetch)"
    for f in dataset.files:
        entry = recorded.get(f.filename)
        if entry is None:
            return f"not extracted from {f.filename}"
        try:
            ok = hub.verify_digests(f.remote(dataset.name), entry.get("digests", {}))[0]
        except NstjaxError as e:  # e.g. an unreadable trust record
            return e.problem
        if ok is not True:
            return f"extracted from a {f.filename} that is not the one the manifest names"
    return None


def _partial_bytes(dataset: Dataset) -> int:
    total = 0
    for f in dataset.files:
        part = hub.downloads_dir() / f"{f.filename}.part"
        if part.is_file():
            total += part.stat().st_size
    return total


def list_datasets() -> list[DatasetStatus]:
    """Every dataset of the manifest with its cache state (reads only the small marker files)."""
    out = []
    for dataset in datasets().values():
        folder = datasets_dir() / dataset.name
        problem = _check_folder(dataset, folder)
        out.append(
            DatasetStatus(
                dataset=dataset,
                path=folder,
                cached=problem is None,
                problem=None if problem in (None, "not fetched") else problem,
                partial_bytes=_partial_bytes(dataset),
            )
        )
    return out


# --------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------


def _check_layout(dataset: Dataset, folder: Path) -> None:
    missing = [d for d in dataset.layout if not folder.joinpath(*d.split("/")).is_dir()]
    if missing:
        found = sorted(p.name for p in folder.iterdir() if p.name != MARKER)[:6]
        raise NstjaxError(
            f"the {dataset.name} download does not have the expected layout: no {', '.join(m + '/' for m in missing)} "
            f"(found: {', '.join(found) or 'nothing'}); nothing was installed"
        )


def _merge(source: Path, target: Path, dataset: Dataset) -> None:
    """Move the entries of ``source`` into ``target`` (both in the staging folder)."""
    for entry in sorted(source.iterdir()):
        if (target / entry.name).exists():
            raise NstjaxError(f"two files of the {dataset.name} dataset both hold {entry.name!r}")
        os.rename(entry, target / entry.name)


def _remove_leftovers(dataset: Dataset) -> None:
    """Temporary folders of an earlier fetch that was killed (only called under the dataset's lock):
    the staging folder, or an old folder moved aside by :func:`nstjax.hub.move_into_place`."""
    for pattern in (f".{dataset.name}.*.fetching", f".{dataset.name}.*.old"):
        for stale in datasets_dir().glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def fetch_dataset(
    name: str,
    *,
    progress: ProgressCallback | None = None,
    force: bool = False,
    extract_progress: ProgressCallback | None = None,
    keep_archive: bool = False,
    timeout: float = 30.0,
) -> Path:
    """Download, verify and extract dataset ``name`` into ``<cache>/datasets/<name>/``; return that folder.

    A complete folder that came from the files the manifest names is returned
    at once, without any request (unless ``force``). Otherwise each file is
    fetched with :func:`nstjax.hub.fetch_file` (resumable, checksummed, mirrors
    in order), extracted into a hidden folder beside the destination, checked
    against the manifest's layout and renamed into place, replacing an older
    folder. Two processes fetching the same dataset take turns; the second
    finds the first one's folder. A file without a published checksum has its
    SHA-256 recorded (trust on first use) once it extracted with the expected
    layout.

    Args:
      name: a dataset of :func:`datasets` (``nstjax data list``).
      progress: ``progress(bytes_done, total_or_None)`` during each download.
      force: download and extract again even if cached.
      extract_progress: ``progress(members_done, total_or_None)`` while extracting.
      keep_archive: keep the downloaded archives in ``<cache>/downloads``
        (default: delete them once extracted, to save the space).
      timeout: seconds to wait on the network for any one operation.

    Raises:
      NstjaxError: unknown name (the message lists the valid ones), a corrupt
        or unsafe archive, a layout that differs from the manifest's.
      nstjax.hub.DownloadError: every URL failed (``offline`` when no server
        could be reached) or a file was not the published one (``mismatch``;
        nothing is cached).
    """
    dataset = get_dataset(name)
    dest = datasets_dir() / dataset.name
    with hub.writing_to(dest.parent):
        dest.parent.mkdir(parents=True, exist_ok=True)
    with hub.file_lock(dest):
        if not force and _check_folder(dataset, dest) is None:
            return dest
        _remove_leftovers(dataset)
        with hub.writing_to(dest.parent):
            staging = Path(tempfile.mkdtemp(prefix=f".{dataset.name}.", suffix=".fetching", dir=dest.parent))
        try:
            tree = staging / "tree"
            tree.mkdir()
            fetched = []
            for i, f in enumerate(dataset.files):
                remote = f.remote(dataset.name)
                got = hub.fetch_file(remote, hub.downloads_dir(), force=force, progress=progress, timeout=timeout)
                fetched.append((f, remote, got))
                if f.archive is None:
                    with hub.writing_to(tree):
                        shutil.copyfile(got.path, tree / f.filename)
                else:
                    part = hub.extract_archive(
                        got.path, staging / f"part{i}", kind=f.archive, root=f.root, progress=extract_progress
                    )
                    with hub.writing_to(tree):
                        _merge(part, tree, dataset)
            _check_layout(dataset, tree)
            marker = {
                "format": _FORMAT,
                "format_version": _FORMAT_VERSION,
                "name": dataset.name,
                "created": hub.timestamp(),
                "files": [
                    {"filename": f.filename, "url": got.url, "digests": got.digests}
                    for f, _, got in fetched
                ],
            }
            with hub.writing_to(tree / MARKER):
                (tree / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            for f, remote, got in fetched:  # the contents checked out: trust what had no published checksum
                if got.verified is None:
                    hub.record_trust(remote, got.digests["sha256"])
            hub.move_into_place(tree, dest, replace=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if not keep_archive:
            for f, _, got in fetched:
                got.path.unlink(missing_ok=True)
    return dest
