"""Which style image(s) each region of a :class:`~nstjax.nst.mask_regions.RegionMatch` takes its style from.

With several style images, a region's guided Gram target is taken from one or
more of them: by default every style whose segmentation contains the region;
``--region-styles "#87ceeb:0,#228b22:1"`` (:func:`parse_region_styles`) picks
them per colour, and :func:`resolve_region_styles` turns both into a bool
``[S, R]`` table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import NstjaxError
from ..labels import hex_to_rgb, nearest_colors, rgb_to_hex
from .mask_regions import DEFAULT_TOLERANCE, RegionMatch

__all__ = ["parse_region_styles", "resolve_region_styles"]

_INDEX_RE = re.compile(r"[+-]?\d+")


def parse_region_styles(spec: str | None, n_styles: int) -> dict[str, tuple[int, ...]]:
    """Parse a region -> style-image assignment such as ``"#87ceeb:0,#228b22:1"``.

    Entries are ``COLOUR:INDEX`` separated by commas; ``COLOUR`` is six hex
    digits with an optional ``#`` (case-insensitive), ``INDEX`` a 0-based
    style-image index. A colour listed more than once takes its style from all
    the listed images. Spaces and empty entries are ignored.

    Regions not listed (and all regions when ``spec`` is empty or None) use
    the default of :func:`resolve_region_styles`: with one style image every
    region uses style 0; with several, a region takes its style from every
    style image whose segmentation contains its colour.

    Args:
      spec: the specification, or None / ``""`` for the default.
      n_styles: number of style images (>= 1).

    Returns:
      ``{"#rrggbb": (index, ...)}``, colours in lower case, indices sorted and
      distinct; ``{}`` for the default.

    Raises:
      NstjaxError: a bad colour, an index that is not a whole number or is
        out of range, or an entry without ``:``.
    """
    if n_styles < 1:
        raise ValueError(f"n_styles must be >= 1, got {n_styles}")
    result: dict[str, set[int]] = {}
    if spec is None:
        return {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        if item.count(":") != 1:
            raise NstjaxError(
                f"region styles entry {item!r}: expected COLOUR:INDEX, e.g. #87ceeb:0"
            )
        colour_text, index_text = (s.strip() for s in item.split(":"))
        try:
            colour = rgb_to_hex(hex_to_rgb(colour_text))
        except NstjaxError as e:
            raise NstjaxError(f"region styles entry {item!r}: {e.problem}") from None
        if not _INDEX_RE.fullmatch(index_text):
            raise NstjaxError(
                f"region styles entry {item!r}: style index {index_text!r} is not a whole number"
            )
        index = int(index_text)
        if not 0 <= index < n_styles:
            valid = "0" if n_styles == 1 else f"0..{n_styles - 1}"
            raise NstjaxError(
                f"region styles entry {item!r}: style index {index} is out of range;"
                f" there {'is 1 style image' if n_styles == 1 else f'are {n_styles} style images'}"
                f" (valid: {valid})"
            )
        result.setdefault(colour, set()).add(index)
    return {c: tuple(sorted(ix)) for c, ix in result.items()}


def resolve_region_styles(
    match: RegionMatch,
    assignment: Mapping[str, Sequence[int]] | None = None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> np.ndarray:
    """Decide which style image(s) each region of ``match`` takes its style from.

    Default (regions not in ``assignment``): with one style image, style 0;
    with several, every style image whose segmentation contains the region
    (``match.style_presence``). A region listed in ``assignment`` uses exactly
    the listed style images.

    An assignment colour is matched to the region of the same colour, or, if
    none (a JPEG segmentation may have shifted a region's colour slightly), to
    the nearest region colour within ``tolerance``.

    Args:
      match: from :func:`match_regions`.
      assignment: from :func:`parse_region_styles` (``{"#rrggbb": (i, ...)}``).

    Returns:
      bool ``[S, R]``: ``True`` where region ``r`` takes style from image ``s``.
      Every region has at least one ``True``, always where that style's
      segmentation contains the region.

    Raises:
      NstjaxError: a listed colour is not a region, or a listed style image's
        segmentation does not contain that region (there would be no style
        pixels to take a Gram matrix from).
    """
    use = match.style_presence.copy()
    if not assignment:
        return use
    n_styles = use.shape[0]
    for colour, indices in assignment.items():
        rgb = np.array([hex_to_rgb(colour)], dtype=np.uint8)
        nearest, dist = nearest_colors(rgb, match.colors) if match.num_regions else ([0], [np.inf])
        if dist[0] > tolerance:
            raise NstjaxError(
                f"region styles: {rgb_to_hex(rgb[0])} is not a region shared by the content"
                f" and a style segmentation (regions: {', '.join(match.hex_colors)})"
            )
        r = int(nearest[0])
        use[:, r] = False
        for i in indices:
            if not 0 <= i < n_styles:
                raise NstjaxError(f"region styles: style index {i} is out of range (0..{n_styles - 1})")
            if not match.style_presence[i, r]:
                raise NstjaxError(
                    f"region styles: region {match.hex_colors[r]} is assigned style {i},"
                    f" but {match.style_names[i]} has no pixel of that colour",
                )
            use[i, r] = True
    return use
