"""Describing files to fetch: checksums, remote and fetched files, and the manifests that list them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import NstjaxError

CHECKSUM_ALGORITHMS = ("md5", "sha256", "sha256-prefix", "tofu-sha256")

ProgressCallback = Callable[[int, "int | None"], None]
"""``progress(done, total_or_None)``: bytes of a download, or members of an extraction."""


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
    path = Path(__file__).resolve().parent.parent / "manifests" / f"{name}.json"
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

