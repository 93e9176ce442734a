"""Composition under real faults (the fault proxy between the client and the server): bytes
corrupted on the way in or out, a server failing every copy. Each time the composition fails
with a typed error, nothing is left under the target key and no multipart upload stays open.
Parametrized over SeaweedFS and Ceph RGW (``store``)."""

from pathlib import Path

import pytest

from dataset_assets.core.errors import StorageError
from dataset_assets.storage import S3ObjectStore
from dataset_assets.storage.compose import compose_parts, stream_parts
from dataset_assets_tests.faults import FaultProxy, proxied
from dataset_assets_tests.storage.test_compose import open_uploads, publish_shards

MiB = 1024 * 1024
TARGET = "p/compiled/out.jsonl"


def assert_nothing_left(store: S3ObjectStore) -> None:
    assert not store.exists(TARGET)
    assert open_uploads(store) == []


def test_a_part_corrupted_on_the_way_in_fails_the_mixed_composition(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    parts, _ = publish_shards(store, tmp_path, [6 * MiB, 1 * MiB, 6 * MiB, 3000])
    with FaultProxy(store.settings.endpoint_url or "") as proxy:
        proxy.only_method("PUT")
        proxy.corrupt_request_body(times=1)  # the read-back part: copies have no body

        with pytest.raises(StorageError):
            compose_parts(proxied(proxy, store, max_attempts=1), TARGET, parts, mixed=True)

        assert proxy.fired["corrupt_request_body"] == 1
    assert_nothing_left(store)


def test_a_shard_corrupted_on_the_way_out_fails_the_stream_naming_it(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    parts, _ = publish_shards(store, tmp_path, [2 * MiB, 1 * MiB, 5000])
    with FaultProxy(store.settings.endpoint_url or "") as proxy:
        proxy.only_method("GET")
        proxy.corrupt_response_body(times=1)  # the first shard read back

        with pytest.raises(StorageError, match=parts[0].key):
            stream_parts(proxied(proxy, store, max_attempts=1), TARGET, parts)

        assert proxy.fired["corrupt_response_body"] == 1
    assert_nothing_left(store)


def test_a_server_failing_every_copy_aborts_the_composition(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    parts, _ = publish_shards(store, tmp_path, [6 * MiB, 6 * MiB, 3000])
    with FaultProxy(store.settings.endpoint_url or "") as proxy:
        proxy.only_method("PUT")
        proxy.http_500(times=None)

        with pytest.raises(StorageError, match="500"):
            compose_parts(proxied(proxy, store, max_attempts=1), TARGET, parts)

        assert proxy.fired["http_500"] >= 1
    assert_nothing_left(store)
