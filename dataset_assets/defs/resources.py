"""Resources: the dataset config and the object store, shared by every asset, sensor and check."""

import threading
from pathlib import Path
from typing import Literal

import dagster as dg

from dataset_assets.core.config import DatasetConfig, load_config
from dataset_assets.storage import S3ObjectStore, S3Settings

_SETTINGS_FIELDS = (
    "endpoint_url",
    "region",
    "access_key_id",
    "secret_access_key",
    "profile",
    "request_checksum_calculation",
    "response_checksum_validation",
)
_CACHE_LOCK = threading.Lock()
_STORES: dict[tuple[S3Settings, str, int], S3ObjectStore] = {}
_ENSURED: set[tuple[S3Settings, str, int]] = set()


class DatasetConfigResource(dg.ConfigurableResource):
    """Points at the declarative dataset config file (YAML); validated on first use."""

    config_path: str

    def load(self) -> DatasetConfig:
        return load_config(Path(self.config_path))


class ObjectStoreResource(dg.ConfigurableResource):
    """An S3 or S3-compatible object store. Unset fields fall back to boto3's AWS config chain
    (``definitions.py`` fills them from the selected environment)."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    profile: str | None = None
    request_checksum_calculation: Literal["when_supported", "when_required"] = "when_supported"
    response_checksum_validation: Literal["when_supported", "when_required"] = "when_supported"

    @classmethod
    def from_settings(cls, settings: S3Settings) -> "ObjectStoreResource":
        return cls(**{name: getattr(settings, name) for name in _SETTINGS_FIELDS})

    def settings(self) -> S3Settings:
        return S3Settings(**{name: getattr(self, name) for name in _SETTINGS_FIELDS})

    def store(self, bucket: str, part_size: int, *, create: bool = False) -> S3ObjectStore:
        """One cached client per (settings, bucket, part size) per process: boto3 sessions take
        ~0.4 s and Dagster builds resources per step. ``create`` makes sure the bucket exists
        (checked once per process)."""
        key = (self.settings(), bucket, part_size)
        with _CACHE_LOCK:
            store = _STORES.get(key)
            if store is None:
                store = _STORES[key] = S3ObjectStore(bucket, self.settings(), part_size=part_size)
            if create and key not in _ENSURED:
                store.ensure_bucket()
                _ENSURED.add(key)
        return store

    def store_for(self, cfg: DatasetConfig) -> S3ObjectStore:
        """The dataset bucket's store (the bucket is created if missing)."""
        return self.store(cfg.bucket, cfg.part_size, create=True)
