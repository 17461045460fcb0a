"""The resumable manifest of a batch job: one JSON line per image, appended as each output is written.

``OUT_DIR/manifest.jsonl`` (``manifest.p<k>.jsonl`` per process when there are
several processes; all are read) gets one JSON line per image, appended,
flushed and fsync'd as soon as the image's output has been written atomically.
An output counts as complete, and is skipped by a rerun, when the manifest's
latest record for it says ``"status": "done"`` with the same settings hash and
input SHA-256, and the file exists with the recorded size and SHA-256
(:func:`is_complete`). A crash therefore loses at most the batch in flight; a
truncated or edited output is redone.

A manifest record (one JSON object per line; the latest line for an output wins):
``input`` (absolute path), ``output`` (file name inside OUT_DIR), ``status``
(``done``, ``failed`` with a one-line ``error``, or ``nonfinite``: the loss became
NaN/inf and the last finite image was written; failed and non-finite images are
retried by a rerun), ``settings`` (the config as a dict, weights source and
checksum, style SHA-256s, bucket multiple, format, quality) and its
``settings_hash``, ``input_sha256``, ``output_sha256``, ``output_bytes``,
``shape`` ([h, w] of the output), ``loss`` (``total``, ``content``, ``style``,
``tv``: weighted terms of the final image, as ``run_stylize`` reports them),
``steps``, ``evaluations``, ``stopped``, ``seconds`` (wall time of the batch the
image was in), ``batch_size``, ``timestamp`` (UTC, ISO 8601), ``process_index``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import faults
from ..hub import sha256_file
from ..io.atomic import NoSpaceLeft, no_space_left
from .config import StylizeConfig

__all__ = [
    "MANIFEST_NAME",
    "ManifestWriter",
    "is_complete",
    "job_settings",
    "manifest_path",
    "read_manifest",
    "settings_hash",
    "style_hashes",
]

MANIFEST_NAME = "manifest.jsonl"
"""The manifest of a single-process job, inside the output directory."""


def manifest_path(out_dir: Path, process_index: int, process_count: int) -> Path:
    """The manifest this process appends to: :data:`MANIFEST_NAME`, or one file per process."""
    # Several processes append to their own file: O_APPEND writes are not atomic on network
    # file systems, and per-process files need no locking.
    return out_dir / (MANIFEST_NAME if process_count == 1 else f"manifest.p{process_index:03d}.jsonl")


def read_manifest(out_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The latest manifest record per output file name, from every manifest in ``out_dir``.

    Lines that are not valid JSON (a crash in the middle of a write) are ignored.
    """
    records: list[tuple[str, int, dict]] = []
    for path in sorted(Path(out_dir).glob("manifest*.jsonl")):
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("output"), str):
                records.append((record.get("timestamp", ""), len(records), record))
    latest: dict[str, dict[str, Any]] = {}
    for _, _, record in sorted(records, key=lambda r: (r[0], r[1])):
        latest[record["output"]] = record
    return latest


class ManifestWriter:
    """Appends records to one manifest file, each flushed and fsync'd before :meth:`append` returns."""

    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "a+b")  # noqa: SIM115 - kept open for the whole job
        # A crash mid-write can leave a last line without its newline; start on a fresh line
        # so the next record is not glued onto the broken one.
        self.file.seek(0, os.SEEK_END)
        if self.file.tell() > 0:
            self.file.seek(-1, os.SEEK_END)
            if self.file.read(1) != b"\n":
                self.file.write(b"\n")

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Write ``record`` stamped with ``timestamp`` (UTC now, ISO 8601); returns the stamped record."""
        stamped = {**record, "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")}
        line = (json.dumps(stamped, sort_keys=True) + "\n").encode()
        try:
            self.file.write(line[: len(line) // 2])
            self.file.flush()
            faults.point("manifest")  # a torn line: read_manifest skips it and the output is redone
            self.file.write(line[len(line) // 2 :])
            self.file.flush()
            os.fsync(self.file.fileno())
        except OSError as exc:
            if no_space_left(exc):
                raise NoSpaceLeft(self.path) from None
            raise
        return stamped

    def close(self) -> None:
        self.file.close()


def job_settings(
    config: StylizeConfig, weights: Any, style_hashes: list[str], multiple: int, quality: int, fmt: str
) -> dict:
    """Everything that changes an output's pixels (or bytes), as JSON data."""
    meta = getattr(weights, "metadata", {}) or {}
    return {
        "config": dataclasses.asdict(config),
        "weights": {
            "source": weights.source,
            **{k: meta[k] for k in ("params_sha256", "upstream_sha256", "seed") if k in meta},
        },
        "styles_sha256": style_hashes,
        "bucket_multiple": int(multiple),
        "format": fmt,
        "quality": int(quality),
    }


def style_hashes(sources: list[Any], arrays: list[np.ndarray]) -> list[str]:
    """SHA-256 (hex) of each style: of its file when given by path, else of its float32 pixels."""
    return [
        sha256_file(Path(s)) if isinstance(s, str | os.PathLike) else _sha256_array(a)
        for s, a in zip(sources, arrays)
    ]


def _sha256_array(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, np.float32).tobytes()).hexdigest()


def settings_hash(settings: dict) -> str:
    """SHA-256 (hex) of :func:`job_settings`'s JSON, keys sorted."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def is_complete(record: dict, output: Path, settings_sha: str, input_sha: str) -> bool:
    """Whether ``record`` says ``output`` is done with these settings and input, and the file still matches it."""
    if record.get("status") != "done" or record.get("settings_hash") != settings_sha:
        return False
    if record.get("input_sha256") != input_sha:
        return False
    try:
        if not output.is_file() or output.stat().st_size != record.get("output_bytes"):
            return False
        return sha256_file(output) == record.get("output_sha256")
    except OSError:
        return False
