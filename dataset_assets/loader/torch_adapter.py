"""PyTorch adapters (optional: this module is the only one that imports torch).

``TorchIterableDataset`` turns each DataLoader worker of each rank into one reader ("unit") of
the loader's plan, so ``world_size × num_workers`` readers each yield exactly the same number of
samples. ``TorchDataLoader`` wraps ``torch.utils.data.DataLoader`` and makes it resumable
exactly: every worker yields the same number of samples, so the in-order DataLoader hands out
batches round-robin over workers in a fixed pattern, and the wrapper counts samples per worker
from that pattern as batches come out — it never guesses a count from a batch's structure
(MosaicML's ``len(batch[0])`` bug). On resume, worker *p* serves logical worker
``(p + next_worker) % num_workers`` with its consumed samples skipped, so the first batch of the
new DataLoader is the one the interrupted run would have produced next.
"""

from collections.abc import Iterator
from typing import Any

import torch.utils.data

from dataset_assets.core.errors import ConfigError, DatasetError
from dataset_assets.loader.dataset import STATE_VERSION, Record, S3DatasetLoader
from dataset_assets.loader.plan import batch_sizes


def list_collate(batch: list[Record]) -> list[Record]:
    """Keep a batch of chat records as a list of dicts (tokenize in your own collate)."""
    return batch


class TorchIterableDataset(torch.utils.data.IterableDataset[Record]):
    """One epoch of ``loader`` for ``torch.utils.data.DataLoader`` (any ``num_workers``).

    Args:
        loader: the pinned loader (its rank/world_size/seed/options apply).
        num_workers: the DataLoader's ``num_workers`` (0 and 1 both mean one reader).
        epoch: epoch to read (default: ``loader.epoch``).
        skip: samples already consumed, per logical worker (resume).
        rotation: physical worker ``p`` serves logical worker ``(p + rotation) % workers``.
    """

    def __init__(
        self,
        loader: S3DatasetLoader,
        *,
        num_workers: int = 0,
        epoch: int | None = None,
        skip: list[int] | None = None,
        rotation: int = 0,
    ) -> None:
        super().__init__()
        self.loader = loader
        self.workers = max(1, num_workers)
        self.epoch = loader.epoch if epoch is None else epoch
        self.skip = list(skip) if skip is not None else [0] * self.workers
        self.rotation = rotation
        if len(self.skip) != self.workers:
            raise ConfigError(f"skip needs one count per worker ({self.workers}), got {self.skip}")

    def __len__(self) -> int:
        return self.workers * self.loader.samples_per_unit(self.workers)

    def __iter__(self) -> Iterator[Record]:
        info = torch.utils.data.get_worker_info()
        workers = info.num_workers if info is not None else 1
        if workers != self.workers:
            raise ConfigError(
                f"dataset was planned for {self.workers} DataLoader workers, runs in {workers}"
            )
        physical = info.id if info is not None else 0
        logical = (physical + self.rotation) % workers
        o = self.loader.options
        unit = o.rank * workers + logical
        yield from self.loader.iter_unit(
            self.epoch, unit, o.world_size * workers, self.skip[logical]
        )


class TorchDataLoader:
    """A ``torch.utils.data.DataLoader`` over the loader, with exact ``state_dict()``.

    Args:
        loader: the pinned loader.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        collate_fn: default keeps batches as lists of dicts (:func:`list_collate`).
        drop_last: drop each worker's last partial batch (equal on every rank either way).
        **kwargs: passed to ``DataLoader`` (``persistent_workers`` and ``in_order=False`` are
            refused: both break the exact position).
    """

    def __init__(
        self,
        loader: S3DatasetLoader,
        *,
        batch_size: int,
        num_workers: int = 0,
        collate_fn: Any = None,
        drop_last: bool = False,
        **kwargs: Any,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be ≥ 1, got {batch_size}")
        if kwargs.get("persistent_workers") or kwargs.get("in_order") is False:
            raise ConfigError("persistent_workers=True and in_order=False are not supported")
        self.loader = loader
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.workers = max(1, num_workers)
        self.collate_fn = collate_fn if collate_fn is not None else list_collate
        self.drop_last = drop_last
        self.kwargs = kwargs
        self._epoch = loader.epoch
        self._reset()

    def _reset(self) -> None:
        self._start = [0] * self.workers
        self._start_worker = 0
        self._consumed = [0] * self.workers
        self._next_worker = 0

    @property
    def samples_per_worker(self) -> int:
        return self.loader.samples_per_unit(self.workers)

    def __len__(self) -> int:
        """Batches this rank yields per epoch."""
        per = len(batch_sizes(self.samples_per_worker, self.batch_size, self.drop_last))
        return self.workers * per

    def num_samples(self) -> int:
        """Samples this rank yields per epoch (identical on every rank)."""
        return self.workers * sum(
            batch_sizes(self.samples_per_worker, self.batch_size, self.drop_last)
        )

    def set_epoch(self, epoch: int) -> None:
        if epoch != self._epoch:
            self._epoch = epoch
            self._reset()

    def state_dict(self) -> dict[str, Any]:
        """Samples consumed per worker in the epoch and the worker whose batch comes next."""
        return {
            "version": STATE_VERSION,
            "epoch": self._epoch,
            "samples": sum(self._consumed),
            "consumed": list(self._consumed),
            "next_worker": self._next_worker,
            "batch_size": self.batch_size,
            "workers": self.workers,
            "drop_last": self.drop_last,
            **self.loader._fingerprint(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader._check_fingerprint(state)
        for name in ("batch_size", "workers", "drop_last"):
            if state.get(name) != getattr(self, name):
                raise ConfigError(
                    f"state was saved with {name}={state.get(name)!r}, "
                    f"this DataLoader has {getattr(self, name)!r}"
                )
        consumed = [int(c) for c in state["consumed"]]
        if len(consumed) != self.workers or not all(
            0 <= c <= self.samples_per_worker for c in consumed
        ):
            raise ConfigError(f"invalid consumed counts {consumed} for this DataLoader")
        self._epoch = int(state["epoch"])
        self._start = consumed
        self._consumed = list(consumed)
        self._start_worker = self._next_worker = int(state["next_worker"]) % self.workers

    def __iter__(self) -> Iterator[Any]:
        per = self.samples_per_worker
        remaining = [
            batch_sizes(per - c, self.batch_size, self.drop_last)[::-1] for c in self._start
        ]
        self._consumed = list(self._start)
        dataset = TorchIterableDataset(
            self.loader,
            num_workers=self.num_workers,
            epoch=self._epoch,
            skip=self._start,
            rotation=self._start_worker,
        )
        dataloader = torch.utils.data.DataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            drop_last=self.drop_last,
            **self.kwargs,
        )
        worker = self._start_worker
        for batch in dataloader:
            while not remaining[worker]:
                worker = (worker + 1) % self.workers
            size = remaining[worker].pop()
            if isinstance(batch, list) and len(batch) != size:
                raise DatasetError(
                    f"batch from worker {worker} has {len(batch)} samples, the schedule says "
                    f"{size}: the DataLoader did not deliver batches round-robin in order"
                )
            self._consumed[worker] += size
            worker = (worker + 1) % self.workers
            self._next_worker = worker
            yield batch
        self._start = [0] * self.workers
        self._start_worker = 0
