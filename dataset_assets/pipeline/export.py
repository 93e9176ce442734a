"""The compiled export: every conversation in one file, streamed from the spool to S3.

The export is as large as the dataset, so it is never staged as a local copy (the disk cannot
hold one). It is read from the compressed spool twice: once to hash it (sha256, size and the
multipart ETag must be known before the upload starts, because S3 metadata is sent first), once
to upload it through boto3's transfer manager from a stream. Verification is the same as for
every other published file.
"""

import io
from collections import Counter
from collections.abc import Iterator
from typing import BinaryIO

from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.hashing import digest_stream
from dataset_assets.core.layout import SPLITS, export_key
from dataset_assets.core.manifest import FileEntry
from dataset_assets.core.spool import iter_spool_records, spool_path
from dataset_assets.core.staged import StreamedFile
from dataset_assets.pipeline.compile import CompileResult
from dataset_assets.storage import PublishedObject, Publisher


def file_entry(obj: PublishedObject) -> FileEntry:
    return FileEntry(
        key=obj.key,
        uri=obj.uri,
        bytes=obj.size,
        sha256=obj.sha256,
        records=obj.records,
        families=obj.families,
    )


class _RecordStream(io.RawIOBase):
    """The export's bytes: the train, val and test spools' records, concatenated."""

    def __init__(self, result: CompileResult) -> None:
        self._lines: Iterator[tuple[bytes, str]] = (
            rec for split in SPLITS for rec in iter_spool_records(spool_path(result.spool, split))
        )
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: "bytearray | memoryview") -> int:  # type: ignore[override]
        while not self._buf:
            nxt = next(self._lines, None)
            if nxt is None:
                return 0
            self._buf = nxt[0]
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def open_export_stream(result: CompileResult) -> BinaryIO:
    return io.BufferedReader(_RecordStream(result), buffer_size=1 << 20)


def prepare_export(cfg: DatasetConfig, result: CompileResult, publisher: Publisher) -> StreamedFile:
    """Hash the export (first pass over the spool) so it can be uploaded as a stream."""
    with open_export_stream(result) as stream:
        digest = digest_stream(stream, cfg.part_size)
    part_size = publisher.store.upload_part_size(digest.size)
    if part_size != digest.part_size:  # > 10,000 parts: s3transfer needs bigger parts
        with open_export_stream(result) as stream:
            digest = digest_stream(stream, part_size)
    families: Counter[str] = Counter()
    for split_families in result.counts.per_split_family.values():
        families.update(split_families)
    return StreamedFile(
        key=export_key(cfg.prefix),
        open=lambda: open_export_stream(result),
        digest=digest,
        records=result.counts.published_records,
        families=dict(families),
    )


def publish_export(cfg: DatasetConfig, result: CompileResult, publisher: Publisher) -> FileEntry:
    """Hash the export, upload it as a stream, verify it; returns its manifest entry."""
    return file_entry(publisher.publish_stream(prepare_export(cfg, result, publisher)))
