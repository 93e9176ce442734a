"""Optional local cache of verified shards, bounded in size (least recently used evicted).

Files are named by their sha256, written under a temporary name and renamed, so several
processes (ranks, DataLoader workers) can share one directory. A hit is re-hashed before use: a
file damaged on disk is deleted and the shard fetched again.

A process killed while writing leaves its temporary ``.{sha256}.jsonl.{pid}.part``; opening the
cache removes every such file whose writer is gone (no process with that pid on this host) or
that is older than ``STALE_PART_S`` (a pid reused by another process, or a writer on another
host sharing the folder), so a crash never leaks disk into the cache.
"""

import contextlib
import hashlib
import os
import time
from pathlib import Path

STALE_PART_S = 3600.0
"""A temporary file this old is removed whoever wrote it (no shard write takes an hour)."""


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class ShardCache:
    """A directory of ``{sha256}.jsonl`` files holding at most ``limit_bytes``.

    Args:
        directory: cache folder (created).
        limit_bytes: upper bound of the folder's shard bytes; a shard larger than the limit is
            never cached.
    """

    def __init__(self, directory: Path, limit_bytes: int) -> None:
        if limit_bytes < 0:
            raise ValueError(f"cache limit must be ≥ 0 bytes, got {limit_bytes}")
        self.directory = Path(directory)
        self.limit_bytes = limit_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self.removed_parts = self.remove_stale_parts()

    def remove_stale_parts(self, now: float | None = None) -> list[Path]:
        """Delete the temporary files of writers that died (see the module docstring); returns
        what was removed."""
        now = time.time() if now is None else now
        removed = []
        for path in self.directory.glob(".*.part"):
            pid_text = path.name.removesuffix(".part").rsplit(".", 1)[-1]
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue  # renamed meanwhile by its (live) writer
            dead = not pid_text.isdigit() or not _writer_alive(int(pid_text))
            if dead or age > STALE_PART_S:
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    def _path(self, sha256: str) -> Path:
        return self.directory / f"{sha256}.jsonl"

    def get(self, sha256: str, size: int) -> bytes | None:
        """The cached bytes when present and intact, else None."""
        path = self._path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)
        return data

    def put(self, sha256: str, data: bytes) -> None:
        """Store verified bytes, then evict least recently used files beyond the limit."""
        if len(data) > self.limit_bytes:
            return
        path = self._path(sha256)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        self._evict(keep=path)

    def size_bytes(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _entries(self) -> list[tuple[float, int, Path]]:
        entries = []
        for path in self.directory.glob("*.jsonl"):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            entries.append((st.st_mtime, st.st_size, path))
        return sorted(entries)

    def _evict(self, keep: Path) -> None:
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= self.limit_bytes:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
