"""Fetch one shard's bytes, verified: sha256 while streaming, Range-resume, one re-fetch.

A shard is streamed with one ranged GET; if the connection drops (``StorageError`` from the
store) or the stream stalls, the next request starts at the byte offset already received, with
bounded retries and exponential backoff. A stream stalls when a chunk of
``RetryPolicy.chunk_bytes`` takes longer than ``stall_grace_s + chunk_bytes / min_bytes_per_s``:
a server trickling bytes (1 byte/s) never trips a socket read timeout, which restarts with
every byte, so the deadline is kept here on each chunk. The sha256 and size are computed on the
bytes as they arrive. On mismatch the shard is fetched once more from scratch; a second mismatch
raises :class:`IntegrityError` naming the shard, the expected and the actual digest. No record
of a shard is handed out before its whole body has been verified.
"""

import contextlib
import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dataset_assets.core.errors import IntegrityError, ObjectNotFoundError, StorageError
from dataset_assets.core.manifest import ShardEntry
from dataset_assets.loader.cache import ShardCache

_CHUNK = 1024 * 1024


class ByteRangeReader(Protocol):
    """What the loader needs from an object store: one ranged GET, streamed.

    :class:`dataset_assets.storage.S3ObjectStore` satisfies it; so does :class:`LocalFiles`.
    """

    def iter_bytes(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = _CHUNK
    ) -> Iterator[bytes]: ...


class LocalFiles:
    """:class:`ByteRangeReader` over local files (``key`` is a filesystem path)."""

    def iter_bytes(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = _CHUNK
    ) -> Iterator[bytes]:
        try:
            with open(key, "rb") as fh:
                fh.seek(start)
                left = None if end is None else end - start
                while left is None or left > 0:
                    chunk = fh.read(chunk_size if left is None else min(chunk_size, left))
                    if not chunk:
                        return
                    if left is not None:
                        left -= len(chunk)
                    yield chunk
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(f"shard file {key} does not exist", key=key) from exc
        except OSError as exc:
            raise StorageError(f"reading {key} failed: {exc}", key=key) from exc


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries for dropped connections.

    Attributes:
        max_retries: resumed requests allowed per fetch attempt.
        backoff: first sleep in seconds; doubles per retry, capped at ``max_backoff``.
        max_backoff: longest sleep.
        min_bytes_per_s: a stream slower than this (per chunk, after the grace) is abandoned
            and resumed with a Range request; 0 disables the deadline.
        stall_grace_s: seconds allowed per chunk on top of ``chunk_bytes / min_bytes_per_s``.
        chunk_bytes: bytes read per chunk (the unit of the deadline).

    The defaults abandon a 1 MiB chunk after 34 s (an effective rate under ~30 KiB/s).
    """

    max_retries: int = 5
    backoff: float = 0.2
    max_backoff: float = 5.0
    min_bytes_per_s: float = 256 * 1024
    stall_grace_s: float = 30.0
    chunk_bytes: int = _CHUNK

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be ≥ 0, got {self.max_retries}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must be ≥ 0")
        if self.min_bytes_per_s < 0 or self.stall_grace_s < 0:
            raise ValueError("min_bytes_per_s and stall_grace_s must be ≥ 0")
        if self.chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be ≥ 1, got {self.chunk_bytes}")

    @property
    def chunk_deadline_s(self) -> float | None:
        """Seconds one chunk may take (None: no deadline)."""
        if self.min_bytes_per_s == 0:
            return None
        return self.stall_grace_s + self.chunk_bytes / self.min_bytes_per_s


class StalledStreamError(StorageError):
    """A chunk did not arrive within the policy's deadline (the stream is resumed)."""


class _Pump:
    """Reads a chunk iterator on a helper thread so the reader can wait with a deadline.

    An abandoned pump stops handing out chunks; its thread ends when its blocked read returns
    (the server sends or closes, or the socket read timeout fires) — at most one idle thread
    per abandoned request, bounded by ``max_retries`` per fetch.
    """

    _END = object()

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._queue: queue.Queue[object] = queue.Queue(maxsize=4)
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shard-stream", daemon=True)
        self._thread.start()

    def _offer(self, item: object) -> bool:
        while not self._abandoned.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for chunk in self._chunks:
                if not self._offer(chunk):
                    return
            self._offer(self._END)
        except BaseException as exc:  # handed to the reader, raised there
            self._offer(exc)
        finally:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):  # an abandoned stream: best effort
                    close()

    def abandon(self) -> None:
        self._abandoned.set()

    def get(self, timeout: float) -> bytes | None:
        """The next chunk, None at the end; raises the stream's error or queue.Empty."""
        item = self._queue.get(timeout=timeout)
        if item is self._END:
            return None
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, bytes)
        return item


def _chunks_with_deadline(
    reader: ByteRangeReader, key: str, start: int, policy: RetryPolicy
) -> Iterator[bytes]:
    """``reader.iter_bytes(key, start)``, raising StalledStreamError when a chunk is late."""
    chunks = reader.iter_bytes(key, start=start, chunk_size=policy.chunk_bytes)
    deadline = policy.chunk_deadline_s
    if deadline is None:
        yield from chunks
        return
    pump = _Pump(chunks)
    try:
        while True:
            try:
                chunk = pump.get(timeout=deadline)
            except queue.Empty:
                raise StalledStreamError(
                    f"reading {key} stalled: no {policy.chunk_bytes} bytes within {deadline:.1f} s "
                    f"(slower than {policy.min_bytes_per_s:.0f} B/s) at byte {start}",
                    key=key,
                ) from None
            if chunk is None:
                return
            start += len(chunk)
            yield chunk
    finally:
        pump.abandon()


@dataclass(frozen=True)
class FetchStats:
    """What one verified fetch cost (for logs and tests)."""

    attempts: int
    resumes: int
    from_cache: bool


def _stream_once(
    reader: ByteRangeReader,
    key: str,
    expected_size: int,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
) -> tuple[bytes, str, int]:
    """Stream the whole object, resuming at the received offset after a dropped connection.

    An error once every expected byte has arrived (e.g. botocore's own response-checksum
    validation failing at the end of the body) ends the stream: resuming past the end cannot
    help, and the sha256 comparison of the caller decides whether to re-fetch.
    """
    sha = hashlib.sha256()
    parts: list[bytes] = []
    offset = 0
    resumes = 0
    while True:
        try:
            for chunk in _chunks_with_deadline(reader, key, offset, policy):
                sha.update(chunk)
                parts.append(chunk)
                offset += len(chunk)
            return b"".join(parts), sha.hexdigest(), resumes
        except ObjectNotFoundError:
            raise
        except StorageError as exc:
            if offset >= expected_size:
                return b"".join(parts), sha.hexdigest(), resumes
            if resumes >= policy.max_retries:
                raise StorageError(
                    f"reading {key} failed after {resumes} resumed requests "
                    f"({offset} bytes received): {exc}",
                    key=key,
                ) from exc
            sleep(min(policy.max_backoff, policy.backoff * 2**resumes))
            resumes += 1


def fetch_shard(
    reader: ByteRangeReader,
    key: str,
    entry: ShardEntry,
    *,
    policy: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen dataclass
    cache: ShardCache | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bytes, FetchStats]:
    """The verified bytes of ``entry``.

    Raises:
        IntegrityError: the bytes did not match ``entry.sha256``/``entry.bytes`` on two fetches.
        StorageError: the store failed beyond the retry budget.
        ObjectNotFoundError: the shard does not exist.
    """
    if cache is not None:
        cached = cache.get(entry.sha256, entry.bytes)
        if cached is not None:
            return cached, FetchStats(attempts=0, resumes=0, from_cache=True)
    actual: list[str] = []
    resumes = 0
    for attempt in (1, 2):
        data, digest, n = _stream_once(reader, key, entry.bytes, policy, sleep)
        resumes += n
        if digest == entry.sha256 and len(data) == entry.bytes:
            if cache is not None:
                cache.put(entry.sha256, data)
            return data, FetchStats(attempts=attempt, resumes=resumes, from_cache=False)
        actual.append(f"sha256 {digest} ({len(data)} bytes)")
    raise IntegrityError(
        f"shard {entry.shard_id} ({entry.uri}) failed verification on 2 fetches",
        expected=f"sha256 {entry.sha256} ({entry.bytes} bytes)",
        actual=" then ".join(actual),
    )


def shard_path(manifest_dir: Path, uri: str) -> Path:
    """Local path of a shard URI of a local manifest (relative paths are manifest-relative)."""
    raw = uri[len("file://") :] if uri.startswith("file://") else uri
    path = Path(raw)
    return path if path.is_absolute() else manifest_dir / path
