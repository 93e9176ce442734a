"""Stage 3 of the compile: every split's shards, written per partition and published as written.

Shard membership follows the partitions: a partition's published records of one split (in file
order) fill that partition's shards of the split. Adding a source file therefore adds shards and
moves no record of another file into another shard, whatever the new file's name or place.

Each (partition, split) shard set is remembered in S3 under a key derived from the partition's
intermediates, its decisions and the shard size (``{prefix}/_cache/shards/{digest}.json``): when a
later build makes the same decisions for an unchanged file, its shards are reused without reading
a byte. Partitions run in parallel processes; each has its own bounded publisher, so local disk
holds at most ``workers × (max_publishes_in_flight + 1)`` shards.
"""

import hashlib
import shutil
from dataclasses import dataclass

import orjson
from pydantic import TypeAdapter

from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.errors import ObjectNotFoundError
from dataset_assets.core.layout import SPLITS, cache_shards_key, shard_key
from dataset_assets.core.manifest import ShardEntry
from dataset_assets.core.partition import RECORDS_NAME, SPLIT_CODES, read_records
from dataset_assets.core.shards import write_shards
from dataset_assets.pipeline.compile import (
    CompileResult,
    PartitionRef,
    StoreSpec,
    WorkArea,
    local_intermediate,
    read_decisions,
    run_parallel,
    worker_count,
)
from dataset_assets.pipeline.entries import shard_entry
from dataset_assets.storage import Journal, Publisher, S3ObjectStore

_ENTRIES = TypeAdapter(list[ShardEntry])


@dataclass(frozen=True)
class ShardStats:
    """What the shard stage did (for metadata): shards reused from earlier builds vs written."""

    reused: int = 0
    written: int = 0
    uploaded: int = 0
    peak_staged_bytes: int = 0


def shard_set_digest(cfg: DatasetConfig, part: PartitionRef, split: str) -> str:
    body = [part.digest, part.decisions_sha256, split, cfg.prefix, cfg.shard_size, cfg.part_size]
    return hashlib.sha256(orjson.dumps(body)).hexdigest()


@dataclass(frozen=True)
class _ShardTask:
    cfg: DatasetConfig
    store: StoreSpec
    result: CompileResult
    part: PartitionRef
    area: WorkArea
    journal: Journal


def cached_shard_sets(
    cfg: DatasetConfig, store: S3ObjectStore, part: PartitionRef
) -> tuple[dict[str, list[ShardEntry]], list[str]]:
    """The partition's shard sets already published by an earlier build, and the splits that
    still need writing."""
    entries: dict[str, list[ShardEntry]] = {}
    missing = []
    for split in SPLITS:
        if not part.split_records.get(split):
            entries[split] = []
            continue
        key = cache_shards_key(cfg.prefix, shard_set_digest(cfg, part, split))
        try:
            entries[split] = _ENTRIES.validate_json(store.get_bytes(key))
        except ObjectNotFoundError:
            missing.append(split)
    return entries, missing


def _partition_shards(task: _ShardTask) -> tuple[dict[str, list[ShardEntry]], ShardStats]:
    """In a worker process: one partition's shards of every split (reused or written)."""
    cfg, store, part = task.cfg, task.store.open(), task.part
    entries, missing = cached_shard_sets(cfg, store, part)
    reused = sum(len(v) for v in entries.values())
    if not missing:
        return entries, ShardStats(reused=reused)
    codes = read_decisions(store, cfg.prefix, task.result, part)
    records = local_intermediate(store, cfg.prefix, task.area, part, RECORDS_NAME)
    staging = task.area.work / "shards" / part.digest
    written = uploaded = peak = 0
    try:
        k = cfg.max_publishes_in_flight
        with Publisher(store, max_in_flight=k, verify=cfg.verify, journal=task.journal) as pub:
            for split in missing:
                code = SPLIT_CODES[split]
                lines = (
                    (line, part.family)
                    for line, c in zip(read_records(records), codes, strict=True)
                    if c == code
                )
                staged = write_shards(
                    lines,
                    split=split,
                    staging_dir=staging / split,
                    shard_size=cfg.shard_size,
                    part_size=cfg.part_size,
                    key_for=lambda sid, s=split: shard_key(cfg.prefix, s, sid),  # type: ignore[misc]
                )
                for item in staged:
                    pub.submit(item)
                published = pub.wait()
                entries[split] = [shard_entry(split, p) for p in published]
                written += len(published)
                uploaded += sum(p.uploaded for p in published)
                body = _ENTRIES.dump_json(entries[split])
                store.put_bytes(
                    cache_shards_key(cfg.prefix, shard_set_digest(cfg, part, split)), body
                )
            peak = pub.peak_staged_bytes
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if task.area.cache is None:
            records.unlink(missing_ok=True)
    return entries, ShardStats(
        reused=reused, written=written, uploaded=uploaded, peak_staged_bytes=peak
    )


def publish_all_shards(
    cfg: DatasetConfig,
    store: S3ObjectStore,
    result: CompileResult,
    area: WorkArea,
    journal: Journal,
) -> tuple[dict[str, list[ShardEntry]], ShardStats]:
    """Every split's shards, in partition order; partitions run in parallel processes."""
    by_split: dict[str, list[ShardEntry]] = {s: [] for s in SPLITS}
    total = ShardStats()
    found = {p.digest: cached_shard_sets(cfg, store, p) for p in result.partitions}
    spec = StoreSpec.of(store)
    tasks = [
        _ShardTask(cfg, spec, result, part, area, journal)
        for part in result.partitions
        if found[part.digest][1]
    ]
    written = dict(
        zip(
            (t.part.digest for t in tasks),
            run_parallel(_partition_shards, tasks, worker_count(cfg)),
            strict=True,
        )
    )
    for part in result.partitions:
        entries, stats = written.get(part.digest) or (found[part.digest][0], None)
        for split in SPLITS:
            by_split[split] += entries[split]
        reused = sum(len(v) for v in entries.values()) if stats is None else stats.reused
        total = ShardStats(
            reused=total.reused + reused,
            written=total.written + (stats.written if stats else 0),
            uploaded=total.uploaded + (stats.uploaded if stats else 0),
            peak_staged_bytes=max(total.peak_staged_bytes, stats.peak_staged_bytes if stats else 0),
        )
    return by_split, total
