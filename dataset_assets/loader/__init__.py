"""Training-side reader of published datasets: ``S3DatasetLoader`` (docs/architecture.md,
"The loader").

Imports core and storage only — never Dagster — so ``pip install dataset-assets`` (no extras)
is enough. The torch adapters load torch lazily: accessing ``TorchIterableDataset`` or
``TorchDataLoader`` needs the ``torch`` extra, nothing else does; likewise
``hf_iterable_dataset`` (a ``datasets.IterableDataset``) needs the ``hf`` extra.
"""

from typing import TYPE_CHECKING, Any

from dataset_assets.loader.cache import ShardCache
from dataset_assets.loader.dataset import LoaderOptions, Record, S3DatasetLoader
from dataset_assets.loader.fetch import (
    ByteRangeReader,
    FetchStats,
    LocalFiles,
    RetryPolicy,
    fetch_shard,
)
from dataset_assets.loader.source import ObjectReader, ResolvedManifest, resolve_manifest

if TYPE_CHECKING:
    from dataset_assets.loader.hf import hf_iterable_dataset
    from dataset_assets.loader.torch_adapter import (
        TorchDataLoader,
        TorchIterableDataset,
        list_collate,
    )

_TORCH_NAMES = ("TorchDataLoader", "TorchIterableDataset", "list_collate")


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        from dataset_assets.loader import torch_adapter

        return getattr(torch_adapter, name)
    if name == "hf_iterable_dataset":
        from dataset_assets.loader import hf

        return hf.hf_iterable_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ByteRangeReader",
    "FetchStats",
    "LoaderOptions",
    "LocalFiles",
    "ObjectReader",
    "Record",
    "ResolvedManifest",
    "RetryPolicy",
    "S3DatasetLoader",
    "ShardCache",
    "TorchDataLoader",
    "TorchIterableDataset",
    "fetch_shard",
    "hf_iterable_dataset",
    "list_collate",
    "resolve_manifest",
]
