"""The publish protocol (docs/architecture.md, "Publish protocol"): upload → verify → delete
local, bounded and journaled.

``Publisher.publish`` handles one staged file synchronously; ``submit`` runs it on a small pool
and blocks the writer while ``max_in_flight`` publishes are pending, so local staged bytes never
exceed ``(max_in_flight + 1) × file size``.

Verification never trusts "no checksum returned". The evidence (``S3ObjectStore.evidence``,
recorded in the journal's verify entry) is, strongest first: the server's whole-object
``ChecksumSHA256``; the server-computed ETag (MD5 / md5-of-md5s-N, recomputed locally from the
same part size) when the store's ETags are MD5s (not under SSE-KMS on AWS); otherwise a full
streamed sha256 of the stored bytes. ``verify="readback"`` always adds the streamed sha256.
Size, the sha256 metadata and the configured server-side encryption are always checked.
"""

import concurrent.futures
import hashlib
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from dataset_assets.core.errors import (
    ObjectNotFoundError,
    StorageError,
    UploadFailedError,
    VerificationError,
)
from dataset_assets.core.hashing import Digest, digest_file
from dataset_assets.core.staged import StagedFile, StreamedFile
from dataset_assets.storage.journal import Journal, Outcome, Step
from dataset_assets.storage.objects import ObjectInfo, S3ObjectStore, sha256_b64

VerifyMode = Literal["head", "readback"]
Publishable = StagedFile | StreamedFile


@dataclass(frozen=True)
class PublishedObject:
    """A verified object in S3. ``uploaded`` is False when the key already held identical
    bytes (content-addressed rerun) and nothing was sent."""

    key: str
    uri: str
    size: int
    sha256: str
    etag: str
    records: int
    families: dict[str, int] = field(default_factory=dict)
    uploaded: bool = True
    md5: str | None = None
    """Whole-file MD5 computed while the file was written (evidence for a later part copy)."""


class PublishError(StorageError):
    """One or more publishes failed; ``failures`` lists every one (in submit order)."""

    def __init__(self, failures: list[StorageError]) -> None:
        lines = "\n".join(f"  - {f}" for f in failures)
        super().__init__(f"{len(failures)} publish(es) failed:\n{lines}")
        self.failures = failures


@dataclass(frozen=True)
class Mismatch:
    field: str
    expected: str
    actual: str


def expected_etag(digest: Digest, part_size: int) -> str:
    """The ETag the server computes for an upload of ``digest.size`` bytes in ``part_size`` parts.

    ``digest`` must have been computed with the same part size (``core.hashing`` already
    predicts s3transfer's single-part / multipart choice).
    """
    if digest.part_size != part_size:
        raise ValueError(f"digest part size {digest.part_size} != upload part size {part_size}")
    return digest.etag


def compare_head(
    info: ObjectInfo, digest: Digest, part_size: int, *, etag_is_md5: bool = True
) -> list[Mismatch]:
    """Every way ``info`` (a HEAD) disagrees with ``digest``; empty means verified.

    Size and our sha256 metadata are always compared; the server's ChecksumSHA256 when it
    returned a whole-object one; the ETag only when ``etag_is_md5`` (an SSE-KMS ETag on AWS is
    not an MD5 of the bytes, so comparing it proves nothing).
    """
    out: list[Mismatch] = []
    if info.size != digest.size:
        out.append(Mismatch("size", str(digest.size), str(info.size)))
    if info.sha256 != digest.sha256:
        out.append(Mismatch("sha256 metadata", digest.sha256, str(info.sha256)))
    if info.checksum_sha256 and "-" not in info.checksum_sha256:
        want = sha256_b64(digest.sha256)
        if info.checksum_sha256 != want:
            out.append(Mismatch("ChecksumSHA256", want, info.checksum_sha256))
    if etag_is_md5:
        want_etag = expected_etag(digest, part_size)
        if info.etag != want_etag:
            out.append(Mismatch("etag", want_etag, info.etag))
    return out


class Publisher:
    """Publish staged files to one store, following the publish protocol (docs/architecture.md).

    Args:
        store: the object store.
        max_in_flight: K, the publishes allowed to be pending at once (``submit`` blocks beyond).
        verify: ``head`` (size, sha256 metadata, ETag, ChecksumSHA256 if returned) or
            ``readback`` (head plus streaming the object back and hashing it).
        journal: audit log; every step appends an entry.
    """

    def __init__(
        self,
        store: S3ObjectStore,
        *,
        max_in_flight: int = 2,
        verify: VerifyMode = "head",
        journal: Journal | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be ≥ 1, got {max_in_flight}")
        if verify not in ("head", "readback"):
            raise ValueError(f"verify must be 'head' or 'readback', got {verify!r}")
        self.store = store
        self.max_in_flight = max_in_flight
        self.verify_mode: VerifyMode = verify
        self.journal = journal
        self.in_flight_bytes = 0
        self.peak_staged_bytes = 0
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_in_flight, thread_name_prefix="publish"
        )
        self._pending: list[tuple[StagedFile, concurrent.futures.Future[PublishedObject]]] = []

    # -- journal --------------------------------------------------------------------------------

    def _log(self, staged: Publishable, step: Step, outcome: Outcome, detail: str = "") -> None:
        if self.journal is not None:
            self.journal.record(
                key=staged.key,
                step=step,
                outcome=outcome,
                size=staged.digest.size,
                sha256=staged.digest.sha256,
                detail=detail,
            )

    # -- one file -------------------------------------------------------------------------------

    def publish(self, staged: StagedFile, *, overwrite: bool = False) -> PublishedObject:
        """Upload, verify, then delete the local file (unless ``keep_local``).

        If the key already holds identical bytes nothing is uploaded (``uploaded=False``). If it
        holds different bytes, VerificationError is raised (keys are immutable) unless
        ``overwrite=True``. On any failure the local file is kept, the journal records why, and
        UploadFailedError / VerificationError is raised.
        """
        try:
            digest = self._digest_for_upload(staged)
            self._log(staged, "stage", "ok", str(staged.path))
            already = self._already_published(staged, digest, overwrite=overwrite)
            if already is not None:
                self._delete_local(staged)
                return already
            self._upload(staged, digest)
            info = self._verify(staged, digest)
            self._delete_local(staged)
            return self._result(staged, info, uploaded=True)
        except StorageError:
            raise
        except OSError as exc:
            self._log(staged, "stage", "failed", f"{type(exc).__name__}: {exc}")
            raise UploadFailedError(
                f"publish of {staged.path} to {self.store.uri(staged.key)} failed: {exc}",
                key=staged.key,
            ) from exc

    def verify(self, staged: StagedFile) -> ObjectInfo:
        """Check the object under ``staged.key`` against ``staged.digest`` (this publisher's
        verify mode) without uploading or deleting anything; raises VerificationError."""
        return self._verify(staged, self._digest_for_upload(staged))

    def publish_stream(self, streamed: StreamedFile, *, overwrite: bool = False) -> PublishedObject:
        """Publish a file from a re-openable stream (the export): no local copy is staged.

        ``streamed.digest`` must have been computed with the part size s3transfer will use
        (``store.upload_part_size(size)``); the stream is uploaded with that part size, then
        verified exactly like a staged file. Identical bytes already under the key: no upload;
        different bytes: VerificationError unless ``overwrite``.
        """
        digest = streamed.digest
        expected_part = self.store.upload_part_size(digest.size)
        if digest.part_size != expected_part:
            raise ValueError(
                f"digest of {streamed.key} uses part size {digest.part_size}, "
                f"the upload needs {expected_part}"
            )
        already = self._already_published(streamed, digest, overwrite=overwrite)
        if already is not None:
            return already
        try:
            with streamed.open() as stream:
                self.store.upload_fileobj(stream, streamed.key, digest)
        except StorageError as exc:
            self._log(streamed, "upload", "failed", str(exc))
            if isinstance(exc, UploadFailedError):
                raise
            raise UploadFailedError(str(exc), key=streamed.key) from exc
        self._log(streamed, "upload", "ok", "streamed")
        info = self._verify(streamed, digest)
        return self._result(streamed, info, uploaded=True)

    def _already_published(
        self, item: Publishable, digest: Digest, *, overwrite: bool
    ) -> PublishedObject | None:
        """The verified existing object when the key already holds these bytes; None when the
        key is free (or may be overwritten); VerificationError when it holds other bytes."""
        existing = self._existing(item)
        if existing is None:
            return None
        try:
            mismatches = self._check(item, existing, digest)
        except StorageError as exc:
            self._log(item, "skip", "failed", f"reading existing object: {exc}")
            raise VerificationError(
                item.key, "existing object", "readable object", str(exc)
            ) from exc
        if not mismatches:
            self._log(item, "skip", "ok", "identical object already published")
            return self._result(item, existing, uploaded=False)
        if overwrite:
            return None
        first = mismatches[0]
        self._log(
            item,
            "skip",
            "failed",
            f"key exists with different bytes; refusing to overwrite "
            f"({first.field}: expected {first.expected}, got {first.actual})",
        )
        raise VerificationError(item.key, first.field, first.expected, first.actual)

    def _digest_for_upload(self, staged: StagedFile) -> Digest:
        """The staged digest, re-hashed only if s3transfer will use another part size."""
        part_size = self.store.upload_part_size(staged.digest.size)
        if staged.digest.part_size == part_size:
            return staged.digest
        digest = digest_file(staged.path, part_size)
        if digest.sha256 != staged.digest.sha256 or digest.size != staged.digest.size:
            self._log(staged, "stage", "failed", "local file changed since it was staged")
            raise VerificationError(staged.key, "local sha256", staged.digest.sha256, digest.sha256)
        return digest

    def _existing(self, staged: Publishable) -> ObjectInfo | None:
        try:
            return self.store.head(staged.key)
        except ObjectNotFoundError:
            return None
        except StorageError as exc:
            self._log(staged, "upload", "failed", f"existence check failed: {exc}")
            raise UploadFailedError(
                f"publish to {self.store.uri(staged.key)} failed before upload: {exc}",
                key=staged.key,
            ) from exc

    def _evidence(self, info: ObjectInfo) -> str:
        return "readback" if self.verify_mode == "readback" else self.store.evidence(info)

    def _check(self, staged: Publishable, info: ObjectInfo, digest: Digest) -> list[Mismatch]:
        mismatches = compare_head(
            info,
            digest,
            self.store.upload_part_size(digest.size),
            etag_is_md5=self.store.etag_is_md5,
        )
        if self.store.encryption_mismatch(info) is not None:
            mismatches.append(
                Mismatch(
                    "ServerSideEncryption",
                    str(self.store.settings.server_side_encryption),
                    info.server_side_encryption or "none",
                )
            )
        only_etag = bool(mismatches) and all(m.field == "etag" for m in mismatches)
        if only_etag or self._evidence(info) == "readback":
            # An ETag from another part size is not proof of difference: hash the bytes.
            actual = self._readback_sha256(staged.key)
            if actual != digest.sha256:
                mismatches.append(Mismatch("readback sha256", digest.sha256, actual))
            elif only_etag:
                mismatches = []
        return mismatches

    def _readback_sha256(self, key: str) -> str:
        sha = hashlib.sha256()
        for chunk in self.store.iter_bytes(key):
            sha.update(chunk)
        return sha.hexdigest()

    def _upload(self, staged: StagedFile, digest: Digest) -> None:
        try:
            self.store.upload_file(staged.path, staged.key, digest)
        except StorageError as exc:
            self._log(staged, "upload", "failed", str(exc))
            if isinstance(exc, UploadFailedError):
                raise
            raise UploadFailedError(str(exc), key=staged.key) from exc
        self._log(staged, "upload", "ok")

    def _verify(self, staged: Publishable, digest: Digest) -> ObjectInfo:
        try:
            info = self.store.head(staged.key)
            mismatches = self._check(staged, info, digest)
        except StorageError as exc:
            self._log(staged, "verify", "failed", str(exc))
            raise VerificationError(staged.key, "object", "readable object", str(exc)) from exc
        if mismatches:
            detail = "; ".join(
                f"{m.field}: expected {m.expected}, got {m.actual}" for m in mismatches
            )
            self._log(staged, "verify", "failed", detail)
            first = mismatches[0]
            raise VerificationError(staged.key, first.field, first.expected, first.actual)
        self._log(
            staged,
            "verify",
            "ok",
            f"etag {info.etag}; mode {self.verify_mode}; evidence {self._evidence(info)}",
        )
        return info

    def _delete_local(self, staged: StagedFile) -> None:
        if staged.keep_local:
            return
        staged.path.unlink(missing_ok=True)
        self._log(staged, "delete", "ok", str(staged.path))

    def _result(self, staged: Publishable, info: ObjectInfo, *, uploaded: bool) -> PublishedObject:
        return PublishedObject(
            key=staged.key,
            uri=self.store.uri(staged.key),
            size=staged.digest.size,
            sha256=staged.digest.sha256,
            etag=info.etag,
            records=staged.records,
            families=dict(staged.families),
            uploaded=uploaded,
            md5=staged.digest.md5 or None,
        )

    # -- bounded pipeline -----------------------------------------------------------------------

    def submit(self, staged: StagedFile) -> concurrent.futures.Future[PublishedObject]:
        """Publish in the background; blocks while ``max_in_flight`` publishes are pending."""
        size = staged.digest.size
        with self._lock:
            # K pending on disk plus the file the writer just finished: the true on-disk peak.
            self.peak_staged_bytes = max(self.peak_staged_bytes, self.in_flight_bytes + size)
        self._slots.acquire()
        with self._lock:
            self.in_flight_bytes += size
        try:
            future = self._pool.submit(self.publish, staged)
        except BaseException:
            self._release(size)
            raise
        future.add_done_callback(lambda _f: self._release(size))
        self._pending.append((staged, future))
        return future

    def _release(self, size: int) -> None:
        with self._lock:
            self.in_flight_bytes -= size
        self._slots.release()

    def wait(self) -> list[PublishedObject]:
        """Wait for every submitted publish; results in submit order.

        Raises:
            PublishError: listing every failure (after all publishes finished).
        """
        pending, self._pending = self._pending, []
        concurrent.futures.wait([f for _, f in pending])
        results: list[PublishedObject] = []
        failures: list[StorageError] = []
        for staged, future in pending:
            exc = future.exception()
            if exc is None:
                results.append(future.result())
            elif isinstance(exc, StorageError):
                failures.append(exc)
            else:
                err = StorageError(
                    f"publish of {staged.key} failed unexpectedly: {type(exc).__name__}: {exc}",
                    key=staged.key,
                )
                err.__cause__ = exc
                failures.append(err)
        if failures:
            raise PublishError(failures)
        return results

    def close(self) -> None:
        """Shut down the pool (waits for running publishes)."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is None:
                self.wait()
            else:
                try:
                    self.wait()
                except PublishError as publish_error:
                    exc.add_note(str(publish_error))
        finally:
            self.close()
