"""The manifest's export entry and the fields added for composed exports, dedup and caches:
old manifests still load with the same build id, and a composed export must be the shards."""

import pytest
from pydantic import ValidationError

from dataset_assets.core.errors import ManifestError
from dataset_assets.core.manifest import (
    BuildCounts,
    FileEntry,
    Manifest,
    ShardEntry,
    check_consistent,
    with_build_id,
)

SHA = "a" * 64


def shard(split: str, i: int, size: int = 10) -> ShardEntry:
    key = f"p/{split}/{split}-{i:05d}.jsonl"
    return ShardEntry(
        key=key,
        uri=f"s3://b/{key}",
        bytes=size,
        sha256=SHA,
        records=1,
        split=split,
        shard_id=f"{split}-{i:05d}",
    )


def manifest(
    shards: list[ShardEntry], export: FileEntry | None = None, **extra: object
) -> Manifest:
    n = len(shards)
    per_split = {s: sum(1 for x in shards if x.split == s) for s in ("train", "val", "test")}
    return with_build_id(
        Manifest(
            build_id="",
            bucket="b",
            prefix="p",
            config_digest="c",
            shards=shards,
            export=export,
            counts=BuildCounts(input_records=n, published_records=n, per_split=per_split),
            **extra,  # type: ignore[arg-type]
        )
    )


def composed(parts: list[ShardEntry], size: int | None = None) -> FileEntry:
    return FileEntry(
        key="p/compiled/final_training_dataset-abc.jsonl",
        uri="s3://b/x",
        bytes=sum(p.bytes for p in parts) if size is None else size,
        records=len(parts),
        etag="0" * 32 + "-2",
        parts=[p.key for p in parts],
    )


# A schema-1 manifest as published before md5/etag/parts/dedup/cache_keys existed.
OLD = b"""{"schema_version": 1, "build_id": "0dabeebe5bd0441f", "bucket": "b", "prefix": "p",
"config_digest": "c", "shards": [{"key": "p/train/x.jsonl", "uri": "s3://b/p/train/x.jsonl",
"bytes": 3, "sha256": "%s", "records": 1, "families": {}, "split": "train", "shard_id": "x"}],
"export": null, "quarantine": null, "provenance": null, "counts": {"input_records": 1,
"published_records": 1, "exact_duplicates": 0, "near_duplicates": 0, "quarantined": 0,
"quarantined_by_reason": {}, "per_split": {"train": 1}, "per_family": {},
"per_split_family": {}}, "inputs": []}""" % SHA.encode()


def test_old_manifest_loads_and_keeps_its_build_id_and_bytes() -> None:
    old = Manifest.from_json(OLD)
    assert old.dedup is None and old.cache_keys == [] and old.shards[0].md5 is None
    assert with_build_id(old).build_id == "0dabeebe5bd0441f"
    assert b"cache_keys" not in old.to_json() and b"md5" not in old.to_json()


def test_new_fields_round_trip_and_change_the_build_id() -> None:
    base = manifest([shard("train", 0)])
    dedup = FileEntry(key="p/dedup/d.jsonl.zst", uri="s3://b/d", bytes=5, sha256=SHA, records=2)
    richer = manifest([shard("train", 0)], dedup=dedup, cache_keys=["p/cache/x"])
    assert Manifest.from_json(richer.to_json()) == richer
    assert richer.build_id != base.build_id


def test_composed_export_needs_parts_to_go_without_sha256() -> None:
    with pytest.raises(ValidationError, match="needs a sha256 unless it lists its parts"):
        FileEntry(key="k", uri="s3://b/k", bytes=1, records=1)
    with pytest.raises(ValidationError):
        ShardEntry(key="k", uri="u", bytes=1, records=1, split="train", shard_id="k", parts=["x"])


def test_composed_export_must_be_the_shards_in_manifest_order() -> None:
    shards = [shard("train", 0), shard("train", 1), shard("val", 0), shard("test", 0)]
    check_consistent(manifest(shards, composed(shards)))

    swapped = [shards[2], shards[0], shards[1], shards[3]]
    with pytest.raises(ManifestError, match="not the shards in order"):
        check_consistent(manifest(shards, composed(swapped)))
    with pytest.raises(ManifestError, match="its parts 40"):
        check_consistent(manifest(shards, composed(shards, size=41)))
