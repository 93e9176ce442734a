"""Manifest entries of published objects."""

from dataset_assets.core.manifest import FileEntry, ShardEntry
from dataset_assets.storage import PublishedObject


def file_entry(obj: PublishedObject) -> FileEntry:
    return FileEntry(
        key=obj.key,
        uri=obj.uri,
        bytes=obj.size,
        sha256=obj.sha256,
        records=obj.records,
        families=obj.families,
    )


def shard_entry(split: str, obj: PublishedObject) -> ShardEntry:
    sid = obj.key.rsplit("/", 1)[-1].removesuffix(".jsonl")
    return ShardEntry(**file_entry(obj).model_dump(), split=split, shard_id=sid)
