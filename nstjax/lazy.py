"""Packages whose public names are imported on first use.

``import nstjax`` and ``nstjax --help`` must not import JAX (about 1.5 s): the
CLI builds its options from settings schemas that live inside the systems'
packages, so those packages' ``__init__`` modules re-export their names
lazily, with the module-level ``__getattr__`` of PEP 562.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` (its ``__name__``).

    ``exports`` maps each public name to the module that defines it, absolute
    (``"nstjax.nst.run"``) or relative to the package (``".run"``). A name is imported
    at its first lookup and then cached in the package's namespace.
    """
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
