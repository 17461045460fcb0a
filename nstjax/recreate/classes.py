"""Which classes are sky and which are ground, and what stands in for a class a painting lacks.

Semantic style transfer gives each region of the sketch the style of the same
class in the painting. A painting rarely has every class of a sketch (The Starry
Night has no flowers), so a missing class borrows the style of its nearest class
that the painting does have. The table :data:`FALLBACKS` lists each class's
stand-ins, nearest first; :func:`resolve_fallbacks` follows it breadth first
up to two hops (flower → grass, then flower → grass → hill), and a class with
no stand-in within reach takes the style of the whole painting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..labels import Palette

__all__ = ["MAX_HOPS", "FALLBACKS", "GROUND_CLASSES", "SKY_CLASSES", "Fallback", "resolve_fallbacks"]

SKY_CLASSES: tuple[str, ...] = ("sky", "cloud")
"""What counts as sky for the sky-on-the-ground score."""

GROUND_CLASSES: tuple[str, ...] = ("hill", "rock", "tree", "bush", "grass", "flower", "dirt", "sand", "road")
"""What counts as ground: the land in front of the viewer and what grows on it. Mountains and snow (far
away, often sky-coloured in paintings), water and houses are neither sky nor ground for the score."""

FALLBACKS: Mapping[str, tuple[str, ...]] = {
    # Nearest stand-ins first. Followed breadth first, so each list only needs the closest few.
    "sky": ("cloud", "sea", "water"),
    "cloud": ("sky", "snow"),
    "mountain": ("hill", "rock"),
    "snow": ("cloud", "sky", "mountain"),
    "hill": ("mountain", "grass", "bush"),
    "rock": ("mountain", "hill", "dirt"),
    "tree": ("bush", "hill", "grass"),
    "bush": ("tree", "grass", "hill"),
    "grass": ("hill", "bush", "flower"),
    "flower": ("grass", "bush", "hill"),
    "dirt": ("road", "sand", "hill"),
    "sand": ("dirt", "road", "hill"),
    "road": ("dirt", "sand", "hill"),
    "sea": ("water", "river", "sky"),
    "river": ("water", "sea"),
    "water": ("sea", "river"),
    "house": ("rock", "road", "hill"),
}


MAX_HOPS = 2
"""A class borrows from its own stand-ins or theirs, no further."""


@dataclass(frozen=True)
class Fallback:
    """How one class of the sketch finds its style.

    ``source`` is the class id whose style it takes (``None``: the whole
    painting); ``path`` the class names followed to get there (``("flower",
    "grass")``); ``exact`` whether the painting has the class itself.
    """

    cls: int
    source: int | None
    path: tuple[str, ...]

    @property
    def exact(self) -> bool:
        return self.source == self.cls

    def describe(self, palette: Palette) -> str:
        name = palette.names[self.cls]
        if self.exact:
            return name
        if self.source is None:
            return f"{name} → whole painting"
        return " → ".join(self.path)


def resolve_fallbacks(
    wanted: Iterable[int],
    available: Iterable[int],
    palette: Palette,
    table: Mapping[str, tuple[str, ...]] = FALLBACKS,
    max_hops: int = MAX_HOPS,
) -> dict[int, Fallback]:
    """For each class id in ``wanted``, the class of ``available`` whose style it takes.

    A class that is available takes its own style. Otherwise the stand-ins of
    ``table`` (class name -> names, nearest first) are searched breadth first:
    the class's own list, then the lists of those classes, and so on; the first
    available one wins. Names missing from the palette are skipped, so the table
    works with any palette. Paths are at most ``max_hops`` long, so a field never
    ends up painted like a cloud (grass → hill → mountain → snow → cloud). No
    stand-in within reach: ``source=None`` (the whole painting).

    Returns:
      ``{class id: Fallback}`` for every id of ``wanted``, in ascending order.
    """
    names = palette.names
    index = {n: i for i, n in enumerate(names)}
    have = set(int(a) for a in available)
    out: dict[int, Fallback] = {}
    for cls in sorted(set(int(w) for w in wanted)):
        if cls in have:
            out[cls] = Fallback(cls, cls, (names[cls],))
            continue
        found = None
        queue = [(names[cls],)]
        seen = {names[cls]}
        while queue and found is None:
            path = queue.pop(0)
            if len(path) > max_hops:
                continue
            for nxt in table.get(path[-1], ()):
                if nxt in seen or nxt not in index:
                    continue
                seen.add(nxt)
                if index[nxt] in have:
                    found = Fallback(cls, index[nxt], (*path, nxt))
                    break
                queue.append((*path, nxt))
        out[cls] = found or Fallback(cls, None, (names[cls],))
    return out
