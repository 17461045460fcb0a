"""Make the example masks used by docs/controls.md.

Usage (from the repository root, which sits beside ``shared/``)::

    python scripts/make_example_masks.py masks/

Writes into OUT_DIR (created if needed), using NumPy and Pillow only:

* ``chelsea_seg.png``, ``starry_night_seg.png``, ``shipwreck_seg.png``,
  ``the_scream_seg.png``: colour-coded segmentations, each the size of its
  image in ``../shared/images``, with two region colours:

  - ``#87ceeb`` (sky blue): the upper / background region: the sky of the
    paintings, the out-of-focus background of the cat photo;
  - ``#228b22`` (forest green): the lower / subject region: land and village,
    sea, bridge and figure, the cat.

  These are SCHEMATIC: a few straight lines and polygons drawn by hand from a
  glance at each picture, not semantic labels from a segmentation model. They
  are good enough to show how region matching works; for real work, paint
  your own.

* ``chelsea_left.png``, ``chelsea_right.png``: two complementary grayscale
  masks at chelsea.png's size (451x300): white on the left (resp. right)
  half, with a 60-pixel linear ramp across the middle. They sum to 255
  everywhere. Use them as per-style masks (``--style-mask`` without
  ``--content-mask``).

Only the image sizes are read from ``../shared/images``; the masks are drawn
from fixed fractions of those sizes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

IMAGES = Path(__file__).resolve().parent.parent.parent / "shared" / "images"

SKY = (0x87, 0xCE, 0xEB)  # #87ceeb: upper / background region
GROUND = (0x22, 0x8B, 0x22)  # #228b22: lower / subject region

# Per image: polygons of the SKY region, as (x, y) fractions of (width, height);
# everything else is GROUND. Drawn by eye from the pictures.
SEGMENTATIONS: dict[str, list[list[tuple[float, float]]]] = {
    # The cat fills the frame; the blurred room shows on the right and in the
    # top-left corner.
    "chelsea.png": [
        [(0.86, 0.0), (1.0, 0.0), (1.0, 1.0), (0.87, 1.0), (0.84, 0.62), (0.81, 0.2)],
        [(0.0, 0.0), (0.08, 0.0), (0.0, 0.35)],
    ],
    # Sky above the hills (about the top two thirds); village and hills below.
    # The cypress on the left is counted as sky here: schematic.
    "starry_night.jpg": [[(0.0, 0.0), (1.0, 0.0), (1.0, 0.58), (0.6, 0.66), (0.0, 0.7)]],
    # Storm sky over the sea; the horizon dips from left to right.
    "shipwreck.jpg": [[(0.0, 0.0), (1.0, 0.0), (1.0, 0.5), (0.5, 0.45), (0.0, 0.38)]],
    # The red sky across the top third; fjord, bridge and figure below.
    "the_scream.jpg": [[(0.0, 0.0), (1.0, 0.0), (1.0, 0.3), (0.0, 0.36)]],
}


def segmentation(size: tuple[int, int], polygons: list[list[tuple[float, float]]]) -> Image.Image:
    """An RGB image of ``size`` (w, h): GROUND, with the SKY polygons painted on (no antialiasing)."""
    w, h = size
    img = Image.new("RGB", size, GROUND)
    draw = ImageDraw.Draw(img)
    for poly in polygons:
        draw.polygon([(x * (w - 1), y * (h - 1)) for x, y in poly], fill=SKY)
    return img


def half_masks(size: tuple[int, int], ramp: int = 60) -> tuple[Image.Image, Image.Image]:
    """Left-white and right-white grayscale masks of ``size`` (w, h), a linear ramp across the middle."""
    w, h = size
    x = np.arange(w, dtype=np.float64) + 0.5
    left = np.clip((w / 2 + ramp / 2 - x) / ramp, 0.0, 1.0)
    left8 = np.rint(left * 255).astype(np.uint8)
    right8 = (255 - left8).astype(np.uint8)
    rows = lambda v: np.ascontiguousarray(np.broadcast_to(v, (h, w)))  # noqa: E731
    return Image.fromarray(rows(left8)), Image.fromarray(rows(right8))  # uint8 2-D: mode L


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: python scripts/make_example_masks.py OUT_DIR", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name in SEGMENTATIONS:
        path = IMAGES / name
        if not path.is_file():
            print(f"error: {path} not found (the repository should sit beside shared/)", file=sys.stderr)
            return 1
        with Image.open(path) as im:
            sizes[name] = im.size
    for name, polygons in SEGMENTATIONS.items():
        target = out / f"{Path(name).stem}_seg.png"
        segmentation(sizes[name], polygons).save(target)
        print(target)
    left, right = half_masks(sizes["chelsea.png"])
    for img, stem in ((left, "chelsea_left"), (right, "chelsea_right")):
        target = out / f"{stem}.png"
        img.save(target)
        print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
