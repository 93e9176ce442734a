"""A buffered binary stream over an iterator of byte chunks (S3 bodies, spool records), and
zstd decompression of whole objects."""

import io
from collections.abc import Iterable
from typing import BinaryIO

import zstandard

from dataset_assets.core.errors import IntegrityError

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


def zstd_decompress(data: bytes, what: str) -> bytes:
    """The bytes of every zstd frame in ``data``, concatenated (a composed export is one frame
    per shard).

    Raises:
        IntegrityError: ``data`` is not a sequence of complete zstd frames (``what`` names it).
    """
    out = []
    view = data
    try:
        while view:
            d = zstandard.ZstdDecompressor().decompressobj()
            out.append(d.decompress(view))
            if not d.eof:
                raise IntegrityError(what, "complete zstd frames", "a cut frame")
            view = d.unused_data
    except zstandard.ZstdError as exc:
        raise IntegrityError(what, "zstd frames", str(exc)) from exc
    return b"".join(out)
