"""Asset checks on the published build: what the manifest promises is really in S3."""

import dagster as dg

from dataset_assets.core.errors import ObjectNotFoundError
from dataset_assets.core.layout import SPLITS
from dataset_assets.core.manifest import Manifest
from dataset_assets.defs.resources import DatasetConfigResource, ObjectStoreResource


def _load_manifest(dataset: DatasetConfigResource) -> Manifest:
    cfg = dataset.load()
    return Manifest.from_json(cfg.manifest_path.read_bytes(), str(cfg.manifest_path))


@dg.asset_check(
    asset="manifest", description="Every manifest entry exists in S3 with its size and sha256."
)
def manifest_objects_in_s3(
    dataset: DatasetConfigResource, s3: ObjectStoreResource
) -> dg.AssetCheckResult:
    cfg = dataset.load()
    store = s3.store_for(cfg)
    m = _load_manifest(dataset)
    files = [*m.shards, *(f for f in (m.export, m.quarantine, m.provenance) if f)]
    problems = []
    for entry in files:
        try:
            info = store.head(entry.key)
        except ObjectNotFoundError:
            problems.append(f"{entry.uri}: missing")
            continue
        if info.size != entry.bytes or info.sha256 != entry.sha256:
            problems.append(f"{entry.uri}: size {info.size}/{entry.bytes}, sha256 {info.sha256}")
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"objects": len(files), "problems": dg.MetadataValue.json(problems[:50])},
    )


@dg.asset_check(
    asset="manifest", description="Record counts agree across shards, export and totals."
)
def manifest_counts_consistent(dataset: DatasetConfigResource) -> dg.AssetCheckResult:
    m = _load_manifest(dataset)
    c = m.counts
    shard_records = sum(s.records for s in m.shards)
    per_split_ok = all(m.split_records(s) == c.per_split.get(s, 0) for s in SPLITS)
    accounted = c.published_records + c.exact_duplicates + c.near_duplicates + c.quarantined
    export_records = m.export.records if m.export else shard_records
    passed = per_split_ok and shard_records == c.published_records == export_records
    passed = passed and accounted == c.input_records
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "input_records": c.input_records,
            "shard_records": shard_records,
            "export_records": export_records,
            "duplicates": c.exact_duplicates + c.near_duplicates,
            "quarantined": c.quarantined,
        },
    )


COMPILE_CHECKS = [manifest_objects_in_s3, manifest_counts_consistent]
