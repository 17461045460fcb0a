"""Label maps: palettes, colour-coded sketches, index PNGs, and procedural (label, photo) pairs.

The shared layer of the label-conditioned systems (SPADE/GauGAN-style
synthesis, semantic style transfer, the lost-painting pipeline):

* palettes as data (:func:`load_palette`, ``nstjax/labels/palettes/*.json``):
  class names, sketch colours, COCO-Stuff ids;
* reading and writing label maps (:func:`read_label_map`,
  :func:`save_label_map`): int32 ``[H, W]`` class indices <-> colour sketches or index PNGs;
* array helpers (:func:`one_hot`, :func:`resize_labels`, :func:`colorize`, :func:`class_areas`);
* colour values (:func:`hex_to_rgb`, :func:`rgb_to_hex`, :func:`pack_rgb`, :func:`unpack_rgb`,
  :func:`nearest_colors`): ``#rrggbb`` text, integer colour keys, nearest reference colour;
* :mod:`~nstjax.labels.synth`: procedural landscape pairs for tests and demos (synthetic data).

See ``docs/labels.md``.
"""

from ._colors import hex_to_rgb, nearest_colors, pack_rgb, rgb_to_hex, unpack_rgb
from ._files import DEFAULT_EDGE_WIDTH, DEFAULT_TOLERANCE, LabelKind, read_label_map, save_label_map
from ._ops import class_areas, colorize, one_hot, resize_labels
from ._palette import Palette, load_palette, palette_names
from .synth import (
    SynthDataset,
    SynthProgress,
    expected_class_colors,
    synth_landscape,
    synth_palette,
    write_synth_dataset,
)

__all__ = [
    "DEFAULT_EDGE_WIDTH",
    "DEFAULT_TOLERANCE",
    "LabelKind",
    "Palette",
    "SynthDataset",
    "SynthProgress",
    "class_areas",
    "colorize",
    "expected_class_colors",
    "hex_to_rgb",
    "load_palette",
    "nearest_colors",
    "one_hot",
    "pack_rgb",
    "palette_names",
    "read_label_map",
    "resize_labels",
    "rgb_to_hex",
    "save_label_map",
    "synth_landscape",
    "synth_palette",
    "unpack_rgb",
    "write_synth_dataset",
]
