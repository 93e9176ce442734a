"""Data-quality gates of a build: leakage and quarantine ratio (blocking), and the provenance
sidecar published next to the manifest."""

import dagster as dg

from dataset_assets.core.staged import StagedFile
from dataset_assets.defs.resources import DatasetConfigResource
from dataset_assets.pipeline.build import stage_provenance
from dataset_assets.pipeline.compile import CompileResult, check_leakage, quarantine_ratio

GROUP = "dataset"
IO = "s3_publish"


@dg.asset(group_name=GROUP, io_manager_key=IO, kinds={"s3"})
def provenance(conversations: CompileResult, dataset: DatasetConfigResource) -> StagedFile:
    """Per-build provenance sidecar (content_hash → family, source URI, line, split) as
    zstd-compressed JSONL next to the manifest, which references it."""
    return stage_provenance(dataset.load(), conversations)


@dg.asset_check(
    asset="conversations",
    blocking=True,
    description="No exact or near duplicate of a val/test/holdout conversation is in train.",
)
def no_split_leakage(
    conversations: CompileResult, dataset: DatasetConfigResource
) -> dg.AssetCheckResult:
    report = check_leakage(dataset.load(), conversations)
    return dg.AssetCheckResult(
        passed=report.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "exact_leaks": report.exact,
            "near_leaks": report.near,
            "protected_conversations": report.indexed,
            "train_conversations": report.checked,
            "sample_pairs": dg.MetadataValue.json(report.pairs),
        },
    )


@dg.asset_check(
    asset="conversations",
    blocking=True,
    description="The quarantined share of input records stays under quarantine_max_ratio.",
)
def quarantine_ratio_below_max(
    conversations: CompileResult, dataset: DatasetConfigResource
) -> dg.AssetCheckResult:
    limit = dataset.load().quarantine_max_ratio
    ratio = quarantine_ratio(conversations)
    return dg.AssetCheckResult(
        passed=ratio <= limit,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "ratio": ratio,
            "max_ratio": limit,
            "quarantined": conversations.counts.quarantined,
            "by_reason": dg.MetadataValue.json(conversations.counts.quarantined_by_reason),
        },
    )


QUALITY_ASSETS = [provenance]
QUALITY_CHECKS = [no_split_leakage, quarantine_ratio_below_max]
