"""One owner per build: :class:`Build` holds a run's config, store and work areas and runs its
steps — compile, shards, export, commit — for both the Dagster assets and the plain
:func:`build_dataset` path (CLI, tests, benchmarks).

Every step starts from typed references published by the step before (S3 keys, never local
paths), so the steps can run in different processes or on different machines.
"""

import uuid
from pathlib import Path

from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.errors import QualityGateError
from dataset_assets.core.layout import SPLITS, build_sidecar_key, cache_shards_key
from dataset_assets.core.manifest import FileEntry, Manifest, ShardEntry, with_build_id
from dataset_assets.pipeline.commit import (
    PointerState,
    commit_manifest,
    probe_conditional_writes,
    read_pointer,
)
from dataset_assets.pipeline.compile import (
    CompileResult,
    compile_conversations,
    quarantine_ratio,
    work_area,
)
from dataset_assets.pipeline.export import compose_build_export, promote_export
from dataset_assets.pipeline.manifest import assemble_manifest
from dataset_assets.pipeline.shards import ShardStats, publish_all_shards, shard_set_digest
from dataset_assets.storage import Journal, S3ObjectStore


def journal_path(cfg: DatasetConfig, run_id: str) -> Path:
    """The run's local publish journal (every step of every publish of the run)."""
    return cfg.staging_dir / "journal" / f"{run_id or 'no-run-id'}.jsonl"


class Build:
    """The steps of one build run. Cheap to create: each step (or process) makes its own."""

    def __init__(self, cfg: DatasetConfig, store: S3ObjectStore, run_id: str) -> None:
        self.cfg = cfg
        self.store = store
        self.run_id = run_id or uuid.uuid4().hex
        self.journal = Journal(journal_path(cfg, self.run_id), run_id=self.run_id)

    def compile(self) -> CompileResult:
        """Partitions (parallel, reused when unchanged) → dedup clusters → decisions, sidecars
        and the leakage report. Records the latest pointer this build starts from."""
        self.store.ensure_bucket()
        probe_conditional_writes(self.store, self.cfg.prefix)
        started = read_pointer(self.store, self.cfg.prefix)
        area = work_area(self.cfg, self.run_id, "compile")
        result = compile_conversations(self.cfg, self.store, run_id=self.run_id, area=area)
        return result.model_copy(
            update={"started_from_etag": started.etag, "started_from_build": started.build_id}
        )

    def shards(self, result: CompileResult) -> tuple[dict[str, list[ShardEntry]], ShardStats]:
        """Every split's shards, published (or reused) partition by partition."""
        area = work_area(self.cfg, self.run_id, "shards")
        return publish_all_shards(self.cfg, self.store, result, area)

    def export(self, shards: dict[str, list[ShardEntry]]) -> FileEntry:
        """The build's immutable export, composed in S3 from its verified shards."""
        ordered = [entry for split in SPLITS for entry in shards.get(split, [])]
        return compose_build_export(self.cfg, self.store, ordered)

    def commit(
        self, result: CompileResult, shards: list[ShardEntry], export: FileEntry | None
    ) -> Manifest:
        """Assemble and commit the manifest (only if the latest pointer has not moved since the
        compile), then point the fixed export name at this build's export and publish the journal."""
        manifest = assemble_manifest(
            self.cfg, result, shards, export, result.quarantine, result.provenance
        )
        manifest = with_build_id(
            manifest.model_copy(
                update={"dedup": result.dedup, "cache_keys": self.cache_keys(result)}
            )
        )
        started = PointerState(etag=result.started_from_etag, build_id=result.started_from_build)
        commit_manifest(self.store, manifest, self.cfg.manifest_path, started)
        if manifest.export is not None:
            promote_export(self.store, manifest)
        self.publish_journal(manifest)
        return manifest

    def cache_keys(self, result: CompileResult) -> list[str]:
        shard_sets = [
            cache_shards_key(self.cfg.prefix, shard_set_digest(self.cfg, part, split))
            for part in result.partitions
            for split in part.split_records
        ]
        return result.cache_keys(self.cfg.prefix, shard_sets)

    def publish_journal(self, manifest: Manifest) -> str:
        """Upload the run's journal next to its manifest (kept out of the deterministic manifest)."""
        path = journal_path(self.cfg, self.run_id)
        data = path.read_bytes() if path.exists() else b""
        key = build_sidecar_key(manifest.prefix, manifest.build_id, f"journal-{self.run_id}.jsonl")
        self.store.put_bytes(key, data, content_type="application/x-ndjson")
        return self.store.uri(key)


def build_dataset(cfg: DatasetConfig, store: S3ObjectStore, *, run_id: str = "") -> Manifest:
    """The whole build in one call, without Dagster."""
    build = Build(cfg, store, run_id)
    result = build.compile()
    check_quality_gates(cfg, result)
    shards, _ = build.shards(result)
    export = build.export(shards)
    return build.commit(result, [e for s in SPLITS for e in shards[s]], export)


def check_quality_gates(cfg: DatasetConfig, result: CompileResult) -> None:
    """The blocking gates of the Dagster checks, for the plain path: raise before publishing."""
    leak = result.leakage
    if not leak.passed:
        raise QualityGateError(
            f"split leakage: {leak.exact} exact and {leak.near} near duplicate pairs published in "
            f"two splits, e.g. {leak.pairs[:3]}"
        )
    ratio = quarantine_ratio(result)
    if ratio > cfg.quarantine_max_ratio:
        raise QualityGateError(
            f"quarantined {result.counts.quarantined} of {result.counts.input_records} records "
            f"({ratio:.2%}), above quarantine_max_ratio {cfg.quarantine_max_ratio:.2%}"
        )
