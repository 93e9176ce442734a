"""The conversations spool: per-split, zstd-compressed JSONL written in one streaming pass.

Each spool line is ``{family}\t{json record}\n`` so shard writers can count records per family
without parsing JSON again. The spool is the intermediate between the compile pass and the
shard/export assets. Each split has its own compressor (a zstd context must never be shared by
interleaved streams: that corrupts them). It is local, compressed (chat text compresses ~4-6x
with zstd level 3), and replaced by the next compile.
"""

import io
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import zstandard

from dataset_assets.core.errors import IntegrityError
from dataset_assets.core.layout import SPLITS

_LEVEL = 3


def spool_path(folder: Path, split: str) -> Path:
    return folder / f"{split}.jsonl.zst"


class SpoolWriter:
    """One compressed JSONL stream per split."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._raw: dict[str, BinaryIO] = {}
        self._streams: dict[str, BinaryIO] = {}
        for split in SPLITS:
            raw = spool_path(folder, split).open("wb")
            self._raw[split] = raw
            self._streams[split] = zstandard.ZstdCompressor(level=_LEVEL).stream_writer(
                raw, closefd=False
            )

    def write(self, split: str, family: str, record_line: bytes) -> None:
        self._streams[split].write(family.encode() + b"\t" + record_line)

    def close(self) -> None:
        for split in SPLITS:
            self._streams[split].close()
            self._raw[split].close()

    def __enter__(self) -> "SpoolWriter":
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_spool(path: Path) -> BinaryIO:
    """A buffered, decompressed binary stream over one split's spool."""
    raw = path.open("rb")
    reader = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
    return io.BufferedReader(reader, buffer_size=1 << 20)


def iter_spool_records(path: Path, expected_records: int) -> Iterator[tuple[bytes, str]]:
    """``(record_line, family)`` pairs in spool order.

    A zstd stream cut short decodes without an error, so the reader counts: a spool that does
    not hold exactly ``expected_records`` complete lines raises IntegrityError at its end.
    """
    count = 0
    with open_spool(path) as stream:
        for line in stream:
            if not line.endswith(b"\n"):
                break
            family, _, record = line.partition(b"\t")
            count += 1
            yield record, family.decode()
    if count != expected_records:
        raise IntegrityError(f"spool {path}", f"{expected_records} records", f"{count} records")
