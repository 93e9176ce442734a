"""The compile: stage 1 (partitions, in parallel processes) and stage 2 (dedup clusters).

Stage 1 turns each source file into intermediates (records, index, quarantine; see
:mod:`dataset_assets.core.partition`) published to S3 under
``{prefix}/_cache/partitions/{digest}/`` where ``digest`` covers the file's identity and
fingerprint and the config options that shape the output. A later build (or a re-executed step
on another machine) finds them there and skips the file: adding one file costs that file plus
the global stage. Stage 2 (:mod:`dataset_assets.core.cluster`) decides, for every record, dropped
or published in which split; the decisions are published too
(``{prefix}/_cache/decisions/{cluster digest}/{partition digest}.bin``), so the shard stage can run
in another process or on another machine and needs nothing but S3.
"""

import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict

from dataset_assets.core.cluster import ClusterInput, cluster, find_leaks, write_provenance
from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.errors import ConfigError, IntegrityError, ObjectNotFoundError
from dataset_assets.core.hashing import digest_file
from dataset_assets.core.layout import (
    SPLITS,
    cache_clustering_key,
    cache_decisions_key,
    cache_partition_key,
    dedup_key,
    provenance_key,
    quarantine_key,
)
from dataset_assets.core.manifest import BuildCounts, FileEntry, InputFingerprint
from dataset_assets.core.partition import (
    INDEX_NAME,
    PARTITION_FILES,
    QUARANTINE_NAME,
    SPLIT_CODES,
    PartitionSpec,
    PartitionSummary,
    merge_ranges,
    partition_digest,
    process_partition,
    stage_config_digest,
)
from dataset_assets.core.ranges import ByteRange, open_range, plan_ranges
from dataset_assets.core.sources import SourceRef, source_format
from dataset_assets.core.staged import StagedFile
from dataset_assets.pipeline.commit import write_local_copy
from dataset_assets.pipeline.entries import file_entry
from dataset_assets.pipeline.known_keys import find_known_keys, keep_keys
from dataset_assets.pipeline.sources import list_sources, open_source
from dataset_assets.storage import Journal, Publisher, S3ObjectStore, S3Settings

SUMMARY_NAME = "summary.json"
"""A partition's counts, written last: in S3 (and as this file in the local cache) it means
every intermediate of the partition is in S3."""
LOCAL_SUMMARY_NAME = "summary.local.json"
"""In the local cache instead of ``summary.json``: the partition is complete on this machine
only (its intermediates were not uploaded, see :func:`shares_intermediates`)."""
log = logging.getLogger(__name__)


@contextlib.contextmanager
def _timed(what: str) -> Iterator[None]:
    """Log how long ``what`` took (the compile's phases, for users sizing a build)."""
    start = time.perf_counter()
    yield
    log.info("compile: %s in %.1f s", what, time.perf_counter() - start)


T = TypeVar("T")
R = TypeVar("R")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PartitionRef(_Frozen):
    """One partition of a build: where its intermediates are and what it counted."""

    family: str
    holdout: bool
    uri: str
    size: int
    fingerprint: str
    digest: str
    input_records: int
    candidates: int
    quarantined_by_reason: dict[str, int]
    decisions_sha256: str = ""
    split_records: dict[str, int] = {}


class LeakReport(_Frozen):
    exact: int
    near: int
    near_checked: bool
    pairs: list[dict[str, object]]

    @property
    def passed(self) -> bool:
        return self.exact == 0 and self.near == 0


class CompileResult(_Frozen):
    """What the compile published: the reference every later step starts from (no local paths)."""

    run_id: str
    config_digest: str
    cluster_digest: str
    partitions: list[PartitionRef]
    counts: BuildCounts
    inputs: list[InputFingerprint]
    quarantine: FileEntry
    provenance: FileEntry
    dedup: FileEntry
    leakage: LeakReport
    started_from_etag: str | None = None
    started_from_build: str | None = None
    clustering_reused: bool = False

    def decisions_key(self, prefix: str, part: PartitionRef) -> str:
        return cache_decisions_key(prefix, self.cluster_digest, part.digest)

    def cache_keys(self, prefix: str, shard_sets: Sequence[str] = ()) -> list[str]:
        """The intermediates this build used (S3 keys, and folders ending in ``/``): gc keeps
        them while a manifest that lists them is kept."""
        parts = [cache_partition_key(prefix, p.digest, "") + "/" for p in self.partitions]
        decisions = cache_decisions_key(prefix, self.cluster_digest, "").rsplit("/", 1)[0] + "/"
        return sorted({*parts, decisions, *shard_sets})


class Clustering(_Frozen):
    """The outcome of a clustering whose leakage check passed, stored beside its decisions
    (:func:`~dataset_assets.core.layout.cache_clustering_key`). A later compile of the same
    partitions under the same options (the same cluster digest: the decisions are a function of
    it) reuses it instead of running the dedup stage and the leakage check again, once its
    decisions match their sha256 and its sidecars are in S3."""

    cluster_digest: str
    exact_duplicates: int
    near_duplicates: int
    partitions: list[PartitionRef]
    quarantine: FileEntry
    provenance: FileEntry
    dedup: FileEntry
    leakage: LeakReport


@dataclass(frozen=True)
class WorkArea:
    """A step's local folders: its private work folder and the machine's intermediate cache."""

    work: Path
    cache: Path | None

    def partition_dir(self, digest: str) -> Path:
        base = self.cache if self.cache is not None else self.work / "partitions"
        return base / "partitions" / digest


def shares_intermediates(cfg: DatasetConfig, one_machine: bool) -> bool:
    """Whether stage 1 uploads its intermediates to S3 (``compile.intermediates``).

    ``one_machine``: every step of the run runs on this machine. Then, with the local cache on,
    ``auto`` keeps them local: the run's later steps and this machine's later builds read the
    cache, and uploading them (~40 % of the input's size) would cost the S3 server as much CPU
    as the stage's compression while nothing reads them."""
    mode = cfg.compile.intermediates
    if mode == "auto":
        return not (one_machine and cfg.compile.local_cache)
    return mode == "s3"


def work_area(cfg: DatasetConfig, run_id: str, step: str) -> WorkArea:
    work = cfg.staging_dir / "runs" / (run_id or "no-run-id") / step
    cache = cfg.staging_dir / "cache" if cfg.compile.local_cache else None
    return WorkArea(work, cache)


SMALL_INPUT_BYTES = 32 * 1024 * 1024
"""Below this much input a stage runs in the calling process: starting workers (a forkserver
that imports numpy, pyarrow and boto3) costs more than it saves."""


def worker_count(cfg: DatasetConfig, input_bytes: int | None = None) -> int:
    if input_bytes is not None and input_bytes < SMALL_INPUT_BYTES and not cfg.compile.workers:
        return 1
    return cfg.compile.workers or os.cpu_count() or 1


def iter_parallel(
    fn: Callable[[T], R], tasks: Sequence[T], workers: int
) -> Generator[R, None, None]:
    """``fn`` over ``tasks`` in worker processes, results yielded in task order as they are
    ready (the caller can act on the first while later ones still run); inline for one task.

    At most ``2 × workers`` tasks are submitted ahead of the caller, so a caller that stops
    (an error while handling a result) leaves only those to cancel or finish, and results
    waiting to be consumed stay bounded. Workers come from a forkserver that has imported this
    package once (no inherited threads, no per-worker import cost after the first pool).
    """
    if len(tasks) <= 1 or workers <= 1:
        for t in tasks:
            yield fn(t)
        return
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["dataset_assets.pipeline.shards"])
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), mp_context=ctx
    ) as pool:
        pending: collections.deque[concurrent.futures.Future[R]] = collections.deque()
        ahead = iter(tasks)
        try:
            for task in itertools.islice(ahead, 2 * workers):
                pending.append(pool.submit(fn, task))
            while pending:
                result = pending.popleft().result()
                for task in itertools.islice(ahead, 1):
                    pending.append(pool.submit(fn, task))
                yield result
        finally:
            for future in pending:
                future.cancel()


def dedup_stage_is_large(index_bytes: int, memory_mib: int) -> bool:
    """Whether the dedup stage's DuckDB will come near its ``memory_mib`` budget: its working
    set grows with the indexes it reads (band keys and signatures), and from an eighth of the
    budget in indexes on it is the build's memory peak (4 GB of chats: 390 MB of indexes,
    DuckDB ~530 MiB at 512). Below that the peak is elsewhere (the shard step's workers) and
    the idle forkserver is kept: restarting it for the shard step cost 0.45-0.65 s of a ~9.5 s
    150 MB build (14 MB of indexes; three A/B pairs)."""
    return index_bytes * 8 >= memory_mib * 1024 * 1024


def stop_idle_worker_server() -> None:
    """Stop the forkserver this process started for :func:`iter_parallel` (none: no-op).

    Between stage 1 and the shard step it sits idle with the package imported (~110 MiB RSS),
    beside DuckDB at the build's memory peak when the stage is large
    (:func:`dedup_stage_is_large`); the next pool starts a new one (~0.5 s of imports in the
    new server). Only a server this process launched is stopped (a worker's inherited
    one is not), and only while no pool of this process is open (the caller's guarantee).
    ``ForkServer._stop`` is CPython's own hook for this (3.8+, used by its tests): the
    ``multiprocessing`` API has no public way to stop the forkserver before the process exits.
    """
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    stop = getattr(server, "_stop", None)
    if callable(stop):
        stop()


def run_parallel(fn: Callable[[T], R], tasks: Sequence[T], workers: int) -> list[R]:
    """:func:`iter_parallel`, collected."""
    return list(iter_parallel(fn, tasks, workers))


IO_THREADS = 8
"""S3 requests in flight for the per-partition requests between the stages (decision PUTs,
intermediate downloads, the shard step's shard-set lookups): a build of ~600 source files
otherwise waits for ~600 round trips one after another at each of those points (600 PUTs of
50 KB to the local SeaweedFS: 2.5 s one at a time, 1.4 s in 8 threads; against a remote S3 the
round trip, not the bytes, dominates)."""


def map_io(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``fn`` over ``items`` in up to :data:`IO_THREADS` threads, results in item order; the
    first exception is raised (after the requests already started have finished)."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    threads = min(IO_THREADS, len(items))
    with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="partition-io") as pool:
        return list(pool.map(fn, items))


@dataclass(frozen=True)
class StoreSpec:
    """What a worker process needs to open the build's store (a boto3 client is not picklable)."""

    bucket: str
    settings: S3Settings
    part_size: int

    @classmethod
    def of(cls, store: S3ObjectStore) -> "StoreSpec":
        return cls(store.bucket, store.settings, store.part_size)

    def open(self) -> S3ObjectStore:
        return _worker_store(self)


@functools.cache
def _worker_store(spec: StoreSpec) -> S3ObjectStore:
    return S3ObjectStore(spec.bucket, spec.settings, part_size=spec.part_size)


# -- stage 1 -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PartitionTask:
    ref: SourceRef
    holdout: bool
    digest: str
    cfg: DatasetConfig
    store: StoreSpec
    out: Path
    keep_local: bool
    journal: Journal
    share: bool = True
    """Publish the intermediates to S3 (else keep them in the local cache only)."""
    piece: ByteRange | None = None
    """A byte range of the file (its outputs go to ``out``, merged later), or the whole file."""


def _spec(ref: SourceRef, holdout: bool) -> PartitionSpec:
    return PartitionSpec(ref.family, holdout, ref.uri, ref.size, ref.fingerprint)


def _run_partition(task: _PartitionTask) -> PartitionSummary:
    """In a worker process: stage 1 for one file or one byte range of it, into its local
    folder (published by the calling process while the workers go on with the next files)."""
    shutil.rmtree(task.out, ignore_errors=True)
    spec = _spec(task.ref, task.holdout)
    if task.piece is not None:
        with open_range(task.ref.path, task.piece) as stream:
            return process_partition(stream, spec, task.cfg, task.out, task.piece.first_line)
    store = task.store.open()
    with open_source(task.ref, store) as stream:
        return process_partition(stream, spec, task.cfg, task.out)


def _task_bytes(task: _PartitionTask) -> int:
    return task.piece.end - task.piece.start if task.piece is not None else task.ref.size


MIN_RANGE_BYTES = 32 * 1024 * 1024
"""Smallest byte range: below it a range's fixed costs (a task, its files, the merge) show."""


def range_bytes(cfg: DatasetConfig, total_bytes: int, workers: int) -> int:
    """The byte-range size stage 1 cuts big files into (``compile.range_mib``; by default a
    quarter of one worker's share of the input, at least :data:`MIN_RANGE_BYTES`), so that no
    task is long against a worker's share and no core waits long for another. Files of less
    than 1.5 ranges are read whole: a build of many similar files is not cut (1 GB in 8 files
    on 2 cores: ranges of 125 MB; cutting them anyway cost 1.4 s of a 15 s stage 1 in planning
    and merging), one big file is (a 121 MB file beside a 39 MB one on 2 cores: four ranges of
    ~30 MB)."""
    if cfg.compile.range_mib:
        return cfg.compile.range_mib * 1024 * 1024
    return max(MIN_RANGE_BYTES, total_bytes // (4 * max(1, workers)))


def _pieces(task: _PartitionTask, piece_bytes: int) -> list[_PartitionTask]:
    """The tasks of a partition: its byte ranges (a local plain JSONL file of at least 1.5
    ``piece_bytes``), or itself."""
    ref = task.ref
    if not ref.path or ref.size < piece_bytes * 3 // 2:
        return [task]
    if source_format(ref.uri) != ("jsonl", "none"):
        return [task]
    pieces = plan_ranges(Path(ref.path), ref.size, piece_bytes)
    if len(pieces) == 1:
        return [task]
    return [
        dataclasses.replace(task, piece=piece, out=task.out.with_name(f"{task.out.name}.{i:04d}"))
        for i, piece in enumerate(pieces)
    ]


def _publish_partition(
    store: S3ObjectStore, task: _PartitionTask, summary: PartitionSummary
) -> PartitionSummary:
    """Publish a partition's intermediates to S3 (verified), then its ``summary.json``; or,
    when they are not shared, mark them complete in the local cache."""
    body = orjson.dumps(summary.__dict__)
    if not task.share:
        write_local_copy(task.out / LOCAL_SUMMARY_NAME, body)
        return summary
    prefix = task.cfg.prefix
    with Publisher(store, max_in_flight=len(PARTITION_FILES), journal=task.journal) as publisher:
        for name in PARTITION_FILES:
            path = task.out / name
            digest = digest_file(path, store.upload_part_size(path.stat().st_size))
            key = cache_partition_key(prefix, task.digest, name)
            publisher.submit(StagedFile(path, key, digest, keep_local=task.keep_local))
    # summary.json last: its presence means the partition's intermediates are all in S3.
    store.put_bytes(cache_partition_key(prefix, task.digest, SUMMARY_NAME), body)
    if task.keep_local:
        write_local_copy(task.out / SUMMARY_NAME, body)
        (task.out / LOCAL_SUMMARY_NAME).unlink(missing_ok=True)
    else:
        shutil.rmtree(task.out, ignore_errors=True)
    return summary


@contextlib.contextmanager
def _stage1(
    store: S3ObjectStore, todo: Sequence[_PartitionTask], workers: int
) -> Iterator[tuple[list[PartitionSummary], Callable[[], None]]]:
    """Stage 1 of ``todo`` in worker processes; each partition's intermediates are published
    from this process (threads) as soon as its worker is done, so uploads and the server's
    work on them overlap with the next files' stage 1 instead of following it.

    Yields ``(summaries, wait_published)`` (summaries in the order of ``todo``; the files run
    longest first) once every worker is done: the last partitions' publishes may still run
    (the caller can work on the local files meanwhile); ``wait_published()`` returns when
    every intermediate is in S3 and raises the first publish error. Leaving the block waits
    for them too (and cancels the unstarted ones on an error).

    At most ``workers`` publishes run at once, and a failed one stops the stage at the next
    result (no more files are started; the failed partition's files stay for the rerun)."""
    limit = max(1, workers)
    uploads = concurrent.futures.ThreadPoolExecutor(max_workers=limit)
    published: list[concurrent.futures.Future[PartitionSummary]] = []
    pending: set[concurrent.futures.Future[PartitionSummary]] = set()
    runs = [(task, [task]) for task in todo]
    if todo and workers > 1:
        piece_bytes = range_bytes(todo[0].cfg, sum(t.ref.size for t in todo), workers)
        runs = [(task, _pieces(task, piece_bytes)) for task in todo]
        cut = [len(task_pieces) for _, task_pieces in runs if len(task_pieces) > 1]
        if cut:
            log.info(
                "compile: stage 1 reads %d of %d files in %d byte ranges of ~%d MiB",
                len(cut),
                len(todo),
                sum(cut),
                piece_bytes // (1024 * 1024),
            )
        # longest tasks first (a file's ranges together): the last ones to start are short,
        # so no core idles long at the end waiting for another's big file
        runs.sort(key=lambda run: -max(_task_bytes(piece) for piece in run[1]))
    pieces = [piece for _, task_pieces in runs for piece in task_pieces]
    by_digest: dict[str, PartitionSummary] = {}

    def wait_published() -> None:
        for future in published:
            future.result()  # raises the publish error

    def merged(results: Iterator[PartitionSummary]) -> Iterator[PartitionSummary]:
        """One summary per partition, in the order of ``runs``: its ranges' outputs merged."""
        for task, task_pieces in runs:
            done = list(itertools.islice(results, len(task_pieces)))
            if len(task_pieces) == 1:
                yield done[0]
            else:
                yield merge_ranges([p.out for p in task_pieces], done, task.out)
        # run iter_parallel to its end: its pool is shut down there (workers exit)
        if next(results, None) is not None:
            raise RuntimeError("stage 1: more results than tasks")

    results = iter_parallel(_run_partition, pieces, workers)
    try:
        for (task, _), summary in zip(runs, merged(results), strict=True):
            while pending and (len(pending) >= limit or any(f.done() for f in pending)):
                done, _ = concurrent.futures.wait(
                    pending, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in done:
                    future.result()  # raises the publish error
                pending -= done
            future = uploads.submit(_publish_partition, store, task, summary)
            pending.add(future)
            published.append(future)
            by_digest[task.digest] = summary
        yield [by_digest[task.digest] for task in todo], wait_published
        wait_published()
    except BaseException as exc:
        results.close()  # the workers' pool: unstarted tasks cancelled, workers stopped
        uploads.shutdown(wait=True, cancel_futures=True)
        for future in published:  # failures behind the one being raised: not lost silently
            if future.done() and not future.cancelled() and future.exception() not in (None, exc):
                log.warning("stage 1: another intermediate publish failed: %s", future.exception())
        raise
    finally:
        uploads.shutdown(wait=True, cancel_futures=True)


def _read_summary(path: Path) -> PartitionSummary | None:
    try:
        return PartitionSummary(**orjson.loads(path.read_bytes()))
    except (OSError, ValueError, TypeError):  # missing or unreadable: not a complete partition
        return None


def _cached_summary(
    store: S3ObjectStore, prefix: str, digest: str, area: WorkArea
) -> tuple[PartitionSummary, str] | None:
    """A complete earlier stage 1 of the partition: its counts and where it is — ``"cache"``
    (this machine's cache, and S3 when it was published), ``"cache only"`` (kept local, see
    :func:`shares_intermediates`) or ``"s3"``; None if there is none (here or in S3)."""
    folder = area.partition_dir(digest)
    for name, where in ((SUMMARY_NAME, "cache"), (LOCAL_SUMMARY_NAME, "cache only")):
        found = _read_summary(folder / name)
        if found is not None:
            return found, where
    key = cache_partition_key(prefix, digest, SUMMARY_NAME)
    if not store.exists(key):
        return None
    return PartitionSummary(**orjson.loads(store.get_bytes(key))), "s3"


def _share_cached(
    store: S3ObjectStore,
    prefix: str,
    tasks: list[_PartitionTask],
    summaries: dict[str, PartitionSummary],
) -> list[_PartitionTask]:
    """Partitions complete in this machine's cache, for a build that shares its intermediates:
    those S3 lacks (kept local by an earlier build, or removed from S3 since) are uploaded from
    the cache. Returns those whose cached files are gone, for stage 1 to redo."""
    in_s3 = map_io(
        lambda task: store.exists(cache_partition_key(prefix, task.digest, SUMMARY_NAME)), tasks
    )
    missing = [task for task, there in zip(tasks, in_s3, strict=True) if not there]
    whole = [t for t in missing if all((t.out / name).is_file() for name in PARTITION_FILES)]
    map_io(lambda task: _publish_partition(store, task, summaries[task.digest]), whole)
    uploaded = {task.digest for task in whole}
    redo = [task for task in missing if task.digest not in uploaded]
    for task in redo:
        del summaries[task.digest]
        for name in (SUMMARY_NAME, LOCAL_SUMMARY_NAME):
            (task.out / name).unlink(missing_ok=True)
    return redo


@contextlib.contextmanager
def run_partitions(
    cfg: DatasetConfig,
    store: S3ObjectStore,
    area: WorkArea,
    journal: Journal,
    share: bool = True,
) -> Iterator[tuple[list[PartitionRef], Callable[[], None]]]:
    """Stage 1 over every source, in family priority order; with ``share``, every partition's
    intermediates end up in S3 (those an earlier build kept on this machine only are uploaded
    from the cache), else they stay in the local cache.

    Yields ``(refs, wait_published)`` when every partition's local intermediates are written
    (see :func:`_stage1`): with the local cache on, the caller may read them while the last
    ones are still being published; without it they are published (and removed) first.

    Raises:
        ConfigError: no family's paths match a file.
    """
    stage_digest = stage_config_digest(cfg)
    planned: list[tuple[SourceRef, bool, str]] = []
    for family in cfg.families:
        for ref in list_sources(family, store, root=cfg.config_dir):
            digest = partition_digest(_spec(ref, family.holdout), stage_digest)
            planned.append((ref, family.holdout, digest))
    if not planned:
        paths = "; ".join(f"{f.name}: {', '.join(f.paths)}" for f in cfg.families)
        raise ConfigError(
            f"no source files: no family's paths match a file ({paths}); nothing to build"
        )
    summaries: dict[str, PartitionSummary] = {}
    todo: list[_PartitionTask] = []
    unshared: list[_PartitionTask] = []
    seen: set[str] = set()
    for ref, holdout, digest in planned:
        if digest in seen:
            continue
        seen.add(digest)
        cached = _cached_summary(store, cfg.prefix, digest, area)
        out = area.partition_dir(digest)
        keep = area.cache is not None
        task = _PartitionTask(
            ref, holdout, digest, cfg, StoreSpec.of(store), out, keep, journal, share
        )
        if cached is None:
            todo.append(task)
            continue
        summary, where = cached
        if share and where != "s3":
            unshared.append(task)
        summaries[digest] = summary
    if unshared:
        todo += _share_cached(store, cfg.prefix, unshared, summaries)
    todo_bytes = sum(t.ref.size for t in todo)
    started = time.perf_counter()
    with _stage1(store, todo, worker_count(cfg, todo_bytes)) as (done, wait_published):
        log.info(
            "compile: stage 1 of %d new partitions (%d reused) in %.1f s",
            len(todo),
            len(planned) - len(todo),
            time.perf_counter() - started,
        )
        if area.cache is None:
            wait_published()  # publishing removes the local files: read them from S3 after
        for task, summary in zip(todo, done, strict=True):
            summaries[task.digest] = summary
        refs = [
            PartitionRef(
                family=ref.family,
                holdout=holdout,
                uri=ref.uri,
                size=ref.size,
                fingerprint=ref.fingerprint,
                digest=digest,
                input_records=summaries[digest].input_records,
                candidates=summaries[digest].candidates,
                quarantined_by_reason=summaries[digest].quarantined_by_reason,
            )
            for ref, holdout, digest in planned
        ]
        yield refs, wait_published


def local_intermediate(
    store: S3ObjectStore, prefix: str, area: WorkArea, part: PartitionRef, name: str
) -> Path:
    """A partition's intermediate file on local disk: from the cache, else downloaded from S3."""
    path = area.partition_dir(part.digest) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = cache_partition_key(prefix, part.digest, name)
        try:
            store.download_file(key, path)
        except ObjectNotFoundError as exc:
            raise ObjectNotFoundError(
                f"{part.uri}: its stage-1 intermediate {name} is neither in this machine's "
                f"cache ({path.parent}) nor in S3 ({store.uri(key)}). Likely: the compile "
                "kept it on the machine it ran on (compile.intermediates: local, or auto with "
                "the in_process or multiprocess executor and local runs) — set "
                "compile.intermediates: s3 when a run's steps, re-executions or later runs "
                "land on other machines; or it was deleted from S3 or from the cache since. "
                "Build again: the compile recomputes what is missing",
                key=key,
            ) from exc
    return path


def _local_intermediates(
    store: S3ObjectStore, prefix: str, area: WorkArea, parts: Sequence[PartitionRef], name: str
) -> list[Path]:
    """:func:`local_intermediate` of each part (downloads in threads, each digest once)."""
    unique = list({p.digest: p for p in parts}.values())
    found = map_io(lambda p: local_intermediate(store, prefix, area, p, name), unique)
    paths = {p.digest: path for p, path in zip(unique, found, strict=True)}
    return [paths[p.digest] for p in parts]


# -- stage 2 -------------------------------------------------------------------------------------


def _cluster_digest(cfg: DatasetConfig, parts: Sequence[PartitionRef]) -> str:
    body = orjson.dumps([stage_config_digest(cfg), [p.digest for p in parts]])
    return hashlib.sha256(body).hexdigest()


def _stage(path: Path, key: str, records: int, part_size: int) -> StagedFile:
    return StagedFile(path, key, digest_file(path, part_size), records)


def _merge_quarantine(
    store: S3ObjectStore, prefix: str, area: WorkArea, parts: Sequence[PartitionRef], out: Path
) -> None:
    """One quarantine file for the build: every partition's entries, in partition order."""
    quarantined = [part for part in parts if sum(part.quarantined_by_reason.values())]
    with out.open("wb") as fh:
        for path in _local_intermediates(store, prefix, area, quarantined, QUARANTINE_NAME):
            fh.write(path.read_bytes())


def compile_conversations(
    cfg: DatasetConfig,
    store: S3ObjectStore,
    *,
    run_id: str,
    area: WorkArea | None = None,
    journal: Journal | None = None,
    share: bool = True,
) -> CompileResult:
    """Stage 1 + stage 2 + the leakage check; publishes decisions and sidecars, and with
    ``share`` the intermediates (:func:`shares_intermediates`)."""
    area = area or work_area(cfg, run_id, "compile")
    shutil.rmtree(area.work, ignore_errors=True)
    area.work.mkdir(parents=True)
    try:
        journal = journal or Journal(area.work.parent / "journal-compile.jsonl", run_id=run_id)
        return _compile(cfg, store, run_id, area, journal, share)
    finally:
        shutil.rmtree(area.work, ignore_errors=True)


def _compile(
    cfg: DatasetConfig,
    store: S3ObjectStore,
    run_id: str,
    area: WorkArea,
    journal: Journal,
    share: bool,
) -> CompileResult:
    with run_partitions(cfg, store, area, journal, share) as (parts, wait_published):
        return _dedup_and_publish(cfg, store, run_id, area, journal, parts, wait_published)


def _dedup_and_publish(
    cfg: DatasetConfig,
    store: S3ObjectStore,
    run_id: str,
    area: WorkArea,
    journal: Journal,
    parts: list[PartitionRef],
    wait_published: Callable[[], None],
) -> CompileResult:
    """Stage 2 and the leakage check (on the local indexes, while stage 1's last
    intermediates may still be uploading), then the decisions and sidecars (once every
    intermediate is in S3: decisions must never name a partition S3 does not hold).

    A clean clustering of the same partitions under the same options is reused instead
    (:class:`Clustering`): a rebuild with unchanged sources, e.g. after changing the shard
    size or the export, skips the dedup stage."""
    cluster_digest = _cluster_digest(cfg, parts)
    reused = _reusable_clustering(store, cfg.prefix, cluster_digest, parts)
    if reused is not None:
        wait_published()
        log.info("compile: reusing the clustering %s (same partitions and options)", cluster_digest)
        return _result(cfg, run_id, reused, reused=True)
    indexes = _local_intermediates(store, cfg.prefix, area, parts, INDEX_NAME)
    inputs = [ClusterInput(path, p.family, p.uri) for path, p in zip(indexes, parts, strict=True)]
    dedup_path = area.work / "dedup.jsonl.zst"
    provenance_path = area.work / "provenance.jsonl.zst"
    buckets_path = area.work / "buckets.parquet"
    keys_path = area.work / "shared-keys.parquet"
    digests = [p.digest for p in parts]
    known = find_known_keys(area.cache, digests, [path.stat().st_size for path in indexes])
    threads = worker_count(cfg)
    if dedup_stage_is_large(sum(path.stat().st_size for path in indexes), cfg.compile.memory_mib):
        stop_idle_worker_server()  # stage 1's pool is closed; DuckDB is the peak
    with _timed("dedup stage"):
        clustered = cluster(
            inputs,
            cfg.dedup,
            area.work / "duck",
            threads=threads,
            memory_mib=cfg.compile.memory_mib,
            dedup_sidecar=dedup_path,
            buckets=buckets_path,
            known_keys=known,
            keys_out=keys_path if area.cache is not None else None,
        )
    if clustered.from_known_keys:
        assert known is not None
        log.info(
            "compile: dedup stage grouped only the keys the last clustering shared and the "
            "keys of %d new of %d partitions",
            len(known.new),
            len(parts),
        )
    keep_keys(area.cache, cluster_digest, digests, keys_path)
    with _timed("provenance"):
        _provenance(area, inputs, parts, clustered.decisions, provenance_path, threads, cfg)
    with _timed("leakage check"):
        exact, near, pairs = find_leaks(
            inputs,
            clustered.decisions,
            cfg.dedup,
            area.work / "leaks",
            threads=threads,
            memory_mib=cfg.compile.memory_mib,
            buckets=buckets_path,
        )
    with _timed("wait for stage 1's last uploads"):
        wait_published()
    with _timed("decisions published"):
        parts = _publish_decisions(store, cfg.prefix, cluster_digest, parts, clustered.decisions)
    quarantine_path = area.work / "quarantine.jsonl"
    _merge_quarantine(store, cfg.prefix, area, parts, quarantine_path)
    counts = _counts(parts, clustered.exact_duplicates, clustered.near_duplicates)
    dups = clustered.exact_duplicates + clustered.near_duplicates
    with Publisher(store, max_in_flight=3, verify=cfg.verify, journal=journal) as publisher:
        q = _stage(quarantine_path, "", counts.quarantined, cfg.part_size)
        q = StagedFile(q.path, quarantine_key(cfg.prefix, q.digest.sha256), q.digest, q.records)
        pv = _stage(provenance_path, "", counts.published_records, cfg.part_size)
        pv = StagedFile(
            pv.path, provenance_key(cfg.prefix, pv.digest.sha256), pv.digest, pv.records
        )
        dd = _stage(dedup_path, "", dups, cfg.part_size)
        dd = StagedFile(dd.path, dedup_key(cfg.prefix, dd.digest.sha256), dd.digest, dd.records)
        quarantine = file_entry(publisher.publish(q))
        provenance, dedup = (file_entry(publisher.publish(f), compression="zstd") for f in (pv, dd))
    clustering = Clustering(
        cluster_digest=cluster_digest,
        exact_duplicates=clustered.exact_duplicates,
        near_duplicates=clustered.near_duplicates,
        partitions=parts,
        quarantine=quarantine,
        provenance=provenance,
        dedup=dedup,
        leakage=LeakReport(exact=exact, near=near, near_checked=cfg.dedup.near, pairs=pairs),
    )
    if clustering.leakage.passed:  # only a clean clustering is offered to later builds
        key = cache_clustering_key(cfg.prefix, cluster_digest)
        store.put_bytes(key, clustering.model_dump_json().encode())
    return _result(cfg, run_id, clustering, reused=False)


PROVENANCE_FOLDER = "provenance"
"""Per-partition provenance files, in the local cache (else the step's work folder)."""
PROVENANCE_FORMAT = 1
"""Bump when a provenance row changes: cached per-partition files of another format are not
reused (their names differ)."""


def provenance_chunk_name(part_digest: str, decisions_sha256: str) -> str:
    """A partition's provenance file under given decisions (its rows are those decisions')."""
    return f"{part_digest}-{decisions_sha256[:32]}-v{PROVENANCE_FORMAT}.jsonl.zst"


def _provenance(
    area: WorkArea,
    inputs: Sequence[ClusterInput],
    parts: Sequence[PartitionRef],
    decisions: Sequence[np.ndarray],
    out: Path,
    threads: int,
    cfg: DatasetConfig,
) -> None:
    """The build's provenance sidecar: every partition's provenance file, concatenated in
    partition order (zstd frames concatenate into one valid stream). The files of partitions
    whose decisions a cached file already covers are reused, not rewritten."""
    folder = (area.cache if area.cache is not None else area.work) / PROVENANCE_FOLDER
    chunks = [
        folder / provenance_chunk_name(p.digest, hashlib.sha256(_decision_bytes(c)).hexdigest())
        for p, c in zip(parts, decisions, strict=True)
    ]
    tmp = [folder / f".{c.name}.{os.getpid()}.tmp" for c in chunks]
    todo = [None if _nonempty(c) else t for c, t in zip(chunks, tmp, strict=True)]
    write = functools.partial(
        write_provenance,
        work=area.work / "provenance-duck",
        threads=threads,
        memory_mib=cfg.compile.memory_mib,
    )
    write(inputs, decisions, todo)
    for written, chunk in zip(todo, chunks, strict=True):
        if written is not None:
            with contextlib.suppress(FileNotFoundError):  # (pruned by another build: below)
                _fsync(written)
                os.replace(written, chunk)  # whole files only: a killed build leaves none
    with out.open("wb") as fh:
        for p, chunk in enumerate(chunks):
            try:
                src = chunk.open("rb")
            except FileNotFoundError:  # removed since (another build pruning the cache)
                again = area.work / "provenance-again.jsonl.zst"
                write([inputs[p]], [decisions[p]], [again])
                src = again.open("rb")
            with src:
                shutil.copyfileobj(src, fh, 1 << 20)


def _nonempty(path: Path) -> bool:
    """A reusable provenance file: there, and not cut to nothing (even an empty partition's
    file holds a zstd frame)."""
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _fsync(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def _decision_bytes(codes: np.ndarray) -> bytes:
    """A partition's decisions as published (one byte per record)."""
    return codes.astype(np.uint8).tobytes()


def _result(
    cfg: DatasetConfig, run_id: str, clustering: Clustering, *, reused: bool
) -> CompileResult:
    parts = clustering.partitions
    return CompileResult(
        run_id=run_id,
        config_digest=cfg.digest(),
        cluster_digest=clustering.cluster_digest,
        partitions=parts,
        counts=_counts(parts, clustering.exact_duplicates, clustering.near_duplicates),
        inputs=[
            InputFingerprint(uri=p.uri, family=p.family, bytes=p.size, fingerprint=p.fingerprint)
            for p in parts
        ],
        quarantine=clustering.quarantine,
        provenance=clustering.provenance,
        dedup=clustering.dedup,
        leakage=clustering.leakage,
        clustering_reused=reused,
    )


def _reusable_clustering(
    store: S3ObjectStore, prefix: str, cluster_digest: str, parts: Sequence[PartitionRef]
) -> Clustering | None:
    """The stored clustering of ``cluster_digest`` if it can stand for this compile's dedup
    stage: the same partitions (digests and counts), every decisions object present with its
    sha256, every sidecar present with its size. Otherwise None (logged when one exists)."""
    key = cache_clustering_key(prefix, cluster_digest)
    try:
        clustering = Clustering.model_validate_json(store.get_bytes(key))
    except ObjectNotFoundError:
        return None
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        log.warning("compile: ignoring the unreadable clustering %s: %s", store.uri(key), exc)
        return None
    bare = {"decisions_sha256": "", "split_records": {}}
    if [p.model_copy(update=bare) for p in clustering.partitions] != list(parts):
        log.warning("compile: ignoring the clustering %s: other partitions", store.uri(key))
        return None

    def decisions_match(part: PartitionRef) -> bool:
        data = store.get_bytes(cache_decisions_key(prefix, cluster_digest, part.digest))
        return hashlib.sha256(data).hexdigest() == part.decisions_sha256

    def sidecar_present(entry: FileEntry) -> bool:
        return store.head(entry.key).size == entry.bytes

    sidecars = [clustering.quarantine, clustering.provenance, clustering.dedup]
    try:
        intact = all(map_io(decisions_match, clustering.partitions)) and all(
            map_io(sidecar_present, sidecars)
        )
    except ObjectNotFoundError as exc:
        intact, why = False, str(exc)
    else:
        why = "a decisions object or a sidecar differs from what it recorded"
    if not intact:
        log.warning("compile: not reusing the clustering %s: %s", store.uri(key), why)
    return clustering if intact else None


def _publish_decisions(
    store: S3ObjectStore,
    prefix: str,
    cluster_digest: str,
    parts: Sequence[PartitionRef],
    decisions: Sequence[np.ndarray],
) -> list[PartitionRef]:

    def publish(item: tuple[PartitionRef, np.ndarray]) -> PartitionRef:
        part, codes = item
        data = _decision_bytes(codes)
        store.put_bytes(cache_decisions_key(prefix, cluster_digest, part.digest), data)
        per_split = {s: int((codes == c).sum()) for s, c in SPLIT_CODES.items()}
        return part.model_copy(
            update={
                "decisions_sha256": hashlib.sha256(data).hexdigest(),
                "split_records": {s: n for s, n in per_split.items() if n},
            }
        )

    return map_io(publish, list(zip(parts, decisions, strict=True)))


def _counts(parts: Sequence[PartitionRef], exact: int, near: int) -> BuildCounts:
    quarantined: Counter[str] = Counter()
    per_split: Counter[str] = Counter()
    per_family: Counter[str] = Counter()
    per_split_family: dict[str, Counter[str]] = {}
    for p in parts:
        quarantined.update(p.quarantined_by_reason)
        for split, n in p.split_records.items():
            per_split[split] += n
            per_family[p.family] += n
            per_split_family.setdefault(split, Counter())[p.family] += n
    return BuildCounts(
        input_records=sum(p.input_records for p in parts),
        published_records=sum(per_split.values()),
        exact_duplicates=exact,
        near_duplicates=near,
        quarantined=sum(quarantined.values()),
        quarantined_by_reason=dict(quarantined),
        per_split={s: per_split[s] for s in SPLITS if per_split[s]},
        per_family=dict(per_family),
        per_split_family={s: dict(c) for s, c in per_split_family.items()},
    )


def read_decisions(
    store: S3ObjectStore, prefix: str, result: CompileResult, part: PartitionRef
) -> np.ndarray:
    key = result.decisions_key(prefix, part)
    data = store.get_bytes(key)
    actual = hashlib.sha256(data).hexdigest()
    if actual != part.decisions_sha256:
        raise IntegrityError(f"decisions {store.uri(key)} (sha256)", part.decisions_sha256, actual)
    return np.frombuffer(data, dtype=np.uint8)


def quarantine_ratio(result: CompileResult) -> float:
    c = result.counts
    return c.quarantined / c.input_records if c.input_records else 0.0
