"""Resources: the dataset config and the object store, shared by every asset, sensor and check."""

import os
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import PrivateAttr

from dataset_assets.core.config import DatasetConfig, load_config
from dataset_assets.storage import S3ObjectStore, S3Settings


class DatasetConfigResource(dg.ConfigurableResource):
    """Points at the declarative dataset config file (YAML); validated on first use."""

    config_path: str

    def load(self) -> DatasetConfig:
        return load_config(Path(self.config_path))


class ObjectStoreResource(dg.ConfigurableResource):
    """An S3 or S3-compatible object store. Unset fields fall back to the AWS config chain."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    profile: str | None = None
    request_checksum_calculation: Literal["when_supported", "when_required"] = "when_supported"
    response_checksum_validation: Literal["when_supported", "when_required"] = "when_supported"

    _stores: dict[tuple[str, int], S3ObjectStore] = PrivateAttr(default_factory=dict)

    def settings(self) -> S3Settings:
        base = S3Settings.from_env(os.environ)
        return S3Settings(
            endpoint_url=self.endpoint_url or base.endpoint_url,
            region=self.region or base.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            profile=self.profile or base.profile,
            request_checksum_calculation=self.request_checksum_calculation,
            response_checksum_validation=self.response_checksum_validation,
        )

    def store(self, bucket: str, part_size: int) -> S3ObjectStore:
        """One cached client per (bucket, part size) per process (boto3 sessions are slow)."""
        key = (bucket, part_size)
        if key not in self._stores:
            store = S3ObjectStore(bucket, self.settings(), part_size=part_size)
            store.ensure_bucket()
            self._stores[key] = store
        return self._stores[key]

    def store_for(self, cfg: DatasetConfig) -> S3ObjectStore:
        return self.store(cfg.bucket, cfg.part_size)
