"""The build's export: composed from its verified shards under an immutable key, promoted to the
fixed name only after the build commits. Parametrized over SeaweedFS and Ceph RGW (``store``)."""

import hashlib
import os
from pathlib import Path

import pytest

from dataset_assets.core.errors import ManifestError, VerificationError
from dataset_assets.core.layout import SPLITS, export_key, latest_manifest_key
from dataset_assets.core.manifest import (
    BuildCounts,
    FileEntry,
    Manifest,
    ShardEntry,
    check_consistent,
    with_build_id,
)
from dataset_assets.pipeline.export import (
    compose_export,
    export_problems,
    immutable_export_key,
    promote_export,
)
from dataset_assets.storage import S3ObjectStore
from dataset_assets_tests.storage.test_compose import open_uploads, publish_shards

MiB = 1024 * 1024
PREFIX = "p"


def build_shards(
    store: S3ObjectStore, tmp_path: Path, sizes: dict[str, list[int]]
) -> tuple[list[ShardEntry], bytes]:
    shards: list[ShardEntry] = []
    data = b""
    for split in SPLITS:
        entries, split_data = publish_shards(store, tmp_path, sizes.get(split, []), split)
        shards += entries
        data += split_data
    return shards, data


def legacy_export(
    store: S3ObjectStore, tmp_path: Path
) -> tuple[list[ShardEntry], bytes, FileEntry]:
    """Shards and an export published under the fixed ``.jsonl`` key, with a whole sha256 and
    no parts: how exports were published before they were composed."""
    shards, data = build_shards(store, tmp_path, {"train": [100_000]})
    key = export_key(PREFIX)
    store.put_bytes(key, data)
    entry = FileEntry(
        key=key,
        uri=store.uri(key),
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        records=sum(s.records for s in shards),
    )
    return shards, data, entry


def manifest_for(store: S3ObjectStore, shards: list[ShardEntry], export: FileEntry) -> Manifest:
    n = sum(s.records for s in shards)
    per_split = {split: sum(s.records for s in shards if s.split == split) for split in SPLITS}
    manifest = with_build_id(
        Manifest(
            build_id="",
            bucket=store.bucket,
            prefix=PREFIX,
            config_digest="c" * 64,
            shards=shards,
            export=export,
            counts=BuildCounts(input_records=n, published_records=n, per_split=per_split),
        )
    )
    check_consistent(manifest)
    return manifest


def commit(store: S3ObjectStore, manifest: Manifest) -> None:
    """Swap the latest pointer to ``manifest`` (what the build's commit step does)."""
    store.put_bytes(latest_manifest_key(PREFIX), manifest.to_json())


def test_export_is_composed_under_its_immutable_key_and_checks_part_by_part(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    shards, data = build_shards(
        store, tmp_path, {"train": [6 * MiB, 5 * MiB], "val": [5 * MiB], "test": [30_000]}
    )
    key = immutable_export_key(PREFIX, shards)
    assert key.startswith(f"{PREFIX}/compiled/final_training_dataset-") and key.endswith(".jsonl")

    export = compose_export(store, shards, key)

    assert store.get_bytes(key) == data
    assert export.parts == [s.key for s in shards]
    assert export.sha256 is None  # its bytes never passed through the build
    assert export.etag == store.head(key).etag
    assert (export.bytes, export.records) == (len(data), sum(s.records for s in shards))
    manifest = manifest_for(store, shards, export)
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert export_problems(store, manifest, readback=True) == []
    assert not store.exists(export_key(PREFIX)), "compose must not touch the fixed export key"
    assert compose_export(store, shards, key) == export  # a rerun finds it composed


def test_small_shards_are_streamed_into_the_same_bytes_and_check_part_by_part(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    shards, data = build_shards(
        store, tmp_path, {"train": [2 * MiB], "val": [40_000], "test": [10_000]}
    )
    export = compose_export(store, shards, immutable_export_key(PREFIX, shards))

    assert store.get_bytes(export.key) == data
    # streamed: one upload of these 2 MiB, a plain PUT (a mixed composition would be multipart)
    assert export.sha256 is None and export.etag == store.head(export.key).etag
    assert "-" not in export.etag
    assert export_problems(store, manifest_for(store, shards, export), readback=True) == []


def test_corrupted_shard_leaves_no_export_and_no_open_upload(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    shards, _ = build_shards(store, tmp_path, {"train": [6 * MiB, 6 * MiB], "test": [5000]})
    key = immutable_export_key(PREFIX, shards)
    store.put_bytes(shards[1].key, os.urandom(shards[1].bytes))

    with pytest.raises(VerificationError, match=shards[1].key):
        compose_export(store, shards, key)

    assert not store.exists(key)
    assert open_uploads(store) == []


def test_readback_names_the_part_whose_bytes_differ(store: S3ObjectStore, tmp_path: Path) -> None:
    shards, data = build_shards(store, tmp_path, {"train": [6 * MiB], "val": [20_000]})
    export = compose_export(store, shards, immutable_export_key(PREFIX, shards))
    manifest = manifest_for(store, shards, export)
    tampered = bytearray(data)
    tampered[-5] ^= 0xFF  # inside the val shard's range
    store.put_bytes(export.key, bytes(tampered))

    head_only = export_problems(store, manifest)
    readback = export_problems(store, manifest, readback=True)

    assert len(head_only) == 1 and "etag" in head_only[0]
    assert [p for p in readback if "part" in p] == [p for p in readback if shards[1].key in p] != []
    assert not any(shards[0].key in p for p in readback)


def test_fixed_key_changes_only_by_promote_and_follows_the_latest_build(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    fixed = export_key(PREFIX)
    shards1, data1 = build_shards(store, tmp_path, {"train": [6 * MiB], "val": [7000]})
    m1 = manifest_for(
        store, shards1, compose_export(store, shards1, immutable_export_key(PREFIX, shards1))
    )
    with pytest.raises(ManifestError, match="after its build commits"):
        promote_export(store, m1)
    assert not store.exists(fixed)

    commit(store, m1)
    promote_export(store, m1)
    assert store.get_bytes(fixed) == data1
    assert store.head(fixed).metadata["build-id"] == m1.build_id

    shards2, data2 = build_shards(store, tmp_path, {"train": [5 * MiB, 9000]})
    m2 = manifest_for(
        store, shards2, compose_export(store, shards2, immutable_export_key(PREFIX, shards2))
    )
    assert store.get_bytes(fixed) == data1, "build 2's compose must leave the fixed key alone"
    commit(store, m2)
    promote_export(store, m2)
    assert store.get_bytes(fixed) == data2
    assert store.head(fixed).metadata["build-id"] == m2.build_id
    assert store.get_bytes(m1.export.key) == data1  # type: ignore[union-attr]

    promote_export(store, m1)  # a late promote of the older build: the pointer names build 2
    assert store.get_bytes(fixed) == data2


def test_a_small_val_shard_between_large_ones_does_not_force_a_full_stream(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    shards, data = build_shards(
        store, tmp_path, {"train": [6 * MiB], "val": [300_000], "test": [6 * MiB, 2000]}
    )
    export = compose_export(store, shards, immutable_export_key(PREFIX, shards))

    assert store.get_bytes(export.key) == data
    # copy train, upload val + test's first shard as one part, copy the last: 3 parts (a
    # streamed upload of these 12 MiB would be a single 32 MiB part)
    assert export.etag == store.head(export.key).etag and export.etag.endswith("-3")
    assert export_problems(store, manifest_for(store, shards, export), readback=True) == []


def test_readback_of_an_export_with_a_whole_sha256_and_no_parts(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    shards, data, legacy = legacy_export(store, tmp_path)
    key = legacy.key
    manifest = manifest_for(store, shards, legacy)
    assert export_problems(store, manifest, readback=True) == []

    store.put_bytes(key, data[:-1] + b"?")
    assert export_problems(store, manifest) == []  # same size, no recorded ETag: HEAD can't tell
    assert "bytes hash to" in export_problems(store, manifest, readback=True)[0]


def test_a_pointer_back_on_a_legacy_build_removes_the_newer_zstd_fixed_export(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    """The pointer names an older build whose manifest names the fixed ``.jsonl`` key itself
    (rolled back): the ``.jsonl.zst`` fixed key, a newer build's export, must not stay."""
    shards, data, legacy = legacy_export(store, tmp_path)
    key = legacy.key
    newer = export_key(PREFIX, ".jsonl.zst")
    store.put_bytes(newer, b"a newer build's export")
    manifest = manifest_for(store, shards, legacy)
    commit(store, manifest)
    promote_export(store, manifest)
    assert not store.exists(newer)
    assert store.get_bytes(key) == data
