"""The compile assets: conversations → each split's shards, the export, quarantine → manifest."""

import dagster as dg

from dataset_assets.core.layout import SPLITS
from dataset_assets.core.manifest import FileEntry, Manifest, ShardEntry
from dataset_assets.core.staged import StagedFile, StreamedFile
from dataset_assets.defs.quality import QUALITY_ASSETS
from dataset_assets.defs.resources import DatasetConfigResource, ObjectStoreResource
from dataset_assets.pipeline.build import stage_quarantine
from dataset_assets.pipeline.compile import CompileResult, compile_conversations
from dataset_assets.pipeline.export import prepare_export
from dataset_assets.pipeline.manifest import assemble_manifest
from dataset_assets.pipeline.shards import ShardStream, stage_split_shards

GROUP = "dataset"
IO = "s3_publish"


@dg.asset(group_name=GROUP, io_manager_key=IO, kinds={"python"})
def conversations(
    context: dg.AssetExecutionContext, dataset: DatasetConfigResource, s3: ObjectStoreResource
) -> CompileResult:
    """Every source normalized to ChatML, deduplicated and assigned a split, in one streaming
    pass into a local compressed spool. Bad records go to the quarantine with a reason."""
    cfg = dataset.load()
    result = compile_conversations(cfg, s3.store_for(cfg), run_id=context.run_id)
    c = result.counts
    context.add_output_metadata(
        {
            "input_records": c.input_records,
            "exact_duplicates": c.exact_duplicates,
            "near_duplicates": c.near_duplicates,
            "quarantined": c.quarantined,
            "quarantined_by_reason": dg.MetadataValue.json(c.quarantined_by_reason),
            "per_split": dg.MetadataValue.json(c.per_split),
            "per_family": dg.MetadataValue.json(c.per_family),
            "input_files": len(result.inputs),
        }
    )
    return result


def make_shards_asset(split: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{split}_shards",
        group_name=GROUP,
        io_manager_key=IO,
        kinds={"s3"},
        description=(
            f"The {split} split as size-bounded JSONL shards in S3, each published (upload, "
            "verify, delete local) as soon as it is written."
        ),
    )
    def _shards(conversations: CompileResult, dataset: DatasetConfigResource) -> ShardStream:
        cfg = dataset.load()
        return ShardStream(split, stage_split_shards(cfg, conversations, split))

    return _shards


shard_assets = [make_shards_asset(split) for split in SPLITS]


@dg.asset(group_name=GROUP, io_manager_key=IO, kinds={"s3"})
def quarantine(
    context: dg.AssetExecutionContext, conversations: CompileResult, dataset: DatasetConfigResource
) -> StagedFile:
    """The build's quarantined records (reason, source, line, raw prefix) as JSONL in S3."""
    by_reason = conversations.counts.quarantined_by_reason
    context.add_output_metadata(
        {"by_reason": dg.MetadataValue.json(by_reason)}
        | {f"reason/{reason}": n for reason, n in sorted(by_reason.items())}
    )
    return stage_quarantine(dataset.load(), conversations)


@dg.asset(group_name=GROUP, io_manager_key=IO, kinds={"s3"})
def compiled_export(
    conversations: CompileResult, dataset: DatasetConfigResource, s3: ObjectStoreResource
) -> StreamedFile:
    """All conversations in one file (final_training_dataset.jsonl), streamed to S3 from the
    spool without a local copy, then verified."""
    cfg = dataset.load()
    return prepare_export(cfg, conversations, s3.store_for(cfg))


@dg.asset(
    group_name=GROUP,
    io_manager_key=IO,
    kinds={"s3"},
)
def manifest(
    conversations: CompileResult,
    train_shards: list[ShardEntry],
    val_shards: list[ShardEntry],
    test_shards: list[ShardEntry],
    compiled_export: FileEntry,
    quarantine: FileEntry,
    provenance: FileEntry,
    dataset: DatasetConfigResource,
) -> Manifest:
    """The build's commit record, written last: every shard, the export and the quarantine with
    bytes, sha256, record counts and families. Immutable per build, then the latest pointer,
    then a local copy."""
    entries = [*train_shards, *val_shards, *test_shards]
    return assemble_manifest(
        dataset.load(), conversations, entries, compiled_export, quarantine, provenance
    )


COMPILE_ASSETS = [
    conversations,
    *shard_assets,
    quarantine,
    compiled_export,
    *QUALITY_ASSETS,
    manifest,
]
