"""Content (and style) folders for training the feed-forward styles where no COCO or WikiArt can be had.

The real training sets (COCO 2014 for Johnson et al., COCO + WikiArt for AdaIN) cannot be downloaded on
the machines nstjax was built on. This writes what can be made from the few CC0/public-domain images in
``../shared/images``: random crops of the photos at several scales, flipped or not, plus procedural
landscape scenes from ``nstjax data synth``. Held-out files are never read. Every file is a PNG named
after its source, so a run's data can be audited.

    python scripts/make_style_data.py --photos ../shared/images/astronaut.png ../shared/images/chelsea.png \\
        --crops 40 --synth 200 --size 256 --out data/fast_content

For AdaIN's styles, the same with the paintings plus procedural textures (random sinusoid patterns in random
palettes): ``--photos ../shared/images/shipwreck.jpg ../shared/images/the_scream.jpg --synth 0 --textures 100``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from nstjax.io.images import load_image, resize_image, save_image
from nstjax.labels import write_synth_dataset


def crops(image: np.ndarray, count: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` square crops of ``image`` [H, W, 3] in [0, 1], each covering 35–100 % of the short side, resized
    to ``size``, half of them mirrored."""
    h, w = image.shape[:2]
    out = []
    for _ in range(count):
        side = int(round(min(h, w) * rng.uniform(0.35, 1.0)))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = image[y : y + side, x : x + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out.append(resize_image(np.ascontiguousarray(crop), (size, size)))
    return out


def texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """A procedural texture float32 [size, size, 3] in [0, 1]: a few random sinusoids (orientation, frequency,
    phase), bent by a random warp, mapped through a random three-colour palette."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    warp = 0.15 * np.sin(2 * np.pi * (rng.uniform(0.5, 3) * y + rng.uniform()))
    field = np.zeros((size, size), np.float32)
    for _ in range(rng.integers(2, 5)):
        angle, freq = rng.uniform(0, np.pi), rng.uniform(3, 30)
        field += np.sin(2 * np.pi * freq * (np.cos(angle) * (x + warp) + np.sin(angle) * y) + rng.uniform(0, 6.3))
    t = (field - field.min()) / max(float(np.ptp(field)), 1e-6)
    palette = rng.random((3, 3)).astype(np.float32)
    low, high = np.clip(2 * t, 0, 1)[..., None], np.clip(2 * t - 1, 0, 1)[..., None]
    return (palette[0] * (1 - low) + palette[1] * low) * (1 - high) + palette[2] * high


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", nargs="*", type=Path, default=[], help="source images to crop")
    parser.add_argument("--crops", type=int, default=40, help="crops per source image")
    parser.add_argument("--synth", type=int, default=200, help="procedural landscape scenes to add")
    parser.add_argument("--textures", type=int, default=0, help="procedural textures to add (AdaIN's styles)")
    parser.add_argument("--size", type=int, default=256, help="side of every written image, px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="folder to write (replaced)")
    args = parser.parse_args(argv)

    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    rng = np.random.default_rng(args.seed)
    for source in args.photos:
        for i, crop in enumerate(crops(load_image(source), args.crops, args.size, rng)):
            save_image(args.out / f"{source.stem}_crop{i:03d}.png", crop)
    for i in range(args.textures):
        save_image(args.out / f"texture_{i:03d}.png", texture(args.size, rng))
    if args.synth:
        scenes = write_synth_dataset(args.out / "_synth", args.synth, args.size, seed=args.seed)
        for photo in sorted(Path(scenes.photos_dir).glob("*.png")):
            photo.rename(args.out / f"synth_{photo.name}")
        shutil.rmtree(args.out / "_synth")
    written = sorted(args.out.glob("*.png"))
    print(f"wrote {len(written)} images of {args.size}x{args.size} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
