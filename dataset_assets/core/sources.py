"""Reading source files as a stream of parsed JSON items, one per line, never all in memory."""

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from dataset_assets.core.config import SourceFamily


@dataclass(frozen=True)
class SourceRef:
    """One input file of a family: a local path or an s3:// URI, with a change fingerprint."""

    family: str
    uri: str
    size: int
    fingerprint: str


@dataclass(frozen=True)
class RawItem:
    line: int
    value: Any


@dataclass(frozen=True)
class BadItem:
    line: int
    reason: str
    raw: bytes


def expand_local(family: SourceFamily) -> list[SourceRef]:
    """Every local file matched by the family's globs, sorted, with size + mtime fingerprint."""
    refs: dict[str, SourceRef] = {}
    for pattern in family.paths:
        if pattern.startswith("s3://"):
            continue
        for match in sorted(glob.glob(pattern, recursive=True)):
            path = Path(match)
            if not path.is_file():
                continue
            st = path.stat()
            refs[str(path)] = SourceRef(family.name, str(path), st.st_size, str(st.st_mtime_ns))
    return [refs[k] for k in sorted(refs)]


def iter_items(stream: BinaryIO, max_line_bytes: int) -> Iterator[RawItem | BadItem]:
    """Parse a JSONL byte stream; every line yields one item or one bad item with a reason."""
    for number, line in enumerate(stream, start=1):
        if len(line) > max_line_bytes:
            yield BadItem(number, "line_too_long", line[:256])
            continue
        stripped = line.strip()
        if not stripped:
            continue
        try:
            yield RawItem(number, orjson.loads(stripped))
        except orjson.JSONDecodeError:
            reason = "invalid_utf8" if _bad_utf8(stripped) else "malformed_json"
            yield BadItem(number, reason, stripped[:1024])


def _bad_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def local_fingerprint(path: Path) -> str:
    return str(os.stat(path).st_mtime_ns)
