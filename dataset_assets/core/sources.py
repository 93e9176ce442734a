"""Reading source files as a stream of parsed JSON items, never a whole file in memory.

Supported files (chosen by name, see :func:`source_format`):

| name ends with            | container            | records                          |
|---------------------------|----------------------|----------------------------------|
| ``.jsonl`` / ``.ndjson``  | plain                | one JSON value per line          |
| ``.jsonl.gz``             | gzip (streamed)      | one JSON value per line          |
| ``.jsonl.zst``            | zstd (streamed)      | one JSON value per line          |
| ``.json`` (+ .gz / .zst)  | as above             | one top-level JSON array, parsed |
|                           |                      | element by element               |

Every record yields a :class:`RawItem` or a :class:`BadItem` with a stable ``reason``:
``malformed_json``, ``invalid_utf8``, ``line_too_long`` (a line longer than ``max_line_bytes``,
skipped in chunks without being read whole), ``truncated_record`` (a file cut mid-record: every
complete record before the cut is yielded, then exactly one bad item for the tail) and
``not_a_json_array``. ``line`` is the 1-based line number (JSONL) or element index (JSON array).
"""

import codecs
import glob
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson
import zstandard

from dataset_assets.core.config import SourceFamily

SOURCE_SUFFIXES: tuple[str, ...] = (
    ".jsonl",
    ".ndjson",
    ".jsonl.gz",
    ".jsonl.zst",
    ".json",
    ".json.gz",
    ".json.zst",
)
_SKIP_CHUNK = 1 << 20
_RAW_KEEP = 1024

Format = Literal["jsonl", "json_array"]
Compression = Literal["none", "gzip", "zstd"]


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


def is_source_name(name: str) -> bool:
    return name.endswith(SOURCE_SUFFIXES)


def source_format(name: str) -> tuple[Format, Compression]:
    """The record format and compression of a source file, from its name."""
    compression: Compression = "none"
    if name.endswith(".gz"):
        compression, name = "gzip", name[:-3]
    elif name.endswith(".zst"):
        compression, name = "zstd", name[:-4]
    fmt: Format = "json_array" if name.endswith(".json") else "jsonl"
    return fmt, compression


TEMP_SUFFIXES: tuple[str, ...] = (".tmp", ".part", ".partial", ".crdownload", "~")


def is_temporary_name(name: str) -> bool:
    """True for names a writer uses before renaming into place (dotfiles, ``.tmp``, ``~``...)."""
    return name.startswith(".") or name.endswith(TEMP_SUFFIXES)


def local_source_paths(pattern: str) -> list[Path]:
    """The source files one local family path names: a glob (``**`` recursive) or a folder.

    Only source formats, never temporary names. The compile step and the rebuild sensor both
    use this, so the sensor watches exactly what a build reads.
    """
    if Path(pattern).is_dir():
        pattern = str(Path(pattern) / "**" / "*")
    paths = (Path(m) for m in sorted(glob.glob(pattern, recursive=True)))
    return [
        p for p in paths if is_source_name(p.name) and not is_temporary_name(p.name) and p.is_file()
    ]


def expand_local(family: SourceFamily) -> list[SourceRef]:
    """Every local source file matched by the family's globs, sorted, with size + mtime."""
    refs: dict[str, SourceRef] = {}
    for pattern in family.paths:
        if pattern.startswith("s3://"):
            continue
        for path in local_source_paths(pattern):
            st = path.stat()
            refs[str(path)] = SourceRef(family.name, str(path), st.st_size, str(st.st_mtime_ns))
    return [refs[k] for k in sorted(refs)]


class _Framed(io.RawIOBase):
    """Incremental decompression of concatenated gzip members / zstd frames from a byte stream.

    A file that ends inside a member/frame (cut during a copy) ends the stream cleanly with
    ``truncated`` set: every byte decodable before the cut is returned first (gzip: up to the
    cut; zstd: up to the last complete block, at most 128 KiB before it).
    """

    def __init__(self, raw: BinaryIO, compression: "Compression") -> None:
        self._compression = compression
        self._raw = raw
        self._dobj = self._new()
        self._started = False
        self._pending = b""
        self._eof = False
        self.truncated = False

    def _new(self) -> Any:
        if self._compression == "gzip":
            return zlib.decompressobj(wbits=31)
        return zstandard.ZstdDecompressor().decompressobj()

    def readable(self) -> bool:
        return True

    def _feed(self, data: bytes) -> None:
        while data:
            self._started = True
            try:
                self._pending += self._dobj.decompress(data)
            except (zlib.error, zstandard.ZstdError):
                self.truncated = True
                self._eof = True
                return
            if not self._dobj.eof:
                return
            data = self._dobj.unused_data
            self._dobj = self._new()
            self._started = False

    def readinto(self, b: "bytearray | memoryview") -> int:  # type: ignore[override]
        while not self._pending and not self._eof:
            chunk = self._raw.read(_SKIP_CHUNK)
            if not chunk:
                self._eof = True
                self.truncated = self._started
                break
            self._feed(chunk)
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def decompressed(stream: BinaryIO, compression: Compression) -> tuple[BinaryIO, "_Flag"]:
    """A buffered decompressed view of ``stream`` and a flag telling whether it was cut short."""
    if compression == "none":
        return stream, _Flag(None)
    raw = _Framed(stream, compression)
    return io.BufferedReader(raw, buffer_size=_SKIP_CHUNK), _Flag(raw)


class _Flag:
    def __init__(self, raw: io.RawIOBase | None) -> None:
        self._raw = raw

    @property
    def truncated(self) -> bool:
        return bool(getattr(self._raw, "truncated", False))


def iter_source_items(
    stream: BinaryIO, name: str, max_line_bytes: int
) -> Iterator[RawItem | BadItem]:
    """Every record of a source file (format and compression from ``name``)."""
    fmt, compression = source_format(name)
    data, flag = decompressed(stream, compression)
    if fmt == "json_array":
        yield from iter_array_items(data, max_line_bytes, flag)
    else:
        yield from iter_items(data, max_line_bytes, flag)


def iter_items(
    stream: BinaryIO, max_line_bytes: int, flag: "_Flag | None" = None
) -> Iterator[RawItem | BadItem]:
    """Parse a JSONL byte stream; every line yields one item or one bad item with a reason.

    A line longer than ``max_line_bytes`` is skipped in 1 MiB chunks (never held whole). The last
    line of a file that has no newline and does not parse, or any tail of a compressed file cut
    mid-stream, is reported once as ``truncated_record``.
    """
    number = 0
    while True:
        line = stream.readline(max_line_bytes + 1)
        if not line:
            break
        number += 1
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            head = line[:_RAW_KEEP]
            tail = line
            while tail and not tail.endswith(b"\n"):
                tail = stream.readline(_SKIP_CHUNK)
            yield BadItem(number, "line_too_long", head)
            continue
        stripped = line.strip()
        if not stripped:
            continue
        cut = not line.endswith(b"\n") and flag is not None and flag.truncated
        if cut:
            yield BadItem(number, "truncated_record", stripped[:_RAW_KEEP])
            return
        try:
            yield RawItem(number, orjson.loads(stripped))
        except orjson.JSONDecodeError:
            if not line.endswith(b"\n"):  # only the last line of a file lacks a newline
                yield BadItem(number, "truncated_record", stripped[:_RAW_KEEP])
                return
            reason = "invalid_utf8" if _bad_utf8(stripped) else "malformed_json"
            yield BadItem(number, reason, stripped[:_RAW_KEEP])
    if flag is not None and flag.truncated:
        # the cut fell exactly on a line boundary: the complete lines were yielded
        yield BadItem(number + 1, "truncated_record", b"")


def iter_array_items(
    stream: BinaryIO, max_record_bytes: int, flag: "_Flag | None" = None
) -> Iterator[RawItem | BadItem]:
    """Parse a top-level JSON array element by element over a sliding text buffer.

    The buffer holds at most one element plus one read chunk; an element larger than
    ``max_record_bytes`` ends the file with one ``line_too_long`` item.
    """
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="strict")
    buf = ""
    pos = 0
    eof = False
    chunk = 1 << 16

    def fill(size: int) -> bool:
        nonlocal buf, pos, eof
        data = stream.read(size)
        if not data:
            eof = True
            return False
        try:
            text = utf8.decode(data)
        except UnicodeDecodeError as exc:
            raise _BadArray("invalid_utf8", data[:_RAW_KEEP]) from exc
        buf = buf[pos:] + text
        pos = 0
        return True

    def skip_ws() -> None:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf) or eof or not fill(chunk):
                return

    index = 0
    try:
        skip_ws()
        if pos >= len(buf):
            return
        if buf[pos] != "[":
            raise _BadArray("not_a_json_array", buf[pos : pos + _RAW_KEEP].encode())
        pos += 1
        expect_value = True
        while True:
            skip_ws()
            if pos >= len(buf):
                raise _BadArray("truncated_record", b"", index + 1)
            ch = buf[pos]
            if ch == "]":
                return
            if ch == "," and not expect_value:
                pos += 1
                expect_value = True
                continue
            index += 1
            want = chunk
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as exc:
                    if len(buf) - pos > max_record_bytes:
                        reason = "malformed_json" if exc.pos < len(buf) - 1 else "line_too_long"
                        raise _BadArray(
                            reason, buf[pos : pos + _RAW_KEEP].encode(), index
                        ) from None
                    if eof or not fill(want):
                        raw = buf[pos : pos + _RAW_KEEP].encode()
                        raise _BadArray("truncated_record", raw, index) from None
                    want = min(want * 2, 64 << 20)
                    continue
                break
            yield RawItem(index, value)
            pos = end
            expect_value = False
    except _BadArray as bad:
        yield BadItem(bad.line or index + 1, bad.reason, bad.raw)


class _BadArray(Exception):
    def __init__(self, reason: str, raw: bytes, line: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw
        self.line = line


def _bad_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
