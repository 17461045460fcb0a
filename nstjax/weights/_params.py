"""Checking a parameter dict: which VGG it is, and that every layer has the right shape."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import NstjaxError
from ..models.vgg import NETWORKS, conv_channels, conv_layers, network_of

__all__ = ["NETWORK_TITLES", "Params", "as_float32", "check_layer", "network_by_count", "validate_params"]

Params = dict[str, dict[str, np.ndarray]]

NETWORK_TITLES = {"vgg19": "VGG-19", "vgg16": "VGG-16"}


def network_by_count(count: int) -> str | None:
    """The network with ``count`` convolutions (13: VGG-16, 16: VGG-19), else None."""
    for name in NETWORKS:
        if len(conv_layers(name)) == count:
            return name
    return None


def validate_params(
    params: Any,
    path: str | os.PathLike | None = None,
    origins: Mapping[str, str] | None = None,
    network: str | None = None,
) -> str:
    """Check that ``params`` is a complete VGG-19 or VGG-16 in the Flax layout; return the network.

    Every layer of the network (``network``, else :func:`nstjax.models.vgg.network_of`
    ``params``) must be present with a float kernel of shape ``(3, 3, Cin, Cout)``
    and a bias of shape ``(Cout,)``, all finite. ``origins`` optionally maps layer
    names to upstream names for the message.

    Raises:
      NstjaxError: naming ``path`` and the layer, e.g. ``missing layer conv3_4``
        or ``conv2_1 kernel has shape (3, 3, 64, 64), expected (3, 3, 64, 128)``.
    """
    if not isinstance(params, Mapping):
        raise NstjaxError(f"weights must be a mapping of layers, got {type(params).__name__}", path)
    network = network_of(params) if network is None else network
    for layer in conv_layers(network):  # network order, so the first problem is reported
        where = f" ({origins[layer]})" if origins and layer in origins else ""
        if params.get(layer) is None:
            raise NstjaxError(f"missing layer {layer}{where}", path)
        check_layer(layer, params[layer], path, where)
    return network


def check_layer(layer: str, entry: Any, path: str | os.PathLike | None, where: str = "") -> None:
    """Shape, dtype and finiteness of one layer's ``{"kernel", "bias"}`` (see :func:`validate_params`)."""
    c_in, c_out = conv_channels("vgg19")[layer]  # VGG-16's layers have VGG-19's channels
    for kind, expected in (("kernel", (3, 3, c_in, c_out)), ("bias", (c_out,))):
        if not isinstance(entry, Mapping) or kind not in entry:
            raise NstjaxError(f"layer {layer}{where} has no {kind}", path)
        value = np.asarray(entry[kind])
        if tuple(value.shape) != expected:
            raise NstjaxError(f"{layer} {kind}{where} has shape {tuple(value.shape)}, expected {expected}", path)
        if not np.issubdtype(value.dtype, np.floating):
            raise NstjaxError(f"{layer} {kind}{where} has dtype {value.dtype}, expected floating point", path)
        if not np.all(np.isfinite(value)):
            raise NstjaxError(f"{layer} {kind}{where} contains NaN or infinite values", path)


def as_float32(params: Mapping[str, Mapping[str, Any]], network: str | None = None) -> Params:
    """The network's layers of ``params`` as contiguous float32 NumPy (extra keys dropped)."""
    network = network_of(params) if network is None else network
    return {
        layer: {kind: np.ascontiguousarray(np.asarray(params[layer][kind]), dtype=np.float32) for kind in ("kernel", "bias")}
        for layer in conv_layers(network)
    }
