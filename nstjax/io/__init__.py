"""Files in and out: images, colour transforms, atomic writes, the safe PyTorch checkpoint reader.

Submodules: :mod:`~nstjax.io.images` (load, save, resize), :mod:`~nstjax.io.color`
(YIQ, luminance, histogram matching), :mod:`~nstjax.io.atomic` (temp file, fsync,
rename), :mod:`~nstjax.io.pth` (``.pth`` state dicts without torch or pickled code),
:mod:`~nstjax.io.video` and :mod:`~nstjax.io.media` (images, folders and videos in, files out, for the
feed-forward stylisers).
"""

from .atomic import atomic_path, new_file_mode
from .color import combine_luminance, luminance, luminance_image, match_color, match_luminance
from .images import (
    SUPPORTED_SUFFIXES,
    ImageLike,
    as_list,
    check_output_path,
    fit_longest_side,
    image_array,
    load_image,
    output_folder,
    resize_image,
    save_image,
)

__all__ = [
    "SUPPORTED_SUFFIXES",
    "ImageLike",
    "as_list",
    "atomic_path",
    "check_output_path",
    "combine_luminance",
    "fit_longest_side",
    "image_array",
    "load_image",
    "luminance",
    "luminance_image",
    "match_color",
    "match_luminance",
    "new_file_mode",
    "output_folder",
    "resize_image",
    "save_image",
]
