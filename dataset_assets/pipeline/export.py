"""The compiled export: every conversation in one file, streamed from the spool to S3.

The export is as large as the dataset, so it is never staged as a local copy (the disk cannot
hold one). It is read from the compressed spool twice: once to hash it (sha256, size and the
multipart ETag must be known before the upload starts, because S3 metadata is sent first), once
to upload it through boto3's transfer manager from a stream. Verification is the same as for
every other published file.
"""

from collections import Counter
from typing import BinaryIO

from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.hashing import digest_stream
from dataset_assets.core.layout import SPLITS, export_key
from dataset_assets.core.manifest import FileEntry
from dataset_assets.core.staged import StreamedFile
from dataset_assets.core.streams import open_chunks
from dataset_assets.pipeline.compile import CompileResult
from dataset_assets.pipeline.entries import file_entry
from dataset_assets.storage import Publisher, S3ObjectStore


def open_export_stream(result: CompileResult) -> BinaryIO:
    """The export's bytes: the train, val and test spools' records, concatenated."""
    return open_chunks(record for split in SPLITS for record, _family in result.records(split))


def prepare_export(cfg: DatasetConfig, result: CompileResult, store: S3ObjectStore) -> StreamedFile:
    """Hash the export (first pass over the spool) so it can be uploaded as a stream."""
    with open_export_stream(result) as stream:
        digest = digest_stream(stream, cfg.part_size)
    part_size = store.upload_part_size(digest.size)
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
    return file_entry(
        publisher.publish_stream(prepare_export(cfg, result, publisher.store), overwrite=True)
    )
