"""The fault proxy itself, and how the store surfaces each fault to its callers."""

import os

import pytest

from dataset_assets.core.errors import StorageError
from dataset_assets.storage import S3ObjectStore
from dataset_assets_tests.faults import FaultProxy, proxied

MiB = 1024 * 1024


def test_clean_proxy_relays_keep_alive_requests_unchanged(seaweed_store: S3ObjectStore) -> None:
    data = os.urandom(2 * MiB)
    with FaultProxy(seaweed_store.settings.endpoint_url or "") as proxy:
        store = proxied(proxy, seaweed_store)
        for i in range(5):
            store.put_bytes(f"p/{i}", data)
        assert [o.key for o in store.list("p/")] == [f"p/{i}" for i in range(5)]
        assert store.get_bytes("p/3") == data
        assert store.head("p/4").size == len(data)
        assert proxy.requests >= 8
        assert sum(proxy.fired.values()) == 0


def test_cut_response_mid_body_raises_storage_error_and_resume_with_range_works(
    seaweed_store: S3ObjectStore,
) -> None:
    data = os.urandom(3 * MiB)
    seaweed_store.put_bytes("big", data)
    with FaultProxy(seaweed_store.settings.endpoint_url or "") as proxy:
        store = proxied(proxy, seaweed_store)
        proxy.cut_response_after(MiB + 5, times=1)
        received = bytearray()
        with pytest.raises(StorageError) as err:
            for chunk in store.iter_bytes("big", chunk_size=256 * 1024):
                received += chunk
        assert type(err.value) is StorageError
        assert err.value.key == "big"
        assert proxy.fired["cut_response_after"] == 1
        assert 0 < len(received) <= MiB + 5
        received += b"".join(store.iter_bytes("big", start=len(received)))
    assert bytes(received) == data


def test_corrupted_response_is_not_silently_returned_by_seaweed(
    seaweed_store: S3ObjectStore,
) -> None:
    """SeaweedFS returns the SHA256 checksum, so boto3 rejects a flipped body on a full GET."""
    seaweed_store.put_bytes("c", os.urandom(100_000))
    with FaultProxy(seaweed_store.settings.endpoint_url or "") as proxy:
        store = proxied(proxy, seaweed_store, max_attempts=1)
        proxy.corrupt_response_body(times=None)
        with pytest.raises(StorageError, match="c"):
            store.get_bytes("c")
        assert proxy.fired["corrupt_response_body"] >= 1


def test_http_500_and_reset_are_counted_and_disarm_after_their_shots(
    seaweed_store: S3ObjectStore,
) -> None:
    seaweed_store.put_bytes("k", b"v")
    with FaultProxy(seaweed_store.settings.endpoint_url or "") as proxy:
        store = proxied(proxy, seaweed_store, max_attempts=4)
        proxy.http_500(times=1)
        proxy.reset(times=1)
        assert store.get_bytes("k") == b"v"  # retried through both faults
        assert proxy.fired["http_500"] == 1 and proxy.fired["reset"] == 1
        single = proxied(proxy, seaweed_store, max_attempts=1)
        proxy.http_500(times=None)
        with pytest.raises(StorageError, match="InternalError"):
            single.get_bytes("k")
        proxy.clear()
        assert single.get_bytes("k") == b"v"
