"""Safe, atomic extraction of ``.zip`` and ``.tar(.gz|.bz2|.xz)`` archives, and atomic folder renames."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import tempfile
import uuid
import zipfile
import zlib
from pathlib import Path

from ..errors import NstjaxError
from ._cache import CHUNK_BYTES, writing_to
from ._manifest import ProgressCallback

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
                        shutil.copyfileobj(src, out, CHUNK_BYTES)  # the CRC is checked at the member's end
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
