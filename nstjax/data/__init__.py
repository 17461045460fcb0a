"""Datasets: the registry of published datasets (``nstjax data fetch|list``).

:mod:`~nstjax.data.registry` reads ``nstjax/manifests/datasets.json`` and
fetches a dataset into ``<cache>/datasets/<name>/`` (downloads are
:mod:`nstjax.hub`'s: resumable, checksummed, locked; extraction is atomic).
"""

from .registry import (
    Dataset,
    DatasetFile,
    DatasetStatus,
    dataset_path,
    datasets,
    fetch_dataset,
    get_dataset,
    list_datasets,
)

__all__ = [
    "Dataset",
    "DatasetFile",
    "DatasetStatus",
    "dataset_path",
    "datasets",
    "fetch_dataset",
    "get_dataset",
    "list_datasets",
]
