"""Helpers to set up a small real build: sample sources, a config file, Dagster resources."""

from pathlib import Path
from typing import Any

import yaml

from dataset_assets.core.config import DatasetConfig, load_config
from dataset_assets.core.manifest import FileEntry
from dataset_assets.core.sample import sample_config, write_sample
from dataset_assets.core.streams import zstd_decompress
from dataset_assets.storage import S3ObjectStore, S3Settings


def write_build_config(
    tmp: Path, bucket: str, records_per_family: int = 200, **overrides: Any
) -> Path:
    """Sample sources under ``tmp/data/generated`` and a ``tmp/dataset.yaml`` reading them."""
    write_sample(tmp / "data" / "generated", records_per_family=records_per_family)
    data: dict[str, Any] = {
        "bucket": bucket,
        "shard_size": 64 * 1024,
        "part_size": 5 * 1024 * 1024,
        "staging_dir": ".local/staging",
        "manifest_path": ".local/manifest.json",
        **sample_config("data/generated"),
        **overrides,
    }
    path = tmp / "dataset.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def config_and_store(
    config_path: Path, settings: S3Settings
) -> tuple[DatasetConfig, S3ObjectStore]:
    cfg = load_config(config_path)
    store = S3ObjectStore(cfg.bucket, settings, part_size=cfg.part_size)
    store.ensure_bucket()
    return cfg, store


def dagster_resources(config_path: Path, settings: S3Settings) -> dict[str, Any]:
    from dataset_assets.defs.io_manager import S3PublishIOManager
    from dataset_assets.defs.resources import DatasetConfigResource, ObjectStoreResource

    dataset = DatasetConfigResource(config_path=str(config_path))
    s3 = ObjectStoreResource(
        endpoint_url=settings.endpoint_url,
        region=settings.region,
        access_key_id=settings.access_key_id,
        secret_access_key=settings.secret_access_key,
    )
    return {"dataset": dataset, "s3": s3, "s3_publish": S3PublishIOManager(dataset=dataset, s3=s3)}


def object_lines(store: S3ObjectStore, entry: FileEntry) -> list[bytes]:
    """The JSONL lines of a published shard or export, read back from S3 (decompressed when
    the entry says it is zstd-compressed), as a user of the data would read them."""
    data = store.get_bytes(entry.key)
    if entry.compression == "zstd":
        data = zstd_decompress(data, entry.uri)
    return data.splitlines()
