"""Objects made in S3 from objects already there: composed, streamed, or copied.

- :func:`compose_parts`: one multipart upload whose parts are ``UploadPartCopy`` of published
  objects (nothing goes through this machine). Each copied part is checked against evidence
  computed when its source was written: the part's ETag must be the source's MD5, and where the
  server computes one (SeaweedFS) its SHA-256 checksum must be the source's sha256. The
  completed object must then have ``size == sum`` and ``ETag == md5(concat(part md5s))-N``,
  checked on the HEAD of the result (Ceph RGW 16 answers CompleteMultipartUpload with an empty
  ``<ETag/>``; its CopyPartResult ETags are the sources' MD5s, unquoted).
  ``mixed``: sources too small to be a part are read back (sha256-checked) and uploaded as
  parts of the same upload, so one small shard does not force the whole object through here.
- :func:`stream_parts`: the fallback when nothing can be copied (every source small or without
  a recorded MD5, over 10,000 parts, or the server refuses ``UploadPartCopy``): the sources are
  read back with streaming GETs (never a local copy), each checked against its sha256 while it
  passes, and uploaded with the transfer manager; the ETag is predicted from the same bytes.
- :func:`copy_object`: boto3's managed copy (a single server-side ``CopyObject`` up to 5 GiB,
  multipart ``UploadPartCopy`` above).

Any failure aborts the multipart upload (registered the moment it is created) and leaves
nothing under the target key; a verification failure raises VerificationError naming the part
or the target.

Every write carries the store's server-side encryption arguments and every result is checked
for them (EncryptionNotAppliedError, result deleted). When the server's ETags are not MD5s
(``store.etag_is_md5`` False, e.g. SSE-KMS), ETags are recorded but prove nothing: a copied part
is then checked by its ChecksumSHA256 where the server returns one, and otherwise (Ceph RGW 16)
the result is read back once, each source's byte range against its sha256.
"""

import base64
import concurrent.futures
import contextlib
import hashlib
import io
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Protocol

import boto3.exceptions
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from s3transfer.utils import ChunksizeAdjuster

from dataset_assets.core.errors import StorageError, UploadFailedError, VerificationError
from dataset_assets.core.hashing import PartMD5Hasher, multipart_etag
from dataset_assets.storage.objects import (
    MIN_PART_SIZE,
    ObjectInfo,
    S3ObjectStore,
    translate_error,
)

MAX_PARTS = 10_000
MAX_PART_SIZE = 5 * 1024**3
MAX_COPY_OBJECT_SIZE = 5 * 1024**3
# Streamed uploads: parts this large keep request overhead low at ~100 MB/s; at most
# ``max_concurrency + 2`` of them are held in memory at once.
STREAM_PART_SIZE = 32 * 1024 * 1024
STREAM_CONCURRENCY = 8
_GET_CHUNK = 1024 * 1024
# Parts of the read-back runs of a mixed composition.
UPLOAD_PART_SIZE = 16 * 1024 * 1024
_HASH_BACKLOG_CHUNKS = 64  # at most 64 MiB read but not yet hashed
_CLIENT_ERRORS = (
    boto3.exceptions.S3UploadFailedError,
    botocore.exceptions.BotoCoreError,
    botocore.exceptions.ClientError,
    OSError,
)


class CopyNotSupportedError(UploadFailedError):
    """The server refuses to copy a source as a part (501 NotImplemented; SeaweedFS 4.48 does
    for SSE-KMS sources). Nothing was left behind; the sources can still be streamed."""


def _copy_not_supported(exc: BaseException) -> bool:
    if not isinstance(exc, botocore.exceptions.ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return bool(status == 501 or exc.response.get("Error", {}).get("Code") == "NotImplemented")


class Part(Protocol):
    """A published object to be used as a part (a manifest FileEntry fits)."""

    @property
    def key(self) -> str: ...
    @property
    def bytes(self) -> int: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def md5(self) -> str | None: ...


@dataclass(frozen=True)
class Composed:
    """A verified object made from parts.

    Attributes:
        info: HEAD of the new object.
        etag: its verified ETag.
        sha256: of the whole object; None (composed and streamed objects are checked part by
            part against their sources' sha256s instead of hashing the whole again).
        method: ``"copy"`` (server-side UploadPartCopy) or ``"stream"``.
    """

    info: ObjectInfo
    etag: str
    sha256: str | None
    method: str


def why_not_composable(parts: Sequence[Part]) -> str | None:
    """Why these parts cannot be one multipart upload of ``UploadPartCopy``; None if they can."""
    if not parts:
        return "no parts"
    if len(parts) > MAX_PARTS:
        return f"{len(parts)} parts, S3 allows {MAX_PARTS}"
    for i, part in enumerate(parts):
        if not part.md5:
            return f"{part.key} has no recorded MD5 to check its copy against"
        if part.bytes > MAX_PART_SIZE:
            return f"{part.key} is {part.bytes} bytes, over S3's 5 GiB part maximum"
        if i < len(parts) - 1 and part.bytes < MIN_PART_SIZE:
            return f"{part.key} is {part.bytes} bytes, under S3's 5 MiB part minimum"
    return None


def _b64_sha256(sha256_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")


def _etag(value: Any) -> str:
    return str(value or "").strip('"')


def _fail(store: S3ObjectStore, exc: BaseException, op: str, key: str) -> StorageError:
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        return translate_error(exc, op=op, uri=store.uri(key), key=key)
    return UploadFailedError(f"{op} of {store.uri(key)} failed: {type(exc).__name__}: {exc}", key)


def _check_copied_part(store: S3ObjectStore, part: Part, result: Mapping[str, Any]) -> bool:
    """Check a copied part against its source's record; False when the server gave nothing to
    check (no SHA-256 checksum, and ETags that are not MD5s): the result must then be read back.
    """
    evidence = False
    checksum = result.get("ChecksumSHA256")
    if checksum and part.sha256:
        if checksum != _b64_sha256(part.sha256):
            raise VerificationError(
                part.key, "copied part ChecksumSHA256", _b64_sha256(part.sha256), str(checksum)
            )
        evidence = True
    if store.etag_is_md5:
        etag = _etag(result.get("ETag"))
        if etag != part.md5:
            raise VerificationError(part.key, "copied part ETag (MD5)", str(part.md5), etag)
        evidence = True
    return evidence


def _check_result(
    store: S3ObjectStore,
    key: str,
    parts: Sequence[Part],
    etag: str | None,
    *,
    readback: bool,
) -> ObjectInfo:
    """HEAD the new object: size, the ETag when ``etag`` is given (the server's ETags are MD5s),
    the configured encryption, and with ``readback`` each source's byte range against its sha256.
    Any mismatch deletes the object and raises."""
    info = store.head(key)
    size = sum(p.bytes for p in parts)
    try:
        if info.size != size:
            raise VerificationError(key, "size", str(size), str(info.size))
        if etag is not None and _etag(info.etag) != etag:
            raise VerificationError(key, "etag (HEAD)", etag, info.etag)
        store.check_encrypted(info)
        if readback:
            _check_by_readback(store, key, parts)
    except StorageError:
        store.delete(key)
        raise
    return info


def _check_by_readback(store: S3ObjectStore, key: str, parts: Sequence[Part]) -> None:
    """Stream ``key`` once: each source's byte range must hash to that source's sha256."""
    chunks = store.iter_bytes(key, chunk_size=_GET_CHUNK)
    pending = b""
    for part in parts:
        sha = hashlib.sha256()
        need = part.bytes
        while need:
            if not pending:
                pending = next(chunks, b"")
                if not pending:
                    break
            take, pending = pending[:need], pending[need:]
            sha.update(take)
            need -= len(take)
        if part.sha256 is not None and sha.hexdigest() != part.sha256:
            raise VerificationError(
                part.key, f"sha256 of its bytes in {store.uri(key)}", part.sha256, sha.hexdigest()
            )


@dataclass(frozen=True)
class Piece:
    """A run of a composed object: one source copied server-side (``copy``), or consecutive
    sources read back and uploaded as parts of about ``UPLOAD_PART_SIZE``."""

    parts: tuple[Part, ...]
    copy: bool


def plan_pieces(parts: Sequence[Part]) -> list[Piece]:
    """Copy every source S3 can copy as a part; read back only the runs it cannot.

    A source is copied when it has a recorded MD5 and 5 MiB ≤ size ≤ 5 GiB (the last may be
    smaller). The others are grouped with what follows them until the group reaches 5 MiB; a
    run still short when a copyable source comes takes the smaller of its two neighbours (the
    copy before it, or that source). Each group is uploaded in parts of at least 5 MiB.
    """
    pieces: list[Piece] = []
    group: list[Part] = []
    group_bytes = 0
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        copyable = (
            bool(part.md5) and part.bytes <= MAX_PART_SIZE and (part.bytes >= MIN_PART_SIZE or last)
        )
        if copyable and not group:
            pieces.append(Piece((part,), copy=True))
            continue
        if copyable and pieces and pieces[-1].copy and pieces[-1].parts[0].bytes < part.bytes:
            # The short run needs a neighbour: read back the smaller one (the copy before it).
            group = [pieces.pop().parts[0], *group]
            pieces.append(Piece(tuple(group), copy=False))
            pieces.append(Piece((part,), copy=True))
            group, group_bytes = [], 0
            continue
        group.append(part)
        group_bytes += part.bytes
        if group_bytes >= MIN_PART_SIZE:
            pieces.append(Piece(tuple(group), copy=False))
            group, group_bytes = [], 0
    if group:
        pieces.append(Piece(tuple(group), copy=False))
    return pieces


def _upload_part_count(pieces: Sequence[Piece]) -> int:
    return sum(
        1 if p.copy else max(1, sum(x.bytes for x in p.parts) // UPLOAD_PART_SIZE) for p in pieces
    )


def why_not_mixed(parts: Sequence[Part]) -> str | None:
    """Why :func:`compose_parts` with ``mixed=True`` is pointless or impossible; None if not."""
    pieces = plan_pieces(parts)
    if not any(p.copy for p in pieces):
        return "no part can be copied server-side"
    if _upload_part_count(pieces) > MAX_PARTS:
        return f"more than {MAX_PARTS} parts"
    return None


def compose_parts(
    store: S3ObjectStore,
    key: str,
    parts: Sequence[Part],
    *,
    mixed: bool = False,
    metadata: Mapping[str, str] | None = None,
    content_type: str = "application/x-ndjson",
) -> Composed:
    """Make ``key`` the concatenation of ``parts`` in one multipart upload, verified.

    Every part is an ``UploadPartCopy`` of a source (checked against the source's MD5, and its
    sha256 where the server returns one). With ``mixed``, the sources S3 cannot copy as parts
    (:func:`plan_pieces`) are read back with streaming GETs, each checked against its sha256,
    and uploaded as parts with Content-MD5 (each part's ETag checked too). The result must have
    ``size == sum`` and ``ETag == md5(concat(part md5s))-N``.

    Raises:
        ValueError: the parts cannot be composed (:func:`why_not_composable`, or
            :func:`why_not_mixed` with ``mixed``).
        VerificationError: a source or the result does not match (nothing left at ``key``).
        UploadFailedError: any S3 failure (the multipart upload is aborted).
    """
    reason = why_not_mixed(parts) if mixed else why_not_composable(parts)
    if reason is not None:
        raise ValueError(f"cannot compose {store.uri(key)}: {reason}")
    pieces = plan_pieces(parts) if mixed else [Piece((p,), copy=True) for p in parts]
    client = store.client
    try:
        upload_id = client.create_multipart_upload(
            Bucket=store.bucket,
            Key=key,
            Metadata=dict(metadata or {}),
            ContentType=content_type,
            # Asks servers that compute checksums (SeaweedFS) to hash each copied part; servers
            # without (Ceph RGW 16) ignore it and the ETag check still holds.
            ChecksumAlgorithm="SHA256",
            **store.encryption_args,
        )["UploadId"]
    except _CLIENT_ERRORS as exc:
        raise _fail(store, exc, "create_multipart_upload", key) from exc
    with ExitStack() as undo:
        undo.callback(_abort, store, key, upload_id)
        uploader = _PartUploader(store, key, upload_id)
        completed = uploader.run(pieces)
        try:
            resp = client.complete_multipart_upload(
                Bucket=store.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [done for done, _md5, _checked in completed]},
            )
        except _CLIENT_ERRORS as exc:
            raise _fail(store, exc, "complete_multipart_upload", key) from exc
        undo.pop_all()
    expected = None
    if store.etag_is_md5:
        expected = multipart_etag([md5 for _done, md5, _checked in completed])
        # Ceph RGW 16 answers CompleteMultipartUpload with an empty <ETag/>: the evidence is
        # then the HEAD's ETag, which _check_result compares with ``expected`` (an empty or
        # missing ETag there fails too). An ETag the response does give must match.
        reported = _etag(resp.get("ETag"))
        if reported and reported != expected:
            store.delete(key)
            raise VerificationError(key, "composed ETag", expected, reported)
    unchecked = not all(checked for _done, _md5, checked in completed)
    info = _check_result(store, key, parts, expected, readback=unchecked)
    method = "copy" if all(p.copy for p in pieces) else "mixed"
    return Composed(info=info, etag=info.etag, sha256=None, method=method)


# The part for CompleteMultipartUpload, its MD5 (hex), whether the server's answer proved it.
_Done = tuple[dict[str, Any], str, bool]


class _PartUploader:
    """The parts of one multipart upload, on ``store.max_concurrency`` threads: copies run
    server-side; read-back bytes are cut into parts here (at most ``max_concurrency + 1`` parts
    in memory)."""

    def __init__(self, store: S3ObjectStore, key: str, upload_id: str) -> None:
        self._store = store
        self._key = key
        self._upload_id = upload_id
        self._workers = store.max_concurrency
        self._room = threading.BoundedSemaphore(self._workers + 1)
        self._failed: list[BaseException] = []

    def run(self, pieces: Sequence[Piece]) -> list[_Done]:
        futures: list[concurrent.futures.Future[_Done]] = []
        with concurrent.futures.ThreadPoolExecutor(
            self._workers, thread_name_prefix="compose"
        ) as pool:
            try:
                number = 0
                for piece in pieces:
                    if piece.copy:
                        number += 1
                        futures.append(self._submit(pool, self._copy, number, piece.parts[0]))
                        continue
                    for data in self._read_back(piece.parts):
                        number += 1
                        futures.append(self._submit(pool, self._upload, number, data))
                return [f.result() for f in futures]
            finally:
                for f in futures:
                    f.cancel()

    def _submit(
        self,
        pool: concurrent.futures.ThreadPoolExecutor,
        fn: Callable[[int, Any], _Done],
        number: int,
        arg: Any,
    ) -> "concurrent.futures.Future[_Done]":
        if self._failed:
            raise self._failed[0]
        self._room.acquire()
        future = pool.submit(fn, number, arg)

        def done(f: "concurrent.futures.Future[_Done]") -> None:
            self._room.release()
            if not f.cancelled() and f.exception() is not None:
                self._failed.append(f.exception())  # type: ignore[arg-type]

        future.add_done_callback(done)
        return future

    def _copy(self, number: int, part: Part) -> _Done:
        try:
            resp = self._store.client.upload_part_copy(
                Bucket=self._store.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                CopySource={"Bucket": self._store.bucket, "Key": part.key},
            )
        except _CLIENT_ERRORS as exc:
            op = f"copy of {part.key} as part {number}"
            if _copy_not_supported(exc):
                raise CopyNotSupportedError(
                    f"{op} of {self._store.uri(self._key)}: the server does not support it ({exc})",
                    key=self._key,
                ) from exc
            raise _fail(self._store, exc, op, self._key) from exc
        result: dict[str, Any] = resp["CopyPartResult"]
        checked = _check_copied_part(self._store, part, result)
        return _completed_part(number, result), str(part.md5), checked

    def _upload(self, number: int, data: bytes) -> _Done:
        md5 = hashlib.md5(data)
        try:
            resp = self._store.client.upload_part(
                Bucket=self._store.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=data,
                ContentMD5=base64.b64encode(md5.digest()).decode("ascii"),
                ChecksumAlgorithm="SHA256",
            )
        except _CLIENT_ERRORS as exc:
            raise _fail(self._store, exc, f"upload of part {number}", self._key) from exc
        # The server checked the bytes against Content-MD5; its ETag says so once more when
        # ETags are MD5s (not under SSE-KMS).
        if self._store.etag_is_md5 and _etag(resp.get("ETag")) != md5.hexdigest():
            raise VerificationError(
                self._key, f"uploaded part {number} ETag", md5.hexdigest(), _etag(resp.get("ETag"))
            )
        return _completed_part(number, resp), md5.hexdigest(), True

    def _read_back(self, parts: Sequence[Part]) -> Iterator[bytes]:
        """The sources' bytes cut into upload parts of ``UPLOAD_PART_SIZE`` (the last of the
        run up to 5 MiB more, never under 5 MiB unless the run is), each source checked
        against its size and sha256 as it ends."""
        buffer = bytearray()
        for part in parts:
            sha = hashlib.sha256()
            size = 0
            for chunk in self._store.iter_bytes(part.key, chunk_size=_GET_CHUNK):
                sha.update(chunk)
                size += len(chunk)
                buffer += chunk
                while len(buffer) >= UPLOAD_PART_SIZE + MIN_PART_SIZE:
                    yield bytes(buffer[:UPLOAD_PART_SIZE])
                    del buffer[:UPLOAD_PART_SIZE]
            _check_streamed(part, size, sha.hexdigest())
        if buffer:
            yield bytes(buffer)


def _check_streamed(part: Part, size: int, sha256: str) -> None:
    if size != part.bytes:
        raise VerificationError(part.key, "streamed part size", str(part.bytes), str(size))
    if part.sha256 is not None and sha256 != part.sha256:
        raise VerificationError(part.key, "streamed part sha256", part.sha256, sha256)


def _completed_part(number: int, result: Mapping[str, Any]) -> dict[str, Any]:
    done: dict[str, Any] = {"PartNumber": number, "ETag": result["ETag"]}
    if result.get("ChecksumSHA256"):
        done["ChecksumSHA256"] = result["ChecksumSHA256"]
    return done


def _abort(store: S3ObjectStore, key: str, upload_id: str) -> None:
    # The original error is what the caller must see; an upload left open because the abort
    # failed too is reclaimed by gc's abort of stale multipart uploads.
    with contextlib.suppress(*_CLIENT_ERRORS):
        store.client.abort_multipart_upload(Bucket=store.bucket, Key=key, UploadId=upload_id)


class _PartsReader(io.RawIOBase):
    """The parts' bytes, one streaming GET after another, for s3transfer's non-seekable upload.

    Hashing runs on its own thread, in order, so reading, hashing and the upload threads overlap
    (hashlib releases the GIL): each part's size and sha256 are checked as it ends, and the
    per-part MD5s of the upload give the ETag to expect. A mismatch is raised by the next
    ``read`` and at the latest by the one that would return end-of-stream, so s3transfer never
    completes an upload of unchecked bytes.
    """

    def __init__(self, store: S3ObjectStore, parts: Sequence[Part], upload_part_size: int) -> None:
        super().__init__()
        self._store = store
        self._parts = parts
        self.etag_hasher = PartMD5Hasher(part_size=upload_part_size)
        self._hash_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hash")
        self._hash_room = threading.BoundedSemaphore(_HASH_BACKLOG_CHUNKS)
        self._error: VerificationError | None = None
        self._sha = hashlib.sha256()
        self._part_size = 0
        self._chunks = self._iter_chunks()
        self._rest = b""
        self._ended = False

    def readable(self) -> bool:
        return True

    def _iter_chunks(self) -> Iterator[bytes]:
        for part in self._parts:
            for chunk in self._store.iter_bytes(part.key, chunk_size=_GET_CHUNK):
                self._submit(self._hash_chunk, chunk)
                yield chunk
            self._submit(self._end_part, part)

    def _submit(self, fn: Callable[[Any], None], arg: Any) -> None:
        self._hash_room.acquire()  # bounds the bytes waiting to be hashed
        future = self._hash_pool.submit(fn, arg)
        future.add_done_callback(lambda _f: self._hash_room.release())

    def _hash_chunk(self, chunk: bytes) -> None:
        self._sha.update(chunk)
        self._part_size += len(chunk)
        self.etag_hasher.update(chunk)

    def _end_part(self, part: Part) -> None:
        size, sha = self._part_size, self._sha.hexdigest()
        self._sha, self._part_size = hashlib.sha256(), 0
        if self._error is not None:
            return
        try:
            _check_streamed(part, size, sha)
        except VerificationError as exc:
            self._error = exc

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def read(self, size: int | None = -1) -> bytes:
        self._raise_if_failed()
        want = None if size is None or size < 0 else size
        pieces = [self._rest] if self._rest else []
        have = len(self._rest)
        self._rest = b""
        while want is None or have < want:  # s3transfer takes a short read as the last part
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            pieces.append(chunk)
            have += len(chunk)
        data = b"".join(pieces)
        if want is not None and len(data) > want:
            data, self._rest = data[:want], data[want:]
        if not data or (want is not None and len(data) < want):
            self._finish_hashing()
        return data

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        data = self.read(len(out))
        out[: len(data)] = data
        return len(data)

    def _finish_hashing(self) -> None:
        if not self._ended:
            self._ended = True
            self._hash_pool.shutdown(wait=True)
        self._raise_if_failed()

    def close(self) -> None:
        self._hash_pool.shutdown(wait=True, cancel_futures=True)
        super().close()


def stream_part_size(store: S3ObjectStore, size: int, wanted: int | None = None) -> int:
    """The part size of a streamed upload of ``size`` bytes (≤ 10,000 parts)."""
    base = wanted or max(store.part_size, STREAM_PART_SIZE)
    return int(ChunksizeAdjuster().adjust_chunksize(base, size))


def stream_transfer_config(part_size: int, max_concurrency: int) -> TransferConfig:
    """The transfer-manager settings of a streamed upload with ``part_size`` parts."""
    config = TransferConfig(
        multipart_threshold=part_size,
        multipart_chunksize=part_size,
        max_concurrency=max_concurrency,
    )
    # A stream's parts are read into memory: bound them (s3transfer's default is 10).
    config.max_in_memory_upload_chunks = max_concurrency + 2
    return config


def stream_parts(
    store: S3ObjectStore,
    key: str,
    parts: Sequence[Part],
    *,
    metadata: Mapping[str, str] | None = None,
    content_type: str = "application/x-ndjson",
    max_concurrency: int = STREAM_CONCURRENCY,
    part_size: int | None = None,
) -> Composed:
    """Make ``key`` the concatenation of ``parts`` by streaming them through this process.

    Each part is read with one streaming GET and checked against its size and sha256 as it
    passes; the bytes go straight into a transfer-manager upload (memory ≈ (concurrency + 2)
    parts, no local file). The result's ETag must be the one predicted from the bytes sent.

    Raises:
        VerificationError: a part's bytes in S3 differ from its record, or the result does not
            match (nothing left at ``key``; s3transfer aborts its multipart upload).
        UploadFailedError: any S3 failure.
    """
    size = sum(p.bytes for p in parts)
    part_size = stream_part_size(store, size, part_size)
    meta = {str(k).lower(): str(v) for k, v in (metadata or {}).items()}
    meta["size"] = str(size)
    with _PartsReader(store, parts, part_size) as reader:
        try:
            store.client.upload_fileobj(
                reader,
                store.bucket,
                key,
                ExtraArgs={
                    "Metadata": meta,
                    "ContentType": content_type,
                    **store.encryption_args,
                },
                Config=stream_transfer_config(part_size, max_concurrency),
            )
        except _CLIENT_ERRORS as exc:
            raise _fail(store, exc, "streamed upload", key) from exc
        reader._finish_hashing()
        sent, etag = reader.etag_hasher.size, reader.etag_hasher.etag
    if sent != size:
        store.delete(key)
        raise VerificationError(key, "streamed size", str(size), str(sent))
    # ETags that are not MD5s prove nothing: then the result is read back, source by source.
    md5_etags = store.etag_is_md5
    info = _check_result(store, key, parts, etag if md5_etags else None, readback=not md5_etags)
    return Composed(info=info, etag=info.etag, sha256=None, method="stream")


def copy_object(
    store: S3ObjectStore,
    source_key: str,
    key: str,
    *,
    metadata: Mapping[str, str] | None = None,
    source_etag: str | None = None,
    on_progress: Callable[[int], None] | None = None,
    content_type: str = "application/x-ndjson",
) -> ObjectInfo:
    """Server-side copy of ``source_key`` to ``key`` with boto3's managed copy (one CopyObject
    up to 5 GiB, multipart UploadPartCopy above), with new ``metadata``.

    ``source_etag``: copy only if the source still has this ETag (else PreconditionFailedError
    via the store's translation). Returns the HEAD of the copy, checked for the source's size
    and, up to 5 GiB where ETags are MD5s, for the source's ETag.

    Raises:
        VerificationError: the copy's size or ETag is not the source's.
    """
    config = TransferConfig(
        multipart_threshold=MAX_COPY_OBJECT_SIZE,
        multipart_chunksize=1024**3,
        max_concurrency=store.max_concurrency,
    )
    extra: dict[str, Any] = {
        "MetadataDirective": "REPLACE",
        "Metadata": {str(k).lower(): str(v) for k, v in (metadata or {}).items()},
        "ContentType": content_type,
        **store.encryption_args,
    }
    if source_etag is not None:
        extra["CopySourceIfMatch"] = source_etag
    source = store.head(source_key)
    try:
        store.client.copy(
            {"Bucket": store.bucket, "Key": source_key},
            store.bucket,
            key,
            ExtraArgs=extra,
            Config=config,
            Callback=on_progress,
        )
    except _CLIENT_ERRORS as exc:
        raise _fail(store, exc, f"copy of {source_key}", key) from exc
    info = store.head(key)
    if info.size != source.size:
        raise VerificationError(key, "copied size", str(source.size), str(info.size))
    if store.etag_is_md5 and source.size <= MAX_COPY_OBJECT_SIZE and info.etag != source.etag:
        # One CopyObject keeps the source's ETag (measured on SeaweedFS 4.48 and Ceph RGW 16,
        # multipart sources included): the HEAD of the copy must show it. Above 5 GiB the
        # managed copy re-parts the object and only the size is compared.
        raise VerificationError(key, "copied ETag (HEAD)", source.etag, info.etag)
    store.check_encrypted(info)
    return info
