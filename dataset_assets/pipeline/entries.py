"""Manifest entries of published objects."""

from dataset_assets.core.layout import strip_suffix
from dataset_assets.core.manifest import FileEntry, ShardEntry
from dataset_assets.storage import PublishedObject


def file_entry(
    obj: PublishedObject, *, md5: str | None = None, compression: str | None = None
) -> FileEntry:
    """The manifest entry of a verified object; ``md5``: its whole-file MD5 when known (the
    staged digest's), which lets the export be composed from it server-side; ``etag``: the
    ETag it was verified with (equal to ``md5`` for a single-part upload)."""
    return FileEntry(
        key=obj.key,
        uri=obj.uri,
        bytes=obj.size,
        sha256=obj.sha256,
        records=obj.records,
        families=obj.families,
        md5=md5 or None,
        etag=obj.etag,
        compression="zstd" if compression == "zstd" else None,
    )


def shard_entry(
    split: str, obj: PublishedObject, *, md5: str | None = None, compression: str | None = None
) -> ShardEntry:
    sid = strip_suffix(obj.key.rsplit("/", 1)[-1])
    entry = file_entry(obj, md5=md5, compression=compression)
    return ShardEntry(**entry.model_dump(), split=split, shard_id=sid)
