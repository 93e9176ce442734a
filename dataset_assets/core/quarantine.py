"""Quarantine: every record that cannot be used, with its reason, source and line."""

from collections import Counter
from pathlib import Path
from types import TracebackType

import orjson

RAW_PREFIX_BYTES = 512


class QuarantineWriter:
    """Appends quarantine entries as JSONL and counts them by reason."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = path.open("wb")
        self.counts: Counter[str] = Counter()

    def add(
        self, reason: str, family: str, source: str, line: int, raw: bytes, detail: str = ""
    ) -> None:
        self.counts[reason] += 1
        entry = {
            "reason": reason,
            "detail": detail,
            "family": family,
            "source": source,
            "line": line,
            "raw_prefix": raw[:RAW_PREFIX_BYTES].decode("utf-8", errors="replace"),
        }
        self._fh.write(orjson.dumps(entry) + b"\n")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "QuarantineWriter":
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
