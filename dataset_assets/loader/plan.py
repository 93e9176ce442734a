"""Pure, deterministic planning of who reads what, in which order (no I/O).

The split is seen as one sequence of *positions* ``(shard, k)`` — the k-th eligible record of a
shard (eligible = passes the family filter; counts come from the manifest, so nothing is read to
plan). Per epoch:

1. the shard order is permuted with ``Random(f"{seed}:{epoch}:shards")``;
2. the concatenation of the permuted shards (``N`` positions) is cut into ``U = world_size ×
   num_workers`` contiguous slices of exactly ``L`` positions each — ``ceil(N/U)`` with
   ``"pad"`` (the last slices wrap around to the start: padding repeats samples) or
   ``floor(N/U)`` with ``"drop"`` (the ``N mod U`` tail positions are skipped this epoch);
   contiguous slices mean a reader fetches only about ``1/U`` of the shards;
3. each slice is passed through a bounded shuffle buffer seeded by ``(seed, epoch, unit)``.

The buffer's choices depend only on its fill level, never on the records, so the exact output
order can be replayed on integers: that is how a resume skips ``k`` samples without re-reading
(:func:`fast_forward`).
"""

import random
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

Uneven = Literal["pad", "drop"]
T = TypeVar("T")


@dataclass(frozen=True)
class Segment:
    """A contiguous run ``[start, stop)`` of eligible positions inside one shard."""

    shard: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


def shard_order(n_shards: int, *, seed: int, epoch: int, shuffle: bool) -> list[int]:
    """The order shards are concatenated in for ``epoch``."""
    order = list(range(n_shards))
    if shuffle:
        random.Random(f"{seed}:{epoch}:shards").shuffle(order)
    return order


def samples_per_unit(total: int, n_units: int, uneven: Uneven) -> int:
    """Samples every unit (rank × worker) yields per epoch; identical for all units."""
    if n_units < 1:
        raise ValueError(f"the number of units must be ≥ 1, got {n_units}")
    if uneven == "pad":
        return -(-total // n_units)
    return total // n_units


def unit_segments(
    counts: list[int], order: list[int], unit: int, n_units: int, uneven: Uneven
) -> list[Segment]:
    """The segments unit ``unit`` reads, in reading order.

    Args:
        counts: eligible positions per shard (manifest order).
        order: shard order of this epoch (from :func:`shard_order`).
        unit: ``rank * num_workers + worker``.
        n_units: ``world_size * num_workers``.
        uneven: ``"pad"`` repeats from the start of the epoch order; ``"drop"`` skips the tail.
    """
    if not 0 <= unit < n_units:
        raise ValueError(f"unit must be in [0, {n_units}), got {unit}")
    ordered = [(s, counts[s]) for s in order if counts[s] > 0]
    total = sum(c for _, c in ordered)
    length = samples_per_unit(total, n_units, uneven)
    segments: list[Segment] = []
    if length == 0:
        return segments
    pos = (unit * length) % total
    remaining = length
    # locate the shard holding global position `pos`, then walk forward (cyclically)
    i, base = 0, 0
    while base + ordered[i][1] <= pos:
        base += ordered[i][1]
        i += 1
    offset = pos - base
    while remaining:
        shard, count = ordered[i]
        take = min(count - offset, remaining)
        segments.append(Segment(shard, offset, offset + take))
        remaining -= take
        offset = 0
        i = (i + 1) % len(ordered)
    return segments


class ShuffleBuffer(Generic[T]):
    """A bounded shuffle buffer whose choices depend only on its fill level.

    ``push`` adds an item and, once more than ``size`` items are held, returns one chosen
    uniformly at random; ``pop`` drains at the end of the input.
    """

    def __init__(self, size: int, rng: random.Random) -> None:
        if size < 1:
            raise ValueError(f"shuffle buffer size must be ≥ 1, got {size}")
        self.size = size
        self.rng = rng
        self.items: list[T] = []

    def push(self, item: T) -> tuple[bool, T | None]:
        self.items.append(item)
        if len(self.items) > self.size:
            return True, self.pop()
        return False, None

    def pop(self) -> T:
        items = self.items
        j = int(self.rng.random() * len(items))  # randrange costs 3× more per record
        last = items.pop()
        if j == len(items):
            return last
        item = items[j]
        items[j] = last
        return item


def buffer_rng(seed: int, epoch: int, unit: int) -> random.Random:
    return random.Random(f"{seed}:{epoch}:{unit}:buffer")


def fast_forward(length: int, skip: int, buffer: ShuffleBuffer[int]) -> int:
    """Replay ``skip`` outputs of ``buffer`` over inputs ``0..length-1`` on integers.

    Returns the next input index to push; ``buffer.items`` then holds the input indices still
    buffered (their records must be materialized in place before continuing), and
    ``buffer.rng`` is in the exact state the uninterrupted run would have.
    """
    if not 0 <= skip <= length:
        raise ValueError(f"cannot skip {skip} samples of a {length}-sample epoch")
    emitted, nxt = 0, 0
    while emitted < skip and nxt < length:
        out, _ = buffer.push(nxt)
        nxt += 1
        emitted += out
    while emitted < skip:
        buffer.pop()
        emitted += 1
    return nxt


def batch_sizes(samples: int, batch_size: int, drop_last: bool) -> list[int]:
    """Sizes of the batches a DataLoader worker makes of ``samples`` samples."""
    full, rest = divmod(samples, batch_size)
    return [batch_size] * full + ([rest] if rest and not drop_last else [])
