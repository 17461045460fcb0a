"""What is in the cache: each published source's state, and the imported files (``nstjax weights list``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import hub
from ..errors import NstjaxError
from ..hub import cache_dir, downloads_dir
from ._sources import Source, converted_path, sources
from ._store import CorruptWeightsError, read_converted

__all__ = [
    "ImportedStatus",
    "SourceStatus",
    "imported_dir",
    "imported_path",
    "list_imported",
    "list_sources",
    "metadata_verified",
]


def imported_dir() -> Path:
    """Where imported weights live: ``<cache>/imported``."""
    return cache_dir() / "imported"


def imported_path(name: str) -> Path:
    """The cache file of the imported weights called ``name``."""
    return imported_dir() / f"{name}.npz"


def metadata_verified(src: Source, meta: Mapping[str, Any]) -> bool | None:
    """Whether a converted file's recorded upstream digests match what is expected now."""
    digests = {"md5": str(meta.get("upstream_md5", "")), "sha256": str(meta.get("upstream_sha256", ""))}
    try:
        return hub.verify_digests(src.remote, digests)[0]
    except NstjaxError:
        return False


@dataclass(frozen=True)
class SourceStatus:
    """State of one source in the cache (see :func:`list_sources`).

    ``cached``: a valid converted file exists at ``path``. ``verified``: its
    upstream file matched the published checksum (for ``gatys``: the one recorded
    on first use); None when not cached. ``problem``: why a file at ``path`` is unusable.
    ``installed``: a package source whose package is installed (converted on first use).
    """

    name: str
    convention: str
    url: str
    filename: str
    path: Path
    cached: bool
    verified: bool | None
    problem: str | None = None
    download_cached: bool = False
    network: str = "vgg19"
    installed: bool = False


def list_sources() -> list[SourceStatus]:
    """Every source of the manifest with its cache state (reads and checks cached files)."""
    out = []
    for src in sources().values():
        path = converted_path(src.name)
        cached, verified, problem = False, None, None
        if path.exists():
            try:
                _, meta = read_converted(path)
                cached, verified = True, metadata_verified(src, meta)
            except NstjaxError as e:
                problem = e.problem
        out.append(
            SourceStatus(
                name=src.name,
                convention=src.convention,
                url=src.urls[0] if src.urls else f"pip install {src.package['pip']}" if src.package else "",
                filename=src.filename,
                path=path,
                cached=cached,
                verified=verified,
                problem=problem,
                download_cached=(downloads_dir() / src.filename).exists(),
                network=src.network,
                installed=src.installed_file() is not None,
            )
        )
    return out


@dataclass(frozen=True)
class ImportedStatus:
    """One imported file (:func:`list_imported`): its name, network, convention, where it came from."""

    name: str
    path: Path
    network: str | None
    convention: str | None
    upstream: str
    problem: str | None = None


def list_imported() -> list[ImportedStatus]:
    """Every file in :func:`imported_dir`, by name, with its state (reads and checks each)."""
    out = []
    folder = imported_dir()
    for path in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
        try:
            _, meta = read_converted(path)
        except (CorruptWeightsError, NstjaxError) as e:
            out.append(ImportedStatus(path.stem, path, None, None, "", e.problem))
            continue
        upstream = f"{meta.get('upstream_filename', '?')} ({meta.get('upstream_layout', '?')}"
        upstream += f", {meta['published_source']})" if meta.get("published_source") else ")"
        out.append(ImportedStatus(path.stem, path, meta.get("network", "vgg19"), meta.get("convention"), upstream))
    return out
