"""S3DatasetLoader over a local manifest: order, ranks, resume, filters (fast, no server)."""

from collections import Counter
from pathlib import Path

import pytest

from dataset_assets.core.errors import ConfigError, IntegrityError
from dataset_assets.loader import S3DatasetLoader
from dataset_assets_tests.loader.datasets import Dataset, ident, make_dataset, write_local

SIZES = {"train": [40, 7, 23, 31, 1, 18], "val": [9, 4], "test": [5]}


@pytest.fixture
def local(tmp_path: Path) -> tuple[Dataset, Path]:
    ds = make_dataset("bucket", SIZES, uri_of="local")
    return ds, write_local(ds, tmp_path / "ds")


def ids(loader: S3DatasetLoader) -> list[str]:
    return [ident(r) for r in loader]


def test_every_split_reads_back_exactly_what_was_published(local: tuple[Dataset, Path]) -> None:
    ds, path = local
    loader = S3DatasetLoader(path, shuffle_buffer=16)
    assert loader.counts == {"train": 120, "val": 13, "test": 5}
    assert loader.splits == ["train", "val", "test"]
    assert loader.families == ["alpha", "beta", "gamma"]
    for split in ("train", "val", "test"):
        got = list(loader.select(split=split))
        assert Counter(map(ident, got)) == Counter(map(ident, ds.records[split]))
        assert sorted(got, key=ident) == sorted(ds.records[split], key=ident)


def test_order_is_reproducible_per_seed_and_differs_per_epoch(local: tuple[Dataset, Path]) -> None:
    _, path = local
    a, b = S3DatasetLoader(path, seed=7), S3DatasetLoader(path, seed=7)
    first = ids(a)
    assert first == ids(b)
    assert first != sorted(first)
    a.set_epoch(1)
    second = ids(a)
    assert sorted(second) == sorted(first) and second != first
    assert ids(S3DatasetLoader(path, seed=8)) != first


def test_unshuffled_order_is_publish_order(local: tuple[Dataset, Path]) -> None:
    ds, path = local
    assert ids(S3DatasetLoader(path, shuffle=False)) == [ident(r) for r in ds.records["train"]]


@pytest.mark.parametrize("uneven", ["pad", "drop"])
def test_ranks_yield_equal_counts_and_disjoint_coverage(
    local: tuple[Dataset, Path], uneven: str
) -> None:
    _, path = local
    per_rank = [
        ids(S3DatasetLoader(path, rank=r, world_size=7, uneven=uneven, seed=1))  # type: ignore[arg-type]
        for r in range(7)
    ]
    counts = {len(p) for p in per_rank}
    assert counts == {len(S3DatasetLoader(path, world_size=7, uneven=uneven))}  # type: ignore[arg-type]
    flat = [i for p in per_rank for i in p]
    if uneven == "drop":
        assert counts == {120 // 7} and len(flat) == len(set(flat))
    else:
        assert counts == {18} and set(flat) == {f"train:{n}" for n in range(120)}
        assert len(flat) - 120 == 7 * 18 - 120  # only the padding repeats


@pytest.mark.parametrize("stop", [0, 1, 15, 64, 110, 119, 120])
def test_resume_continues_with_exactly_the_next_sample(
    local: tuple[Dataset, Path], stop: int
) -> None:
    _, path = local
    full = ids(S3DatasetLoader(path, seed=3, shuffle_buffer=25))
    loader = S3DatasetLoader(path, seed=3, shuffle_buffer=25)
    it = iter(loader)
    head = [ident(next(it)) for _ in range(stop)]
    state = loader.state_dict()
    assert state["samples"] == stop
    resumed = S3DatasetLoader(path, seed=3, shuffle_buffer=25)
    resumed.load_state_dict(state)
    assert head + ids(resumed) == full


def test_resume_in_a_later_epoch_and_rank(local: tuple[Dataset, Path]) -> None:
    _, path = local
    opts = {"seed": 5, "rank": 1, "world_size": 3, "shuffle_buffer": 8}
    ref = S3DatasetLoader(path, **opts)  # type: ignore[arg-type]
    ref.set_epoch(2)
    full = ids(ref)
    loader = S3DatasetLoader(path, **opts)  # type: ignore[arg-type]
    loader.set_epoch(2)
    it = iter(loader)
    head = [ident(next(it)) for _ in range(11)]
    resumed = S3DatasetLoader(path, **opts)  # type: ignore[arg-type]
    resumed.load_state_dict(loader.state_dict())
    resumed.set_epoch(2)  # the training loop's usual call does not lose the position
    assert head + ids(resumed) == full


def test_state_of_another_configuration_is_refused(local: tuple[Dataset, Path]) -> None:
    _, path = local
    state = S3DatasetLoader(path, seed=1).state_dict()
    with pytest.raises(ConfigError, match="seed"):
        S3DatasetLoader(path, seed=2).load_state_dict(state)


def test_family_filter_yields_only_that_family(local: tuple[Dataset, Path]) -> None:
    ds, path = local
    loader = S3DatasetLoader(path, families=["beta"], world_size=2, uneven="drop")
    want = {ident(r) for r in ds.records["train"] if r["metadata"]["family"] == "beta"}  # type: ignore[index]
    assert len(loader) == len(want) // 2
    got = ids(loader) + ids(loader.select(rank=1))
    assert len(got) == len(set(got)) and set(got) <= want
    with pytest.raises(ConfigError, match="unknown families"):
        S3DatasetLoader(path, families=["nope"])


def test_family_filter_resumes_exactly(local: tuple[Dataset, Path]) -> None:
    _, path = local
    full = ids(S3DatasetLoader(path, families=["alpha", "gamma"], shuffle_buffer=9))
    loader = S3DatasetLoader(path, families=["alpha", "gamma"], shuffle_buffer=9)
    it = iter(loader)
    head = [ident(next(it)) for _ in range(30)]
    resumed = S3DatasetLoader(path, families=["alpha", "gamma"], shuffle_buffer=9)
    resumed.load_state_dict(loader.state_dict())
    assert head + ids(resumed) == full


def test_damaged_local_shard_is_an_integrity_error(local: tuple[Dataset, Path]) -> None:
    ds, path = local
    shard = ds.manifest.split_shards("val")[0]
    target = path.parent / shard.key
    target.write_bytes(target.read_bytes().replace(b"question", b"qUestion", 1))
    with pytest.raises(IntegrityError) as err:
        list(S3DatasetLoader(path, split="val"))
    assert shard.shard_id in str(err.value) and shard.sha256 in err.value.expected


def test_cache_serves_shards_after_the_source_is_gone(
    local: tuple[Dataset, Path], tmp_path: Path
) -> None:
    ds, path = local
    loader = S3DatasetLoader(path, split="val", cache_dir=tmp_path / "cache")
    first = ids(loader)
    for shard in ds.manifest.split_shards("val"):
        (path.parent / shard.key).unlink()
    assert ids(loader) == first


def test_cache_stays_within_its_size_limit(local: tuple[Dataset, Path], tmp_path: Path) -> None:
    ds, path = local
    sizes = sorted(s.bytes for s in ds.manifest.split_shards("train"))
    limit = sizes[-1] + sizes[-2]  # room for about two shards of six
    list(S3DatasetLoader(path, cache_dir=tmp_path / "cache", cache_limit_bytes=limit))
    cached = list((tmp_path / "cache").glob("*.jsonl"))
    assert cached and sum(p.stat().st_size for p in cached) <= limit


def test_damaged_cache_entry_is_discarded_and_refetched(
    local: tuple[Dataset, Path], tmp_path: Path
) -> None:
    ds, path = local
    loader = S3DatasetLoader(path, split="val", cache_dir=tmp_path / "cache", shuffle=False)
    first = ids(loader)
    shard = ds.manifest.split_shards("val")[0]
    cached = tmp_path / "cache" / f"{shard.sha256}.jsonl"
    cached.write_bytes(cached.read_bytes().replace(b"question", b"qUestion", 1))
    assert ids(loader) == first
    assert cached.read_bytes() == (path.parent / shard.key).read_bytes()
