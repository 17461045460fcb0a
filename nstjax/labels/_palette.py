"""Palettes: the classes of a label map, their sketch colours and COCO-Stuff ids, read from JSON.

A palette file is a JSON object with a ``name`` and a ``classes`` list; the
position in that list is the class index stored in label maps. Each class has
``name``, ``color`` (``#rrggbb``), ``coco_id`` (0-based index into COCO-Stuff's
182 labels, the value SPADE's cocostuff label maps hold), and optionally
``coco_name``, ``description`` and ``color_source``. Palettes shipped with
nstjax live in ``nstjax/labels/palettes/*.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import NstjaxError
from ._colors import hex_to_rgb, rgb_to_hex

__all__ = ["Palette", "load_palette", "palette_names"]

_PACKAGE_DIR = "palettes"


@dataclass(frozen=True, eq=False)
class Palette:
    """The classes of a label map.

    Attributes:
      name: the palette's name (``"landscape"``), or the file stem of a palette read from a path.
      names: class names; ``names[i]`` is class index ``i``.
      colors: uint8 ``[K, 3]`` RGB sketch colour of each class (read-only).
      coco_ids: COCO-Stuff id of each class, 0-based index into the 182 labels.
      coco_names: COCO-Stuff label name of each class (``"sky-other"`` for ``sky``).
      descriptions: one short sentence per class.
    """

    name: str
    names: tuple[str, ...]
    colors: np.ndarray
    coco_ids: tuple[int, ...]
    coco_names: tuple[str, ...]
    descriptions: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_classes(self) -> int:
        """K, the number of classes."""
        return len(self.names)

    def index(self, name: str) -> int:
        """Class index of ``name``; ``KeyError`` naming the known classes if it is not one."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no class {name!r} in palette {self.name!r}; classes: {', '.join(self.names)}") from None

    def hex(self, index: int) -> str:
        """``#rrggbb`` colour of class ``index``."""
        return rgb_to_hex(self.colors[index])


def palette_names() -> list[str]:
    """Names of the palettes shipped with nstjax (``["landscape"]``), sorted."""
    folder = resources.files(__package__).joinpath(_PACKAGE_DIR)
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def load_palette(name_or_path: str | os.PathLike | Palette) -> Palette:
    """A shipped palette by name (``"landscape"``), or a palette JSON file by path.

    A :class:`Palette` is returned as is, so functions can take either.

    Raises:
      NstjaxError: unknown name, missing or unreadable file, invalid JSON, or a
        malformed palette (missing fields, bad colours, repeated names or colours).
    """
    if isinstance(name_or_path, Palette):
        return name_or_path
    text = os.fspath(name_or_path)
    if text in palette_names():
        data = resources.files(__package__).joinpath(_PACKAGE_DIR, f"{text}.json").read_text(encoding="utf-8")
        return _parse(data, text, source=f"palette {text!r}")
    path = Path(text)
    if not path.suffix and os.sep not in text and not path.exists():
        shipped = ", ".join(palette_names())
        raise NstjaxError(f"unknown palette {text!r}; shipped palettes: {shipped}, or give a .json file")
    if not path.exists():
        raise NstjaxError("palette file not found", path)
    if path.is_dir():
        raise NstjaxError("is a directory, not a palette JSON file", path)
    try:
        data = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NstjaxError(f"cannot read the palette file ({exc})", path) from exc
    return _parse(data, path.stem, source=path)


def _parse(data: str, default_name: str, source) -> Palette:
    def bad(problem: str) -> NstjaxError:
        return NstjaxError(f"invalid palette: {problem}", source)

    try:
        obj = json.loads(data)
    except json.JSONDecodeError as exc:
        raise bad(f"not valid JSON ({exc})") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("classes"), list) or not obj["classes"]:
        raise bad('expected an object with a non-empty "classes" list')
    names, colors, ids, coco_names, descriptions = [], [], [], [], []
    for i, entry in enumerate(obj["classes"]):
        if not isinstance(entry, dict):
            raise bad(f"class {i} is not an object")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise bad(f'class {i} has no "name"')
        try:
            rgb = hex_to_rgb(entry.get("color"))
        except NstjaxError:
            raise bad(f'class {name!r}: "color" must be "#rrggbb", got {entry.get("color")!r}') from None
        coco = entry.get("coco_id")
        if not isinstance(coco, int) or isinstance(coco, bool) or not 0 <= coco < 182:
            raise bad(f'class {name!r}: "coco_id" must be an int in 0-181 (0-based COCO-Stuff index), got {coco!r}')
        if name in names:
            raise bad(f"class name {name!r} appears twice")
        if rgb in colors:
            raise bad(f"colour {rgb_to_hex(rgb)} of {name!r} is already used by {names[colors.index(rgb)]!r}")
        names.append(name)
        colors.append(rgb)
        ids.append(coco)
        coco_names.append(str(entry.get("coco_name", "")))
        descriptions.append(str(entry.get("description", "")))
    color_array = np.array(colors, dtype=np.uint8)
    color_array.setflags(write=False)
    return Palette(
        name=str(obj.get("name", default_name)),
        names=tuple(names),
        colors=color_array,
        coco_ids=tuple(ids),
        coco_names=tuple(coco_names),
        descriptions=tuple(descriptions),
    )
