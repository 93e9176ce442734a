"""The Hugging Face adapter with the real ``datasets`` package over a real SeaweedFS."""

import itertools
from pathlib import Path

import pytest

from dataset_assets.core.card import render_hf_readme
from dataset_assets.core.config import parse_config
from dataset_assets.loader import S3DatasetLoader
from dataset_assets.storage import S3ObjectStore
from dataset_assets_tests.loader.datasets import (
    ident,
    make_dataset,
    publish_s3,
    write_local,
)

datasets = pytest.importorskip("datasets")
from dataset_assets.loader.hf import hf_iterable_dataset, loader_state  # noqa: E402

SIZES = {"train": [97, 40, 13, 60, 1, 33, 71], "val": [7, 5], "test": [9]}
TRAIN = 315


@pytest.fixture
def uri(seaweed_store: S3ObjectStore) -> str:
    return publish_s3(make_dataset(seaweed_store.bucket, SIZES), seaweed_store)


def make(uri: str, store: S3ObjectStore, **kwargs: object) -> S3DatasetLoader:
    options: dict[str, object] = {"seed": 5, "shuffle_buffer": 16, "world_size": 3}
    options.update(kwargs)
    return S3DatasetLoader(uri, store=store, **options)  # type: ignore[arg-type]


def test_is_a_datasets_iterable_dataset_in_the_loaders_order(
    uri: str, seaweed_store: S3ObjectStore
) -> None:
    loader = make(uri, seaweed_store, rank=1)
    loader.set_epoch(2)
    ds = hf_iterable_dataset(loader)
    assert isinstance(ds, datasets.IterableDataset)
    got = [ident(r) for r in ds]
    assert got == [ident(r) for r in loader]
    assert len(got) == len(loader) == -(-TRAIN // 3)
    first = next(iter(ds))
    assert first["messages"][0]["role"] == "user" and "family" in first["metadata"]


def test_ranks_cover_the_split_as_the_loader_does(uri: str, seaweed_store: S3ObjectStore) -> None:
    per_rank = [
        [ident(r) for r in hf_iterable_dataset(make(uri, seaweed_store, rank=r))] for r in range(3)
    ]
    assert len({len(p) for p in per_rank}) == 1
    flat = list(itertools.chain.from_iterable(per_rank))
    assert set(flat) == {f"train:{n}" for n in range(TRAIN)}  # pad: all, 3 repeats
    assert len(flat) - len(set(flat)) == 3 * 105 - TRAIN


def test_hf_state_dict_resumes_with_the_next_record(uri: str, seaweed_store: S3ObjectStore) -> None:
    full = [ident(r) for r in hf_iterable_dataset(make(uri, seaweed_store, rank=2))]
    for stop in (0, 1, 50, len(full) - 1):
        ds = hf_iterable_dataset(make(uri, seaweed_store, rank=2))
        it = iter(ds)
        head = [ident(next(it)) for _ in range(stop)]
        state = ds.state_dict()
        resumed = hf_iterable_dataset(make(uri, seaweed_store, rank=2))
        resumed.load_state_dict(state)
        assert head + [ident(r) for r in resumed] == full, stop


def test_loader_state_restores_and_starts_the_dataset_there(
    uri: str, seaweed_store: S3ObjectStore
) -> None:
    loader = make(uri, seaweed_store, rank=0)
    full = [ident(r) for r in loader]
    ds = hf_iterable_dataset(loader)
    it = iter(ds)
    head = [ident(next(it)) for _ in range(37)]
    state = loader_state(loader, ds.state_dict())
    assert state["samples"] == 37
    restored = make(uri, seaweed_store, rank=0)
    restored.load_state_dict(state)
    rest = [ident(r) for r in hf_iterable_dataset(restored)]
    assert head + rest == full
    # the caller's loader is not moved by iterating the dataset
    assert [ident(r) for r in restored] == full[37:]


def test_other_split_and_family_filter_pass_through(uri: str, seaweed_store: S3ObjectStore) -> None:
    loader = make(uri, seaweed_store, split="val", world_size=1, families=["alpha"])
    got = [ident(r) for r in hf_iterable_dataset(loader)]
    assert got == [ident(r) for r in loader] and got
    assert all(r["metadata"]["family"] == "alpha" for r in hf_iterable_dataset(loader))
    assert str(hf_iterable_dataset(loader).split) == "val"


def test_package_exports_the_adapter_lazily() -> None:
    import dataset_assets.loader as loader_pkg

    assert loader_pkg.hf_iterable_dataset is hf_iterable_dataset
    assert "hf_iterable_dataset" in loader_pkg.__all__


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_published_hf_readme_is_read_by_datasets_load_dataset(
    tmp_path: Path, compression: str | None
) -> None:
    ds = make_dataset("bkt", SIZES, uri_of="local", compression=compression)
    write_local(ds, tmp_path)
    cfg = parse_config(
        {
            "bucket": "bkt",
            "families": [{"name": n, "paths": ["x"]} for n in ("alpha", "beta", "gamma")],
        },
        tmp_path,
    )
    root = tmp_path / ds.manifest.prefix
    (root / "README.md").write_text(render_hf_readme(ds.manifest, cfg, license="mit"))
    loaded = datasets.load_dataset(str(root), cache_dir=str(tmp_path / "hf-cache"))
    assert {name: len(split) for name, split in loaded.items()} == {
        "train": TRAIN,
        "validation": 12,
        "test": 9,
    }
    assert [r["metadata"]["line"] for r in loaded["validation"]] == [
        ident(r) for r in ds.records["val"]
    ]
