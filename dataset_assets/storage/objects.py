"""S3ObjectStore: the one place that talks to S3 (boto3), with errors translated once.

Every botocore / s3transfer / socket error is turned into the typed tree of
:mod:`dataset_assets.core.errors` here, so no caller ever sees a botocore exception.
"""

import base64
import contextlib
import hashlib
import http.client
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal, NoReturn

import boto3
import boto3.exceptions
import botocore.config
import botocore.exceptions
import urllib3.exceptions
from boto3.s3.transfer import TransferConfig
from s3transfer.utils import ChunksizeAdjuster

from dataset_assets.core.errors import (
    ObjectNotFoundError,
    PreconditionFailedError,
    StorageError,
    UploadFailedError,
)
from dataset_assets.core.hashing import DEFAULT_PART_SIZE, Digest
from dataset_assets.core.layout import s3_uri
from dataset_assets.storage.settings import S3Settings

MIN_PART_SIZE = 5 * 1024 * 1024
# Where the encryption probe of ensure_bucket writes (and deletes) its one small object.
SSE_PROBE_PREFIX = "_dataset_assets/sse-probe-"
Evidence = Literal["checksum_sha256", "etag_md5", "readback"]
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
_PRECONDITION_CODES = frozenset({"412", "PreconditionFailed"})
# Errors raised while a response body is being read, or before any response arrives.
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    botocore.exceptions.BotoCoreError,
    OSError,
    # bodies are read from urllib3 directly (read deadlines): its errors are transport errors
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
)


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows about one object.

    Attributes:
        key: object key.
        size: bytes.
        etag: ETag without quotes (MD5 for single-part, ``md5-of-md5s-N`` for multipart on
            AWS-compatible servers).
        sha256: the ``x-amz-meta-sha256`` we stored at upload time (None when absent or from a
            listing, which does not return metadata).
        checksum_sha256: the server's own ``ChecksumSHA256`` when it returned one (base64;
            ``…-N`` for multipart composites). Ceph RGW 16 never returns one.
        last_modified: server timestamp when known.
        metadata: user metadata (lower-case keys, without the ``x-amz-meta-`` prefix).
        server_side_encryption: the ``x-amz-server-side-encryption`` the server reported
            (``AES256``, ``aws:kms``), None when it reported none (or from a listing).
        sse_kms_key_id: the KMS key the server reported for ``aws:kms``.
    """

    key: str
    size: int
    etag: str
    sha256: str | None = None
    checksum_sha256: str | None = None
    last_modified: datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    server_side_encryption: str | None = None
    sse_kms_key_id: str | None = None


class EncryptionNotAppliedError(UploadFailedError):
    """The store asked for server-side encryption and the server did not apply it (Ceph RGW 16
    without an SSE-S3 backend accepts ``x-amz-server-side-encryption: AES256`` and stores the
    bytes in plain text), so the write is refused instead of leaving a silent plaintext copy."""


@dataclass(frozen=True)
class MultipartUpload:
    """An incomplete multipart upload (parts stored, never completed or aborted)."""

    key: str
    upload_id: str
    initiated: datetime | None


def _error_code(exc: botocore.exceptions.ClientError) -> str:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if not code and status is not None:
        code = str(status)
    return code


def _status(exc: botocore.exceptions.ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def translate_error(exc: BaseException, *, op: str, uri: str, key: str | None) -> StorageError:
    """Map a botocore/s3transfer/socket error to the typed tree (the one translation point)."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        code = _error_code(exc)
        status = _status(exc)
        if code in _NOT_FOUND_CODES or status == 404:
            return ObjectNotFoundError(f"{op}: {uri} does not exist ({code})", key=key)
        if code in _PRECONDITION_CODES or status == 412:
            return PreconditionFailedError(
                f"{op}: conditional write to {uri} rejected ({code})", key=key
            )
        return StorageError(f"{op} {uri} failed: {code} (HTTP {status}): {exc}", key=key)
    return StorageError(f"{op} {uri} failed: {type(exc).__name__}: {exc}", key=key)


def _strip_etag(etag: Any) -> str:
    return str(etag or "").strip('"')


MIN_READ_BYTES_PER_S = 64 * 1024
"""A body slower than this (after ``read_timeout`` of grace) is given up: a server trickling a
byte at a time resets the socket read timeout with every byte and would otherwise hold a read
for hours."""


def _body_chunks(
    body: Any, *, uri: str, key: str, read_timeout: float, chunk_size: int = 1 << 20
) -> Iterator[bytes]:
    """A GET body's bytes, under a deadline of ``read_timeout + length / MIN_READ_BYTES_PER_S``
    and checked against its Content-Length (StorageError on either)."""
    raw = getattr(body, "_raw_stream", None)  # urllib3's response: read1 returns what arrived
    read1 = getattr(raw, "read1", None)
    if read1 is None:  # not urllib3 (another transport): botocore's own reads
        yield from body.iter_chunks(chunk_size)
        return
    expected = getattr(body, "_content_length", None)
    length = int(expected) if expected is not None else 0
    deadline = time.monotonic() + read_timeout + length / MIN_READ_BYTES_PER_S
    # A response checksum (botocore's StreamingChecksumBody) is fed and validated here, since
    # the bytes bypass botocore's reads.
    checksum = getattr(body, "checksum", None)
    got = 0
    try:
        while True:
            chunk = read1(chunk_size)
            if not chunk:
                break
            got += len(chunk)
            if checksum is not None:
                checksum.update(chunk)
            yield chunk
            if time.monotonic() > deadline:
                raise StorageError(
                    f"get {uri} gave up: {got} of {length} bytes after the read deadline "
                    f"({read_timeout} s + {MIN_READ_BYTES_PER_S} B/s)",
                    key=key,
                )
    finally:
        body.close()
    if expected is not None and got != length:
        raise StorageError(f"get {uri}: {got} bytes received, Content-Length {length}", key=key)
    if checksum is not None:
        body._validate_checksum()  # FlexibleChecksumError (a BotoCoreError) on a mismatch


def sha256_b64(sha256_hex: str) -> str:
    """The base64 form S3 uses for ``ChecksumSHA256`` of a hex sha256."""
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")


def _sse_of(resp: Mapping[str, Any]) -> tuple[str | None, str | None]:
    sse = resp.get("ServerSideEncryption")
    key_id = resp.get("SSEKMSKeyId")
    return (str(sse) if sse else None, str(key_id) if key_id else None)


class S3ObjectStore:
    """One bucket on an S3 or S3-compatible server.

    A single boto3 client is created lazily and shared by all threads (boto3 clients are
    thread-safe; sessions are not, so the session is used once, under a lock).

    Uploads use ``multipart_threshold == multipart_chunksize == part_size`` so the ETag the
    server computes is the one :mod:`dataset_assets.core.hashing` predicts while writing.

    Server-side encryption (``settings.server_side_encryption``) is requested on every write
    the store makes (``put_bytes``, ``upload_file``, ``upload_fileobj``, ``copy``; other
    modules add :attr:`encryption_args` to their own write calls) and checked on the answer:
    a write the server stored without it raises :class:`EncryptionNotAppliedError`.

    Args:
        bucket: bucket name.
        settings: connection settings.
        part_size: multipart part size (≥ 5 MiB, the S3 minimum).
        max_concurrency: transfer-manager threads per upload/download.
    """

    def __init__(
        self,
        bucket: str,
        settings: S3Settings = S3Settings(),  # noqa: B008 - frozen dataclass, immutable default
        *,
        part_size: int = DEFAULT_PART_SIZE,
        max_concurrency: int = 4,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be ≥ {MIN_PART_SIZE} (5 MiB), got {part_size}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be ≥ 1, got {max_concurrency}")
        self.bucket = bucket
        self.settings = settings
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.transfer_config = TransferConfig(
            multipart_threshold=part_size,
            multipart_chunksize=part_size,
            max_concurrency=max_concurrency,
        )
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3ObjectStore(bucket={self.bucket!r}, endpoint={self.settings.endpoint_url!r})"

    # -- client ---------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The shared boto3 S3 client (created on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        s = self.settings
        session = boto3.session.Session(
            aws_access_key_id=s.access_key_id,
            aws_secret_access_key=s.secret_access_key,
            region_name=s.region,
            profile_name=s.profile,
        )
        config = botocore.config.Config(
            s3={"addressing_style": s.effective_addressing_style},
            retries={"mode": "standard", "max_attempts": s.max_attempts},
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            request_checksum_calculation=s.request_checksum_calculation,
            response_checksum_validation=s.response_checksum_validation,
            # a build publishes several files at once from one client (stage 1: one
            # publish per worker, each up to 3 files x max_concurrency transfer threads)
            max_pool_connections=max(10, self.max_concurrency * 8),
        )
        return session.client("s3", endpoint_url=s.endpoint_url, config=config)

    def _fail(self, exc: BaseException, op: str, key: str | None) -> NoReturn:
        raise translate_error(exc, op=op, uri=self.uri(key or ""), key=key) from exc

    # -- queries --------------------------------------------------------------------------------

    def uri(self, key: str) -> str:
        """``s3://bucket/key``."""
        return s3_uri(self.bucket, key)

    def upload_part_size(self, size: int) -> int:
        """The part size s3transfer will really use for a file of ``size`` bytes.

        s3transfer raises the chunk size when a file would need more than 10,000 parts; the
        expected ETag must then be recomputed with that size.
        """
        return int(ChunksizeAdjuster().adjust_chunksize(self.part_size, size))

    # -- encryption and verification evidence --------------------------------------------------

    @property
    def encryption_args(self) -> dict[str, str]:
        """SSE arguments for a write call (``ServerSideEncryption``, ``SSEKMSKeyId``); empty
        without encryption. Code that writes through :attr:`client` itself (composed exports)
        adds them to ``create_multipart_upload``, ``copy_object`` and transfer ``ExtraArgs``."""
        return self.settings.encryption_args

    @property
    def etag_is_md5(self) -> bool:
        """Whether ETags can be checked against locally computed MD5s (False under SSE-KMS
        unless ``settings.etag_is_md5`` says otherwise)."""
        return self.settings.etag_is_content_md5

    def evidence(self, info: ObjectInfo) -> Evidence:
        """What proves ``info``'s bytes are the local ones, strongest first: the server's
        whole-object ``ChecksumSHA256``; else the ETag when it is an MD5; else only reading the
        object back (Ceph RGW 16 returns no checksum, AWS SSE-KMS ETags are not MD5s)."""
        if info.checksum_sha256 and "-" not in info.checksum_sha256:
            return "checksum_sha256"
        if self.etag_is_md5:
            return "etag_md5"
        return "readback"

    def encryption_mismatch(self, info: ObjectInfo) -> str | None:
        """Why ``info`` is not encrypted as configured; None when it is (or none is asked)."""
        want = self.settings.server_side_encryption
        if want is None or info.server_side_encryption == want:
            return None
        return (
            f"{self.uri(info.key)} is stored with server-side encryption "
            f"{info.server_side_encryption or 'none'}, {want} was requested: the server "
            "ignored or does not support it"
        )

    def check_encrypted(self, info: ObjectInfo) -> None:
        """Raise EncryptionNotAppliedError when ``info`` lacks the configured encryption."""
        problem = self.encryption_mismatch(info)
        if problem is not None:
            raise EncryptionNotAppliedError(
                f"{problem}; refusing to keep writing (enable SSE on the server, or unset "
                "DATASET_ASSETS_SSE to write unencrypted)",
                key=info.key,
            )

    def _check_written(self, key: str) -> None:
        # The transfer manager returns no response: ask the object itself.
        if self.settings.server_side_encryption is not None:
            self.check_encrypted(self.head(key))

    def _ensure_bucket_exists(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except botocore.exceptions.ClientError as exc:
            if _status(exc) != 404 and _error_code(exc) not in _NOT_FOUND_CODES:
                self._fail(exc, "head_bucket", None)
        except _TRANSPORT_ERRORS as exc:
            self._fail(exc, "head_bucket", None)
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        region = self.client.meta.region_name
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**kwargs)
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                self._fail(exc, "create_bucket", None)
        except _TRANSPORT_ERRORS as exc:
            self._fail(exc, "create_bucket", None)

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (an already-owned bucket is fine); with
        server-side encryption configured, prove the server applies it
        (:meth:`check_encryption`) before anything else is written."""
        self._ensure_bucket_exists()
        if self.settings.server_side_encryption is not None:
            self.check_encryption()

    def check_encryption(self) -> None:
        """Write, HEAD and delete one small probe object with the configured encryption.

        Raises:
            EncryptionNotAppliedError: the server stored the probe without that encryption.
            StorageError: the server rejected the encrypted write (e.g. Ceph RGW without
                ``rgw crypt require ssl = false`` over plain HTTP, or an unknown KMS key).
        """
        key = f"{SSE_PROBE_PREFIX}{uuid.uuid4().hex}"
        try:
            self.put_bytes(key, b"server-side encryption probe\n")
            self.check_encrypted(self.head(key))
        except StorageError:
            with contextlib.suppress(StorageError):  # the probe's error is the one to report
                self.delete(key)
            raise
        self.delete(key)

    def head(self, key: str) -> ObjectInfo:
        """Metadata of ``key``; raises ObjectNotFoundError when it does not exist."""
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except (botocore.exceptions.ClientError, *_TRANSPORT_ERRORS) as exc:
            self._fail(exc, "head", key)
        metadata = {str(k).lower(): str(v) for k, v in (resp.get("Metadata") or {}).items()}
        sse, kms_key = _sse_of(resp)
        return ObjectInfo(
            key=key,
            size=int(resp["ContentLength"]),
            etag=_strip_etag(resp.get("ETag")),
            sha256=metadata.get("sha256"),
            checksum_sha256=resp.get("ChecksumSHA256"),
            last_modified=resp.get("LastModified"),
            metadata=metadata,
            server_side_encryption=sse,
            sse_kms_key_id=kms_key,
        )

    def read(self, key: str) -> tuple[bytes, ObjectInfo]:
        """The whole object and its ETag / LastModified from one GET, so the bytes and the ETag
        belong to the same version (a HEAD then a GET could straddle a replacement)."""
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
            data = b"".join(self._body(resp["Body"], key))
        except (botocore.exceptions.ClientError, *_TRANSPORT_ERRORS) as exc:
            self._fail(exc, "get", key)
        metadata = {str(k).lower(): str(v) for k, v in (resp.get("Metadata") or {}).items()}
        sse, kms_key = _sse_of(resp)
        info = ObjectInfo(
            key=key,
            size=len(data),
            etag=_strip_etag(resp.get("ETag")),
            sha256=metadata.get("sha256"),
            last_modified=resp.get("LastModified"),
            metadata=metadata,
            server_side_encryption=sse,
            sse_kms_key_id=kms_key,
        )
        return data, info

    def exists(self, key: str) -> bool:
        """True when ``key`` exists."""
        try:
            self.head(key)
        except ObjectNotFoundError:
            return False
        return True

    def list(self, prefix: str, *, page_size: int = 1000) -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` in key order, fetched ``page_size`` keys per request
        (``sha256`` is None: listings carry no metadata)."""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(
                Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
            ):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        key=str(item["Key"]),
                        size=int(item["Size"]),
                        etag=_strip_etag(item.get("ETag")),
                        last_modified=item.get("LastModified"),
                    )
        except (botocore.exceptions.ClientError, *_TRANSPORT_ERRORS) as exc:
            self._fail(exc, "list", prefix)

    def list_multipart_uploads(self, prefix: str) -> Iterator[MultipartUpload]:
        """Every incomplete multipart upload whose key starts with ``prefix``."""
        paginator = self.client.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Uploads", []):
                    yield MultipartUpload(
                        key=str(item["Key"]),
                        upload_id=str(item["UploadId"]),
                        initiated=item.get("Initiated"),
                    )
        except (botocore.exceptions.ClientError, *_TRANSPORT_ERRORS) as exc:
            self._fail(exc, "list_multipart_uploads", prefix)

    # -- writes ---------------------------------------------------------------------------------

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        """Write a small object in one PUT, with sha256 metadata, a SHA256 checksum and
        Content-MD5 (the one integrity check Ceph RGW 16 performs).

        Args:
            if_none_match: only create (``If-None-Match: *``); 412 → PreconditionFailedError.
            if_match: only replace the object whose ETag is this (quotes optional); a different
                or missing object → PreconditionFailedError.

        Conditional writes: SeaweedFS 4.48 and Ceph RGW 16.2 both honour ``If-None-Match: *``
        and ``If-Match`` on PUT (see the contract tests); Ceph only matches an unquoted ETag in
        ``If-Match``, so after a 412 on the quoted form the PUT is retried once unquoted. A
        server without support would ignore the header and overwrite: callers relying on it
        must run the contract suite against that server.
        """
        sha_hex = hashlib.sha256(data).hexdigest()
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": data,
            "ContentType": content_type,
            "ContentMD5": base64.b64encode(hashlib.md5(data).digest()).decode("ascii"),
            "Metadata": {"sha256": sha_hex, "size": str(len(data))},
            "ChecksumAlgorithm": "SHA256",
            **self.encryption_args,
        }
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match is not None:
            kwargs["IfMatch"] = f'"{if_match.strip(chr(34))}"'
        try:
            try:
                resp = self.client.put_object(**kwargs)
            except botocore.exceptions.ClientError as exc:
                if if_match is None or _status(exc) != 412:
                    raise
                # Ceph RGW 16 compares If-Match literally with the unquoted ETag, so the RFC
                # form ("etag") never matches there; retrying unquoted keeps the same atomic
                # condition (a real mismatch fails again with 412).
                kwargs["IfMatch"] = if_match.strip('"')
                resp = self.client.put_object(**kwargs)
        except (botocore.exceptions.ClientError, *_TRANSPORT_ERRORS) as exc:
            self._fail(exc, "put", key)
        sse, kms_key = _sse_of(resp)
        info = ObjectInfo(
            key=key,
            size=len(data),
            etag=_strip_etag(resp.get("ETag")),
            sha256=sha_hex,
            checksum_sha256=resp.get("ChecksumSHA256"),
            metadata={"sha256": sha_hex, "size": str(len(data))},
            server_side_encryption=sse,
            sse_kms_key_id=kms_key,
        )
        self.check_encrypted(info)
        return info

    def upload_file(
        self,
        path: Path,
        key: str,
        digest: Digest,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Upload ``path`` with boto3's transfer manager (multipart above ``part_size``).

        The object carries ``sha256`` and ``size`` metadata from ``digest`` and a SHA256
        checksum the server validates where it supports one (SeaweedFS does, Ceph RGW 16
        ignores it: the publisher's ETag comparison covers that). Any failure raises
        UploadFailedError naming the key and the cause; the local file is never touched.
        """
        meta = {str(k).lower(): str(v) for k, v in (metadata or {}).items()}
        meta.update({"sha256": digest.sha256, "size": str(digest.size)})
        extra = {"Metadata": meta, "ChecksumAlgorithm": "SHA256", **self.encryption_args}
        try:
            self.client.upload_file(
                str(path), self.bucket, key, ExtraArgs=extra, Config=self.transfer_config
            )
        except (
            boto3.exceptions.S3UploadFailedError,
            botocore.exceptions.ClientError,
            *_TRANSPORT_ERRORS,
        ) as exc:
            cause = exc.__cause__ or exc.__context__ or exc
            raise UploadFailedError(
                f"upload of {path} to {self.uri(key)} failed: {type(exc).__name__}: {exc}"
                + (f" (cause: {type(cause).__name__})" if cause is not exc else ""),
                key=key,
            ) from exc
        self._check_written(key)

    def upload_fileobj(
        self,
        stream: BinaryIO,
        key: str,
        digest: Digest,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Upload a readable (possibly non-seekable) stream with the transfer manager.

        The part size is ``digest.part_size`` (s3transfer cannot adapt it to an unknown stream
        size), so the ETag matches the one ``digest`` predicts. Failures raise
        UploadFailedError.
        """
        meta = {str(k).lower(): str(v) for k, v in (metadata or {}).items()}
        meta.update({"sha256": digest.sha256, "size": str(digest.size)})
        config = TransferConfig(
            multipart_threshold=digest.part_size,
            multipart_chunksize=digest.part_size,
            max_concurrency=self.transfer_config.max_concurrency,
        )
        extra = {"Metadata": meta, **self.encryption_args}
        try:
            self.client.upload_fileobj(stream, self.bucket, key, ExtraArgs=extra, Config=config)
        except (
            boto3.exceptions.S3UploadFailedError,
            botocore.exceptions.ClientError,
            *_TRANSPORT_ERRORS,
        ) as exc:
            raise UploadFailedError(
                f"streamed upload to {self.uri(key)} failed: {type(exc).__name__}: {exc}", key=key
            ) from exc
        self._check_written(key)

    def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        """Abort an incomplete multipart upload (its stored parts are freed); an upload that is
        already gone is not an error."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) != "NoSuchUpload" and _status(exc) != 404:
                self._fail(exc, "abort_multipart_upload", key)
        except _TRANSPORT_ERRORS as exc:
            self._fail(exc, "abort_multipart_upload", key)

    def copy(self, source_key: str, dest_key: str, *, source_etag: str | None = None) -> ObjectInfo:
        """Server-side copy of ``source_key`` to ``dest_key`` with boto3's managed copy
        (multipart ``UploadPartCopy`` above ``part_size``, so objects over the 5 GB single-copy
        limit work), keeping the source's user metadata (``sha256``, ``size``).

        Args:
            source_etag: copy only if the source still has this ETag (``CopySourceIfMatch``);
                otherwise PreconditionFailedError and nothing is written.

        Returns the destination's HEAD. The destination ETag can differ from the source's
        (its part layout is the copy's), so compare ``sha256`` / ``size``, not ETags.
        """
        source = self.head(source_key)
        if source_etag is not None and source.etag != source_etag.strip('"'):
            raise PreconditionFailedError(
                f"copy: {self.uri(source_key)} has ETag {source.etag}, expected {source_etag}",
                key=source_key,
            )
        extra: dict[str, Any] = {
            "Metadata": source.metadata,
            "MetadataDirective": "REPLACE",
            **self.encryption_args,
        }
        if source_etag is not None:
            extra["CopySourceIfMatch"] = source.etag
        try:
            self.client.copy(
                {"Bucket": self.bucket, "Key": source_key},
                self.bucket,
                dest_key,
                ExtraArgs=extra,
                Config=self.transfer_config,
            )
        except (botocore.exceptions.ClientError, *_TRANSPORT_ERRORS) as exc:
            self._fail(exc, "copy", dest_key)
        info = self.head(dest_key)
        self.check_encrypted(info)
        return info

    def delete(self, key: str) -> None:
        """Delete ``key`` (deleting a missing key is not an error, as in S3)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (botocore.exceptions.ClientError, *_TRANSPORT_ERRORS) as exc:
            self._fail(exc, "delete", key)

    # -- reads ----------------------------------------------------------------------------------

    def _body(self, body: Any, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        return _body_chunks(
            body,
            uri=self.uri(key),
            key=key,
            read_timeout=self.settings.read_timeout,
            chunk_size=chunk_size,
        )

    def get_bytes(self, key: str) -> bytes:
        """The whole object in memory (for small objects: manifests, pointers)."""
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
            return b"".join(self._body(resp["Body"], key))
        except (botocore.exceptions.ClientError, *_TRANSPORT_ERRORS) as exc:
            self._fail(exc, "get", key)

    def iter_bytes(
        self,
        key: str,
        start: int = 0,
        end: int | None = None,
        chunk_size: int = 1024 * 1024,
    ) -> Iterator[bytes]:
        """Stream bytes ``[start, end)`` of ``key`` (``end`` exclusive, None = to the end) with
        one ranged GET.

        A dropped connection or short read raises StorageError (never a botocore error); the
        caller can resume with ``start`` advanced by the bytes it already received.
        """
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid byte range start={start} end={end}")
        if end is not None and end == start:
            return
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
        try:
            resp = self.client.get_object(**kwargs)
            yield from self._body(resp["Body"], key, chunk_size)
        except (botocore.exceptions.ClientError, *_TRANSPORT_ERRORS) as exc:
            self._fail(exc, "get", key)

    def download_file(self, key: str, path: Path) -> None:
        """Download ``key`` to ``path`` through a temporary name renamed at the end."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        try:
            self.client.download_file(self.bucket, key, str(tmp), Config=self.transfer_config)
            os.replace(tmp, path)
        except (botocore.exceptions.ClientError, *_TRANSPORT_ERRORS) as exc:
            tmp.unlink(missing_ok=True)
            self._fail(exc, "download", key)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
