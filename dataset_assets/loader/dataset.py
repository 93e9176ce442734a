"""S3DatasetLoader: stream a published split into training, exactly and fast
(docs/architecture.md, "The loader").

How it works (details in :mod:`dataset_assets.loader.plan`): the manifest's record counts define
the epoch's positions; each reader (rank × DataLoader worker) takes one contiguous, equal-length
slice of the shard-permuted epoch and fetches only the shards of its slice, ``read_ahead`` shards
ahead on background threads, each verified (sha256) before any of its records is used. Records
flow as raw JSON lines through a bounded shuffle buffer and are parsed when yielded. The shuffle
buffer's choices depend only on its fill level, so a resume replays them on integers and fetches
only the shards still needed. Memory per reader ≈ (1 + read_ahead) × shard size + the buffer.
"""

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from dataset_assets.core.errors import ConfigError, IntegrityError
from dataset_assets.core.layout import SPLITS, parse_s3_uri
from dataset_assets.core.manifest import Manifest, ShardEntry
from dataset_assets.core.streams import zstd_decompress
from dataset_assets.loader.cache import ShardCache
from dataset_assets.loader.fetch import ByteRangeReader, RetryPolicy, fetch_shard, shard_path
from dataset_assets.loader.plan import (
    Segment,
    ShuffleBuffer,
    Uneven,
    buffer_rng,
    fast_forward,
    samples_per_unit,
    shard_order,
    unit_segments,
)
from dataset_assets.loader.source import ObjectReader, Readers, ResolvedManifest, resolve_manifest
from dataset_assets.storage.settings import S3Settings

if TYPE_CHECKING:
    from dataset_assets.loader.torch_adapter import TorchDataLoader

Record = dict[str, Any]
STATE_VERSION = 1
_BLOCK = 1024  # records parsed per step


@dataclass(frozen=True)
class LoaderOptions:
    """What to read and how; validated on construction.

    Attributes:
        split: ``train``, ``val`` or ``test``.
        families: keep only records of these families (None = all).
        seed: base seed of every shuffle.
        shuffle: permute shard order and pass records through the shuffle buffer.
        shuffle_buffer: records held by the shuffle buffer (memory bound of the shuffle).
        rank: this process's rank.
        world_size: number of ranks.
        uneven: ``"pad"`` repeats samples so every rank gets ``ceil`` of its share, ``"drop"``
            skips the tail so every rank gets ``floor``.
        read_ahead: shards fetched in the background ahead of the one being consumed.
        cache_dir: optional local cache of verified shards.
        cache_limit_bytes: size bound of ``cache_dir``.
        retry: bounded retries for dropped connections.
    """

    split: str = "train"
    families: tuple[str, ...] | None = None
    seed: int = 0
    shuffle: bool = True
    shuffle_buffer: int = 10_000
    rank: int = 0
    world_size: int = 1
    uneven: Uneven = "pad"
    read_ahead: int = 2
    cache_dir: Path | None = None
    cache_limit_bytes: int = 10 * 1024**3
    retry: RetryPolicy = RetryPolicy()  # noqa: RUF009 - frozen dataclass

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.world_size < 1:
            raise ConfigError(f"world_size must be ≥ 1, got {self.world_size}")
        if not 0 <= self.rank < self.world_size:
            raise ConfigError(f"rank must be in [0, {self.world_size}), got {self.rank}")
        if self.uneven not in ("pad", "drop"):
            raise ConfigError(f"uneven must be 'pad' or 'drop', got {self.uneven!r}")
        if self.shuffle_buffer < 1:
            raise ConfigError(f"shuffle_buffer must be ≥ 1, got {self.shuffle_buffer}")
        if self.read_ahead < 0:
            raise ConfigError(f"read_ahead must be ≥ 0, got {self.read_ahead}")


class S3DatasetLoader:
    """Iterate one split of a published dataset, pinned to the build resolved at construction.

    Every rank yields exactly ``len(loader)`` records per epoch; the order is a deterministic
    function of ``(seed, epoch, rank, world_size)``; ``state_dict()`` records how many samples
    this loader has handed out, and a new loader given that state continues with exactly the next
    one. Shards are verified (sha256) before any of their records is yielded.

    Example::

        loader = S3DatasetLoader("s3://bucket/final_dataset/manifest.json", split="train",
                                 rank=rank, world_size=world, seed=17)
        for epoch in range(3):
            loader.set_epoch(epoch)
            for record in loader:
                ...

    Args:
        manifest: ``s3://bucket/prefix/manifest.json`` (latest pointer), an immutable
            ``…/manifests/{build_id}.json``, or a local manifest path whose shard URIs are
            ``s3://`` URIs or (manifest-relative) local paths.
        store: an object store to read with (e.g. an ``S3ObjectStore``); its settings are reused
            for other buckets and in DataLoader worker processes.
        settings: connection settings when no store is given (None = AWS default chain).
        **options: any :class:`LoaderOptions` field.
    """

    def __init__(
        self,
        manifest: "str | os.PathLike[str] | ResolvedManifest",
        *,
        store: ObjectReader | None = None,
        settings: S3Settings | None = None,
        split: str = "train",
        families: Sequence[str] | None = None,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int = 10_000,
        rank: int = 0,
        world_size: int = 1,
        uneven: Uneven = "pad",
        read_ahead: int = 2,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_limit_bytes: int = 10 * 1024**3,
        retry: RetryPolicy | None = None,
        _readers: Readers | None = None,
    ) -> None:
        self._readers = _readers if _readers is not None else Readers(store, settings)
        if isinstance(manifest, ResolvedManifest):
            self._resolved = manifest
        else:
            self._resolved = resolve_manifest(manifest, self._readers)
        self.options = LoaderOptions(
            split=split,
            families=tuple(sorted(set(families))) if families is not None else None,
            seed=seed,
            shuffle=shuffle,
            shuffle_buffer=shuffle_buffer,
            rank=rank,
            world_size=world_size,
            uneven=uneven,
            read_ahead=read_ahead,
            cache_dir=Path(cache_dir) if cache_dir is not None else None,
            cache_limit_bytes=cache_limit_bytes,
            retry=retry if retry is not None else RetryPolicy(),
        )
        known = set(self.manifest.families())
        for shard in self.manifest.shards:
            known.update(shard.families)
        unknown = sorted(set(self.options.families or ()) - known)
        if unknown:
            raise ConfigError(
                f"unknown families {unknown}; the dataset has {', '.join(sorted(known)) or 'none'}"
            )
        self._shards: list[ShardEntry] = self.manifest.split_shards(self.options.split)
        self._counts = [self._eligible(s) for s in self._shards]
        self._epoch = 0
        self._start = 0  # samples of the epoch to skip on the next iteration (resume)
        self._position = 0  # samples handed out in the current epoch
        self._cache: ShardCache | None = None

    # -- the pinned dataset -------------------------------------------------------------------

    @property
    def manifest(self) -> Manifest:
        """The pinned manifest (never re-read)."""
        return self._resolved.manifest

    @property
    def build_id(self) -> str:
        return self.manifest.build_id

    @property
    def pinned_uri(self) -> str:
        """The immutable manifest this loader reads (``manifests/{build_id}.json`` on S3)."""
        return self._resolved.pinned_uri

    @property
    def splits(self) -> list[str]:
        """Splits that have at least one shard."""
        return [s for s in SPLITS if self.manifest.split_shards(s)]

    @property
    def counts(self) -> dict[str, int]:
        """Records per split in the build."""
        return {s: self.manifest.split_records(s) for s in SPLITS}

    @property
    def families(self) -> list[str]:
        """Source families present in the build."""
        return self.manifest.families()

    def family_counts(self, split: str | None = None) -> dict[str, int]:
        """Records per family, for one split or all."""
        out: dict[str, int] = {}
        for shard in self.manifest.shards:
            if split is None or shard.split == split:
                for fam, n in shard.families.items():
                    out[fam] = out.get(fam, 0) + n
        return dict(sorted(out.items()))

    def select(self, **options: Any) -> "S3DatasetLoader":
        """A loader over the same pinned build with some options changed (e.g. ``split``)."""
        current = self.options
        merged: dict[str, Any] = {
            "split": current.split,
            "families": current.families,
            "seed": current.seed,
            "shuffle": current.shuffle,
            "shuffle_buffer": current.shuffle_buffer,
            "rank": current.rank,
            "world_size": current.world_size,
            "uneven": current.uneven,
            "read_ahead": current.read_ahead,
            "cache_dir": current.cache_dir,
            "cache_limit_bytes": current.cache_limit_bytes,
            "retry": current.retry,
        }
        merged.update(options)
        return S3DatasetLoader(self._resolved, _readers=self._readers, **merged)

    # -- epoch, length, state -----------------------------------------------------------------

    @property
    def num_samples(self) -> int:
        """Eligible records of the split (before padding/dropping)."""
        return sum(self._counts)

    def samples_per_unit(self, num_workers: int = 1) -> int:
        """Samples each of ``world_size × num_workers`` readers yields per epoch."""
        n_units = self.options.world_size * num_workers
        return samples_per_unit(self.num_samples, n_units, self.options.uneven)

    def __len__(self) -> int:
        """Samples this rank yields per epoch (identical on every rank)."""
        return self.samples_per_unit(1)

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate; a different epoch starts from its first sample."""
        if epoch < 0:
            raise ConfigError(f"epoch must be ≥ 0, got {epoch}")
        if epoch != self._epoch:
            self._epoch = epoch
            self._start = 0
            self._position = 0

    def _fingerprint(self) -> dict[str, Any]:
        o = self.options
        return {
            "build_id": self.build_id,
            "split": o.split,
            "families": list(o.families) if o.families is not None else None,
            "seed": o.seed,
            "shuffle": o.shuffle,
            "shuffle_buffer": o.shuffle_buffer,
            "rank": o.rank,
            "world_size": o.world_size,
            "uneven": o.uneven,
        }

    def state_dict(self) -> dict[str, Any]:
        """Exact position: the epoch and the samples this loader has yielded in it."""
        return {
            "version": STATE_VERSION,
            "epoch": self._epoch,
            "samples": self._position,
            **self._fingerprint(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at the exact next sample of ``state`` on the next iteration.

        Raises:
            ConfigError: the state belongs to another build or another configuration (resuming
                it here would silently yield a different stream).
        """
        self._check_fingerprint(state)
        samples = int(state["samples"])
        if not 0 <= samples <= len(self):
            raise ConfigError(f"state samples must be in [0, {len(self)}], got {samples}")
        self._epoch = int(state["epoch"])
        self._start = samples
        self._position = samples

    def _check_fingerprint(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ConfigError(f"state version must be {STATE_VERSION}, got {state.get('version')}")
        for name, value in self._fingerprint().items():
            if state.get(name) != value:
                raise ConfigError(
                    f"state was saved with {name}={state.get(name)!r}, this loader has {value!r}"
                )

    def torch_dataloader(
        self, *, batch_size: int, num_workers: int = 0, **kwargs: Any
    ) -> "TorchDataLoader":
        """A resumable ``torch.utils.data.DataLoader`` over this loader (needs torch).

        See :class:`dataset_assets.loader.torch_adapter.TorchDataLoader`.
        """
        from dataset_assets.loader.torch_adapter import TorchDataLoader

        return TorchDataLoader(self, batch_size=batch_size, num_workers=num_workers, **kwargs)

    # -- iteration ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Record]:
        """One pass over this rank's samples of the current epoch, from the restored position
        (``load_state_dict``) or from the start; every yielded record is counted."""
        start = self._start
        self._position = start
        for record in self.iter_unit(
            self._epoch, self.options.rank, self.options.world_size, start
        ):
            self._position += 1
            yield record
        self._start = 0

    def iter_unit(self, epoch: int, unit: int, n_units: int, skip: int = 0) -> Iterator[Record]:
        """The records of one reader (``unit = rank * num_workers + worker`` of ``n_units``),
        starting after its first ``skip`` samples; no state is kept (building block of
        ``__iter__`` and the torch adapter)."""
        o = self.options
        order = shard_order(len(self._shards), seed=o.seed, epoch=epoch, shuffle=o.shuffle)
        segments = unit_segments(self._counts, order, unit, n_units, o.uneven)
        # Unfiltered records travel as raw JSON lines and are parsed as they are yielded: bytes
        # are compact and invisible to the cyclic GC, which thousands of buffered dicts are not.
        if o.families is None:
            loads = orjson.loads
            if not o.shuffle:
                for _, block in self._read(segments, set(), skip):
                    for line in block:
                        yield loads(line)
                return
            for line in self._shuffled(segments, epoch, unit, skip):
                yield loads(line)
            return
        if not o.shuffle:
            for _, block in self._read(segments, set(), skip):
                yield from block
            return
        yield from self._shuffled(segments, epoch, unit, skip)

    def _shuffled(self, segments: list[Segment], epoch: int, unit: int, skip: int) -> Iterator[Any]:
        o = self.options
        length = sum(len(s) for s in segments)
        buffer: ShuffleBuffer[Any] = ShuffleBuffer(
            o.shuffle_buffer, buffer_rng(o.seed, epoch, unit)
        )
        nxt = fast_forward(length, skip, buffer)
        slots = {idx: i for i, idx in enumerate(buffer.items)}
        items = buffer.items
        pop, size = buffer.pop, o.shuffle_buffer
        for first, block in self._read(segments, set(slots), nxt):
            if first < nxt:  # materialize what the buffer held at the resume point
                items[slots[first]] = block[0]
                continue
            for item in block:
                items.append(item)
                if len(items) > size:
                    yield pop()
        while items:
            yield pop()

    # -- reading ------------------------------------------------------------------------------

    def _eligible(self, shard: ShardEntry) -> int:
        if self.options.families is None:
            return shard.records
        return sum(shard.families.get(f, 0) for f in self.options.families)

    def _reader_and_key(self, shard: ShardEntry) -> tuple[ByteRangeReader, str]:
        if shard.uri.startswith("s3://"):
            bucket, key = parse_s3_uri(shard.uri)
            return self._readers.for_bucket(bucket), key
        local_dir = self._resolved.local_dir
        if local_dir is None:
            bucket, _ = parse_s3_uri(self._resolved.pinned_uri)
            return self._readers.for_bucket(bucket), shard.key
        return self._readers.local, str(shard_path(local_dir, shard.uri))

    def _get_cache(self) -> ShardCache | None:
        if self.options.cache_dir is not None and self._cache is None:
            self._cache = ShardCache(self.options.cache_dir, self.options.cache_limit_bytes)
        return self._cache

    def _fetch_records(self, shard: ShardEntry) -> list[bytes] | list[Record]:
        """Verified lines of a shard (raw), or the parsed eligible records under a filter."""
        reader, key = self._reader_and_key(shard)
        data, _ = fetch_shard(
            reader, key, shard, policy=self.options.retry, cache=self._get_cache()
        )
        if shard.compression == "zstd":  # verified as stored, then decompressed
            data = zstd_decompress(data, f"shard {shard.shard_id} ({shard.uri})")
        lines = data.split(b"\n")
        if lines and not lines[-1]:
            lines.pop()
        if len(lines) != shard.records:
            raise IntegrityError(
                f"shard {shard.shard_id} ({shard.uri}) record count",
                expected=str(shard.records),
                actual=str(len(lines)),
            )
        families = self.options.families
        if families is None:
            return lines
        wanted = set(families)
        records: list[Record] = []
        for line in lines:
            record = orjson.loads(line)
            if (record.get("metadata") or {}).get("family") in wanted:
                records.append(record)
        return records

    def _read(
        self, segments: list[Segment], restore: set[int], start: int
    ) -> Iterator[tuple[int, list[Any]]]:
        """Yield ``(first_input_index, items)`` blocks (raw lines, or parsed records under a
        family filter) covering the inputs in ``restore``
        (one record per block) and every input ``≥ start``, in input order; only shards that
        hold one are fetched, ``read_ahead`` shards ahead. Blocks bound parsed-but-unyielded
        records to ``_BLOCK``."""
        jobs: list[tuple[int, Segment]] = []  # (input index of the segment's first position, seg)
        base = 0
        restore_sorted = sorted(restore)
        for seg in segments:
            end = base + len(seg)
            if end > start or any(base <= i < end for i in restore_sorted):
                jobs.append((base, seg))
            base = end
        if not jobs:
            return
        with _Prefetcher(self, [self._shards[seg.shard] for _, seg in jobs]) as prefetch:
            for n, (base, seg) in enumerate(jobs):
                lines: list[Any] = prefetch.get(n)
                end = base + len(seg)
                for i in (i for i in restore_sorted if base <= i < end):
                    yield i, [lines[seg.start + i - base]]
                for first in range(max(base, start), end, _BLOCK):
                    last = min(first + _BLOCK, end)
                    yield first, lines[seg.start + first - base : seg.start + last - base]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = None
        return state


class _Prefetcher:
    """Fetch shards in order on background threads, at most ``read_ahead`` beyond the one in
    use; keeps no reference to a shard once it was handed out (memory ≈ (1 + read_ahead)
    shards)."""

    def __init__(self, loader: S3DatasetLoader, shards: list[ShardEntry]) -> None:
        self._loader = loader
        self._shards = shards
        self._ahead = loader.options.read_ahead
        self._pool = ThreadPoolExecutor(max(1, self._ahead), thread_name_prefix="shard-fetch")
        self._futures: dict[int, Future[list[bytes] | list[Record]]] = {}
        self._next = 0

    def __enter__(self) -> "_Prefetcher":
        return self

    def __exit__(self, *exc: object) -> None:
        for fut in self._futures.values():
            fut.cancel()
        # a consumer that stops early must not wait for an in-flight download to finish
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._futures.clear()

    def _submit_until(self, last: int) -> None:
        while self._next <= min(last, len(self._shards) - 1):
            shard = self._shards[self._next]
            self._futures[self._next] = self._pool.submit(self._loader._fetch_records, shard)
            self._next += 1

    def get(self, n: int) -> list[bytes] | list[Record]:
        if self._ahead == 0:
            return self._loader._fetch_records(self._shards[n])
        self._submit_until(n + self._ahead)
        fut = self._futures.pop(n)
        return fut.result()
