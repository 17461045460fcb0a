"""The settings of ``recreate``, declared once: :data:`RECREATE_SETTINGS`.

``nstjax recreate`` generates its options from this table (the web page's Recreate mode will read it too);
each setting is the :class:`~nstjax.recreate.config.RecreateConfig` field of the same name, except the
CLI-only ``quiet``. Inputs (sketch, painting, its label map, the output) are not settings: they are files.
"""

from __future__ import annotations

from pathlib import Path

from ..schema import Schema, Setting
from .exemplars import DEFAULT_MAX_EXEMPLARS

__all__ = ["RECREATE_SETTINGS"]

RECREATE_SETTINGS = Schema(
    "recreate",
    (
        Setting("photo_model", Path, "Stage 1 with a trained SPADE/pix2pix run directory.", web=False),
        Setting("exemplars", Path, "Stage 1 by exemplar-guided NST from DIR/labels/<stem>.png + "
                "DIR/photos/<stem>.png.", web=False),
        Setting("painter", str, "Stage 2: auto (semantic-nst with --painting-labels, else nst), nst, semantic-nst, "
                "or cyclegan:RUN_DIR.", default="auto", label="Painter", group="basic", widget="select",
                web_choices=("auto", "nst", "semantic-nst"),
                web_help="auto (semantic NST when the painting has a label map, else plain NST), nst or semantic-nst."),
        Setting("size", int, "Longest side of the photo and painting in pixels.", unit="px",
                label="Size (longest side, px)", group="basic", widget="range", look={"min": 64, "step": 32}),
        Setting("steps", int, "Optimiser steps of each NST stage (final scale).", unit="steps",
                label="Steps per stage", group="basic", widget="range", look={"min": 10, "max": 1000, "step": 10}),
        Setting("weights", str, "VGG-19/16 weights: auto, random, a name from `nstjax weights list`, or a file.",
                label="VGG weights", group="basic", widget="select",
                web_help="auto, keras, torchvision, gatys or random (a file only through the server's --weights)."),
        Setting("stages", Path, "Folder for every stage's image, sheet.png and recreate.json (also runs plain and "
                "semantic NST).", web=False),
        Setting("seed", int, "Seed of the noise start, random weights and the photo model.", default=0,
                label="Seed", widget="number", look={"step": 1}),
        Setting("max_exemplars", int, "Exemplar pairs to use (the best-covering ones).", default=DEFAULT_MAX_EXEMPLARS,
                minimum=1, label="Exemplars used", widget="number", look={"step": 1}),
        Setting("quiet", bool, "No plan or progress bars.", default=False, flags=("--quiet", "-q"), web=False),
    ),
)  # fmt: skip
"""Every recreate setting: help, unit, range and web widget. Paths and ``quiet`` are CLI-only."""
