"""Composed, streamed and copied exports under server-side encryption and opaque ETags.
(``storage/compose.py`` adds the store's encryption arguments to its own write calls and does
not trust ETags that are not MD5s.)
"""

import os
from pathlib import Path

import pytest

from dataset_assets.core.errors import VerificationError
from dataset_assets.storage import S3ObjectStore, S3Settings
from dataset_assets.storage.compose import compose_parts, copy_object, stream_parts
from dataset_assets_tests.security.conftest import shared_store
from dataset_assets_tests.security.servers import OpaqueEtagProxy
from dataset_assets_tests.storage.test_compose import MiB, publish_shards


def test_composed_streamed_and_copied_exports_are_encrypted(
    seaweed: S3Settings, tmp_path: Path
) -> None:
    store, w = shared_store(seaweed, server_side_encryption="AES256")
    parts, data = publish_shards(store, tmp_path, [6 * MiB, 5 * MiB + 123, 70_000])
    composed = compose_parts(store, f"{w}export-composed.jsonl", parts)
    streamed = stream_parts(store, f"{w}export-streamed.jsonl", parts)
    copied = copy_object(store, f"{w}export-composed.jsonl", f"{w}export-copied.jsonl")
    for info in (composed.info, streamed.info, copied):
        assert info.server_side_encryption == "AES256", info.key
        assert store.get_bytes(info.key) == data


def test_compose_verifies_by_readback_when_etags_are_not_md5(
    s3_settings: S3Settings, tmp_path: Path
) -> None:
    """SeaweedFS: copied parts checked by ChecksumSHA256; Ceph (no checksums): the result is
    read back, each part's range against its source's sha256."""
    with OpaqueEtagProxy(str(s3_settings.endpoint_url)) as proxy:
        store, w = shared_store(s3_settings, endpoint_url=proxy.endpoint_url, etag_is_md5=False)
        bucket = store.bucket
        parts, data = publish_shards(store, tmp_path, [6 * MiB, 5 * MiB + 123, 70_000])
        composed = compose_parts(store, f"{w}export.jsonl", parts)
        assert composed.etag == store.head(f"{w}export.jsonl").etag  # the server's, recorded
        streamed = stream_parts(store, f"{w}export-streamed.jsonl", parts)
        assert store.get_bytes(streamed.info.key) == data
        # A source whose bytes changed under its entry is caught by the read-back.
        S3ObjectStore(bucket, s3_settings).put_bytes(parts[1].key, os.urandom(parts[1].bytes))
        with pytest.raises(VerificationError, match="(?i)sha256"):
            compose_parts(store, f"{w}export-2.jsonl", parts)
        assert not S3ObjectStore(bucket, s3_settings).exists(f"{w}export-2.jsonl")
