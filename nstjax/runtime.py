"""Process-wide JAX settings nstjax relies on: the persistent compilation cache.

Every system that compiles (style transfer, training, inference) calls
:func:`enable_compilation_cache` before its first jitted call, so a second run
with the same shapes skips most of the compile time.
"""

from __future__ import annotations

import os

import jax

from .hub import cache_dir

__all__ = ["enable_compilation_cache"]

_COMPILATION_CACHE_READY = False


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> None:
    """Turn on JAX's persistent compilation cache (default: ``<nstjax cache>/jax``).

    Leaves a cache directory the user configured alone. Set
    ``NSTJAX_COMPILATION_CACHE=0`` to leave JAX's settings alone entirely.
    """
    global _COMPILATION_CACHE_READY
    if _COMPILATION_CACHE_READY or os.environ.get("NSTJAX_COMPILATION_CACHE", "1") == "0":
        return
    if jax.config.jax_compilation_cache_dir is None:
        path = os.fspath(directory or cache_dir() / "jax")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:
            return  # an unwritable cache only costs compile time
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    _COMPILATION_CACHE_READY = True
