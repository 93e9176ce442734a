"""Asset checks on the published build: what the manifest promises is really in S3."""

import dagster as dg

from dataset_assets.core.errors import ManifestError
from dataset_assets.core.manifest import Manifest, check_consistent
from dataset_assets.defs.resources import DatasetConfigResource, ObjectStoreResource
from dataset_assets.pipeline.maintenance import manifest_files, verify_build


@dg.asset_check(
    asset="manifest", description="Every manifest entry exists in S3 with its size and sha256."
)
def manifest_objects_in_s3(
    manifest: Manifest, dataset: DatasetConfigResource, s3: ObjectStoreResource
) -> dg.AssetCheckResult:
    problems = verify_build(s3.store_for(dataset.load()), manifest)
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "objects": len(manifest_files(manifest)),
            "problems": dg.MetadataValue.json(problems[:50]),
        },
    )


@dg.asset_check(
    asset="manifest", description="Record counts agree across shards, export and totals."
)
def manifest_counts_consistent(manifest: Manifest) -> dg.AssetCheckResult:
    c = manifest.counts
    try:
        check_consistent(manifest)
        problem = ""
    except ManifestError as exc:
        problem = str(exc)
    return dg.AssetCheckResult(
        passed=not problem,
        metadata={
            "input_records": c.input_records,
            "shard_records": sum(s.records for s in manifest.shards),
            "export_records": manifest.export.records if manifest.export else 0,
            "duplicates": c.exact_duplicates + c.near_duplicates,
            "quarantined": c.quarantined,
            "problem": problem,
        },
    )


COMPILE_CHECKS = [manifest_objects_in_s3, manifest_counts_consistent]
