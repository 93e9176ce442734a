"""S3DatasetLoader against a real SeaweedFS: round trip through the pipeline, pinning, faults.

Faults are real: a TCP proxy cuts or corrupts response bodies between boto3 and the server, and
a corrupted object is really stored in S3.
"""

import dataclasses
import hashlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from dataset_assets.core.errors import IntegrityError
from dataset_assets.loader import RetryPolicy, S3DatasetLoader
from dataset_assets.storage import S3ObjectStore, S3Settings
from dataset_assets_tests.builds import object_lines
from dataset_assets_tests.faults import FaultProxy
from dataset_assets_tests.loader.datasets import make_dataset, publish_s3

FAST_RETRY = RetryPolicy(max_retries=5, backoff=0.01)


class CountingStore:
    """Delegates to a real store and counts whole-object fetches (GETs from byte 0) per key."""

    def __init__(self, store: S3ObjectStore) -> None:
        self.store = store
        self.bucket = store.bucket
        self.fetches: Counter[str] = Counter()
        self.ranged: Counter[str] = Counter()

    def get_bytes(self, key: str) -> bytes:
        return self.store.get_bytes(key)

    def iter_bytes(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = 1024 * 1024
    ) -> Iterator[bytes]:
        (self.fetches if start == 0 else self.ranged)[key] += 1
        return self.store.iter_bytes(key, start, end, chunk_size)


def canonical(rec: object) -> bytes:
    return orjson.dumps(rec, option=orjson.OPT_SORT_KEYS)


def test_pipeline_build_reads_back_exactly(
    tmp_path: Path, seaweed: S3Settings, seaweed_store: S3ObjectStore
) -> None:
    from dataset_assets.pipeline import build_dataset
    from dataset_assets_tests.builds import config_and_store, write_build_config

    cfg, store = config_and_store(
        write_build_config(tmp_path, seaweed_store.bucket, records_per_family=150), seaweed
    )
    manifest = build_dataset(cfg, store)
    uri = store.uri("final_dataset/manifest.json")
    loader = S3DatasetLoader(uri, store=store, seed=11, shuffle_buffer=64)
    assert loader.build_id == manifest.build_id
    assert loader.pinned_uri.endswith(f"manifests/{manifest.build_id}.json")
    assert loader.counts == {s: manifest.split_records(s) for s in ("train", "val", "test")}
    everything: Counter[bytes] = Counter()
    for split in ("train", "val", "test"):
        published: Counter[bytes] = Counter()
        for shard in manifest.split_shards(split):
            for line in object_lines(store, shard):
                published[canonical(orjson.loads(line))] += 1
        view = loader.select(split=split)
        first = [canonical(r) for r in view]
        assert Counter(first) == published and len(first) == manifest.split_records(split)
        assert [canonical(r) for r in loader.select(split=split)] == first  # same seed
        view.set_epoch(1)
        second = [canonical(r) for r in view]
        assert Counter(second) == published
        if len(first) > 1:
            assert second != first
        everything += published
    assert manifest.export is not None  # and the export holds the same conversations
    export = Counter(canonical(orjson.loads(x)) for x in object_lines(store, manifest.export))
    assert sum(export.values()) == sum(everything.values())


def test_loader_finishes_its_pinned_build_while_a_new_one_is_published(
    seaweed_store: S3ObjectStore,
) -> None:
    build1 = make_dataset(seaweed_store.bucket, {"train": [50, 50, 50]}, build="b1")
    build2 = make_dataset(seaweed_store.bucket, {"train": [80, 80]}, build="b2")
    uri = publish_s3(build1, seaweed_store)
    loader = S3DatasetLoader(uri, store=seaweed_store, read_ahead=0, shuffle_buffer=10)
    it = iter(loader)
    head = [next(it) for _ in range(20)]
    publish_s3(build2, seaweed_store)  # manifest.json now names build 2
    rest = list(it)
    got = head + rest
    assert sorted(map(canonical, got)) == sorted(map(canonical, build1.records["train"]))
    assert all("(b1)" in r["messages"][0]["content"] for r in got)
    # a second epoch of the same loader still reads build 1; a new loader sees build 2
    loader.set_epoch(1)
    assert len(list(loader)) == 150
    fresh = S3DatasetLoader(uri, store=seaweed_store)
    assert fresh.build_id == build2.manifest.build_id and len(fresh) == 160


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_connection_cut_mid_shard_resumes_with_range(
    seaweed: S3Settings, seaweed_store: S3ObjectStore, compression: str | None
) -> None:
    ds = make_dataset(seaweed_store.bucket, {"train": [3000, 2500]}, compression=compression)
    uri = publish_s3(ds, seaweed_store)
    big = ds.manifest.split_shards("train")[0]
    assert big.bytes > 20_000
    with FaultProxy(upstream=str(seaweed.endpoint_url)) as proxy:
        via_proxy = S3ObjectStore(
            seaweed_store.bucket, dataclasses.replace(seaweed, endpoint_url=proxy.endpoint_url)
        )
        counting = CountingStore(via_proxy)
        loader = S3DatasetLoader(uri, store=counting, retry=FAST_RETRY, seed=2)
        proxy.only_path(big.key)
        proxy.cut_response_after(min(70_000, big.bytes // 4), times=3)
        got = list(loader)
        assert proxy.fired["cut_response_after"] == 3
    assert counting.fetches[big.key] == 1 and counting.ranged[big.key] == 3
    reference = S3DatasetLoader(uri, store=seaweed_store, seed=2)
    assert [canonical(r) for r in got] == [canonical(r) for r in reference]


def test_connection_that_keeps_dropping_fails_after_the_retry_budget(
    seaweed: S3Settings, seaweed_store: S3ObjectStore
) -> None:
    from dataset_assets.core.errors import StorageError

    ds = make_dataset(seaweed_store.bucket, {"train": [3000]})
    uri = publish_s3(ds, seaweed_store)
    with FaultProxy(upstream=str(seaweed.endpoint_url)) as proxy:
        via_proxy = S3ObjectStore(
            seaweed_store.bucket, dataclasses.replace(seaweed, endpoint_url=proxy.endpoint_url)
        )
        loader = S3DatasetLoader(
            uri, store=via_proxy, retry=RetryPolicy(max_retries=2, backoff=0.01)
        )
        proxy.only_path("/train/")
        proxy.cut_response_after(1000, times=None)
        with pytest.raises(StorageError, match="after 2 resumed requests"):
            list(loader)


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_object_corrupted_in_s3_fails_clearly_after_one_refetch(
    seaweed_store: S3ObjectStore, compression: str | None
) -> None:
    ds = make_dataset(seaweed_store.bucket, {"train": [100, 100]}, compression=compression)
    uri = publish_s3(ds, seaweed_store)
    bad = ds.manifest.split_shards("train")[1]
    damaged = bytearray(ds.shard_bytes[bad.key])
    damaged[len(damaged) // 2] ^= 0x20
    seaweed_store.put_bytes(bad.key, bytes(damaged))
    counting = CountingStore(seaweed_store)
    loader = S3DatasetLoader(uri, store=counting, shuffle=False, read_ahead=0)
    with pytest.raises(IntegrityError) as err:
        list(loader)
    assert counting.fetches[bad.key] == 2  # the original fetch and exactly one re-fetch
    message = str(err.value)
    assert bad.shard_id in message and bad.sha256 in message
    assert hashlib.sha256(bytes(damaged)).hexdigest() in err.value.actual


def test_bytes_corrupted_in_transit_once_are_refetched_transparently(
    seaweed: S3Settings, seaweed_store: S3ObjectStore
) -> None:
    ds = make_dataset(seaweed_store.bucket, {"train": [200]})
    uri = publish_s3(ds, seaweed_store)
    shard = ds.manifest.split_shards("train")[0]
    with FaultProxy(upstream=str(seaweed.endpoint_url)) as proxy:
        via_proxy = S3ObjectStore(
            seaweed_store.bucket, dataclasses.replace(seaweed, endpoint_url=proxy.endpoint_url)
        )
        counting = CountingStore(via_proxy)
        loader = S3DatasetLoader(uri, store=counting, shuffle=False)
        proxy.only_path(shard.key)
        proxy.corrupt_response_body(times=1)
        got = list(loader)
        assert proxy.fired["corrupt_response_body"] == 1
    assert counting.fetches[shard.key] == 2
    assert [canonical(r) for r in got] == [canonical(r) for r in ds.records["train"]]


def test_read_ahead_is_bounded(seaweed_store: S3ObjectStore) -> None:
    ds = make_dataset(seaweed_store.bucket, {"train": [30] * 8})
    uri = publish_s3(ds, seaweed_store)
    counting = CountingStore(seaweed_store)
    loader = S3DatasetLoader(uri, store=counting, read_ahead=2, shuffle=False)
    it = iter(loader)
    next(it)
    time.sleep(0.5)  # give the prefetch threads every chance to run ahead
    assert sum(counting.fetches.values()) == 3  # the shard in use + 2 ahead, not all 8
    assert len(list(it)) == 239 and sum(counting.fetches.values()) == 8
