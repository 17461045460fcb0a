"""A contact sheet: images side by side, each under a caption, for comparing the stages of a recreation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["contact_sheet"]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # a scalable font where Pillow has FreeType
    except (TypeError, OSError, AttributeError):
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            trial = f"{line} {word}".strip()
            if line and draw.textlength(trial, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


def contact_sheet(
    panels: Sequence[tuple[str, np.ndarray | None]], *, height: int | None = None, gap: int = 6
) -> np.ndarray:
    """Panels in a row, each with its caption above; float32 [H, W, 3] RGB in [0, 1] on white.

    Args:
      panels: (caption, image float [h, w, 3] in [0, 1] or uint8, or ``None`` for a grey "not run"
        box) pairs. Captions may hold ``\\n`` and are wrapped to the panel's width.
      height: height of every image (each is scaled to it, keeping its aspect); default the first
        image's height.
    """
    shown = [img for _, img in panels if img is not None]
    if not shown:
        raise ValueError("a contact sheet needs at least one image")
    height = int(height or np.asarray(shown[0]).shape[0])
    aspect = np.asarray(shown[0]).shape[1] / np.asarray(shown[0]).shape[0]
    tiles = []
    for _, img in panels:
        if img is None:
            tiles.append(Image.new("RGB", (max(1, round(height * aspect)), height), (200, 200, 200)))
            continue
        arr = np.asarray(img)
        if arr.dtype != np.uint8:
            arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        tile = Image.fromarray(arr)
        width = max(1, round(height * tile.width / tile.height))
        tiles.append(tile.resize((width, height), Image.Resampling.NEAREST if tile.height < height else Image.Resampling.LANCZOS))
    font_size = max(10, min(18, height // 12))
    font = _font(font_size)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    captions = [_wrap(scratch, caption, font, tile.width) for (caption, _), tile in zip(panels, tiles)]
    line_h = font_size + 4
    top = gap + line_h * max(len(c) for c in captions) + gap
    width = gap + sum(t.width + gap for t in tiles)
    sheet = Image.new("RGB", (width, top + height + gap), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    x = gap
    for tile, lines in zip(tiles, captions):
        for i, line in enumerate(lines):
            draw.text((x, gap + i * line_h), line, fill=(0, 0, 0), font=font)
        sheet.paste(tile, (x, top))
        x += tile.width + gap
    return np.asarray(sheet, np.float32) / 255.0
