"""The compiled export: every conversation in one file, made in S3 from the verified shards.

A build's export is the concatenation of its shards in manifest order (train, val, test). It is
published under an immutable, content-addressed key (:func:`build_export_key`, named by the
manifest) without uploading the data again: :func:`compose_export` composes it server-side
(``UploadPartCopy`` of each shard, each copied part checked against the MD5 and sha256 computed
while the shard was written). Shards S3 cannot copy as parts (under 5 MiB but not last, or
without a recorded MD5) are read back with streaming GETs, checked against their sha256, and
uploaded as parts of the same multipart upload, grouped with their neighbours up to 5 MiB; only
when no shard can be copied (or over 10,000 parts, or the server refuses ``UploadPartCopy``, as
SeaweedFS does for SSE-KMS objects) is the whole export streamed back from S3 into one
transfer-manager upload.

The export's manifest entry lists its ``parts`` (the shard keys) and its verified multipart
``etag``, and has no sha256 of its own: composed, its bytes never pass through the build;
streamed, each shard's bytes are checked against that shard's sha256 on the way, and a second,
whole-file sha256 would cost a core-second per ~500 MB for no extra assurance. ``verify
--readback`` checks each part's byte range against its shard's sha256 (:func:`export_problems`).

The fixed, well-known key (``compiled/final_training_dataset.jsonl.zst``, ``.jsonl`` for plain
shards) changes only after a build
commits: :func:`promote_export`, called after the latest pointer names the build, server-side
copies the committed build's export there.
"""

import hashlib
import itertools
from collections import Counter
from collections.abc import Sequence

from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.errors import ManifestError, ObjectNotFoundError, StorageError
from dataset_assets.core.hashing import multipart_etag
from dataset_assets.core.layout import (
    SUFFIXES,
    build_export_key,
    data_suffix,
    export_key,
    latest_manifest_key,
)
from dataset_assets.core.manifest import FileEntry, Manifest
from dataset_assets.storage import S3ObjectStore
from dataset_assets.storage.compose import (
    CopyNotSupportedError,
    compose_parts,
    copy_object,
    stream_parts,
    why_not_composable,
    why_not_mixed,
)

_PROMOTE_ROUNDS = 5


# -- the export composed in S3 from the verified shards ------------------------------------------


def parts_digest(parts: Sequence[FileEntry]) -> str:
    """Content address of the concatenation of ``parts`` (their sha256s and sizes, in order):
    identical shards in the same order give the same export key."""
    text = "\n".join(f"{p.sha256} {p.bytes}" for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()


def immutable_export_key(
    prefix: str, parts: Sequence[FileEntry], compression: str | None = None
) -> str:
    """The build's export key,
    ``{prefix}/compiled/final_training_dataset-{digest[:12]}.jsonl[.zst]`` (``.zst`` when its
    parts are zstd-compressed; ``compression`` names it for a build without parts)."""
    kind = parts_compression(parts) if parts else compression
    return build_export_key(prefix, parts_digest(parts), data_suffix(kind))


def content_type(compression: str | None) -> str:
    """The export's ``Content-Type``: ``application/zstd`` (RFC 8878) for a ``.jsonl.zst``
    export, ``application/x-ndjson`` for plain JSONL. (A store that compresses what it calls
    text, as SeaweedFS does, then does not spend CPU on recompressing zstd data.)"""
    return "application/zstd" if compression == "zstd" else "application/x-ndjson"


def parts_compression(parts: Sequence[FileEntry]) -> str | None:
    """The compression every part shares (their concatenation then has it too).

    Raises:
        ManifestError: the parts mix compressed and plain files (a concatenation of both
            would be neither).
    """
    kinds = {p.compression for p in parts}
    if len(kinds) > 1:
        raise ManifestError(
            f"cannot concatenate shards of different compressions ({sorted(map(str, kinds))})"
        )
    return kinds.pop() if kinds else None


def compose_build_export(
    cfg: DatasetConfig, store: S3ObjectStore, parts: Sequence[FileEntry]
) -> FileEntry:
    """:func:`compose_export` of a build's shards (in manifest order) under its immutable key."""
    key = immutable_export_key(cfg.prefix, parts, cfg.data_compression)
    return compose_export(store, parts, key, cfg.data_compression)


def compose_export(
    store: S3ObjectStore,
    parts: Sequence[FileEntry],
    key: str,
    compression: str | None = None,
) -> FileEntry:
    """Publish the concatenation of ``parts`` (published, verified shards, in manifest order)
    under ``key`` (:func:`immutable_export_key`) without uploading the data again.

    Composed server-side when S3 allows it, else streamed back from S3 (see the module doc);
    if ``key`` already holds exactly this composition (a rerun), nothing is copied.

    Returns:
        The export's manifest entry: size, records and families summed over the parts, the
        verified ``etag`` and ``parts`` (the shard keys); no whole-file sha256.

    Raises:
        VerificationError: a shard in S3 differs from its entry (names the shard) or the result
            does not match; nothing is left under ``key`` and no multipart upload stays open.
        UploadFailedError / StorageError: S3 failures.
    """
    metadata = {"parts-sha256": parts_digest(parts), "parts": str(len(parts))}
    compression = parts_compression(parts) if parts else compression
    kind = content_type(compression)
    try:
        if why_not_composable(parts) is None:
            etag = _already_composed(store, key, parts, metadata["parts-sha256"])
            if etag is None:
                etag = compose_parts(store, key, parts, metadata=metadata, content_type=kind).etag
        elif why_not_mixed(parts) is None:
            etag = compose_parts(
                store, key, parts, mixed=True, metadata=metadata, content_type=kind
            ).etag
        else:
            etag = stream_parts(store, key, parts, metadata=metadata, content_type=kind).etag
    except CopyNotSupportedError:  # e.g. SeaweedFS with SSE-KMS sources
        etag = stream_parts(store, key, parts, metadata=metadata, content_type=kind).etag
    families: Counter[str] = Counter()
    for part in parts:
        families.update(part.families)
    return FileEntry(
        key=key,
        uri=store.uri(key),
        bytes=sum(p.bytes for p in parts),
        records=sum(p.records for p in parts),
        families=dict(families),
        etag=etag,
        parts=[p.key for p in parts],
        compression="zstd" if compression == "zstd" else None,
    )


def _already_composed(
    store: S3ObjectStore, key: str, parts: Sequence[FileEntry], digest: str
) -> str | None:
    """The ETag of ``key`` when it already holds this exact composition, else None."""
    try:
        info = store.head(key)
    except ObjectNotFoundError:
        return None
    etag = multipart_etag([str(p.md5) for p in parts])
    same = (
        info.size == sum(p.bytes for p in parts)
        and info.etag == etag
        and info.metadata.get("parts-sha256") == digest
    )
    return etag if same else None


def promote_export(store: S3ObjectStore, manifest: Manifest) -> None:
    """Make the fixed export key a copy of the latest committed build's export (server-side),
    or remove it when that build has no export (``compiled_export: false``): the fixed key
    never holds an older build's data than the pointer names.

    Call it after ``manifest`` became the latest pointer. The export copied is the one of the
    build the pointer names *now* (normally ``manifest``; if a newer build committed in the
    meantime, that one's), and the pointer is re-read after the copy: if it moved, the newer
    export is copied, so the fixed key never ends on an older build than the pointer. Its
    metadata names the build (``build-id``) and the source (``source-key``, ``source-etag``).

    Raises:
        ManifestError: no latest pointer (the build has not committed).
        StorageError: S3 failures, or the pointer kept moving for several rounds.
    """
    for _ in range(_PROMOTE_ROUNDS):
        latest = _latest(store, manifest.prefix)
        export = latest.export
        compression = export.compression if export is not None else None
        target = export_key(manifest.prefix, data_suffix(compression))
        # The fixed key of the other compression holds an older build's export (the config
        # changed): removed, like the fixed key of a build without an export. These are
        # copies: the older builds' immutable exports stay (gc's call).
        for suffix in SUFFIXES:
            other = export_key(manifest.prefix, suffix)
            if export is None or other != target:
                store.delete(other)
        if export is not None and export.key == target:  # an older manifest naming it
            return
        if export is not None and not _is_promoted(store, target, latest.build_id, export):
            copy_object(
                store,
                export.key,
                target,
                metadata={
                    "build-id": latest.build_id,
                    "source-key": export.key,
                    "source-etag": export.etag or "",
                },
                source_etag=export.etag,
                content_type=content_type(compression),
            )
        if _latest(store, manifest.prefix).build_id == latest.build_id:
            return
    raise StorageError(
        f"{store.uri(target)}: the latest pointer moved {_PROMOTE_ROUNDS} times while the export "
        "was being promoted; run promote_export again",
        key=target,
    )


def _latest(store: S3ObjectStore, prefix: str) -> Manifest:
    key = latest_manifest_key(prefix)
    try:
        data = store.get_bytes(key)
    except ObjectNotFoundError as exc:
        raise ManifestError(
            f"no {store.uri(key)}: an export is promoted only after its build commits"
        ) from exc
    return Manifest.from_json(data, source=store.uri(key))


def _is_promoted(store: S3ObjectStore, target: str, build_id: str, export: FileEntry) -> bool:
    try:
        info = store.head(target)
    except ObjectNotFoundError:
        return False
    return (
        info.size == export.bytes
        and info.metadata.get("build-id") == build_id
        and info.metadata.get("source-key") == export.key
    )


def export_problems(
    store: S3ObjectStore, manifest: Manifest, *, readback: bool = False
) -> list[str]:
    """Problems with a manifest's export in S3 (empty: intact).

    HEAD: size, and the ETag recorded at publish time. ``readback`` streams it: a composed
    export is checked part by part, each byte range against its shard's sha256; one with a
    whole-file sha256 against that too.
    """
    entry = manifest.export
    if entry is None:
        return []
    try:
        info = store.head(entry.key)
    except ObjectNotFoundError:
        return [f"{entry.uri}: missing"]
    problems = []
    if info.size != entry.bytes or (entry.etag is not None and info.etag != entry.etag):
        problems.append(
            f"{entry.uri}: expected {entry.bytes} bytes etag {entry.etag}, "
            f"S3 has {info.size} bytes etag {info.etag}"
        )
    if readback:
        problems += export_readback_problems(store, manifest)
    return problems


def export_readback_problems(store: S3ObjectStore, manifest: Manifest) -> list[str]:
    """Stream the export once: each part's byte range hashed and compared with its shard's
    sha256 (naming the part that differs), and the whole against ``sha256`` when recorded."""
    entry = manifest.export
    if entry is None:
        return []
    shards = {s.key: s for s in manifest.shards}
    ranges: list[tuple[str, int, str | None]] = []
    for key in entry.parts:
        shard = shards.get(key)
        if shard is None:
            return [f"{entry.uri}: part {key} is not a shard of build {manifest.build_id}"]
        ranges.append((key, shard.bytes, shard.sha256))
    problems: list[str] = []
    whole = hashlib.sha256() if entry.sha256 is not None else None
    chunks = store.iter_bytes(entry.key)
    pending = b""
    for key, size, sha256 in ranges:
        part = hashlib.sha256()
        need = size
        while need:
            if not pending:
                pending = next(chunks, b"")
                if not pending:
                    break
            take, pending = pending[:need], pending[need:]
            part.update(take)
            if whole is not None:
                whole.update(take)
            need -= len(take)
        if need or part.hexdigest() != sha256:
            problems.append(
                f"{entry.uri}: bytes of part {key} hash to {part.hexdigest()}, not {sha256}"
            )
    extra = 0
    for chunk in itertools.chain([pending], chunks):
        extra += len(chunk)
        if whole is not None:
            whole.update(chunk)
    if entry.parts and extra:
        problems.append(f"{entry.uri}: {extra} bytes after its last part")
    if whole is not None and whole.hexdigest() != entry.sha256:
        problems.append(f"{entry.uri}: bytes hash to {whole.hexdigest()}, not {entry.sha256}")
    return problems
