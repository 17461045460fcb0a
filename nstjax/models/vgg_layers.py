"""VGG-19 and VGG-16 layer names, shapes and option names, without JAX.

What configs, settings schemas and error messages check against (``relu4_2``
exists, VGG-16 ends block 3 at ``conv3_3``, pooling is ``max`` or ``avg``), kept
apart from :mod:`nstjax.models.vgg` so that checking a setting never imports
JAX: ``nstjax --help`` builds every option from these names.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import NstjaxError

CONV_IMPLS = ("auto", "xla", "gemm", "winograd", "onednn")
"""How a convolution may be computed (:func:`nstjax.models.conv.plan` chooses for ``auto``; ``onednn``: VGG's
on CPU, where :func:`nstjax.native.onednn_available`)."""

NETWORKS: dict[str, tuple[tuple[int, int], ...]] = {
    # (channels, number of convolutions) for each of the five blocks.
    "vgg19": ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4)),  # configuration E
    "vgg16": ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),  # configuration D
}
"""The supported networks by name. VGG-16's layer names are a subset of VGG-19's, in the same order."""

BLOCKS: tuple[tuple[int, int], ...] = NETWORKS["vgg19"]
"""VGG-19's blocks (the default network)."""


def conv_layers(network: str = "vgg19") -> tuple[str, ...]:
    """The convolution names of ``network`` in order: ``conv1_1 … conv5_4`` (VGG-19) or ``… conv5_3`` (VGG-16)."""
    return tuple(f"conv{b}_{n}" for b, (_, count) in enumerate(network_blocks(network), 1) for n in range(1, count + 1))


def conv_channels(network: str = "vgg19") -> dict[str, tuple[int, int]]:
    """Convolution name -> (input channels, output channels) for ``network``."""
    channels, c_in = {}, 3
    for b, (c_out, count) in enumerate(network_blocks(network), 1):
        for n in range(1, count + 1):
            channels[f"conv{b}_{n}"] = (c_in, c_out)
            c_in = c_out
    return channels


def network_layers(network: str = "vgg19") -> tuple[str, ...]:
    """Every layer of ``network`` whose activation can be asked for, in network order."""
    return tuple(
        name
        for b, (_, count) in enumerate(network_blocks(network), 1)
        for name in (*(f"{kind}{b}_{n}" for n in range(1, count + 1) for kind in ("conv", "relu")), f"pool{b}")
    )


def network_blocks(network: str) -> tuple[tuple[int, int], ...]:
    """(channels, convolutions) per block of ``network`` (``"vgg19"`` or ``"vgg16"``)."""
    try:
        return NETWORKS[network]
    except KeyError:
        raise ValueError(f"network must be one of {tuple(NETWORKS)}, got {network!r}") from None


def network_of(params: Any) -> str:
    """``"vgg16"`` or ``"vgg19"``: the network a parameter dict belongs to.

    Read from the layer names only (static under ``jit``): a ``conv3_4``,
    ``conv4_4`` or ``conv5_4`` means VGG-19; a ``conv3_3``/``conv4_3``/``conv5_3``
    without them means VGG-16. Parameters cut before block 3 fit both networks,
    which compute the same there; they count as VGG-19.
    """
    names = set(params)
    if names & {"conv3_4", "conv4_4", "conv5_4"}:
        return "vgg19"
    if names & {"conv3_3", "conv4_3", "conv5_3"}:
        return "vgg16"
    return "vgg19"


CONV_LAYERS: tuple[str, ...] = conv_layers("vgg19")
"""VGG-19's convolutions (a superset of VGG-16's names)."""

CONV_CHANNELS: dict[str, tuple[int, int]] = conv_channels("vgg19")
"""Layer name -> (input channels, output channels), VGG-19 (VGG-16's layers have the same channels)."""

LAYERS: tuple[str, ...] = network_layers("vgg19")
"""Every layer whose activation can be asked for, in network order (VGG-19; VGG-16's are a subset)."""

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # 0–255 scale, BGR
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)

NETWORK_TITLES = {"vgg19": "VGG-19", "vgg16": "VGG-16"}

POOLINGS = ("max", "avg")
PADDINGS = ("zero", "reflect", "replicate")
PREPROCESSINGS = ("caffe", "torch")
REMATS = ("none", "conv", "block")


def layer_block(name: str) -> int:
    """The block (1–5) a layer belongs to; pool{b} closes block b."""
    return int(name[4])


def layer_channels(name: str) -> int:
    """Number of channels of a layer's activation."""
    return BLOCKS[layer_block(name) - 1][0]


def layer_halvings(name: str) -> int:
    """Number of 2x2/2 poolings between the input and layer ``name``.

    ``conv{b}_{n}`` / ``relu{b}_{n}`` -> ``b - 1``; ``pool{b}`` -> ``b``.
    """
    return layer_block(name) - (0 if name.startswith("pool") else 1)


def layer_shape(name: str, height: int, width: int) -> tuple[int, int]:
    """Spatial size (h, w) of a layer's activation for an input of ``height × width``.

    Each 2x2/2 pooling floors, exactly like the network's VALID pooling.
    """
    halvings = layer_halvings(name)
    return height >> halvings, width >> halvings


def validate_layers(names: Iterable[str], what: str = "layer", network: str | None = None) -> tuple[str, ...]:
    """Return ``names`` as a tuple, or raise a helpful error for an unknown name.

    ``network`` (``"vgg16"``/``"vgg19"``): also refuse names that exist only in the
    other network (``relu3_4`` in VGG-16); None accepts any name of either.
    """
    names = tuple(names)
    if network is not None:
        own = network_layers(network)
        for name in names:
            if name in LAYERS and name not in own:
                block = layer_block(name)
                last = f"conv{block}_{network_blocks(network)[block - 1][1]}"
                raise NstjaxError(
                    f"{what} {name!r} is not in {NETWORK_TITLES[network]} (the loaded weights): its block {block} "
                    f"ends at {last}; the layers of both networks are relu1_1 … relu5_3 without *_4"
                )
    for name in names:
        if name not in LAYERS:
            close = difflib.get_close_matches(name, LAYERS, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "."
            raise NstjaxError(
                f"unknown {what} {name!r}{hint} Valid names: conv1_1 … conv5_4, relu1_1 … relu5_4, pool1 … pool5"
            )
    return names


def min_input_size(layers: Sequence[str], padding: str = "zero") -> int:
    """Smallest image side for which every layer in ``layers`` is at least 1 pixel.

    Reflect padding needs 2 pixels at the deepest convolution.
    """
    deepest = max((LAYERS.index(n) for n in layers), default=0)
    name = LAYERS[deepest]
    halvings = layer_halvings(name)
    need = 2 if padding == "reflect" and not name.startswith("pool") else 1
    return need << halvings
