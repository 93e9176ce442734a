"""The pure plan: slices cover the epoch exactly, the buffer replays on integers."""

import random

import pytest

from dataset_assets.loader.plan import (
    ShuffleBuffer,
    buffer_rng,
    fast_forward,
    shard_order,
    unit_segments,
)


def positions(counts: list[int], order: list[int], unit: int, units: int, uneven: str) -> list:
    return [
        (seg.shard, k)
        for seg in unit_segments(counts, order, unit, units, uneven)  # type: ignore[arg-type]
        for k in range(seg.start, seg.stop)
    ]


@pytest.mark.parametrize("units", [1, 2, 3, 6, 7, 40])
def test_pad_slices_are_equal_and_cover_every_position(units: int) -> None:
    counts = [5, 0, 17, 3, 9]
    order = shard_order(len(counts), seed=3, epoch=1, shuffle=True)
    slices = [positions(counts, order, u, units, "pad") for u in range(units)]
    assert len({len(s) for s in slices}) == 1
    every = {p for s in slices for p in s}
    assert every == {(s, k) for s, c in enumerate(counts) for k in range(c)}
    assert sum(len(s) for s in slices) - len(every) < units  # repeats only to pad


@pytest.mark.parametrize("units", [1, 2, 3, 6, 7])
def test_drop_slices_are_equal_and_disjoint(units: int) -> None:
    counts = [5, 17, 3, 9]
    order = shard_order(len(counts), seed=3, epoch=0, shuffle=True)
    slices = [positions(counts, order, u, units, "drop") for u in range(units)]
    flat = [p for s in slices for p in s]
    assert len({len(s) for s in slices}) == 1
    assert len(flat) == len(set(flat)) == (sum(counts) // units) * units


def test_shard_order_depends_on_seed_and_epoch_only() -> None:
    a = shard_order(50, seed=1, epoch=0, shuffle=True)
    assert a == shard_order(50, seed=1, epoch=0, shuffle=True)
    assert a != shard_order(50, seed=1, epoch=1, shuffle=True)
    assert a != shard_order(50, seed=2, epoch=0, shuffle=True)
    assert shard_order(5, seed=1, epoch=0, shuffle=False) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("skip", [0, 1, 7, 50, 99, 100, 117, 120])
def test_fast_forward_lands_where_the_full_run_was(skip: int) -> None:
    length, size = 120, 20
    full_buf: ShuffleBuffer[int] = ShuffleBuffer(size, buffer_rng(0, 0, 0))
    full: list[int] = []
    for i in range(length):
        out, item = full_buf.push(i)
        if out:
            full.append(item)  # type: ignore[arg-type]
    while full_buf.items:
        full.append(full_buf.pop())
    assert sorted(full) == list(range(length))

    buf: ShuffleBuffer[int] = ShuffleBuffer(size, buffer_rng(0, 0, 0))
    nxt = fast_forward(length, skip, buf)
    rest: list[int] = []
    for i in range(nxt, length):
        out, item = buf.push(i)
        if out:
            rest.append(item)  # type: ignore[arg-type]
    while buf.items:
        rest.append(buf.pop())
    assert rest == full[skip:]


def test_buffer_size_bounds_displacement() -> None:
    buf: ShuffleBuffer[int] = ShuffleBuffer(10, random.Random(0))
    out = []
    for i in range(1000):
        emitted, item = buf.push(i)
        if emitted:
            out.append(item)
    # the k-th output was among the first k + size + 1 inputs
    assert all(item <= k + 10 for k, item in enumerate(out))
