"""The whole build in one call, without Dagster (used by the CLI, tests and benchmarks)."""

import uuid
from pathlib import Path

from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.hashing import digest_file
from dataset_assets.core.layout import SPLITS, build_sidecar_key, provenance_key, quarantine_key
from dataset_assets.core.manifest import Manifest, ShardEntry
from dataset_assets.core.staged import StagedFile
from dataset_assets.pipeline.compile import CompileResult, compile_conversations, remove_work_dir
from dataset_assets.pipeline.entries import file_entry, shard_entry
from dataset_assets.pipeline.export import publish_export
from dataset_assets.pipeline.manifest import assemble_manifest, publish_manifest
from dataset_assets.pipeline.shards import publish_shards, stage_split_shards
from dataset_assets.storage import Journal, Publisher, S3ObjectStore


def journal_path(cfg: DatasetConfig, run_id: str) -> Path:
    """The run's local publish journal (every step of every publish of the run)."""
    return cfg.staging_dir / "journal" / f"{run_id or 'no-run-id'}.jsonl"


def publish_journal(
    store: S3ObjectStore, cfg: DatasetConfig, manifest: Manifest, run_id: str
) -> str:
    """Upload the run's journal next to its manifest (``builds/{build_id}/journal-{run}.jsonl``).

    Kept out of the manifest itself, which stays deterministic; returns the journal's URI.
    """
    path = journal_path(cfg, run_id)
    data = path.read_bytes() if path.exists() else b""
    name = f"journal-{run_id or 'no-run-id'}.jsonl"
    key = build_sidecar_key(manifest.prefix, manifest.build_id, name)
    store.put_bytes(key, data, content_type="application/x-ndjson")
    return store.uri(key)


def make_publisher(cfg: DatasetConfig, store: S3ObjectStore, run_id: str = "") -> Publisher:
    journal = Journal(journal_path(cfg, run_id), run_id=run_id)
    return Publisher(
        store, max_in_flight=cfg.max_publishes_in_flight, verify=cfg.verify, journal=journal
    )


def stage_quarantine(cfg: DatasetConfig, result: CompileResult) -> StagedFile:
    """The compile pass's quarantine file, ready to publish under a content-addressed key."""
    path = Path(result.quarantine_path)
    digest = digest_file(path, cfg.part_size)
    key = quarantine_key(cfg.prefix, digest.sha256)
    return StagedFile(path, key, digest, result.counts.quarantined)


def stage_provenance(cfg: DatasetConfig, result: CompileResult) -> StagedFile:
    """The compile pass's provenance sidecar, ready to publish next to the manifest."""
    path = result.provenance
    digest = digest_file(path, cfg.part_size)
    key = provenance_key(cfg.prefix, digest.sha256)
    return StagedFile(path, key, digest, result.counts.published_records)


def build_dataset(cfg: DatasetConfig, store: S3ObjectStore, *, run_id: str = "") -> Manifest:
    """Compile, publish every split's shards as they are written, the export, then the manifest
    (and the run's publish journal next to it)."""
    run_id = run_id or uuid.uuid4().hex
    store.ensure_bucket()
    result = compile_conversations(cfg, store, run_id=run_id)
    with make_publisher(cfg, store, run_id) as publisher:
        quarantine = file_entry(publisher.publish(stage_quarantine(cfg, result)))
        provenance = file_entry(publisher.publish(stage_provenance(cfg, result)))
        shards: list[ShardEntry] = []
        for split in SPLITS:
            published = publish_shards(stage_split_shards(cfg, result, split), publisher)
            shards += [shard_entry(split, obj) for obj in published]
        export = publish_export(cfg, result, publisher)
    manifest = assemble_manifest(cfg, result, shards, export, quarantine, provenance)
    publish_manifest(store, manifest, cfg.manifest_path)
    publish_journal(store, cfg, manifest, run_id)
    remove_work_dir(result)
    return manifest
