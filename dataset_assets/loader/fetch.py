"""Fetch one shard's bytes, verified: sha256 while streaming, Range-resume, one re-fetch.

A shard is streamed with one ranged GET; if the connection drops (``StorageError`` from the
store) the next request starts at the byte offset already received, with bounded retries and
exponential backoff. The sha256 and size are computed on the bytes as they arrive. On mismatch
the shard is fetched once more from scratch; a second mismatch raises :class:`IntegrityError`
naming the shard, the expected and the actual digest. No record of a shard is handed out before
its whole body has been verified.
"""

import hashlib
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
    """

    max_retries: int = 5
    backoff: float = 0.2
    max_backoff: float = 5.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be ≥ 0, got {self.max_retries}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must be ≥ 0")


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
            for chunk in reader.iter_bytes(key, start=offset):
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
