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

import concurrent.futures
import hashlib
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from pydantic import TypeAdapter

from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.errors import IntegrityError, ObjectNotFoundError
from dataset_assets.core.layout import SPLITS, cache_shards_key, data_suffix, shard_key
from dataset_assets.core.lines import LineBlock, file_chunks, line_blocks
from dataset_assets.core.manifest import ShardEntry
from dataset_assets.core.partition import RECORDS_NAME, SPLIT_CODES, read_record_blocks
from dataset_assets.core.shards import write_shards
from dataset_assets.pipeline.compile import (
    CompileResult,
    PartitionRef,
    StoreSpec,
    WorkArea,
    local_intermediate,
    map_io,
    read_decisions,
    run_parallel,
    worker_count,
)
from dataset_assets.pipeline.entries import shard_entry
from dataset_assets.storage import Journal, PublishedObject, Publisher, S3ObjectStore

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
    if cfg.data_compression is not None:
        body.append(cfg.data_compression)
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


def _coded_runs(records: Path, codes: np.ndarray) -> Iterator[tuple[int, LineBlock]]:
    """(split code, lines) of each run of consecutive records with the same code, checking the
    records against the decisions."""
    count = 0
    for block in read_record_blocks(records):
        n = len(block)
        if count + n > len(codes):
            raise IntegrityError(
                f"records of partition {records.parent.name}",
                f"{len(codes)} records",
                f"more than {len(codes)}",
            )
        block_codes = codes[count : count + n]
        cuts = (np.flatnonzero(block_codes[1:] != block_codes[:-1]) + 1).tolist()
        for lo, hi in zip([0, *cuts], [*cuts, n], strict=True):
            yield int(block_codes[lo]), block.take(lo, hi)
        count += n
    if count != len(codes):
        raise IntegrityError(
            f"records of partition {records.parent.name}", f"{len(codes)} records", f"{count}"
        )


def lines_by_split(
    records: Path, codes: np.ndarray, splits: list[str], family: str, spill: Path
) -> Iterator[tuple[str, Iterator[tuple[LineBlock, str]]]]:
    """``(split, its lines in blocks)`` for each of ``splits`` in order, decompressing the
    records once.

    The first split's lines stream straight from the records file while the other splits'
    lines are written to ``spill/{split}.jsonl``; those stream from there once the first split's
    lines have all been consumed (train comes first, so the spill is val + test, ~10 % of the
    partition). Reading the records once per split instead cost two extra decompressions and
    line splits of every partition.

    Raises:
        IntegrityError: the records file holds another number of records than the decisions
            (a cut or damaged intermediate); a spilled split read before the first split's
            lines were consumed to the end.
    """
    first, rest = splits[0], splits[1:]
    if rest:
        spill.mkdir(parents=True, exist_ok=True)
    paths = {SPLIT_CODES[s]: spill / f"{s}.jsonl" for s in rest}
    complete = False

    def first_lines() -> Iterator[tuple[LineBlock, str]]:
        nonlocal complete
        first_code = SPLIT_CODES[first]
        with ExitStack() as stack:
            files = {c: stack.enter_context(path.open("wb")) for c, path in paths.items()}
            for code, run in _coded_runs(records, codes):
                if code == first_code:
                    yield run, family
                elif code in files:
                    files[code].write(run.data)
        complete = True

    def spilled(split: str) -> Iterator[tuple[LineBlock, str]]:
        if not complete:
            raise IntegrityError(
                f"spilled {split} lines of partition {records.parent.name}",
                f"the {first} pass read to the end",
                "an unfinished pass",
            )
        path = paths[SPLIT_CODES[split]]
        with path.open("rb") as fh:
            for block in line_blocks(file_chunks(fh), f"spilled {path}"):
                yield block, family
        path.unlink()

    yield first, first_lines()
    for split in rest:
        yield split, spilled(split)


def _submit_split(
    cfg: DatasetConfig,
    pub: Publisher,
    split: str,
    blocks: Iterator[tuple[LineBlock, str]],
    staging: Path,
    futures: list[concurrent.futures.Future[PublishedObject]],
) -> bool:
    """Write the split's shards and submit each for publishing as soon as it is written
    (appended to ``futures``, the partition's publishes so far), without waiting for the last
    ones: the next split is written while they upload. Returns False once any of ``futures``
    failed: writing stops there, so an unreachable store never fills the disk (the failed
    shards stay local)."""
    compression = cfg.data_compression
    staged = write_shards(
        blocks,
        split=split,
        staging_dir=staging,
        shard_size=cfg.shard_size,
        part_size=cfg.part_size,
        key_for=lambda sid: shard_key(cfg.prefix, split, sid, data_suffix(compression)),
        compression=compression,
    )
    for item in staged:
        futures.append(pub.submit(item))
        if any(f.done() and f.exception() is not None for f in futures):
            return False
    return True


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
    written = uploaded = 0
    k = cfg.max_publishes_in_flight
    spill = staging / "spill"
    try:
        with Publisher(store, max_in_flight=k, verify=cfg.verify, journal=task.journal) as pub:
            futures: list[concurrent.futures.Future[PublishedObject]] = []
            splits: list[str] = []  # the split of each submitted shard, in submit order
            for split, blocks in lines_by_split(records, codes, missing, part.family, spill):
                ok = _submit_split(cfg, pub, split, blocks, staging / split, futures)
                splits += [split] * (len(futures) - len(splits))
                if not ok:
                    break  # pub.wait() raises the failure
            published = pub.wait()  # PublishError if any shard failed
        for split in missing:
            done = [p for p, s in zip(published, splits, strict=True) if s == split]
            entries[split] = [
                shard_entry(split, p, md5=p.md5, compression=cfg.data_compression) for p in done
            ]
            written += len(done)
            uploaded += sum(p.uploaded for p in done)
            # only once every shard of the split is verified in S3
            key = cache_shards_key(cfg.prefix, shard_set_digest(cfg, part, split))
            store.put_bytes(key, _ENTRIES.dump_json(entries[split]))
    finally:
        shutil.rmtree(spill, ignore_errors=True)  # copies of records lines, not shards
    # Only after every shard of the partition is verified in S3: staged shards of a failed
    # publish stay for inspection (the next build of this machine removes stale run folders).
    shutil.rmtree(staging, ignore_errors=True)
    if task.area.cache is None:
        records.unlink(missing_ok=True)
    return entries, ShardStats(
        reused=reused, written=written, uploaded=uploaded, peak_staged_bytes=pub.peak_staged_bytes
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
    # one small GET per (partition, split): in threads (600 files = 1,800 round trips)
    looked_up = map_io(lambda p: cached_shard_sets(cfg, store, p), result.partitions)
    found = dict(zip((p.digest for p in result.partitions), looked_up, strict=True))
    spec = StoreSpec.of(store)
    tasks = [
        _ShardTask(cfg, spec, result, part, area, journal)
        for part in result.partitions
        if found[part.digest][1]
    ]
    written = dict(
        zip(
            (t.part.digest for t in tasks),
            run_parallel(
                _partition_shards, tasks, worker_count(cfg, sum(t.part.size for t in tasks))
            ),
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
