"""Whole JSONL lines in blocks: one buffer and the end offset of each line in it.

The shard stage moves records between files without looking inside them. Handing them on one
Python object per record (read, check against the decisions, filter by split, write) cost
~4 µs per record on top of decompressing, compressing and hashing them; in blocks, a run of
consecutive records of one split is one slice of a decompressed chunk (~2 µs per record: ~1
CPU-s less per 4 GB of chats, measured on the partitions of a 4 GB build).
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dataset_assets.core.errors import IntegrityError


@dataclass(frozen=True)
class LineBlock:
    """Whole lines back to back in ``data``, each ending in ``\\n``; ``ends[i]`` is the offset
    just past line ``i`` (int64, increasing, ``ends[-1] == len(data)``)."""

    data: bytes | memoryview
    ends: np.ndarray

    def __len__(self) -> int:
        return len(self.ends)

    def start(self, i: int) -> int:
        """The offset of line ``i`` in ``data``."""
        return int(self.ends[i - 1]) if i else 0

    def take(self, lo: int, hi: int) -> "LineBlock":
        """Lines ``lo`` to ``hi - 1`` as a block of their own (a view of ``data``, no copy)."""
        base = self.start(lo)
        end = int(self.ends[hi - 1]) if hi > lo else base
        return LineBlock(memoryview(self.data)[base:end], self.ends[lo:hi] - base)

    @classmethod
    def of_lines(cls, lines: list[bytes]) -> "LineBlock":
        """A block of ``lines`` (each ending in ``\\n``)."""
        ends = np.cumsum(np.fromiter((len(x) for x in lines), np.int64, len(lines)))
        return cls(b"".join(lines), ends)


def line_blocks(chunks: Iterable[bytes], what: str) -> Iterator[LineBlock]:
    """The whole lines of a byte stream given in ``chunks``, one block per chunk (a line that
    spans chunks goes with the chunk where it ends).

    Raises:
        IntegrityError: the stream does not end with a newline (a cut file); ``what`` names it.
    """
    pending = b""
    for chunk in chunks:
        data = pending + chunk if pending else chunk
        ends = _line_ends(data)
        if not ends:
            pending = data
            continue
        cut = ends[-1]
        pending = data[cut:]
        yield LineBlock(data[:cut] if pending else data, np.array(ends, np.int64))
    if pending:
        raise IntegrityError(what, "whole lines", f"a cut line of {len(pending)} B")


def _line_ends(data: bytes) -> list[int]:
    # bytes.find is memchr: ~0.13 ms per MB of chats, less than a numpy compare (~0.3 ms)
    ends = []
    i = data.find(b"\n")
    while i >= 0:
        ends.append(i + 1)
        i = data.find(b"\n", i + 1)
    return ends


def group_lines(
    lines: Iterable[tuple[bytes, str]], block_bytes: int = 1 << 20
) -> Iterator[tuple[LineBlock, str]]:
    """``(json_line, family)`` pairs (each line ending in ``\n``) as ``(block, family)``: runs
    of one family, of about ``block_bytes`` each."""
    group: list[bytes] = []
    group_size = 0
    group_family = ""
    for line, family in lines:
        if group and (family != group_family or group_size >= block_bytes):
            yield LineBlock.of_lines(group), group_family
            group, group_size = [], 0
        group.append(line)
        group_size += len(line)
        group_family = family
    if group:
        yield LineBlock.of_lines(group), group_family


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


def file_chunks(fh: Readable, size: int = 1 << 20) -> Iterator[bytes]:
    """``fh.read(size)`` until the end."""
    while chunk := fh.read(size):
        yield chunk
