"""A small project with local dataset files to migrate, and its S3 bucket on SeaweedFS."""

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from dataset_assets.core.config import DatasetConfig, load_config
from dataset_assets.defs.resources import DatasetConfigResource, ObjectStoreResource
from dataset_assets.storage import S3ObjectStore

OLD = time.time() - 3600
PREFIX = "datasets/local/ai/training_ready"

LIVE = b'{"messages": [{"role": "user", "content": "live"}]}\n'
FAMILY = "live_chats"
# relative path → content; every one of these must be migrated
MIGRATED = {
    "generated/a.jsonl": b'{"messages": [{"role": "user", "content": "a"}]}\n',
    "old/2023/b.jsonl": b'{"messages": [{"role": "user", "content": "b"}]}\n' * 50,
    "pkgdata/big.bin": os.urandom(3000),
}
# paths (relative to the project) that must stay where they are
KEPT = {
    "data/notes.txt": b"not a dataset file\n",
    "data/manifest.jsonl": b"{}\n",  # the kept manifest copy
    "data/quarantine/bad.jsonl": b"{broken\n",
    "data/staging/shard.jsonl": b"{}\n",
    "data/generated/next.jsonl.tmp": b"{}\n",
    "pkgdata/small.bin": b"tiny",
    "data/current/live.jsonl": LIVE,  # read by the family: in use, never migrated by default
}


@dataclass
class MigrationProject:
    root: Path
    store: S3ObjectStore

    @property
    def config_path(self) -> Path:
        return self.root / "dataset.yaml"

    @property
    def cfg(self) -> DatasetConfig:
        return load_config(self.config_path)

    def local(self, relative: str) -> Path:
        if relative.startswith("pkgdata/"):
            return self.root / relative
        return self.root / "data" / relative

    def key(self, relative: str) -> str:
        return f"{PREFIX}/{relative}"

    def write(self, relative: str, data: bytes, *, mtime: float | None = OLD) -> Path:
        path = self.local(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        return path

    def resources(self, endpoint_url: str | None = None) -> dict[str, object]:
        s = self.store.settings
        return {
            "dataset": DatasetConfigResource(config_path=str(self.config_path)),
            "s3": ObjectStoreResource(
                endpoint_url=endpoint_url or s.endpoint_url,
                region=s.region,
                access_key_id=s.access_key_id,
                secret_access_key=s.secret_access_key,
            ),
        }

    def env(self, endpoint_url: str | None = None) -> dict[str, str | None]:
        s = self.store.settings
        return {
            "AWS_ENDPOINT_URL_S3": endpoint_url or s.endpoint_url or "",
            "AWS_REGION": s.region or "us-east-1",
            "AWS_ACCESS_KEY_ID": s.access_key_id or "",
            "AWS_SECRET_ACCESS_KEY": s.secret_access_key or "",
            "AWS_PROFILE": None,  # None unsets it in CliRunner
        }

    def assert_migrated(self, relative: str, content: bytes) -> None:
        info = self.store.head(self.key(relative))
        assert info.size == len(content)
        assert info.sha256 == hashlib.sha256(content).hexdigest()
        assert not self.local(relative).exists()


def write_config(root: Path, bucket: str, **migration: object) -> None:
    config = {
        "bucket": bucket,
        "families": [{"name": FAMILY, "paths": ["data/current/*.jsonl"]}],
        "part_size": 5 * 1024 * 1024,
        "staging_dir": "data/staging",
        "manifest_path": "data/manifest.jsonl",
        "migration": {
            "package_data_roots": ["pkgdata"],
            "min_package_file_bytes": 1024,
            "stable_seconds": 5,
            "ledger_path": ".local/ledger.jsonl",
            **migration,
        },
    }
    (root / "dataset.yaml").write_bytes(orjson.dumps(config))


@pytest.fixture
def project(tmp_path: Path, seaweed_store: S3ObjectStore) -> MigrationProject:
    root = tmp_path / "project"
    root.mkdir()
    write_config(root, seaweed_store.bucket)
    proj = MigrationProject(root, seaweed_store)
    for relative, data in MIGRATED.items():
        proj.write(relative, data)
    for path, data in KEPT.items():
        full = root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(data)
        os.utime(full, (OLD, OLD))
    return proj
