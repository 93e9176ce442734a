"""Migration of local dataset files to S3 as Dagster backfills: one dynamic partition per file.

``discover_migration_files`` (a sensor, RUNNING by default; it only registers partitions, it moves
nothing) adds a ``migration_files`` partition per discovered file. Materializing ``migrated_file``
over all partitions (asset → Materialize → all partitions, or GraphQL ``launchPartitionBackfill``)
runs one run per file, with uploads limited by the ``s3_uploads`` pool.

Files a source family reads are never registered (and a registered one that a family reads now
is removed from the partitions), and ``migrated_file`` refuses them, unless
``migration.allow_active_sources`` is set: "Materialize all partitions" must never take away the
next build's input.
"""

import dagster as dg

from dataset_assets.core.errors import MigrationError, UploadFailedError, VerificationError
from dataset_assets.core.migration import FileChangedError, discover
from dataset_assets.defs.resources import DatasetConfigResource, ObjectStoreResource
from dataset_assets.pipeline.migrate import (
    make_migration_publisher,
    migrate_file,
    source_moved_note,
)

MIGRATION_PARTITIONS = "migration_files"
migration_files = dg.DynamicPartitionsDefinition(name=MIGRATION_PARTITIONS)


@dg.asset(
    partitions_def=migration_files,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    pool="s3_uploads",
    retry_policy=dg.RetryPolicy(
        max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    ),
    group_name="migration",
    kinds={"s3"},
)
def migrated_file(
    context: dg.AssetExecutionContext,
    dataset: DatasetConfigResource,
    s3: ObjectStoreResource,
) -> dg.MaterializeResult:
    """A local dataset file moved to S3 under the migration prefix: uploaded, verified, recorded
    in the migration ledger, then deleted locally. Rerunning a migrated file is a no-op. Files a
    source family reads are refused unless ``migration.allow_active_sources`` is set."""
    cfg = dataset.load()
    store = s3.store_for(cfg)
    with make_migration_publisher(cfg, store, context.run.run_id) as publisher:
        try:
            outcome = migrate_file(
                cfg, store, context.partition_key, publisher=publisher, run_id=context.run.run_id
            )
        except (FileChangedError, UploadFailedError, VerificationError):
            raise  # transient: the retry policy tries again, the local file is kept
        except MigrationError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
    context.log.info(f"{outcome.relative_path} → {outcome.uri} ({outcome.status})")
    metadata: dict[str, dg.RawMetadataValue] = {
        "dagster/uri": outcome.uri,
        "bytes": dg.MetadataValue.int(outcome.size),
        "sha256": outcome.sha256,
        "status": outcome.status,
        "local_path": dg.MetadataValue.path(outcome.local_path),
    }
    note = source_moved_note(cfg, outcome)
    if note is not None:
        context.log.warning(note)
        metadata["read_by_families"] = ", ".join(outcome.read_by)
        metadata["next_step"] = note
    return dg.MaterializeResult(metadata=metadata)


@dg.sensor(
    name="discover_migration_files",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def discover_migration_files(
    context: dg.SensorEvaluationContext, dataset: DatasetConfigResource
) -> dg.SensorResult:
    """Registers one ``migration_files`` partition per local dataset file (it moves nothing).
    Files a source family reads are not registered (and unregistered if they were); refused
    paths (symlinks, escapes, names that are not UTF-8) are logged as warnings on every tick."""
    cfg = dataset.load()
    found = discover(cfg)
    for refusal in found.refused:
        context.log.warning(refusal.message())
    existing = set(context.instance.get_dynamic_partitions(MIGRATION_PARTITIONS))
    new = [key for key in found.partition_keys() if key not in existing]
    in_use = sorted({u.relative_path for u in found.in_use} & existing)
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if new:
        context.log.info(f"registering {len(new)} migration partitions")
        requests.append(migration_files.build_add_request(new))
    if in_use:
        context.log.warning(
            f"unregistering {len(in_use)} partitions whose files a source family reads: "
            + ", ".join(in_use[:5])
        )
        requests.append(migration_files.build_delete_request(in_use))
    if not requests:
        return dg.SensorResult(
            skip_reason=f"nothing new ({len(existing)} files registered, "
            f"{len(found.waiting)} still being written, {len(found.refused)} refused, "
            f"{len(found.in_use)} in use by a source family and kept)"
        )
    return dg.SensorResult(dynamic_partitions_requests=requests)


def build_defs() -> dg.Definitions:
    """The migration asset and its discovery sensor (resources ``dataset``, ``s3`` bound by the
    caller)."""
    return dg.Definitions(assets=[migrated_file], sensors=[discover_migration_files])
