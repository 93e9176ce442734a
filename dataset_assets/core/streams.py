"""A buffered binary stream over an iterator of byte chunks (S3 bodies, spool records)."""

import io
from collections.abc import Iterable
from typing import BinaryIO

_BUFFER = 1 << 20


class _ChunkStream(io.RawIOBase):
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: "bytearray | memoryview") -> int:  # type: ignore[override]
        while not self._buf:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buf = memoryview(chunk)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def open_chunks(chunks: Iterable[bytes]) -> BinaryIO:
    """A readable, non-seekable binary stream yielding the chunks' bytes in order."""
    return io.BufferedReader(_ChunkStream(chunks), buffer_size=_BUFFER)
