"""The rebuild sensor: new or changed generated data → one run of the build job.

It watches the families' paths (local globs, and ``s3://`` prefixes listed with ETag/size), keeps
fingerprints in its cursor, and requests one ``build_dataset`` run per stable change set, keyed by
the set's hash so one change never launches two runs. It starts RUNNING (``default_status``): the
dataset follows its sources without anyone switching it on.

Before requesting a build it compares the sources a build would read now with the ``inputs`` of
the latest published manifest (the ``manifest.json`` pointer in S3), listed by the same function
the compile uses: when they are equal the dataset is already built from exactly this data, so
nothing is requested. That is what keeps the first tick of a fresh Dagster home (``make dev``
after ``make run``) from rebuilding an unchanged dataset.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.errors import ConfigError, ObjectNotFoundError
from dataset_assets.core.layout import latest_manifest_key, parse_s3_uri
from dataset_assets.core.manifest import Manifest
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
from dataset_assets.pipeline.sources import list_sources

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


def latest_manifest(cfg: DatasetConfig, s3: ObjectStoreResource) -> Manifest | None:
    """The latest published manifest (the ``manifest.json`` pointer), or ``None`` before the
    first build (no pointer, or no bucket yet)."""
    store = s3.store(cfg.bucket, cfg.part_size)
    key = latest_manifest_key(cfg.prefix)
    try:
        data = store.get_bytes(key)
    except ObjectNotFoundError:
        return None
    return Manifest.from_json(data, source=store.uri(key))


SourceSet = frozenset[tuple[str, str, int, str]]


def sources_now(cfg: DatasetConfig, s3: ObjectStoreResource, root: Path | None = None) -> SourceSet:
    """(family, uri, bytes, fingerprint) of every file a build would read now, listed by the
    compile's own listing function so that it compares equal to a manifest's ``inputs``.
    ``root``: the config file's folder, for local uris relative to it (None: absolute)."""
    store = s3.store(cfg.bucket, cfg.part_size)
    refs = [ref for family in cfg.families for ref in list_sources(family, store, root=root)]
    return frozenset((r.family, r.uri, r.size, r.fingerprint) for r in refs)


def built_from(manifest: Manifest) -> SourceSet:
    return frozenset((i.family, i.uri, i.bytes, i.fingerprint) for i in manifest.inputs)


def already_built(cfg: DatasetConfig, s3: ObjectStoreResource, config_dir: Path) -> Manifest | None:
    """The latest manifest if it was built from exactly the sources present now, else ``None``.

    Local uris in a manifest are relative to the config folder (``config_dir``) or, in builds
    that predate that, absolute: the sources are compared in both forms, so neither form makes
    an unchanged dataset look changed. A family path a build cannot read (an ``s3://`` prefix
    outside the dataset bucket) never counts as built: the build is requested and fails with
    the config error.
    """
    manifest = latest_manifest(cfg, s3)
    if manifest is None:
        return None
    built = built_from(manifest)
    try:
        if any(sources_now(cfg, s3, root) == built for root in (config_dir, None)):
            return manifest
    except ConfigError:
        return None
    return None


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
        built = already_built(cfg, s3, Path(dataset.config_path).resolve().parent)
        if built is not None:
            return dg.SensorResult(
                skip_reason=f"sources unchanged since build {built.build_id} "
                f"({len(built.inputs)} files): nothing to rebuild",
                cursor=cursor,
            )
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
