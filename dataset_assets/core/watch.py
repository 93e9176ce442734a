"""Change detection for the generated-data locations the rebuild sensor watches.

Pure logic over *fingerprints* (path, size, version: ``mtime_ns`` for local files, the ETag for
S3 objects). :func:`observe` compares what is there now with what the previous tick recorded (the
sensor cursor) and decides which changes are ready to trigger a rebuild. A local file counts only
once it is *stable*: its fingerprint did not change for ``stable_seconds`` (first-seen time is kept
in the cursor) or its mtime is already that old. S3 objects are complete once listed (a PUT is
atomic), so they are stable immediately. Temporary names never count.
"""

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import orjson

from dataset_assets.core.migration import display_path
from dataset_assets.core.sources import local_source_paths

CURSOR_VERSION = 1

ChangeKind = Literal["added", "modified", "removed"]


@dataclass(frozen=True, order=True)
class Fingerprint:
    """What identifies one version of a watched file.

    Attributes:
        path: absolute local path or ``s3://bucket/key``.
        size: bytes.
        version: ``mtime_ns`` (local) or the ETag (S3), as text.
        modified_at: POSIX time of the last modification for local files; ``None`` for S3
            objects, which are complete as soon as they are listed.
    """

    path: str
    size: int
    version: str
    modified_at: float | None = field(default=None, compare=False)

    def same_version(self, size: int, version: str) -> bool:
        return self.size == size and self.version == version


@dataclass(frozen=True)
class Change:
    """One file that was added, modified or removed since the last rebuild request."""

    kind: ChangeKind
    path: str
    size: int
    version: str


@dataclass(frozen=True)
class Pending:
    """A changed file first seen at ``first_seen`` with this size/version, not yet stable."""

    size: int
    version: str
    first_seen: float


@dataclass(frozen=True)
class WatchCursor:
    """The sensor cursor: files accounted for by the last rebuild, and files waiting to settle."""

    known: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    pending: Mapping[str, Pending] = field(default_factory=dict)
    initialized: bool = False

    def to_json(self) -> str:
        data = {
            "v": CURSOR_VERSION,
            "known": {p: [s, v] for p, (s, v) in sorted(self.known.items())},
            "pending": {
                p: {"size": e.size, "version": e.version, "first_seen": e.first_seen}
                for p, e in sorted(self.pending.items())
            },
        }
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()

    @classmethod
    def from_json(cls, text: str | None) -> "WatchCursor":
        """Parse a cursor (``None``/empty: the sensor never ran); a bad cursor raises ValueError."""
        if not text:
            return cls()
        try:
            data = orjson.loads(text)
            if data.get("v") != CURSOR_VERSION:
                raise ValueError(f"cursor version {data.get('v')!r}, expected {CURSOR_VERSION}")
            known = {str(p): (int(s), str(v)) for p, (s, v) in data["known"].items()}
            pending = {
                str(p): Pending(int(e["size"]), str(e["version"]), float(e["first_seen"]))
                for p, e in data["pending"].items()
            }
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"unreadable rebuild sensor cursor {text[:200]!r}: {exc}") from exc
        return cls(known=known, pending=pending, initialized=True)


@dataclass(frozen=True)
class WatchResult:
    """What one observation decided.

    Attributes:
        changes: stable changes that ask for a rebuild (removals only when ``rebuild_on_removal``).
        removed: every file that disappeared since the last rebuild (reported either way).
        waiting: changed files not stable yet (they will be looked at again next tick).
        cursor: the cursor to store for the next tick.
    """

    changes: tuple[Change, ...]
    removed: tuple[Change, ...]
    waiting: tuple[str, ...]
    cursor: WatchCursor

    @property
    def triggers(self) -> bool:
        return bool(self.changes)

    def run_key(self) -> str:
        """Deterministic key of the changed set: one change never launches two runs."""
        payload = [[c.kind, c.path, c.size, c.version] for c in sorted(self.changes, key=_order)]
        return "rebuild-" + hashlib.sha256(orjson.dumps(payload)).hexdigest()[:24]


def _order(change: Change) -> tuple[str, str]:
    return (change.path, change.kind)


def observe(
    previous: WatchCursor,
    current: Iterable[Fingerprint],
    *,
    now: float,
    stable_seconds: float,
    rebuild_on_removal: bool,
) -> WatchResult:
    """Compare the files present now with the cursor and decide what triggers a rebuild.

    A stable change moves from ``pending`` to ``known``; an unstable one stays (or enters)
    ``pending`` with the time it was first seen at this size/version. Removed files leave ``known``
    and are reported; they trigger a rebuild only when ``rebuild_on_removal``.
    """
    known = dict(previous.known)
    pending: dict[str, Pending] = {}
    changes: list[Change] = []
    waiting: list[str] = []
    seen: set[str] = set()
    for fp in sorted(current):
        seen.add(fp.path)
        before = known.get(fp.path)
        if before is not None and before == (fp.size, fp.version):
            continue
        kind: ChangeKind = "added" if before is None else "modified"
        entry = previous.pending.get(fp.path)
        if entry is None or (entry.size, entry.version) != (fp.size, fp.version):
            entry = Pending(fp.size, fp.version, now)
        if _is_stable(fp, entry, now, stable_seconds):
            changes.append(Change(kind, fp.path, fp.size, fp.version))
            known[fp.path] = (fp.size, fp.version)
        else:
            pending[fp.path] = entry
            waiting.append(fp.path)
    removed = [
        Change("removed", path, size, version)
        for path, (size, version) in sorted(previous.known.items())
        if path not in seen
    ]
    for change in removed:
        del known[change.path]
    if rebuild_on_removal:
        changes.extend(removed)
    cursor = WatchCursor(known=known, pending=pending, initialized=True)
    return WatchResult(tuple(changes), tuple(removed), tuple(waiting), cursor)


def _is_stable(fp: Fingerprint, entry: Pending, now: float, stable_seconds: float) -> bool:
    if fp.modified_at is None or stable_seconds <= 0:
        return True
    if now - fp.modified_at >= stable_seconds:
        return True
    return now - entry.first_seen >= stable_seconds


def fingerprint_local(path: Path) -> Fingerprint | None:
    """Fingerprint of a local file; ``None`` if it vanished while looking. A name that is not
    valid UTF-8 is kept backslash-escaped, so the cursor (JSON) can always be written."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return Fingerprint(
        path=display_path(path.absolute()),
        size=st.st_size,
        version=str(st.st_mtime_ns),
        modified_at=st.st_mtime_ns / 1e9,
    )


def scan_local(patterns: Iterable[str]) -> list[Fingerprint]:
    """Fingerprints of every non-temporary file the local patterns name (deduplicated)."""
    found: dict[str, Fingerprint] = {}
    for pattern in patterns:
        for path in local_source_paths(pattern):
            fp = fingerprint_local(path)
            if fp is not None:
                found[fp.path] = fp
    return sorted(found.values())


def fingerprint_s3(bucket: str, key: str, size: int, etag: str) -> Fingerprint:
    """Fingerprint of a listed S3 object (complete once listed, so no ``modified_at``)."""
    return Fingerprint(path=f"s3://{bucket}/{key}", size=size, version=etag.strip('"'))


def describe(changes: Iterable[Change], limit: int = 10) -> str:
    """Short human summary, e.g. ``added a.jsonl, modified b.jsonl (+3 more)``."""
    items = list(changes)
    parts = [f"{c.kind} {os.path.basename(c.path) or c.path}" for c in items[:limit]]
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(parts) + more
