"""A painting's label map, semi-automatically: colour clusters in CIELAB, then a class for each cluster.

Semantic style transfer needs to know where a painting's sky, hills and fields
are. :func:`label_painting` proposes a label map in three steps:

1. **Cluster** the pixels with k-means in CIELAB (perceptual colour), plus the
   pixel's position scaled by ``position_weight`` (so a region of one colour
   stays together and a blue sky is told from a blue river lower down);
2. **clean** the cluster map with a mode filter (each pixel takes the cluster
   most common within ``smooth`` pixels), removing speckle;
3. **name** each cluster: the class (among ``classes``) whose usual height in a
   landscape (:data:`CLASS_HEIGHTS`, 0 = top, 1 = bottom) and usual colour
   (:func:`nstjax.labels.expected_class_colors`, the synthetic scenes' class means)
   are nearest the cluster's mean height and mean colour. Any cluster's class can
   be set by hand (``assign={3: "hill"}``), using the ids drawn on the preview.
   Finally connected regions smaller than ``min_area`` of the picture take the
   class around them (the stars in a sky, specks of sky colour in a field).
   Hand corrections in boxes (``fixes=["hill>sky@0.26,0.44,0.41,0.66"]``) go last.

The result is a proposal to check: :func:`write_painting_labels` writes the map
and a preview overlay with each cluster's id and class on it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import NstjaxError
from ..io import images
from ..labels import Palette, class_areas, colorize, expected_class_colors, load_palette, resize_labels, save_label_map
from .colorspace import kmeans, srgb_to_lab

__all__ = [
    "CLASS_HEIGHTS",
    "DEFAULT_CLASSES",
    "PaintingLabels",
    "PaintingLabelsFile",
    "apply_fixes",
    "label_painting",
    "parse_assign",
    "parse_fix",
    "preview_overlay",
    "write_painting_labels",
]

DEFAULT_CLASSES = ("sky", "cloud", "mountain", "hill", "tree", "grass")
"""Classes clusters may become unless told otherwise: the usual landscape."""

CLASS_HEIGHTS: Mapping[str, float] = {
    # Usual height of a class's centre in a landscape picture: 0 top, 1 bottom.
    "sky": 0.18, "cloud": 0.2, "mountain": 0.42, "snow": 0.35, "hill": 0.6, "rock": 0.72, "tree": 0.55,
    "bush": 0.7, "grass": 0.82, "flower": 0.85, "dirt": 0.8, "sand": 0.8, "road": 0.85, "sea": 0.65,
    "river": 0.78, "water": 0.72, "house": 0.62,
}  # fmt: skip

HEIGHT_COST = 2.0
"""Cost of one picture height of difference between a cluster's and a class's usual height; colour costs
ΔE*ab / 100, so height decides unless colours differ a lot (paintings rarely have photo colours)."""


@dataclass(frozen=True)
class PaintingLabels:
    """A proposed label map of a painting.

    labels: int32 [H, W] class ids (full size of the painting).
    clusters: int32 [h, w] cluster ids at the working size.
    cluster_classes: class name of each cluster.
    cluster_heights: mean height (0 top .. 1 bottom) of each cluster; cluster_lab: mean CIELAB [k, 3].
    """

    labels: np.ndarray
    clusters: np.ndarray
    cluster_classes: tuple[str, ...]
    cluster_heights: np.ndarray
    cluster_lab: np.ndarray


@dataclass(frozen=True)
class PaintingLabelsFile:
    path: Path
    preview_path: Path
    cluster_classes: tuple[str, ...]
    areas: dict[str, float]


def parse_assign(text: str | Mapping[int, str] | None, palette: Palette, clusters: int) -> dict[int, str]:
    """``"0=sky,3=hill"`` (or a mapping) -> ``{0: "sky", 3: "hill"}``, checked against the palette."""
    if text is None:
        return {}
    items = text.items() if isinstance(text, Mapping) else (
        part.split("=", 1) if "=" in part else (part, "") for part in text.split(",") if part.strip()
    )  # fmt: skip
    out = {}
    for key, name in items:
        try:
            index = int(str(key).strip())
        except ValueError:
            raise NstjaxError(f"--assign: {key!r} is not a cluster id (expected e.g. 0=sky,3=hill)") from None
        name = str(name).strip()
        if not 0 <= index < clusters:
            raise NstjaxError(f"--assign: cluster {index} does not exist (clusters 0-{clusters - 1})")
        if name not in palette.names:
            raise NstjaxError(f"--assign: {name!r} is not a class of the {palette.name!r} palette")
        out[index] = name
    return out


def _parse_classes(classes, palette: Palette) -> tuple[str, ...]:
    if classes is None:
        names = tuple(c for c in DEFAULT_CLASSES if c in palette.names)
    else:
        names = tuple(c.strip() for c in (classes.split(",") if isinstance(classes, str) else classes) if c.strip())
    unknown = [c for c in names if c not in palette.names]
    if unknown:
        raise NstjaxError(
            f"unknown class{'es' if len(unknown) > 1 else ''} {', '.join(unknown)}; the {palette.name!r} palette has "
            f"{', '.join(palette.names)}"
        )
    if not names:
        raise NstjaxError("no classes given")
    return names


def _mode_filter(clusters: np.ndarray, k: int, radius: int) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    if radius <= 0:
        return clusters
    votes = np.stack([uniform_filter((clusters == j).astype(np.float32), 2 * radius + 1, mode="nearest") for j in range(k)])
    return votes.argmax(0).astype(np.int32)


def _merge_small(classes: np.ndarray, min_pixels: int) -> np.ndarray:
    """Each connected region under ``min_pixels`` takes the class most common on its border (smallest first)."""
    from scipy.ndimage import binary_dilation, label

    out = classes.copy()
    for _ in range(4):  # a merge can make a neighbour's region whole again: a few passes settle it
        changed = False
        regions = []
        for c in np.unique(out):
            comp, n = label(out == c)
            sizes = np.bincount(comp.ravel())[1:]
            regions += [(int(sizes[i]), comp == i + 1) for i in np.flatnonzero(sizes < min_pixels)]
        for _, region in sorted(regions, key=lambda r: r[0]):
            border = binary_dilation(region) & ~region
            if not border.any():
                continue
            values, counts = np.unique(out[border], return_counts=True)
            new = values[counts.argmax()]
            if new != out[region][0]:
                out[region] = new
                changed = True
        if not changed:
            break
    return out


_FIX_HELP = "expected FROM>TO@x0,y0,x1,y1 with class names and box corners as fractions (0-1), e.g. hill>sky@0.2,0.4,0.4,0.7"


def parse_fix(text: str, palette: Palette) -> tuple[int, int, tuple[float, float, float, float]]:
    """``"hill>sky@0.2,0.4,0.4,0.7"`` -> (from id, to id, (x0, y0, x1, y1)) with the box in fractions of the picture."""
    try:
        classes, box_text = text.split("@")
        src, dst = (c.strip() for c in classes.split(">"))
        box = tuple(float(v) for v in box_text.split(","))
    except ValueError:
        raise NstjaxError(f"--fix {text!r}: {_FIX_HELP}") from None
    if len(box) != 4 or not all(0 <= v <= 1 for v in box) or box[0] >= box[2] or box[1] >= box[3]:
        raise NstjaxError(f"--fix {text!r}: {_FIX_HELP}")
    for name in (src, dst):
        if name not in palette.names:
            raise NstjaxError(f"--fix {text!r}: {name!r} is not a class of the {palette.name!r} palette")
    return palette.index(src), palette.index(dst), box  # type: ignore[return-value]


def apply_fixes(labels: np.ndarray, fixes, palette: Palette) -> np.ndarray:
    """Hand corrections: inside each box, pixels of class FROM become TO (see :func:`parse_fix`)."""
    out = labels.copy()
    h, w = labels.shape
    for text in fixes or ():
        src, dst, (x0, y0, x1, y1) = parse_fix(text, palette)
        rows, cols = slice(round(y0 * h), round(y1 * h)), slice(round(x0 * w), round(x1 * w))
        window = out[rows, cols]
        window[window == src] = dst
    return out


def label_painting(
    image,
    *,
    clusters: int = 6,
    classes: str | Sequence[str] | None = None,
    assign: str | Mapping[int, str] | None = None,
    position_weight: float = 0.5,
    smooth: int = 3,
    min_area: float = 0.02,
    fixes: Sequence[str] = (),
    work_size: int = 256,
    seed: int = 0,
    palette: Palette | str = "landscape",
) -> PaintingLabels:
    """Propose a label map for a painting (see the module docstring).

    Args:
      image: path or float [H, W, 3] RGB in [0, 1].
      clusters: k of k-means.
      classes: names clusters may become (default :data:`DEFAULT_CLASSES`).
      assign: cluster id -> class name overrides (``"0=sky,3=hill"`` or a mapping).
      position_weight: weight of position beside colour: height counts ``100 * position_weight`` CIELAB
        units per picture height, width a quarter of that.
      smooth: mode-filter radius in working-size pixels (0 = off).
      min_area: connected regions of one class smaller than this share of the picture take the class
        most common around them (stars in a sky, specks in a field); 0 = off.
      fixes: hand corrections applied last, ``"FROM>TO@x0,y0,x1,y1"`` (box in fractions of the picture):
        inside the box, pixels of class FROM become TO.
      work_size: longest side the clustering works at; the map is scaled back up by nearest neighbour.

    Returns:
      :class:`PaintingLabels` with ``labels`` int32 [H, W] at the painting's size.
    """
    pal = load_palette(palette)
    names = _parse_classes(classes, pal)
    if clusters < 2:
        raise NstjaxError(f"clusters must be at least 2, got {clusters}")
    if not position_weight >= 0:
        raise NstjaxError(f"position weight must be >= 0, got {position_weight}")
    overrides = parse_assign(assign, pal, clusters)
    img = images.image_array(image, "painting")
    shape = images.fit_longest_side(img.shape[:2], min(work_size, max(img.shape[:2])))
    small = images.resize_image(img, shape)
    h, w = shape
    lab = srgb_to_lab(small).reshape(-1, 3)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    pos = np.stack([yy.ravel() * 100 * position_weight, xx.ravel() * 25 * position_weight], 1)
    _, assignment = kmeans(np.concatenate([lab, pos], 1), clusters, seed=seed)
    k = int(assignment.max()) + 1
    cmap = _mode_filter(assignment.reshape(h, w).astype(np.int32), k, smooth)
    heights = np.array([yy[cmap == j].mean() if np.any(cmap == j) else 0.5 for j in range(k)], np.float32)
    means = np.array(
        [lab.reshape(h, w, 3)[cmap == j].mean(0) if np.any(cmap == j) else np.zeros(3) for j in range(k)], np.float32
    )
    protos = srgb_to_lab(expected_class_colors())
    synth_names = load_palette("landscape").names
    chosen = []
    for j in range(k):
        if j in overrides:
            chosen.append(overrides[j])
            continue
        costs = []
        for name in names:
            height = CLASS_HEIGHTS.get(name, 0.5)
            colour = np.linalg.norm(means[j] - protos[synth_names.index(name)]) / 100 if name in synth_names else 0.5
            costs.append(HEIGHT_COST * abs(heights[j] - height) + colour)
        chosen.append(names[int(np.argmin(costs))])
    ids = np.array([pal.index(n) for n in chosen], np.int32)
    small_labels = ids[cmap]
    if min_area > 0:
        small_labels = _merge_small(small_labels, int(min_area * small_labels.size))
    labels = apply_fixes(resize_labels(small_labels, img.shape[:2]), fixes, pal)
    return PaintingLabels(
        labels=labels.astype(np.int32), clusters=cmap, cluster_classes=tuple(chosen), cluster_heights=heights,
        cluster_lab=means,
    )  # fmt: skip


def preview_overlay(
    image: np.ndarray, result: PaintingLabels, palette: Palette | str = "landscape", *, alpha: float = 0.55
) -> np.ndarray:
    """The painting under its label colours (``alpha`` opaque), each cluster's ``id class`` written on it.

    Returns float32 [H, W, 3] in [0, 1] at the painting's size.
    """
    pal = load_palette(palette)
    img = np.asarray(image, np.float32)
    over = (1 - alpha) * img + alpha * colorize(result.labels, pal).astype(np.float32) / 255
    canvas = Image.fromarray((np.clip(over, 0, 1) * 255 + 0.5).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=max(11, img.shape[0] // 40))  # readable on a large painting
    except (TypeError, OSError, AttributeError):
        font = ImageFont.load_default()
    ch, cw = result.clusters.shape
    sy, sx = img.shape[0] / ch, img.shape[1] / cw
    for j, name in enumerate(result.cluster_classes):
        ys, xs = np.nonzero(result.clusters == j)
        if len(ys) == 0:
            continue
        # The cluster pixel nearest the cluster's median position: on the cluster even when it is not convex.
        my, mx = np.median(ys), np.median(xs)
        i = int(np.argmin((ys - my) ** 2 + (xs - mx) ** 2))
        x, y = xs[i] * sx, ys[i] * sy
        text = f"{j} {name}"
        box = draw.textbbox((x, y), text, font=font)
        draw.rectangle(box, fill=(255, 255, 255))
        draw.text((x, y), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas, np.float32) / 255


def write_painting_labels(
    painting: str | os.PathLike,
    output: str | os.PathLike,
    *,
    preview: str | os.PathLike | None = None,
    palette: Palette | str = "landscape",
    **kwargs,
) -> PaintingLabelsFile:
    """Label ``painting`` (:func:`label_painting`) and write the map (colour PNG in the palette) and a preview.

    ``preview`` defaults to ``<output stem>_preview.png`` beside ``output``. Both are written atomically.
    """
    output = images.check_output_path(output)
    if output.suffix.lower() not in (".png", ".bmp", ".tif", ".tiff"):
        raise NstjaxError("a label map must be lossless: write .png (or .bmp, .tif)", output)
    preview = images.check_output_path(preview or output.with_name(f"{output.stem}_preview.png"))
    pal = load_palette(palette)
    img = images.load_image(painting)
    result = label_painting(img, palette=pal, **kwargs)
    save_label_map(output, result.labels, pal, kind="color")
    images.save_image(preview, preview_overlay(img, result, pal))
    areas = class_areas(result.labels, pal)
    return PaintingLabelsFile(output, preview, result.cluster_classes, areas)
