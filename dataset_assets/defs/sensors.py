"""The rebuild sensor: new or changed generated data → one run of the build job.

It watches the families' paths (local globs, and ``s3://`` prefixes listed with ETag/size), keeps
fingerprints in its cursor, and requests one ``build_dataset`` run per stable change set, keyed by
the set's hash so one change never launches two runs. It starts RUNNING (``default_status``): the
dataset follows its sources without anyone switching it on.
"""

import time
from collections.abc import Iterator

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.layout import parse_s3_uri
from dataset_assets.core.sources import is_source_name, is_temporary_name
from dataset_assets.core.watch import (
    Fingerprint,
    WatchCursor,
    WatchResult,
    describe,
    fingerprint_s3,
    observe,
    scan_local,
)
from dataset_assets.defs.jobs import build_job
from dataset_assets.defs.resources import DatasetConfigResource, ObjectStoreResource

SENSOR_NAME = "rebuild_on_new_data"
DEFAULT_MINIMUM_INTERVAL_SECONDS = 30


def watched_fingerprints(cfg: DatasetConfig, s3: ObjectStoreResource) -> list[Fingerprint]:
    """Fingerprints of every file the families name, local and in S3."""
    local = [p for fam in cfg.families for p in fam.paths if not p.startswith("s3://")]
    remote = [p for fam in cfg.families for p in fam.paths if p.startswith("s3://")]
    return sorted([*scan_local(local), *_scan_s3(cfg, s3, remote)])


def _scan_s3(cfg: DatasetConfig, s3: ObjectStoreResource, uris: list[str]) -> Iterator[Fingerprint]:
    for uri in uris:
        bucket, prefix = parse_s3_uri(uri)
        for info in s3.store(bucket, cfg.part_size).list(prefix):
            name = info.key.rsplit("/", 1)[-1]
            if is_source_name(name) and not is_temporary_name(name):
                yield fingerprint_s3(bucket, info.key, info.size, info.etag)


def _skip_text(result: WatchResult) -> str:
    parts = [f"nothing new ({len(result.cursor.known)} files known)"]
    if result.waiting:
        parts.append(f"{len(result.waiting)} still being written: {', '.join(result.waiting[:5])}")
    if result.removed:
        parts.append(f"removal not rebuilt (sensor.on_removal=report): {describe(result.removed)}")
    return "; ".join(parts)


def make_rebuild_sensor(
    target: UnresolvedAssetJobDefinition | dg.JobDefinition,
    *,
    minimum_interval_seconds: int = DEFAULT_MINIMUM_INTERVAL_SECONDS,
) -> dg.SensorDefinition:
    """The rebuild sensor targeting ``target`` (the ``build_dataset`` job)."""

    @dg.sensor(
        name=SENSOR_NAME,
        target=target,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def rebuild_on_new_data(
        context: dg.SensorEvaluationContext,
        dataset: DatasetConfigResource,
        s3: ObjectStoreResource,
    ) -> dg.SensorResult:
        """Requests one dataset rebuild when generated data is added or changed (files must be
        stable for ``sensor.stable_seconds``); removals are reported, rebuilt only if configured."""
        cfg = dataset.load()
        result = observe(
            WatchCursor.from_json(context.cursor),
            watched_fingerprints(cfg, s3),
            now=time.time(),
            stable_seconds=cfg.sensor.stable_seconds,
            rebuild_on_removal=cfg.sensor.on_removal == "rebuild",
        )
        for change in result.removed:
            context.log.warning(f"generated data removed: {change.path} ({change.size} bytes)")
        cursor = result.cursor.to_json()
        if not result.triggers:
            return dg.SensorResult(skip_reason=_skip_text(result), cursor=cursor)
        context.log.info(f"rebuild requested: {describe(result.changes)}")
        request = dg.RunRequest(
            run_key=result.run_key(),
            tags={
                "dataset_assets/trigger": SENSOR_NAME,
                "dataset_assets/changes": describe(result.changes, limit=3)[:200],
                "dataset_assets/changed_files": str(len(result.changes)),
            },
        )
        return dg.SensorResult(run_requests=[request], cursor=cursor)

    return rebuild_on_new_data


def build_defs(minimum_interval_seconds: int = DEFAULT_MINIMUM_INTERVAL_SECONDS) -> dg.Definitions:
    """The rebuild sensor on ``build_dataset`` (resources ``dataset`` and ``s3`` bound by the
    caller). Pass ``sensor.minimum_interval_seconds`` from the config when it is known."""
    sensor = make_rebuild_sensor(build_job, minimum_interval_seconds=minimum_interval_seconds)
    return dg.Definitions(sensors=[sensor])
