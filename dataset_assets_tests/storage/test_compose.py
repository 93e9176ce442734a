"""Objects made in S3 from published objects: composed server-side, streamed, copied.

Parametrized over SeaweedFS and Ceph RGW (``store``). Shards are published through the real
publish protocol (multipart sources at the 5 MiB test part size), so the copies start from the
same kind of objects a build leaves.
"""

import concurrent.futures
import dataclasses
import hashlib
import os
from pathlib import Path

import pytest

from dataset_assets.core.errors import VerificationError
from dataset_assets.core.hashing import multipart_etag
from dataset_assets.core.layout import shard_key
from dataset_assets.core.manifest import ShardEntry
from dataset_assets.pipeline.entries import shard_entry
from dataset_assets.storage import Publisher, S3ObjectStore
from dataset_assets.storage.compose import (
    compose_parts,
    copy_object,
    plan_pieces,
    stream_parts,
    why_not_composable,
    why_not_mixed,
)
from dataset_assets_tests.faults import FaultProxy, proxied
from dataset_assets_tests.storage.helpers import stage

MiB = 1024 * 1024


def publish_shards(
    store: S3ObjectStore, tmp_path: Path, sizes: list[int], split: str = "train"
) -> tuple[list[ShardEntry], bytes]:
    """Publish random shards of ``sizes``; their entries (with MD5) and their concatenation."""
    entries: list[ShardEntry] = []
    with Publisher(store) as publisher:
        for i, size in enumerate(sizes):
            key = shard_key("p", split, f"{split}-{i:05d}-{os.urandom(6).hex()}")
            staged = stage(store, tmp_path / "stage", key, size)
            obj = publisher.publish(staged)
            entries.append(shard_entry(split, obj, md5=staged.digest.md5))
    data = b"".join(store.get_bytes(e.key) for e in entries)
    return entries, data


def open_uploads(store: S3ObjectStore) -> list[object]:
    return list(store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []))


def corrupt(store: S3ObjectStore, entry: ShardEntry) -> None:
    """Replace the shard in S3 with other bytes of the same size."""
    store.put_bytes(entry.key, os.urandom(entry.bytes))


def test_composed_object_is_the_shards_concatenated_and_its_etag_checks(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    parts, data = publish_shards(store, tmp_path, [6 * MiB, 5 * MiB + 123, 70_000])
    assert why_not_composable(parts) is None

    composed = compose_parts(store, "p/compiled/out.jsonl", parts)

    assert composed.method == "copy"
    assert store.get_bytes("p/compiled/out.jsonl") == data
    want = multipart_etag([hashlib.md5(store.get_bytes(p.key)).hexdigest() for p in parts])
    assert composed.etag == want == store.head("p/compiled/out.jsonl").etag
    assert composed.info.size == len(data)
    assert open_uploads(store) == []


def test_the_composed_etag_is_checked_on_the_object_s3_holds(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    """Ceph RGW 16 answers CompleteMultipartUpload with an empty ETag: the HEAD after it is the
    evidence. Other bytes of the same size landing under the key before that HEAD must fail."""
    parts, data = publish_shards(store, tmp_path, [6 * MiB, 3000])
    key = "p/compiled/out.jsonl"
    assert store.settings.endpoint_url is not None
    with FaultProxy(upstream=store.settings.endpoint_url) as proxy:
        via = proxied(proxy, store)
        hold = proxy.hold("HEAD", f"/{key}")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(compose_parts, via, key, parts)
            assert hold.reached.wait(60), "compose_parts never checked the result with a HEAD"
            store.put_bytes(key, os.urandom(len(data)))  # same size, other bytes, single-part
            hold.release()
            with pytest.raises(VerificationError, match="(?i)etag") as caught:
                running.result(timeout=60)
    assert caught.value.key == key
    assert multipart_etag([str(p.md5) for p in parts]) in str(caught.value)
    assert not store.exists(key)
    assert open_uploads(store) == []


def test_parts_under_5_mib_are_streamed_into_the_same_bytes(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    parts, data = publish_shards(store, tmp_path, [3 * MiB, 6 * MiB, 2 * MiB, 40_000])
    assert "under S3's 5 MiB part minimum" in str(why_not_composable(parts))
    with pytest.raises(ValueError, match="5 MiB"):
        compose_parts(store, "p/compiled/no.jsonl", parts)

    streamed = stream_parts(store, "p/compiled/out.jsonl", parts)

    assert streamed.method == "stream"
    assert store.get_bytes("p/compiled/out.jsonl") == data
    assert streamed.etag == store.head("p/compiled/out.jsonl").etag
    assert not store.exists("p/compiled/no.jsonl")
    assert open_uploads(store) == []


def test_a_part_without_md5_is_not_composed(store: S3ObjectStore, tmp_path: Path) -> None:
    parts, _ = publish_shards(store, tmp_path, [6 * MiB, 1000])
    no_md5 = [parts[0].model_copy(update={"md5": None}), parts[1]]
    assert "no recorded MD5" in str(why_not_composable(no_md5))


@pytest.mark.parametrize("method", ["copy", "stream"])
def test_corrupted_shard_fails_naming_it_and_leaves_no_object_or_upload(
    store: S3ObjectStore, tmp_path: Path, method: str
) -> None:
    parts, _ = publish_shards(store, tmp_path, [6 * MiB, 6 * MiB, 9_000])
    bad = parts[1]
    corrupt(store, bad)

    with pytest.raises(VerificationError) as caught:
        if method == "copy":
            compose_parts(store, "p/compiled/out.jsonl", parts)
        else:
            stream_parts(store, "p/compiled/out.jsonl", parts)

    assert caught.value.key == bad.key
    assert bad.key in str(caught.value)
    assert not store.exists("p/compiled/out.jsonl")
    assert open_uploads(store) == []


def test_corrupted_last_small_shard_is_caught_by_the_stream(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    parts, _ = publish_shards(store, tmp_path, [1000, 2000])
    corrupt(store, parts[1])
    with pytest.raises(VerificationError, match=parts[1].key):
        stream_parts(store, "p/compiled/out.jsonl", parts)
    assert not store.exists("p/compiled/out.jsonl")


def test_copy_object_replaces_the_target_with_new_metadata(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    parts, data = publish_shards(store, tmp_path, [6 * MiB, 100])
    composed = compose_parts(store, "p/compiled/a.jsonl", parts)
    store.put_bytes("p/compiled/fixed.jsonl", b"old")

    info = copy_object(
        store,
        "p/compiled/a.jsonl",
        "p/compiled/fixed.jsonl",
        metadata={"build-id": "b1"},
        source_etag=composed.etag,
    )

    assert store.get_bytes("p/compiled/fixed.jsonl") == data
    assert info.size == len(data)
    assert store.head("p/compiled/fixed.jsonl").metadata["build-id"] == "b1"


def test_copy_object_is_checked_on_the_copy_s3_holds(store: S3ObjectStore, tmp_path: Path) -> None:
    """The copy keeps its source's ETag; other bytes of the same size landing under the target
    before the HEAD that checks it must fail."""
    parts, data = publish_shards(store, tmp_path, [6 * MiB, 100])
    composed = compose_parts(store, "p/compiled/a.jsonl", parts)
    target = "p/compiled/fixed.jsonl"
    assert store.settings.endpoint_url is not None
    with FaultProxy(upstream=store.settings.endpoint_url) as proxy:
        via = proxied(proxy, store)
        hold = proxy.hold("HEAD", f"/{target}")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(copy_object, via, "p/compiled/a.jsonl", target)
            assert hold.reached.wait(60), "copy_object never checked the copy with a HEAD"
            store.put_bytes(target, os.urandom(len(data)))
            hold.release()
            with pytest.raises(VerificationError, match="(?i)etag") as caught:
                running.result(timeout=60)
    assert caught.value.key == target
    assert composed.etag in str(caught.value)


class FakePart:
    def __init__(self, size: int, md5: str | None = "0" * 32) -> None:
        self.key = f"k{size}"
        self.bytes = size
        self.sha256: str | None = None
        self.md5 = md5


def test_plan_copies_what_s3_can_and_groups_small_parts_with_their_neighbours() -> None:
    sizes = [9 * MiB, 1 * MiB, 7 * MiB, 8 * MiB, 2 * MiB, 1 * MiB, 3 * MiB, 6 * MiB, 1 * MiB]
    sizes += [7 * MiB, 30_000]
    plan = plan_pieces([FakePart(s) for s in sizes])
    assert [([p.bytes for p in piece.parts], piece.copy) for piece in plan] == [
        ([9 * MiB], True),
        ([1 * MiB, 7 * MiB], False),  # the short run takes the smaller neighbour, after it
        ([8 * MiB], True),
        ([2 * MiB, 1 * MiB, 3 * MiB], False),  # long enough on its own
        ([6 * MiB, 1 * MiB], False),  # ... or the smaller neighbour before it
        ([7 * MiB], True),
        ([30_000], True),  # the last part may be small
    ]
    assert plan_pieces([FakePart(6 * MiB, md5=None), FakePart(6 * MiB)])[0].copy is False


def test_mixed_composition_copies_large_shards_and_uploads_the_small_ones(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    parts, data = publish_shards(
        store, tmp_path, [6 * MiB, 1 * MiB, 7 * MiB, 5 * MiB, 2 * MiB, 50_000, 3000]
    )
    assert why_not_composable(parts) is not None and why_not_mixed(parts) is None

    composed = compose_parts(store, "p/compiled/out.jsonl", parts, mixed=True)

    assert composed.method == "mixed"
    assert store.get_bytes("p/compiled/out.jsonl") == data
    assert composed.etag == store.head("p/compiled/out.jsonl").etag
    assert open_uploads(store) == []


@pytest.mark.parametrize("bad", [0, 1])
def test_mixed_composition_names_a_corrupted_copied_or_read_back_shard(
    store: S3ObjectStore, tmp_path: Path, bad: int
) -> None:
    parts, _ = publish_shards(store, tmp_path, [6 * MiB, 1 * MiB, 6 * MiB, 4000])
    corrupt(store, parts[bad])

    with pytest.raises(VerificationError, match=parts[bad].key):
        compose_parts(store, "p/compiled/out.jsonl", parts, mixed=True)

    assert not store.exists("p/compiled/out.jsonl")
    assert open_uploads(store) == []


def test_without_md5_etags_a_corrupted_source_is_still_caught_by_sha256(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    """ETags that are not MD5s (SSE-KMS) prove nothing: SeaweedFS's part checksums do, and on
    servers without checksums (Ceph RGW 16) the result is read back source by source."""
    parts, data = publish_shards(store, tmp_path, [6 * MiB, 5 * MiB, 3000])
    settings = dataclasses.replace(store.settings, etag_is_md5=False)
    opaque = S3ObjectStore(store.bucket, settings, part_size=store.part_size)

    composed = compose_parts(opaque, "p/compiled/ok.jsonl", parts)
    assert store.get_bytes("p/compiled/ok.jsonl") == data
    assert composed.etag == store.head("p/compiled/ok.jsonl").etag

    corrupt(store, parts[1])
    with pytest.raises(VerificationError, match="(?i)sha256") as caught:
        compose_parts(opaque, "p/compiled/bad.jsonl", parts)
    assert caught.value.key == parts[1].key
    assert not store.exists("p/compiled/bad.jsonl")
    assert open_uploads(store) == []
