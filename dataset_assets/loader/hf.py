"""Hugging Face ``datasets`` adapter (optional: this module is the only one that imports it).

``hf_iterable_dataset(loader)`` hands training code a ``datasets.IterableDataset`` that yields
exactly what ``for record in loader`` yields: the same records in the same order, this rank's
share only (the loader's ``rank`` / ``world_size``; do not also call
``split_dataset_by_node``), every shard verified (sha256) while it streams.

Resuming, two exact ways:

- ``ds.state_dict()`` / ``ds.load_state_dict(state)``, Hugging Face's own: the position is the
  number of examples handed out, and a resumed dataset starts with the next one (``datasets``
  replays the skipped examples from the stream, so a late resume re-reads what came before);
- the loader's: ``loader.load_state_dict(state)`` then ``hf_iterable_dataset(loader)`` starts at
  that sample without reading the shards before it. :func:`loader_state` turns the Hugging Face
  state of a dataset made here back into a loader state.

One Hugging Face shard per dataset: for several DataLoader workers per rank use
``loader.torch_dataloader`` (exact per-worker resume) instead.
"""

from collections.abc import Iterator
from typing import Any

import datasets

from dataset_assets.core.errors import ConfigError
from dataset_assets.loader.dataset import Record, S3DatasetLoader


def _examples(
    loaders: list[S3DatasetLoader], epochs: list[int], skips: list[int]
) -> Iterator[Record]:
    """``datasets`` calls this with one element per list (one Hugging Face shard)."""
    for loader, epoch, skip in zip(loaders, epochs, skips, strict=True):
        o = loader.options
        yield from loader.iter_unit(epoch, o.rank, o.world_size, skip)


def hf_iterable_dataset(
    loader: S3DatasetLoader,
    *,
    epoch: int | None = None,
    features: "datasets.Features | None" = None,
) -> datasets.IterableDataset:
    """One epoch of ``loader`` (this rank's share) as a ``datasets.IterableDataset``.

    Args:
        loader: the pinned loader; its split, seed, shuffle, families, rank and world size apply,
            and its restored position (``load_state_dict``) is where the dataset starts.
        epoch: the epoch to read (default: ``loader.epoch``).
        features: optional ``datasets.Features`` to cast records to (default: untyped, records
            are the loader's dicts as they are).

    Returns:
        A dataset of ``len(loader) - start`` records, ``{"messages": [...], "metadata": {...}}``.
    """
    ep = loader.epoch if epoch is None else epoch
    if ep < 0:
        raise ConfigError(f"epoch must be ≥ 0, got {ep}")
    # Where the loader's next pass starts: its restored position (load_state_dict), else 0.
    start = loader._start if ep == loader.epoch else 0
    # A fresh loader over the same pinned build: the dataset never moves the caller's loader.
    replica = loader.select()
    ds = datasets.IterableDataset.from_generator(
        _examples,
        features=features,
        gen_kwargs={"loaders": [replica], "epochs": [ep], "skips": [start]},
        split=datasets.NamedSplit(loader.options.split),
    )
    ds.info.description = f"build {loader.build_id}, split {loader.options.split}"
    return ds


def loader_state(
    loader: S3DatasetLoader, hf_state: dict[str, Any], *, start: int = 0
) -> dict[str, Any]:
    """The loader state (``S3DatasetLoader.state_dict()`` form) matching the Hugging Face state
    of a dataset made by :func:`hf_iterable_dataset` from ``loader``.

    Args:
        loader: the loader the dataset was made from.
        hf_state: ``ds.state_dict()``.
        start: the loader position the dataset started at (0 unless the loader was restored).
    """
    ex = hf_state.get("examples_iterable", hf_state)
    try:
        consumed = 0 if ex["shard_idx"] else int(ex["shard_example_idx"])
        done = bool(ex["shard_idx"])
    except (KeyError, TypeError) as exc:
        raise ConfigError(
            f"not a state of a dataset made by hf_iterable_dataset: {hf_state!r}"
        ) from exc
    state = loader.state_dict()
    state["samples"] = len(loader) if done else start + consumed
    return state
