"""The torch adapters with real DataLoader worker processes reading from a real SeaweedFS."""

import itertools

import pytest

from dataset_assets.core.errors import ConfigError
from dataset_assets.loader import S3DatasetLoader
from dataset_assets.storage import S3ObjectStore
from dataset_assets_tests.loader.datasets import ident, make_dataset, publish_s3

pytest.importorskip("torch")

SIZES = {"train": [97, 40, 13, 60, 1, 33, 71]}  # 315 records, 7 shards of uneven size
TOTAL = 315


@pytest.fixture
def uri(seaweed_store: S3ObjectStore) -> str:
    return publish_s3(make_dataset(seaweed_store.bucket, SIZES), seaweed_store)


def rank_ids(loader: S3DatasetLoader, **kwargs: object) -> list[str]:
    dl = loader.torch_dataloader(batch_size=8, num_workers=2, **kwargs)
    return [ident(r) for batch in dl for r in batch]


@pytest.mark.parametrize("uneven", ["pad", "drop"])
def test_three_ranks_of_two_workers_cover_disjointly_with_equal_counts(
    uri: str, seaweed_store: S3ObjectStore, uneven: str
) -> None:
    base = S3DatasetLoader(uri, store=seaweed_store, world_size=3, seed=4, uneven=uneven)  # type: ignore[arg-type]
    per_rank = [rank_ids(base.select(rank=r)) for r in range(3)]
    counts = [len(p) for p in per_rank]
    assert len(set(counts)) == 1
    dl = base.torch_dataloader(batch_size=8, num_workers=2)
    assert counts[0] == dl.num_samples() and len(list(dl)) == len(dl)
    flat = list(itertools.chain.from_iterable(per_rank))
    universe = {f"train:{n}" for n in range(TOTAL)}
    if uneven == "drop":  # 6 readers × floor(315 / 6) = 312, nothing twice
        assert counts[0] == 2 * (TOTAL // 6) and len(set(flat)) == len(flat)
        assert set(flat) <= universe
    else:  # 6 readers × ceil(315 / 6) = 318: everything once, 3 padding repeats
        assert counts[0] == 2 * -(-TOTAL // 6) and set(flat) == universe
        assert len(flat) - len(set(flat)) == 6 * 53 - TOTAL


def test_dataloader_resume_continues_exactly(uri: str, seaweed_store: S3ObjectStore) -> None:
    def make() -> S3DatasetLoader:
        return S3DatasetLoader(
            uri, store=seaweed_store, world_size=3, rank=1, seed=9, shuffle_buffer=16
        )

    full = rank_ids(make())
    for stop_after in (1, 4, 7):
        dl = make().torch_dataloader(batch_size=8, num_workers=2)
        head = [ident(r) for batch in itertools.islice(dl, stop_after) for r in batch]
        state = dl.state_dict()
        assert state["samples"] == len(head)
        resumed = make().torch_dataloader(batch_size=8, num_workers=2)
        resumed.load_state_dict(state)
        rest = [ident(r) for batch in resumed for r in batch]
        assert head + rest == full, stop_after


def test_dataloader_state_with_another_worker_count_is_refused(
    uri: str, seaweed_store: S3ObjectStore
) -> None:
    loader = S3DatasetLoader(uri, store=seaweed_store)
    state = loader.torch_dataloader(batch_size=4, num_workers=2).state_dict()
    with pytest.raises(ConfigError, match="workers"):
        loader.torch_dataloader(batch_size=4, num_workers=3).load_state_dict(state)


def test_single_process_dataloader_matches_the_plain_loader(
    uri: str, seaweed_store: S3ObjectStore
) -> None:
    loader = S3DatasetLoader(uri, store=seaweed_store, seed=1)
    dl = loader.torch_dataloader(batch_size=10, num_workers=0)
    assert [ident(r) for b in dl for r in b] == [ident(r) for r in loader]


def test_spawned_workers_rebuild_their_own_store(uri: str, seaweed_store: S3ObjectStore) -> None:
    loader = S3DatasetLoader(uri, store=seaweed_store, seed=2)
    dl = loader.torch_dataloader(batch_size=16, num_workers=2, multiprocessing_context="spawn")
    got = [ident(r) for b in dl for r in b]
    assert len(got) == dl.num_samples() == 2 * 158  # ceil(315 / 2) per worker
    assert set(got) == {f"train:{n}" for n in range(TOTAL)}
