"""Reading source files as a stream of parsed JSON items, never a whole file in memory.

Supported files (chosen by name, see :func:`source_format`):

| name ends with            | container            | records                          |
|---------------------------|----------------------|----------------------------------|
| ``.jsonl`` / ``.ndjson``  | plain                | one JSON value per line          |
| ``.jsonl.gz``             | gzip (streamed)      | one JSON value per line          |
| ``.jsonl.zst``            | zstd (streamed)      | one JSON value per line          |
| ``.json`` (+ .gz / .zst)  | as above             | one top-level JSON array, parsed |
|                           |                      | element by element (a file of    |
|                           |                      | bare objects is read the same)   |

Both formats parse every record with orjson (same numbers, same limits: integers beyond 64 bits
become floats, nesting deeper than 1024 is refused) and accept a leading UTF-8 BOM.

Every record yields a :class:`RawItem` or a :class:`BadItem` with a stable ``reason`` and a
``detail`` saying where and why:

| reason               | meaning                                                            |
|----------------------|--------------------------------------------------------------------|
| ``malformed_json``   | not JSON (bad token, broken brackets, number out of range, nesting |
|                      | deeper than 1024, garbage after an array)                          |
| ``invalid_utf8``     | bytes that are not UTF-8                                           |
| ``invalid_text``     | a ``\\uD800``-style escape that is not a valid surrogate pair      |
| ``line_too_long``    | a line / array element over ``max_line_bytes``: skipped in chunks, |
|                      | never held whole, reading goes on after it                         |
| ``truncated_record`` | the file is cut mid-record: every complete record before the cut   |
|                      | is yielded, then exactly one bad item for the tail                 |
| ``not_a_json_array`` | a ``.json`` file that starts with neither ``[`` nor ``{``          |

``line`` is the 1-based line number (JSONL) or element index (JSON array; the element's line in
the file is in ``detail``). One bad JSON-array element is one bad item: reading resynchronizes at
the next element (see :func:`iter_array_items`).

Local files are named by :func:`local_uri` (relative to the config folder, always UTF-8) and
opened by their real path (:attr:`SourceRef.path`).
"""

import glob
import io
import os
import re
import zlib
from collections.abc import Generator, Iterator
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
BOM = b"\xef\xbb\xbf"

Format = Literal["jsonl", "json_array"]
Compression = Literal["none", "gzip", "zstd"]


@dataclass(frozen=True)
class SourceRef:
    """One input file of a family, with a change fingerprint.

    Attributes:
        family: the family's name.
        uri: how records, quarantine entries, provenance and the manifest name the file, always
            valid UTF-8: ``s3://bucket/key``, or for a local file its POSIX path relative to the
            config file's folder (see :func:`local_uri`).
        size: bytes.
        fingerprint: ``mtime_ns`` (local) or the ETag (S3).
        path: the local file to open (absolute, exactly as the file system spells it); empty
            for S3 objects.
    """

    family: str
    uri: str
    size: int
    fingerprint: str
    path: str = ""


@dataclass(frozen=True)
class RawItem:
    line: int
    value: Any


@dataclass(frozen=True)
class BadItem:
    """A record that cannot be read: ``reason`` is stable, ``detail`` says where and why."""

    line: int
    reason: str
    raw: bytes
    detail: str = ""


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


def local_uri(path: Path, root: Path | None) -> str:
    """The name a local source file goes by in published data: valid UTF-8, no host paths.

    ``root`` is the config file's folder: the result is the POSIX path relative to it
    (``data/chat/a.jsonl``; ``../other/b.jsonl`` for a file outside it), so neither user names
    nor host folders reach records, quarantine entries or the manifest. Without ``root`` it is
    the absolute path. Bytes of a file name that are not UTF-8 are written as ``\\xNN``
    (``bad-\\xff.jsonl``): the file is still read, from its real path (``SourceRef.path``), and
    its records are published under this name; only a file literally named with that
    backslash sequence next to it could share the name.
    """
    name = Path(os.path.relpath(path, root)).as_posix() if root is not None else str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    return name


def expand_local(family: SourceFamily, root: Path | None = None) -> list[SourceRef]:
    """Every local source file matched by the family's globs, sorted, with size + mtime.

    Args:
        family: the family whose local paths (globs or folders) are expanded.
        root: the config file's folder; uris are relative to it (see :func:`local_uri`).
    """
    refs: dict[str, SourceRef] = {}
    for pattern in family.paths:
        if pattern.startswith("s3://"):
            continue
        for path in local_source_paths(pattern):
            st = path.stat()
            absolute = path.absolute()
            refs[str(absolute)] = SourceRef(
                family.name,
                local_uri(absolute, root),
                st.st_size,
                str(st.st_mtime_ns),
                path=str(absolute),
            )
    return sorted(refs.values(), key=lambda r: r.uri)


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
    stream: BinaryIO, name: str, max_line_bytes: int, first_line: int = 1
) -> Iterator[RawItem | BadItem]:
    """Every record of a source file (format and compression from ``name``).

    ``first_line``: the line number of the stream's first line, when it is a byte range of a
    plain JSONL file that starts at that line (:func:`~dataset_assets.core.ranges.plan_ranges`).
    """
    fmt, compression = source_format(name)
    if first_line != 1 and (fmt, compression) != ("jsonl", "none"):
        raise ValueError(f"{name}: only plain JSONL is read from a line other than the first")
    data, flag = decompressed(stream, compression)
    if fmt == "json_array":
        yield from iter_array_items(data, max_line_bytes, flag)
    else:
        yield from iter_items(data, max_line_bytes, flag, first_line)


def iter_items(
    stream: BinaryIO, max_line_bytes: int, flag: "_Flag | None" = None, first_line: int = 1
) -> Iterator[RawItem | BadItem]:
    """Parse a JSONL byte stream; every line yields one item or one bad item with a reason.

    A line longer than ``max_line_bytes`` is skipped in 1 MiB chunks (never held whole). The last
    line of a file that has no newline and does not parse, or any tail of a compressed file cut
    mid-stream, is reported once as ``truncated_record``. Lines are numbered from
    ``first_line`` (a UTF-8 BOM is dropped only from line 1, the file's first).
    """
    number = first_line - 1
    while True:
        line = stream.readline(max_line_bytes + 1)
        if not line:
            break
        number += 1
        # decided before the BOM is dropped: a cut line 1 shortened by its BOM is still cut
        too_long = len(line) > max_line_bytes and not line.endswith(b"\n")
        if number == 1 and line.startswith(BOM):
            line = line[len(BOM) :]
        if too_long:
            head = line[:_RAW_KEEP]
            tail = line
            while tail and not tail.endswith(b"\n"):
                tail = stream.readline(_SKIP_CHUNK)
            yield BadItem(number, "line_too_long", head, f"longer than {max_line_bytes} bytes")
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
        except orjson.JSONDecodeError as exc:
            if not line.endswith(b"\n"):  # only the last line of a file lacks a newline
                yield BadItem(number, "truncated_record", stripped[:_RAW_KEEP])
                return
            reason = _parse_reason(stripped, exc)
            yield BadItem(number, reason, stripped[:_RAW_KEEP], str(exc)[:160])
    if flag is not None and flag.truncated:
        # the cut fell exactly on a line boundary: the complete lines were yielded
        yield BadItem(number + 1, "truncated_record", b"")


def iter_array_items(
    stream: BinaryIO, max_record_bytes: int, flag: "_Flag | None" = None
) -> Iterator[RawItem | BadItem]:
    """Parse a top-level JSON array element by element, resynchronizing after a bad element.

    Each element's extent is found by a structural scan (brackets outside strings), then the
    element alone is parsed with orjson, exactly like a JSONL line. A bad element is one
    :class:`BadItem` and reading resumes at the next element. When the brackets themselves are
    broken (an element never closes, or closes with the wrong bracket), reading resumes at the
    first later line that starts with ``{`` or ``[`` no deeper indented than the good elements,
    or at the first later ``, {"key":`` whose key is the good elements' first key: the usual
    layouts (one element per line, ``json.dump(indent=...)``, one-line ``json.dump``)
    resynchronize exactly. At most ``max_record_bytes`` plus one read chunk are held; a longer
    element is reported as ``line_too_long`` and skipped without being held. A leading UTF-8
    BOM is accepted, a missing comma between elements or a trailing comma is tolerated, a file
    of bare objects (no ``[``) is read object by object, and anything after the closing ``]``
    is read as further elements (a second array is read too), so nothing is silently lost.

    Not recovered: damage that leaves valid JSON of another shape (a stray ``[`` before an
    element can make the rest of the file one list element, quarantined as one record).
    """
    del flag  # a cut stream simply ends: the unfinished element is a truncated_record
    yield from _ArrayParser(stream, max_record_bytes).items()


_READ = 1 << 20
_WS_RUN = re.compile(rb"[ \t\r\n]*+")
_STRING = rb'"[^"\\\n]*+(?:\\[^\n][^"\\\n]*+)*+"'
# Skips text and whole strings; captures the next bracket, newline, or a quote that opens a
# string not closed on its line (JSON strings never hold a raw newline).
_STRUCTURE = re.compile(rb'[^"\n\[\]{}]*+(?:' + _STRING + rb'[^"\n\[\]{}]*+)*+([\[\]{}\n"])')
_SCALAR = re.compile(_STRING + rb'|[^\s,\[\]{}"]++')
_FIRST_KEY = re.compile(rb'\{[ \t\r\n]*+("[^"\\\n]{1,64}+")[ \t\r\n]*+:')
_INDENT = re.compile(rb"[ \t]*+")


def _balanced(depth: int) -> "re.Pattern[bytes]":
    """An element with brackets nested at most ``depth`` deep, matched in one call (fast path;
    bracket kinds are not paired here, orjson checks the element afterwards)."""
    inner = rb"(?:" + _STRING + rb'|[^"\[\]{}]++)*+'
    for _ in range(depth):
        inner = rb"(?:" + _STRING + rb'|[^"\[\]{}]++|[{\[]' + inner + rb"[}\]])*+"
    return re.compile(rb"[{\[]" + inner + rb"[}\]]")


_BALANCED = _balanced(12)
_STRING_REST = re.compile(rb'(?:[^"\\\n]++|\\[^\n])*+')
_TAIL = re.compile(rb'[^,\n\[{"]*+')
_CLOSER = {ord("{"): ord("}"), ord("["): ord("]")}
_OPEN = frozenset(b"{[")


class _ArrayParser:
    """The state of one JSON-array file: a byte window, the line count, the element count.

    Positions are absolute byte offsets in the (decompressed) file; ``buf`` holds the bytes
    from ``base`` on, and nothing before ``keep`` is needed any more.
    """

    def __init__(self, stream: BinaryIO, max_bytes: int) -> None:
        self.stream = stream
        self.max_bytes = max_bytes
        self.buf = bytearray()
        self.base = 0
        self.keep = 0
        self.eof = False
        self.line = 1
        self.line_start = 0
        self.index = 0
        # what the last good element looked like: where a broken one may be followed by the next
        self.good_key = b""
        self.good_indent: int | None = None
        self.separator = b""
        self.last_end = -1
        self.last_size = 0

    # -- the byte window --------------------------------------------------------------------

    def fill(self) -> bool:
        if self.eof:
            return False
        data = self.stream.read(_READ)
        if not data:
            self.eof = True
            return False
        drop = self.keep - self.base
        if drop >= _READ or (drop > 0 and 2 * drop >= len(self.buf)):
            del self.buf[:drop]
            self.base = self.keep
        self.buf += data
        return True

    def byte_at(self, pos: int) -> int | None:
        while pos - self.base >= len(self.buf):
            if not self.fill():
                return None
        return self.buf[pos - self.base]

    def held(self, start: int, end: int) -> bytes:
        with memoryview(self.buf) as view:
            return bytes(view[max(start - self.base, 0) : end - self.base])

    def skip_ws(self, pos: int) -> int:
        """The first non-whitespace position at or after ``pos``, counting lines on the way."""
        while True:
            i = pos - self.base
            end = _WS_RUN.match(self.buf, i).end()  # type: ignore[union-attr]
            newlines = self.buf.count(b"\n", i, end)
            if newlines:
                self.line += newlines
                self.line_start = self.base + self.buf.rindex(b"\n", i, end) + 1
            pos = self.base + end
            if end < len(self.buf) or not self.fill():
                return pos

    def indent(self, pos: int) -> int | None:
        """Leading whitespace of the current line, read up to ``pos`` (None: no longer held)."""
        if self.line_start < self.base:
            return None
        lead = _INDENT.match(self.buf, self.line_start - self.base, pos - self.base)
        return lead.end() - lead.start() if lead else 0

    def looks_like_start(self, pos: int, indent: int | None, first_key: bytes) -> bool:
        """Could the bracket at ``pos`` start the element after a broken one? Yes if it starts
        a line no deeper indented than that element, or follows a comma and opens an object
        with the same first key (``{"messages":`` in a one-line array)."""
        column = pos - self.line_start
        if indent is not None and column <= indent and self.indent(pos) == column:
            return True
        if not first_key or self.buf[pos - self.base] != ord("{"):
            return False
        key = _FIRST_KEY.match(self.buf, pos - self.base)
        if key is None or key.group(1) != first_key:
            return False
        i = pos - self.base - 1
        while i >= 0 and self.buf[i] in b" \t\r\n":
            i -= 1
        return i >= 0 and self.buf[i] == ord(",")

    # -- the file ---------------------------------------------------------------------------

    def items(self) -> Iterator[RawItem | BadItem]:
        pos = 3 if self.byte_at(2) is not None and self.buf[:3] == BOM else 0
        pos = self.skip_ws(pos)
        first = self.byte_at(pos)
        if first is None:
            return
        if first not in b"[{":
            raw = self.held(pos, pos + _RAW_KEEP)
            yield BadItem(1, "not_a_json_array", raw, "the file starts with neither '[' nor '{'")
            return
        in_array = first == ord("[")
        pos += in_array
        while True:
            self.keep = pos
            pos = self.skip_ws(pos)
            self.keep = pos
            ch = self.byte_at(pos)
            if ch is None:
                if in_array:
                    yield BadItem(
                        self.index + 1, "truncated_record", b"", "the file ends before ']'"
                    )
                return
            if ch == ord(","):
                pos += 1
            elif ch == ord("]"):
                pos = self.skip_ws(pos + 1)
                in_array = self.byte_at(pos) == ord("[")
                pos += in_array
            else:
                self.index += 1
                pos = yield from self.element(pos, ch)
                if pos < 0:
                    return

    def bad(self, reason: str, start: int, line: int, why: str) -> BadItem:
        where = f"element {self.index} at line {line}"
        return BadItem(self.index, reason, self.held(start, start + _RAW_KEEP), f"{where}: {why}")

    def parse(self, start: int, end: int, line: int) -> tuple[RawItem | BadItem, str]:
        """The element's item, and why it does not parse ("" when it does)."""
        data = self.held(start, end)
        try:
            return RawItem(self.index, orjson.loads(data)), ""
        except orjson.JSONDecodeError as exc:
            why = str(exc)[:160]
            return self.bad(_parse_reason(data, exc), start, line, why), why

    def element(self, start: int, first: int) -> Generator[RawItem | BadItem, None, int]:
        """Yield the element at ``start``; return where reading goes on (-1: end of file)."""
        if first in _OPEN:
            return (yield from self.container(start))
        line = self.line
        if first in b"}]":
            yield self.bad("malformed_json", start, line, "unmatched bracket")
            return start + 1
        while True:
            m = _SCALAR.match(self.buf, start - self.base)
            held = self.base + len(self.buf)
            if m is not None and self.base + m.end() < held:
                end = self.base + m.end()
                break
            newline = self.buf.find(b"\n", start - self.base)
            if m is None and newline >= 0:
                end = self.base + newline
                break
            if held - start > self.max_bytes or not self.fill():
                end = self.base + (m.end() if m is not None else len(self.buf))
                break
        if m is None:
            yield self.bad("malformed_json", start, line, "unterminated string")
            return end
        yield self.parse(start, end, line)[0]
        return end

    def container(self, start: int) -> Generator[RawItem | BadItem, None, int]:
        i = start - self.base
        end = self.separated_end(i)
        value = _UNSET
        if end > 0:
            value = _loads(self.buf[i:end])
        if value is _UNSET:
            m = _BALANCED.match(self.buf, i)
            if m is not None and m.end() < len(self.buf):
                end = m.end()
                value = _loads(self.buf[i:end])
                if value is not _UNSET:
                    self.learn(i)
        if value is _UNSET:  # broken, or not complete in the window: scan it bracket by bracket
            return (yield from self.scan(start))
        newlines = self.buf.count(b"\n", i, end)
        if newlines:
            self.line += newlines
            self.line_start = self.base + self.buf.rindex(b"\n", i, end) + 1
        self.last_end = self.base + end
        yield RawItem(self.index, value)
        return self.base + end

    def separated_end(self, i: int) -> int:
        """Where the element at ``i`` ends if the learned separator follows it within reach
        (orjson then confirms: a complete JSON value has only one possible end)."""
        if not self.separator:
            return -1
        reach = i + max(1 << 16, 8 * self.last_size)
        at = self.buf.find(self.separator, i, reach)
        if at < 0:
            return -1
        self.last_size = at + 1 - i
        return at + 1

    def learn(self, i: int) -> None:
        """Remember how the last good element looks (first key, indent, the bytes from its
        predecessor's closing bracket to its own first key): the separator is the fast path to
        the next element's end, the key and indent tell where a broken element is followed."""
        key = _FIRST_KEY.match(self.buf, i)
        self.good_key = key.group(1) if key else self.good_key
        self.good_indent = self.indent(self.base + i)
        prev = self.last_end - self.base
        if key is None or prev < 1 or prev > i:
            return
        between = self.buf[prev:i]
        if between.strip(b" \t\r\n") == b"," and key.end(1) - prev < 256:
            self.separator = bytes(self.buf[prev - 1 : key.end(1)])

    def scan(self, start: int) -> Generator[RawItem | BadItem, None, int]:
        line = self.line
        own_indent = self.indent(start)
        if own_indent is not None and self.good_indent is not None:
            own_indent = max(own_indent, self.good_indent)
        key = _FIRST_KEY.match(self.buf, start - self.base)
        first_key = self.good_key or (key.group(1) if key else b"")
        stack: list[int] = []
        broken = ""  # why the brackets cannot be trusted
        resync: tuple[int, int, int] | None = None  # position, line, line start
        skipping = False
        pos = start
        while True:
            if not skipping and pos - start > self.max_bytes:
                if resync is not None:
                    broken = broken or "element does not close"
                else:
                    why = f"element longer than {self.max_bytes} bytes"
                    yield self.bad("line_too_long", start, line, why)
                    skipping = True
            if skipping:
                if resync is not None and pos - resync[0] > self.max_bytes:
                    resync = None
                self.keep = pos if resync is None else resync[0]
            if broken and resync is not None:
                if skipping:
                    at, self.line, self.line_start = resync
                    return at
                return (yield from self.cut(start, line, resync, broken))
            m = _STRUCTURE.match(self.buf, pos - self.base)
            if m is None:
                pos = self.base + len(self.buf)
                if self.fill():
                    continue
                if skipping:
                    return -1
                if resync is not None:
                    broken = broken or "element does not close"
                    continue
                yield self.bad("truncated_record", start, line, "the file ends in it")
                return -1
            at = self.base + m.start(1)
            ch = self.buf[at - self.base]
            pos = at + 1
            if ch == ord("\n"):
                self.line += 1
                self.line_start = pos
            elif ch == ord('"'):  # a string that does not close within the window
                while True:
                    if skipping:
                        limit = None if resync is None else resync[0] + self.max_bytes
                    else:
                        limit = start + self.max_bytes
                    closed, pos = self.string_end(at, limit)
                    if closed is not None:
                        break
                    if skipping:
                        resync = None  # too far back to resume there
                        continue
                    if resync is not None:
                        return (yield from self.cut(start, line, resync, "element does not close"))
                    why = f"element longer than {self.max_bytes} bytes"
                    yield self.bad("line_too_long", start, line, why)
                    skipping = True
                if not closed:
                    broken = broken or "unterminated string"
            elif ch in _OPEN:
                if stack and resync is None and self.looks_like_start(at, own_indent, first_key):
                    resync = (at, self.line, self.line_start)
                stack.append(ch)
            else:
                opener = stack.pop()
                if _CLOSER[opener] != ch:
                    broken = broken or f"{chr(ch)!r} closes {chr(opener)!r}"
                if not stack:
                    break
        if skipping:
            return pos
        if broken:  # stray closers after the last bracket belong to this element
            tail = _TAIL.match(self.buf, pos - self.base)
            pos = self.base + tail.end() if tail else pos
        if not broken:
            item, broken = self.parse(start, pos, line)
            if isinstance(item, RawItem) or resync is None:
                yield item
                return pos
        if resync is None:
            yield self.bad(_parse_reason(self.held(start, pos), None), start, line, broken)
            return pos
        return (yield from self.cut(start, line, resync, broken))

    def string_end(self, at: int, limit: int | None) -> tuple[bool | None, int]:
        """Read the string opened at ``at`` to its end, filling the window as needed.

        Returns ``(True, position after the closing quote)``, ``(False, position of the raw
        newline or end of file that leaves it open)``, or ``(None, at)`` once it runs past
        ``limit``. Without a limit, the bytes read are released as it goes.
        """
        pos = at + 1
        while True:
            i = pos - self.base
            j = _STRING_REST.match(self.buf, i).end()  # type: ignore[union-attr]
            if j < len(self.buf):
                stop = self.buf[j]
                if stop == ord('"'):
                    return True, self.base + j + 1
                if stop == ord("\n") or j + 1 < len(self.buf):  # a newline, or backslash-newline
                    return False, self.base + j
            pos = self.base + j  # the window ends inside the string (maybe after a backslash)
            if limit is not None and pos > limit:
                return None, at
            if limit is None:
                self.keep = pos
            if not self.fill():
                return False, self.base + len(self.buf)

    def cut(
        self, start: int, line: int, resync: tuple[int, int, int], why: str
    ) -> Generator[RawItem | BadItem, None, int]:
        """The element is broken: report it up to ``resync`` and read on from there."""
        at, self.line, self.line_start = resync
        yield self.bad(_parse_reason(self.held(start, at), None), start, line, why)
        return at


_UNSET: Any = object()


def _loads(data: bytearray) -> Any:
    """The parsed value, or ``_UNSET`` if ``data`` is not one JSON value."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return _UNSET


def _parse_reason(data: bytes, exc: orjson.JSONDecodeError | None) -> str:
    if _bad_utf8(data):
        return "invalid_utf8"
    if exc is not None and "surrogate" in str(exc):
        return "invalid_text"
    return "malformed_json"


def _bad_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
