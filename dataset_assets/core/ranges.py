"""Byte ranges of a big plain JSONL file, so that its stage 1 runs on several cores.

A file is cut only at line starts, into ranges of about ``range_bytes``; each range knows the
number of its first line, so records, quarantine entries and the dedup sidecar name the same
lines as a reading of the whole file does. Planning reads the file once and counts newlines
(``bytes.count``, memory speed); it is done for local plain ``.jsonl`` / ``.ndjson`` files only:
a compressed stream cannot be entered mid-way, a JSON array is one value, and an S3 object would
be downloaded once more just to find its line starts.

The ranges of a file stay one partition: their outputs are merged (:func:`merge_ranges` in
:mod:`dataset_assets.core.partition`) into the same intermediates a single reading writes, up to
the zstd framing of the records.
"""

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_SCAN = 8 * 1024 * 1024
"""Bytes read at a time while planning."""


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``[start, end)`` of a file; ``start`` is a line start, the line ``first_line``."""

    start: int
    end: int
    first_line: int


def plan_ranges(path: Path, size: int, range_bytes: int) -> list[ByteRange]:
    """Cut ``path`` (``size`` bytes) at line starts into ranges of about ``range_bytes``.

    A file of less than 1.5 ``range_bytes`` is one range. A range can be longer than asked
    when a line is (a cut waits for the next line start), and a file whose last cut would
    leave nothing has one range fewer.
    """
    count = max(1, round(size / range_bytes))
    if count == 1:
        return [ByteRange(0, size, 1)]
    step = size // count
    cuts: list[tuple[int, int]] = []  # (offset of a line start, its line number)
    want = step  # the next cut: the first line start at or after this offset
    lines = 0  # newlines before `offset`
    offset = 0
    with path.open("rb") as fh:
        while len(cuts) < count - 1:
            chunk = fh.read(_SCAN)
            if not chunk:
                break
            while len(cuts) < count - 1:
                # a line starts at `want` when the byte before it is a newline
                at = chunk.find(b"\n", max(want - 1 - offset, 0))
                if at < 0:
                    break
                cut = offset + at + 1
                if cut >= size:
                    break
                cuts.append((cut, lines + chunk.count(b"\n", 0, at + 1) + 1))
                want = max(cut + 1, (len(cuts) + 1) * step)
            lines += chunk.count(b"\n")
            offset += len(chunk)
    starts = [(0, 1), *cuts]
    ends = [cut for cut, _ in cuts] + [size]
    return [ByteRange(s, e, line) for (s, line), e in zip(starts, ends, strict=True)]


class _Window(io.RawIOBase):
    """``size`` bytes of ``raw`` from its current position, then end of file."""

    def __init__(self, raw: BinaryIO, size: int) -> None:
        self._raw = raw
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b: "bytearray | memoryview") -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        view = memoryview(b)[: min(len(b), self._left)]
        n = self._raw.readinto(view)  # type: ignore[attr-defined]
        n = n or 0
        self._left -= n
        return n


@contextmanager
def open_range(path: str, part: ByteRange) -> Iterator[BinaryIO]:
    """A buffered binary stream over bytes ``[part.start, part.end)`` of the file ``path``."""
    with open(path, "rb", buffering=0) as raw:
        raw.seek(part.start)
        yield io.BufferedReader(_Window(raw, part.end - part.start), buffer_size=1 << 20)
