"""Building the FFI library (oneDNN's convolution, the fused Adam) against the installed oneDNN: once per
machine, into the nstjax cache.

oneDNN comes from PyPI (the ``onednn`` extra: Intel's ``onednn-cpu-gomp`` library and
``onednn-devel-cpu-gomp`` headers) or from ``NSTJAX_ONEDNN_ROOT`` (a folder with ``include/``
and ``lib/``); XLA's FFI headers ship with jaxlib; the compiler is ``$CXX`` or ``c++``. The
library is named by a digest of all of them and of the sources, so a new jaxlib, oneDNN or
source builds afresh; it is compiled to a temporary file and renamed into place under a
file lock, so two processes never load a half-written library.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..hub import cache_dir, file_lock
from ..io.atomic import atomic_path

__all__ = ["SOURCES", "Toolchain", "Unavailable", "build", "library_path", "toolchain"]

SOURCES = (Path(__file__).with_name("onednn_conv.cc"), Path(__file__).with_name("fused_adam.cc"))
RUNTIME_DISTRIBUTION = "onednn-cpu-gomp"
HEADERS_DISTRIBUTION = "onednn-devel-cpu-gomp"
INSTALL_HINT = "pip install 'nstjax[onednn]'"


class Unavailable(Exception):
    """Why the native library cannot be had here (one line)."""


@dataclasses.dataclass(frozen=True)
class Toolchain:
    """What the library is built with: the C++ compiler (a command line, e.g. ``ccache g++``) and the folders
    of oneDNN's headers and library and of XLA's FFI headers."""

    compiler: str
    onednn_include: Path
    onednn_lib: Path
    ffi_include: Path


def _distribution_file(distribution: str, suffix: str) -> Path | None:
    try:
        files = importlib.metadata.files(distribution) or []
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if ("/" + str(f).replace(os.sep, "/")).endswith("/" + suffix):
            return Path(dist.locate_file(f)).resolve()
    return None


def toolchain() -> Toolchain:
    """The toolchain of this machine; :class:`Unavailable` says what is missing."""
    import jax

    root = os.environ.get("NSTJAX_ONEDNN_ROOT")
    if root:
        include, lib = Path(root) / "include", Path(root) / "lib"
        if not (include / "oneapi" / "dnnl" / "dnnl.hpp").is_file() or not (lib / "libdnnl.so").exists():
            raise Unavailable(f"NSTJAX_ONEDNN_ROOT={root} has no include/oneapi/dnnl/dnnl.hpp and lib/libdnnl.so")
    else:
        header = _distribution_file(HEADERS_DISTRIBUTION, "include/oneapi/dnnl/dnnl.hpp")
        library = _distribution_file(RUNTIME_DISTRIBUTION, "libdnnl.so")
        if header is None or library is None:
            raise Unavailable(f"oneDNN is not installed ({INSTALL_HINT})")
        include, lib = header.parents[2], library.parent
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not compiler:
        raise Unavailable("no C++ compiler to build the oneDNN bridge (install g++, or set CXX)")
    return Toolchain(compiler, include, lib, Path(jax.ffi.include_dir()))


def library_path(tools: Toolchain) -> Path:
    """Where the library built with ``tools`` lives: ``<nstjax cache>/native/onednn_conv-<digest>.so``."""
    import jaxlib

    digest = hashlib.sha256(b"".join(source.read_bytes() for source in SOURCES))
    for part in (jaxlib.__version__, *map(str, dataclasses.astuple(tools)),
                 os.path.realpath(tools.onednn_lib / "libdnnl.so")):  # fmt: skip
        digest.update(b"\0" + part.encode())
    return cache_dir() / "native" / f"onednn_conv-{digest.hexdigest()[:16]}.so"


def build(tools: Toolchain) -> Path:
    """The library for ``tools``, compiled first if this machine has none yet (a few seconds)."""
    path = library_path(tools)
    if path.is_file():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path):
            if path.is_file():  # another process built it while this one waited
                return path
            with atomic_path(path) as tmp, tempfile.TemporaryDirectory() as objects:
                # Built in place of a temporary file and renamed: no process ever loads a half-written library.
                # The sources compile side by side (each takes 2-3 s, mostly XLA's FFI headers), then link.
                compiler = shlex.split(tools.compiler)
                # No contraction into fused multiply-adds: the fused Adam rounds as optax does (fused_adam.cc).
                flags = ["-O3", "-std=c++17", "-fPIC", "-w", "-pthread", "-ffp-contract=off", "-fno-math-errno",
                         "-I", str(tools.ffi_include), "-I", str(tools.onednn_include)]  # fmt: skip
                outputs = [str(Path(objects) / f"{source.stem}.o") for source in SOURCES]
                _run([[*compiler, *flags, "-c", str(source), "-o", out] for source, out in zip(SOURCES, outputs)])
                _run([[*compiler, "-shared", "-pthread", *outputs, "-o", str(tmp), "-L", str(tools.onednn_lib),
                       "-ldnnl", f"-Wl,-rpath,{tools.onednn_lib}"]])  # fmt: skip
    except OSError as e:
        raise Unavailable(f"cannot build the oneDNN bridge in {path.parent} ({e.strerror or e})") from None
    return path


def _run(commands: list[list[str]]) -> None:
    """Runs ``commands`` at once and waits for all; :class:`Unavailable` with the first error line of a failure."""
    running = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    failures = [err for proc in running for _, err in [proc.communicate()] if proc.returncode != 0]
    if failures:
        lines = failures[0].splitlines()
        errors = [line for line in lines if "error" in line] or lines
        raise Unavailable(f"building the oneDNN bridge failed: {(errors or ['no output'])[0].strip()}")
