"""The export under SSE-KMS on SeaweedFS, which cannot copy SSE-KMS objects as parts (501
NotImplemented): the export falls back to streaming, stays encrypted, and is checked by reading
it back (its ETags are not MD5s). SeaweedFS only: Ceph RGW 16 has no KMS here."""

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataset_assets.pipeline.export import compose_export, export_problems, immutable_export_key
from dataset_assets.storage import S3ObjectStore, S3Settings
from dataset_assets.storage.compose import CopyNotSupportedError, compose_parts
from dataset_assets_tests.conftest import make_store
from dataset_assets_tests.pipeline.test_export import PREFIX, build_shards, manifest_for
from dataset_assets_tests.security.servers import KMS_KEY_ALIAS, start_kms_seaweed
from dataset_assets_tests.storage.test_compose import open_uploads

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def kms_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3ObjectStore]:
    server = start_kms_seaweed(tmp_path_factory.mktemp("kms-seaweed"))
    try:
        settings: S3Settings = dataclasses.replace(
            server.settings(), server_side_encryption="aws:kms", sse_kms_key_id=KMS_KEY_ALIAS
        )
        yield make_store(settings)
    finally:
        server.stop()


def test_export_of_sse_kms_shards_falls_back_to_streaming_and_stays_encrypted(
    kms_store: S3ObjectStore, tmp_path: Path
) -> None:
    shards, data = build_shards(kms_store, tmp_path, {"train": [6 * MiB], "test": [6 * MiB, 900]})
    with pytest.raises(CopyNotSupportedError):
        compose_parts(kms_store, "p/compiled/direct.jsonl", shards)
    assert not kms_store.exists("p/compiled/direct.jsonl")
    assert open_uploads(kms_store) == []

    export = compose_export(kms_store, shards, immutable_export_key(PREFIX, shards))

    assert kms_store.get_bytes(export.key) == data
    assert kms_store.head(export.key).server_side_encryption == "aws:kms"
    assert export_problems(kms_store, manifest_for(kms_store, shards, export), readback=True) == []
