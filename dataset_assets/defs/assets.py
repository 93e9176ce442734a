"""The build's assets, thin: each step delegates to :class:`~dataset_assets.pipeline.build.Build`.

Four steps per build (each can run on its own machine; they share only S3):
``compile`` (conversations + quarantine + provenance + dedup decisions, with the blocking leakage
and quarantine-ratio checks) → ``split_shards`` (train/val/test shards) → ``compiled_export`` →
``manifest`` (the commit, with its S3 and consistency checks).
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from dataset_assets.core.layout import SPLITS
from dataset_assets.core.manifest import FileEntry, Manifest, ShardEntry
from dataset_assets.defs.metadata import (
    ObjectLinks,
    manifest_metadata,
    record_column_schema,
    shard_metadata,
)
from dataset_assets.defs.resources import DatasetConfigResource, ObjectStoreResource
from dataset_assets.pipeline.build import Build, build_problems
from dataset_assets.pipeline.compile import CompileResult, quarantine_ratio
from dataset_assets.pipeline.maintenance import manifest_files

GROUP = "dataset"
ONE_MACHINE_EXECUTORS = frozenset(
    {"in_process", "multiprocess", "multi_or_in_process_executor", "execute_in_process_executor"}
)
"""Names of the Dagster executors that run every step of a run on the machine of the run
(Dagster's default executor and the one of ``materialize`` / ``execute_in_process`` too)."""
IO = "s3_publish"
OWNERS = ["team:ml-data"]
BUILD_POOL = "dataset_build"

LEAKAGE = "no_split_leakage"
RATIO = "quarantine_ratio_below_max"
IN_S3 = "manifest_objects_in_s3"
CONSISTENT = "manifest_counts_consistent"


def _build(
    context: dg.AssetExecutionContext, dataset: DatasetConfigResource, s3: ObjectStoreResource
) -> Build:
    """The run's build; its lease owner is the root run, so a re-execution continues it."""
    cfg = dataset.load()
    run = context.run
    selection = run.asset_selection
    goes_on = selection is None or dg.AssetKey("manifest") in selection
    return Build(
        cfg,
        s3.store_for(cfg),
        run.run_id,
        owner=run.root_run_id or run.run_id,
        hand_on=goes_on,  # the run's later steps take the lease back; else release it now
        one_machine=_steps_stay_on_this_machine(context),
    )


def _steps_stay_on_this_machine(context: dg.AssetExecutionContext) -> bool:
    """Every step of this run, and its retries and the later runs, run on this machine: an
    executor that keeps the steps in the run's machine (in_process, multiprocess) and runs
    launched as local processes (Dagster's DefaultRunLauncher; not the k8s, Docker or ECS
    launchers, which start each run in a fresh container)."""
    if context.job_def.executor_def.name not in ONE_MACHINE_EXECUTORS:
        return False
    instance = context.instance
    if instance.is_ephemeral:  # materialize / execute_in_process: this process
        return True
    launcher = instance.get_ref().run_launcher_data
    return launcher is None or launcher.class_name == "DefaultRunLauncher"


@dg.multi_asset(
    outs={
        "conversations": dg.AssetOut(
            io_manager_key=IO,
            description="Every source normalized to ChatML, deduplicated (exact + near, as "
            "clusters) and assigned a split; decisions in S3, intermediates in S3 or in this "
            "machine's cache (compile.intermediates).",
            kinds={"duckdb"},
            owners=OWNERS,
        ),
        "quarantine": dg.AssetOut(
            io_manager_key=IO,
            description="The build's quarantined records (reason, source, line, raw prefix).",
            kinds={"s3"},
            owners=OWNERS,
        ),
        "provenance": dg.AssetOut(
            io_manager_key=IO,
            description="content_hash → family, source, line, split of every published record.",
            kinds={"s3"},
            owners=OWNERS,
        ),
        "dedup_decisions": dg.AssetOut(
            io_manager_key=IO,
            description="Every dropped duplicate: its source and line, the winner's, exact or "
            "near, estimated similarity.",
            kinds={"s3"},
            owners=OWNERS,
        ),
    },
    check_specs=[
        dg.AssetCheckSpec(
            LEAKAGE,
            asset="conversations",
            blocking=True,
            description="No content hash, and (with near dedup on) no verified near-duplicate "
            "pair, is published in two splits.",
        ),
        dg.AssetCheckSpec(
            RATIO,
            asset="conversations",
            blocking=True,
            description="The quarantined share of input records stays under quarantine_max_ratio.",
        ),
    ],
    group_name=GROUP,
    pool=BUILD_POOL,
    name="compile",
)
def compile_assets(
    context: dg.AssetExecutionContext, dataset: DatasetConfigResource, s3: ObjectStoreResource
) -> Iterator[Any]:
    """Stage 1 (every source file in parallel processes, reused when unchanged) and stage 2
    (dedup clusters in DuckDB) of the compile."""
    build = _build(context, dataset, s3)
    result = build.compile()
    c = result.counts
    yield dg.Output(result, "conversations", metadata=_compile_metadata(result))
    yield dg.Output(
        result.quarantine,
        "quarantine",
        metadata=_file_metadata(result.quarantine)
        | {f"reason/{reason}": n for reason, n in sorted(c.quarantined_by_reason.items())},
    )
    yield dg.Output(result.provenance, "provenance", metadata=_file_metadata(result.provenance))
    yield dg.Output(result.dedup, "dedup_decisions", metadata=_file_metadata(result.dedup))
    yield _leakage_check(result)
    yield _ratio_check(result, build.cfg.quarantine_max_ratio)


def _compile_metadata(result: CompileResult) -> dict[str, Any]:
    c = result.counts
    return {
        "dagster/row_count": c.published_records,
        "input_records": c.input_records,
        "exact_duplicates": c.exact_duplicates,
        "near_duplicates": c.near_duplicates,
        "quarantined": c.quarantined,
        "input_files": len(result.inputs),
        "dedup_stage": "reused: the last clean clustering of the same partitions and options"
        if result.clustering_reused
        else "run",
        **{f"records/{s}": c.per_split.get(s, 0) for s in SPLITS},
        **{f"family/{f}": n for f, n in sorted(c.per_family.items())},
        **record_column_schema(),
    }


def _file_metadata(entry: FileEntry) -> dict[str, Any]:
    return {
        "dagster/uri": entry.uri,
        "dagster/row_count": entry.records,
        "bytes": entry.bytes,
        "sha256": entry.sha256 or "",
    }


def _leakage_check(result: CompileResult) -> dg.AssetCheckResult:
    leak = result.leakage
    return dg.AssetCheckResult(
        check_name=LEAKAGE,
        asset_key="conversations",
        passed=leak.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "exact_leaks": leak.exact,
            "near_leaks": leak.near,
            "covers": "exact and near duplicates"
            if leak.near_checked
            else "exact duplicates only (dedup.near is off)",
            "sample_pairs": dg.MetadataValue.json(leak.pairs),
        },
    )


def _ratio_check(result: CompileResult, limit: float) -> dg.AssetCheckResult:
    ratio = quarantine_ratio(result)
    return dg.AssetCheckResult(
        check_name=RATIO,
        asset_key="conversations",
        passed=ratio <= limit,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "ratio": ratio,
            "max_ratio": limit,
            "quarantined": result.counts.quarantined,
            "by_reason": dg.MetadataValue.json(result.counts.quarantined_by_reason),
        },
    )


@dg.multi_asset(
    outs={
        f"{split}_shards": dg.AssetOut(
            io_manager_key=IO,
            description=f"The {split} split as size-bounded JSONL shards in S3, each published "
            "(upload, verify, delete local) as soon as it is written.",
            kinds={"s3"},
            owners=OWNERS,
        )
        for split in SPLITS
    },
    ins={"conversations": dg.AssetIn()},
    group_name=GROUP,
    pool=BUILD_POOL,
    name="split_shards",
)
def split_shards(
    context: dg.AssetExecutionContext,
    conversations: CompileResult,
    dataset: DatasetConfigResource,
    s3: ObjectStoreResource,
) -> Iterator[dg.Output[list[ShardEntry]]]:
    """Every split's shards, per source partition (reused from earlier builds when the
    partition and its decisions are unchanged)."""
    build = _build(context, dataset, s3)
    shards, stats = build.shards(conversations)
    links = ObjectLinks.for_settings(build.cfg.bucket, s3.settings())
    for split in SPLITS:
        meta = shard_metadata(split, shards[split], links) | {
            "reused_shards": stats.reused,
            "written_shards": stats.written,
            "uploaded_shards": stats.uploaded,
            "peak_staged_bytes_per_worker": stats.peak_staged_bytes,
        }
        yield dg.Output(shards[split], f"{split}_shards", metadata=meta)


@dg.asset(group_name=GROUP, io_manager_key=IO, kinds={"s3"}, owners=OWNERS, pool=BUILD_POOL)
def compiled_export(
    context: dg.AssetExecutionContext,
    train_shards: list[ShardEntry],
    val_shards: list[ShardEntry],
    test_shards: list[ShardEntry],
    dataset: DatasetConfigResource,
    s3: ObjectStoreResource,
) -> FileEntry | None:
    """All conversations in one file, composed in S3 from the verified shards (server-side part
    copies; streamed from the shards where parts are too small). The fixed export name is
    pointed at it only after the manifest commits. With ``compiled_export: false`` in the
    config nothing is composed (None) and the manifest has no export."""
    build = _build(context, dataset, s3)
    export = build.export({"train": train_shards, "val": val_shards, "test": test_shards})
    if export is None:
        context.add_output_metadata(
            {"export": "off (compiled_export: false): this build publishes shards only"}
        )
    else:
        context.add_output_metadata(_file_metadata(export))
    return export


@dg.asset(
    group_name=GROUP,
    io_manager_key=IO,
    kinds={"s3"},
    owners=OWNERS,
    pool=BUILD_POOL,
    check_specs=[
        dg.AssetCheckSpec(
            IN_S3,
            asset="manifest",
            description="Every manifest entry exists in S3 with its size and sha256.",
        ),
        dg.AssetCheckSpec(
            CONSISTENT,
            asset="manifest",
            description="Record counts agree across shards, export and totals.",
        ),
    ],
)
def manifest(
    context: dg.AssetExecutionContext,
    conversations: CompileResult,
    train_shards: list[ShardEntry],
    val_shards: list[ShardEntry],
    test_shards: list[ShardEntry],
    compiled_export: FileEntry | None,
    quarantine: FileEntry,
    provenance: FileEntry,
    dedup_decisions: FileEntry,
    dataset: DatasetConfigResource,
    s3: ObjectStoreResource,
) -> Iterator[Any]:
    """The build's commit record, written last: every shard, the export and the sidecars with
    bytes, sha256 and counts. Immutable per build; the latest pointer moves only if no other
    build committed since this one started; then the local copy and the dataset card."""
    build = _build(context, dataset, s3)
    committed = build.commit(
        conversations, [*train_shards, *val_shards, *test_shards], compiled_export
    )
    links = ObjectLinks.for_settings(build.cfg.bucket, s3.settings())
    yield dg.Output(committed, metadata=manifest_metadata(committed, build.cfg, links))
    problems = build_problems(build.store, committed)
    yield dg.AssetCheckResult(
        check_name=IN_S3,
        passed=not problems,
        metadata={"objects": len(manifest_files(committed)), "problems": problems[:50]},
    )
    yield _consistency_check(committed)


def _consistency_check(m: Manifest) -> dg.AssetCheckResult:
    from dataset_assets.core.errors import ManifestError
    from dataset_assets.core.manifest import check_consistent

    try:
        check_consistent(m)
        problem = ""
    except ManifestError as exc:
        problem = str(exc)
    return dg.AssetCheckResult(
        check_name=CONSISTENT, passed=not problem, metadata={"problem": problem}
    )


COMPILE_ASSETS = [compile_assets, split_shards, compiled_export, manifest]
