"""The per-build provenance sidecar: content_hash → family, source URI, line.

One zstd-compressed JSONL line per published conversation (``{"h", "family", "source",
"line", "split"}``), written during the compile pass and published next to the manifest under a
content-addressed key. Each record also carries the same fields in its own ``metadata``, so the
manifest itself stays small at any dataset size.
"""

from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import orjson
import zstandard

PROVENANCE_NAME = "provenance.jsonl.zst"


class ProvenanceWriter:
    """Streams provenance lines into a zstd-compressed local file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._raw: BinaryIO = path.open("wb")
        self._zst: BinaryIO = zstandard.ZstdCompressor(level=3).stream_writer(
            self._raw, closefd=False
        )
        self.records = 0

    def add(self, content_hash: str, family: str, source: str, line: int, split: str) -> None:
        entry = {
            "h": content_hash,
            "family": family,
            "source": source,
            "line": line,
            "split": split,
        }
        self._zst.write(orjson.dumps(entry) + b"\n")
        self.records += 1

    def close(self) -> None:
        if not self._raw.closed:
            self._zst.close()
            self._raw.close()

    def __enter__(self) -> "ProvenanceWriter":
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_provenance(data: bytes) -> list[dict[str, object]]:
    """Parse a (small) provenance sidecar fully; for tests and inspection."""
    text = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return [orjson.loads(line) for line in text.splitlines() if line]
