"""Migration of local dataset files to S3 as Dagster backfills: one dynamic partition per file.

``discover_migration_files`` (a sensor, RUNNING by default; it only registers partitions, it moves
nothing) adds a ``migration_files`` partition per discovered file. Materializing ``migrated_file``
over all partitions (asset → Materialize → all partitions, or GraphQL ``launchPartitionBackfill``)
runs one run per file, with uploads limited by the ``s3_uploads`` pool.

Files a source family reads are never registered (and a registered one that a family reads now
is removed from the partitions), and ``migrated_file`` refuses them, unless
``migration.allow_active_sources`` is set: "Materialize all partitions" must never take away the
next build's input.

``migration/local_files`` (an external asset, upstream of ``migrated_file``) stands for the local
files the migration would move; the discovery sensor observes it (files, bytes, the file table)
whenever that set changes, so the graph shows what each migrated copy comes from.
"""

import hashlib

import dagster as dg
import orjson

from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.errors import MigrationError, UploadFailedError, VerificationError
from dataset_assets.core.migration import Candidate, FileChangedError, discover
from dataset_assets.defs.resources import DatasetConfigResource, ObjectStoreResource
from dataset_assets.pipeline.migrate import (
    make_migration_publisher,
    migrate_file,
    source_moved_note,
)

MIGRATION_PARTITIONS = "migration_files"
migration_files = dg.DynamicPartitionsDefinition(name=MIGRATION_PARTITIONS)
MIGRATION_GROUP = "migration"
LOCAL_FILES = dg.AssetKey(["migration", "local_files"])
MAX_LISTED_FILES = 50

LOCAL_FILES_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("partition", "string", "the migration_files partition (relative path)"),
        dg.TableColumn("bytes", "int", "size when observed"),
    ]
)


def local_files_spec(cfg: DatasetConfig | None) -> dg.AssetSpec:
    """The external asset of the local files the migration would move (none of a family's)."""
    where = "the migration data root"
    if cfg is not None:
        roots = [cfg.migration.data_root, *cfg.migration.package_data_roots]
        base = cfg.config_dir
        shown = [
            str(r.relative_to(base)) if base and r.is_relative_to(base) else str(r) for r in roots
        ]
        where = ", ".join(f"`{r}`" for r in shown)
    return dg.AssetSpec(
        key=LOCAL_FILES,
        group_name=MIGRATION_GROUP,
        kinds={"file"},
        description=f"Local dataset files under {where} that `migrated_file` moves to S3, one "
        "`migration_files` partition each (files a source family reads are not among them). "
        "Observed by the `discover_migration_files` sensor whenever the set changes.",
        metadata={"partitions": MIGRATION_PARTITIONS},
    )


def local_files_observation(candidates: tuple[Candidate, ...]) -> tuple[dg.AssetObservation, str]:
    """The observation of the files the migration would move now, and its digest."""
    rows = sorted((c.relative_path, c.size) for c in candidates)
    digest = hashlib.sha256(orjson.dumps(rows)).hexdigest()[:16]
    table = dg.MetadataValue.table(
        records=[dg.TableRecord({"partition": p, "bytes": b}) for p, b in rows[:MAX_LISTED_FILES]],
        schema=LOCAL_FILES_SCHEMA,
    )
    observation = dg.AssetObservation(
        asset_key=LOCAL_FILES,
        metadata={
            "files": len(rows),
            "bytes": sum(b for _, b in rows),
            "fingerprint": digest,
            "file_list": table,
            "files_listed": min(len(rows), MAX_LISTED_FILES),
        },
    )
    return observation, digest


@dg.asset(
    partitions_def=migration_files,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    pool="s3_uploads",
    retry_policy=dg.RetryPolicy(
        max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    ),
    group_name=MIGRATION_GROUP,
    kinds={"s3"},
    deps=[LOCAL_FILES],
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
    """Registers one ``migration_files`` partition per local dataset file (it moves nothing) and
    observes ``migration/local_files`` when that set changes. Files a source family reads are
    not registered (and unregistered if they were); refused paths (symlinks, escapes, names
    that are not UTF-8) are logged as warnings on every tick."""
    cfg = dataset.load()
    found = discover(cfg)
    observation, digest = local_files_observation(found.candidates)
    events = [observation] if digest != context.cursor else []
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
            f"{len(found.in_use)} in use by a source family and kept)",
            cursor=digest,
            asset_events=events,
        )
    return dg.SensorResult(dynamic_partitions_requests=requests, cursor=digest, asset_events=events)


def build_defs(cfg: DatasetConfig | None = None) -> dg.Definitions:
    """The migration asset, the local files it reads and its discovery sensor (resources
    ``dataset``, ``s3`` bound by the caller); ``cfg`` names the folders in the description."""
    return dg.Definitions(
        assets=[local_files_spec(cfg), migrated_file], sensors=[discover_migration_files]
    )
