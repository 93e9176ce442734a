"""Shards of one split: written from the spool, published as they are written."""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.layout import shard_key
from dataset_assets.core.shards import write_shards
from dataset_assets.core.staged import StagedFile
from dataset_assets.pipeline.compile import CompileResult
from dataset_assets.storage import PublishedObject, Publisher


@dataclass
class ShardStream:
    """A split's shards, staged lazily: iterating writes the next shard.

    Not a generator function's result on purpose: Dagster treats an asset that *is* a generator
    as an event stream, so the shard assets return this object and the IO manager iterates it.
    """

    split: str
    staged: Iterator[StagedFile]

    def __iter__(self) -> Iterator[StagedFile]:
        return self.staged


def stage_split_shards(
    cfg: DatasetConfig, result: CompileResult, split: str
) -> Iterator[StagedFile]:
    """Lazily stage the split's shards; each is complete (hashed, renamed) when yielded."""
    return write_shards(
        result.records(split),
        split=split,
        staging_dir=result.work_dir / "shards" / split,
        shard_size=cfg.shard_size,
        part_size=cfg.part_size,
        key_for=lambda sid: shard_key(cfg.prefix, split, sid),
    )


def publish_shards(staged: Iterable[StagedFile], publisher: Publisher) -> list[PublishedObject]:
    """Submit each shard as soon as it is staged (blocks at K in flight), then wait for all.

    Writing stops at the first failed publish, so an unreachable store never makes the writer
    stage the whole split locally; ``wait`` then raises PublishError (failed files stay local).
    """
    futures = []
    for item in staged:
        futures.append(publisher.submit(item))
        if any(f.done() and f.exception() is not None for f in futures):
            break
    return publisher.wait()
