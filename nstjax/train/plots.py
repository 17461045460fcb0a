"""Pictures of a training run: loss curves and sample grids, written atomically as PNG."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..io.atomic import atomic_path

__all__ = ["image_grid", "read_metrics", "save_grid", "save_loss_curve"]


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a ``metrics.jsonl`` file (lines that are not JSON objects are skipped)."""
    records = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "step" in record:
            records.append(record)
    return records


def save_loss_curve(metrics: Sequence[dict], path: str | os.PathLike, *, title: str = "") -> Path | None:
    """Plot every numeric loss in ``metrics`` (``*loss*`` keys and ``g_*``/``d_*`` terms) against step.

    Returns the path, or None when there is nothing to plot yet.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    keys = sorted(
        {k for r in metrics for k, v in r.items() if k not in ("step", "time", "steps_per_second", "lr")
         and isinstance(v, int | float)}
    )  # fmt: skip
    if not metrics or not keys:
        return None
    steps = np.array([r["step"] for r in metrics])
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for key in keys:
        values = np.array([r.get(key, np.nan) for r in metrics], dtype=float)
        ax.plot(steps, values, label=key, linewidth=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def image_grid(rows: Sequence[Sequence[np.ndarray]], *, labels: Sequence[str] = (), row_labels: Sequence[str] = (),
               pad: int = 2) -> np.ndarray:
    """Tile images into a grid: ``rows[i][j]`` float [h, w, 3] in [0, 1] -> uint8 [H, W, 3].

    ``labels`` name the columns (a band above them); ``row_labels`` name the rows (a band
    on the left, as wide as the longest one in PIL's default font). Text is ASCII: the
    default font has no arrows. All images of the grid are resized (nearest) to the first one's size.
    """
    h, w = rows[0][0].shape[:2]
    n_cols = max(len(r) for r in rows)
    font = ImageFont.load_default()
    top = 14 if labels else 0
    left = int(np.ceil(max(font.getlength(text) for text in row_labels))) + 2 * pad if row_labels else 0
    grid = np.full((top + len(rows) * (h + pad) + pad, left + n_cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            tile = np.asarray(image, np.float32)
            if tile.shape[:2] != (h, w):
                tile = np.asarray(Image.fromarray((np.clip(tile, 0, 1) * 255).astype(np.uint8)).resize((w, h))) / 255.0
            y, x = top + pad + i * (h + pad), left + pad + j * (w + pad)
            grid[y : y + h, x : x + w] = np.rint(np.clip(tile, 0.0, 1.0) * 255).astype(np.uint8)
    if labels or row_labels:
        canvas = Image.fromarray(grid)
        draw = ImageDraw.Draw(canvas)
        for j, label in enumerate(labels[:n_cols]):
            draw.text((left + pad + j * (w + pad) + 2, 1), label, fill=(0, 0, 0), font=font)
        for i, label in enumerate(row_labels[: len(rows)]):
            # vertically centred on the row's tiles
            draw.text((pad, top + pad + i * (h + pad) + h // 2), label, fill=(0, 0, 0), font=font, anchor="lm")
        grid = np.asarray(canvas)
    return grid


def save_grid(path: str | os.PathLike, grid: np.ndarray) -> Path:
    """Write a uint8 [H, W, 3] grid as PNG, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(grid, np.uint8)).save(tmp, format="PNG")
    return path
