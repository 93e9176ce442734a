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
    process_pool,
    read_decisions,
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


def _partition_shards(task: _ShardTask) -> tuple[dict[str, list[ShardEntry]], ShardStats]:
    """In a worker process: one partition's shards of every split (reused or written)."""
    cfg, store, part = task.cfg, task.store.open(), task.part
    entries: dict[str, list[ShardEntry]] = {}
    missing = []
    for split in SPLITS:
        if not part.split_records.get(split):
            entries[split] = []
            continue
        key = cache_shards_key(cfg.prefix, shard_set_digest(cfg, part, split))
        if store.exists(key):
            entries[split] = _ENTRIES.validate_json(store.get_bytes(key))
        else:
            missing.append(split)
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
    spec = StoreSpec.of(store)
    tasks = [_ShardTask(cfg, spec, result, part, area, journal) for part in result.partitions]
    by_split: dict[str, list[ShardEntry]] = {s: [] for s in SPLITS}
    total = ShardStats()
    if not tasks:
        return by_split, total
    workers = min(worker_count(cfg), len(tasks))
    with process_pool(workers) as pool:
        for entries, stats in pool.map(_partition_shards, tasks):
            for split in SPLITS:
                by_split[split] += entries[split]
            total = ShardStats(
                reused=total.reused + stats.reused,
                written=total.written + stats.written,
                uploaded=total.uploaded + stats.uploaded,
                peak_staged_bytes=max(total.peak_staged_bytes, stats.peak_staged_bytes),
            )
    return by_split, total
