"""Assembling and publishing the manifest: immutable build copy, latest pointer, local copy."""

import os
from pathlib import Path

from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.errors import ObjectNotFoundError, PreconditionFailedError, StorageError
from dataset_assets.core.layout import build_manifest_key, latest_manifest_key
from dataset_assets.core.manifest import (
    FileEntry,
    Manifest,
    ShardEntry,
    check_consistent,
    with_build_id,
)
from dataset_assets.pipeline.compile import CompileResult
from dataset_assets.storage import S3ObjectStore


def assemble_manifest(
    cfg: DatasetConfig,
    result: CompileResult,
    shards: list[ShardEntry],
    export: FileEntry | None,
    quarantine: FileEntry | None = None,
    provenance: FileEntry | None = None,
) -> Manifest:
    """The build's manifest, checked for consistency (ManifestError if its files and counts
    disagree), with a build id derived from its content."""
    manifest = Manifest(
        build_id="",
        bucket=cfg.bucket,
        prefix=cfg.prefix,
        config_digest=result.config_digest,
        shards=shards,
        export=export,
        quarantine=quarantine,
        provenance=provenance,
        counts=result.counts,
        inputs=result.inputs,
    )
    check_consistent(manifest)
    return with_build_id(manifest)


def publish_manifest(store: S3ObjectStore, manifest: Manifest, local_path: Path) -> str:
    """Publish ``manifests/{build_id}.json`` (immutable), then ``manifest.json``, then locally.

    The latest pointer is replaced with a conditional write on the ETag read just before, so two
    builds cannot interleave: the loser gets PreconditionFailedError and must rerun. Returns the
    URI of the immutable manifest.
    """
    data = manifest.to_json()
    build_key = build_manifest_key(manifest.prefix, manifest.build_id)
    try:
        store.put_bytes(build_key, data, if_none_match=True, content_type="application/json")
    except PreconditionFailedError:
        if store.get_bytes(build_key) != data:
            raise StorageError(
                f"{store.uri(build_key)} exists with different content; build ids must be unique",
                key=build_key,
            ) from None
    latest_key = latest_manifest_key(manifest.prefix)
    try:
        current = store.head(latest_key)
    except ObjectNotFoundError:
        store.put_bytes(latest_key, data, if_none_match=True, content_type="application/json")
    else:
        if store.get_bytes(latest_key) != data:
            store.put_bytes(
                latest_key, data, if_match=current.etag, content_type="application/json"
            )
    write_local_copy(local_path, data)
    return store.uri(build_key)


def write_local_copy(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
