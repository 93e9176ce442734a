"""Assembling and publishing the manifest: immutable build copy, latest pointer, local copy."""

from pathlib import Path

from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.manifest import (
    FileEntry,
    Manifest,
    ShardEntry,
    check_consistent,
    with_build_id,
)
from dataset_assets.pipeline.commit import commit_manifest, read_pointer
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
    """Commit ``manifest`` on top of the pointer as it is *now* (unordered).

    Kept for callers that did not record the pointer when their build started: two builds can
    still both succeed in the order they finish. Builds record ``read_pointer`` at their start
    and call :func:`~dataset_assets.pipeline.commit.commit_manifest` instead.
    """
    return commit_manifest(store, manifest, local_path, read_pointer(store, manifest.prefix))
