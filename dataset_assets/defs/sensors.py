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

What the UI shows from it:
- an ``AssetObservation`` of ``source/<family>`` (files, bytes, fingerprint, file table) on the
  first tick and whenever that family's stable files change;
- the ``built_from_current_sources`` check on ``manifest``: failed (severity WARN, "overdue")
  while the sources differ from what the latest committed manifest was built from, passed when
  they are equal. The sensor evaluates it on its first tick and whenever the sources, the
  ``manifest.json`` pointer (its ETag) or the manifest asset's latest materialization change,
  and records it only when one of those outcomes is new (a committed build moves the pointer, so
  the next tick records it); it is not a step of ``build_dataset`` (``defs/jobs.py`` says why).
  The materialization matters because a run moves the pointer in its IO manager, a moment
  before Dagster stores the run's materialization: a tick in between records the evaluation
  before that materialization, and the UI shows the check only for evaluations after it. The
  next tick sees the new materialization and records the outcome again.
"""

import hashlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import orjson
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData as Materialized,
)
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
from dataset_assets.defs.sources import family_observation, fingerprint_digest, source_keys
from dataset_assets.pipeline.sources import list_sources

SENSOR_NAME = "rebuild_on_new_data"
DEFAULT_MINIMUM_INTERVAL_SECONDS = 30
CURRENT_CHECK = "built_from_current_sources"
MANIFEST = dg.AssetKey("manifest")
MAX_LISTED_CHANGES = 20


def family_fingerprints(
    cfg: DatasetConfig, s3: ObjectStoreResource
) -> dict[str, list[Fingerprint]]:
    """Fingerprints of every file each family names, local and in S3 (config order)."""
    found: dict[str, list[Fingerprint]] = {}
    for fam in cfg.families:
        local = [p for p in fam.paths if not p.startswith("s3://")]
        remote = [p for p in fam.paths if p.startswith("s3://")]
        found[fam.name] = sorted([*scan_local(local), *_scan_s3(cfg, s3, remote)])
    return found


def watched_fingerprints(cfg: DatasetConfig, s3: ObjectStoreResource) -> list[Fingerprint]:
    """Fingerprints of every file the families name, local and in S3 (each file once)."""
    return _union(family_fingerprints(cfg, s3))


def _union(by_family: Mapping[str, list[Fingerprint]]) -> list[Fingerprint]:
    return sorted({fp.path: fp for fps in by_family.values() for fp in fps}.values())


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


def latest_materialization(instance: dg.DagsterInstance) -> Materialized | None:
    """The manifest asset's latest materialization (None: never materialized)."""
    records = instance.fetch_materializations(MANIFEST, limit=1).records
    if not records:
        return None
    record = records[0]
    return Materialized(
        storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
    )


def pointer_version(cfg: DatasetConfig, s3: ObjectStoreResource) -> str:
    """The ``manifest.json`` pointer's ETag ('' before the first build): a cheap HEAD that
    tells whether a build committed since the last look."""
    try:
        return s3.store(cfg.bucket, cfg.part_size).head(latest_manifest_key(cfg.prefix)).etag
    except ObjectNotFoundError:
        return ""


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


@dataclass(frozen=True)
class Currency:
    """How the latest committed manifest relates to the sources present now.

    Attributes:
        manifest: the latest manifest (None before the first build).
        added / changed / removed: source uris (relative to the config folder, or ``s3://``)
            present now and not in the build, in both with another size or version, in the
            build and gone now.
        error: why a build cannot read the sources (a family path outside the dataset bucket).
    """

    manifest: Manifest | None
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    error: str | None = None

    @property
    def current(self) -> bool:
        return self.manifest is not None and self.error is None and not self.changes

    @property
    def changes(self) -> list[str]:
        return [
            *(f"added {u}" for u in self.added),
            *(f"changed {u}" for u in self.changed),
            *(f"removed {u}" for u in self.removed),
        ]


def compare_with_latest_build(
    cfg: DatasetConfig, s3: ObjectStoreResource, config_dir: Path
) -> Currency:
    """Compare the sources present now with the latest manifest's ``inputs``.

    Local uris in a manifest are relative to the config folder (``config_dir``) or, in builds
    that predate that, absolute: the sources are compared in both forms, so neither form makes
    an unchanged dataset look changed. A family path a build cannot read (an ``s3://`` prefix
    outside the dataset bucket) is never current: the build is requested and fails with the
    config error.
    """
    manifest = latest_manifest(cfg, s3)
    try:
        now = sources_now(cfg, s3, config_dir)
        if manifest is None:
            return Currency(None, added=tuple(sorted(u for _, u, _, _ in now)))
        built = built_from(manifest)
        if now == built or sources_now(cfg, s3, None) == built:
            return Currency(manifest)
    except ConfigError as exc:
        return Currency(manifest, error=str(exc))
    before = {(f, u): (b, v) for f, u, b, v in built}
    after = {(f, u): (b, v) for f, u, b, v in now}
    changed = [k for k in after.keys() & before.keys() if after[k] != before[k]]
    return Currency(
        manifest,
        added=tuple(sorted(u for _, u in after.keys() - before.keys())),
        changed=tuple(sorted(u for _, u in changed)),
        removed=tuple(sorted(u for _, u in before.keys() - after.keys())),
    )


def already_built(cfg: DatasetConfig, s3: ObjectStoreResource, config_dir: Path) -> Manifest | None:
    """The latest manifest if it was built from exactly the sources present now, else ``None``."""
    currency = compare_with_latest_build(cfg, s3, config_dir)
    return currency.manifest if currency.current else None


def currency_outcome(currency: Currency, cfg: DatasetConfig) -> tuple[bool, str, dict[str, Any]]:
    """(passed, description, metadata) of the ``built_from_current_sources`` check."""
    m = currency.manifest
    build = m.build_id if m is not None else "(none)"
    changes = currency.changes
    if currency.error is not None:
        text = f"OVERDUE: a build cannot read the sources: {currency.error}"
    elif m is None:
        text = f"OVERDUE: no build has committed yet; {len(currency.added)} source files wait."
    elif changes:
        text = (
            f"OVERDUE: sources changed since build {build} ({len(currency.added)} added, "
            f"{len(currency.changed)} changed, {len(currency.removed)} removed) and no build "
            "has committed them yet."
        )
        if currency.removed and cfg.sensor.on_removal == "report":
            text += " Removals are not rebuilt automatically (sensor.on_removal=report)."
    else:
        text = f"Current: build {build} read exactly the {len(m.inputs)} source files present now."
    metadata: dict[str, Any] = {
        "status": text,
        "latest_build": build,
        "files_in_build": len(m.inputs) if m is not None else 0,
        "added": len(currency.added),
        "changed": len(currency.changed),
        "removed": len(currency.removed),
        "changes": dg.MetadataValue.json(changes[:MAX_LISTED_CHANGES]),
    }
    return currency.current, text, metadata


def currency_evaluation(
    currency: Currency, cfg: DatasetConfig, target: Materialized | None = None
) -> dg.AssetCheckEvaluation:
    """The check's evaluation, tied to ``target`` (the manifest's materialization it was
    evaluated against): the UI shows an evaluation for the latest materialization only if it
    targets that one (without a target it compares timestamps, which SQLite keeps in seconds)."""
    passed, text, metadata = currency_outcome(currency, cfg)
    return dg.AssetCheckEvaluation(
        asset_key=MANIFEST,
        check_name=CURRENT_CHECK,
        target_materialization_data=target,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=text,
        metadata=metadata,
    )


@dg.asset_check(
    asset=MANIFEST,
    name=CURRENT_CHECK,
    description="The latest committed manifest was built from exactly the source files present "
    "now. Fails with a warning (overdue) when sources changed and no build has committed them "
    "yet. Evaluated by the rebuild_on_new_data sensor when sources or the latest pointer change "
    "(so after every committed build), or from the UI.",
)
def built_from_current_sources(
    dataset: DatasetConfigResource, s3: ObjectStoreResource
) -> dg.AssetCheckResult:
    """Compares the sources present now with the latest manifest's inputs."""
    cfg = dataset.load()
    currency = compare_with_latest_build(cfg, s3, Path(dataset.config_path).resolve().parent)
    passed, text, metadata = currency_outcome(currency, cfg)
    return dg.AssetCheckResult(
        passed=passed, severity=dg.AssetCheckSeverity.WARN, description=text, metadata=metadata
    )


CURSOR_VERSION = 2


@dataclass(frozen=True)
class SensorCursor:
    """The rebuild sensor's cursor: the watch state, each family's last observed digest, the
    ``manifest.json`` ETag, the manifest's latest materialization (storage id) and the check
    outcome last recorded (so each is recorded once)."""

    watch: WatchCursor = field(default_factory=WatchCursor)
    observed: Mapping[str, str] = field(default_factory=dict)
    pointer: str | None = None
    outcome: str | None = None
    materialization: int | None = None

    def to_json(self) -> str:
        data = {
            "v": CURSOR_VERSION,
            "watch": self.watch.to_json(),
            "observed": dict(sorted(self.observed.items())),
            "pointer": self.pointer,
            "outcome": self.outcome,
            "materialization": self.materialization,
        }
        return orjson.dumps(data).decode()

    @classmethod
    def from_json(cls, text: str | None) -> "SensorCursor":
        """Parse a cursor (``None``: never ran; a watch-only cursor of an earlier version is
        kept); a bad cursor raises ValueError, which fails the tick."""
        if not text:
            return cls()
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"unreadable rebuild sensor cursor {text[:200]!r}: {exc}") from exc
        if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION:
            return cls(watch=WatchCursor.from_json(text))
        try:
            return cls(
                watch=WatchCursor.from_json(str(data["watch"])),
                observed={str(k): str(v) for k, v in data["observed"].items()},
                pointer=None if data["pointer"] is None else str(data["pointer"]),
                outcome=None if data["outcome"] is None else str(data["outcome"]),
                materialization=_optional_int(data.get("materialization")),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"unreadable rebuild sensor cursor {text[:200]!r}: {exc}") from exc


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"not a storage id: {value!r}")


def _skip_text(result: WatchResult) -> str:
    parts = [f"nothing new ({len(result.cursor.known)} files known)"]
    if result.waiting:
        parts.append(f"{len(result.waiting)} still being written: {', '.join(result.waiting[:5])}")
    if result.removed:
        parts.append(f"removal not rebuilt (sensor.on_removal=report): {describe(result.removed)}")
    return "; ".join(parts)


def source_observations(
    cfg: DatasetConfig,
    by_family: Mapping[str, list[Fingerprint]],
    waiting: set[str],
    observed: Mapping[str, str],
) -> tuple[list[dg.AssetObservation], dict[str, str]]:
    """Observations of the families whose stable files differ from the last observed digest
    (files still being written are left out until they settle), and the digests now.

    A family whose every file is still settling (e.g. on a fresh cursor's first tick, when
    the watch has seen each file only once) is not observed yet: "0 files" would describe a
    state that never existed."""
    keys = source_keys(cfg)
    events: list[dg.AssetObservation] = []
    digests: dict[str, str] = {}
    for name, fps in by_family.items():
        stable = [fp for fp in fps if fp.path not in waiting]
        if fps and not stable:
            if name in observed:
                digests[name] = observed[name]
            continue
        digest = fingerprint_digest(stable)
        digests[name] = digest
        if observed.get(name) != digest:
            events.append(
                family_observation(keys[name], name, stable, cfg.config_dir, digest=digest)
            )
    return events, digests


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
        stable for ``sensor.stable_seconds``); removals are reported, rebuilt only if configured.
        Observes the source assets and evaluates the manifest's ``built_from_current_sources``."""
        cfg = dataset.load()
        state = SensorCursor.from_json(context.cursor)
        by_family = family_fingerprints(cfg, s3)
        result = observe(
            state.watch,
            _union(by_family),
            now=time.time(),
            stable_seconds=cfg.sensor.stable_seconds,
            rebuild_on_removal=cfg.sensor.on_removal == "rebuild",
        )
        for change in result.removed:
            context.log.warning(f"generated data removed: {change.path} ({change.size} bytes)")
        events: list[dg.AssetObservation | dg.AssetCheckEvaluation]
        observations, digests = source_observations(
            cfg, by_family, set(result.waiting), state.observed
        )
        events = list(observations)
        pointer = pointer_version(cfg, s3)
        materialized = latest_materialization(context.instance)
        materialized_id = materialized.storage_id if materialized is not None else None
        currency: Currency | None = None
        outcome = state.outcome
        if (
            observations
            or pointer != state.pointer
            or materialized_id != state.materialization
            or state.outcome is None
            or result.triggers
        ):
            currency = compare_with_latest_build(
                cfg, s3, Path(dataset.config_path).resolve().parent
            )
            evaluation = currency_evaluation(currency, cfg, materialized)
            changes = hashlib.sha256(orjson.dumps(currency.changes)).hexdigest()[:16]
            outcome = f"{evaluation.passed}:{pointer}:{changes}:{materialized_id}"
            if outcome != state.outcome:
                events.append(evaluation)
        cursor = SensorCursor(result.cursor, digests, pointer, outcome, materialized_id).to_json()
        if not result.triggers:
            return dg.SensorResult(
                skip_reason=_skip_text(result), cursor=cursor, asset_events=events
            )
        if currency is not None and currency.current and currency.manifest is not None:
            built = currency.manifest
            return dg.SensorResult(
                skip_reason=f"sources unchanged since build {built.build_id} "
                f"({len(built.inputs)} files): nothing to rebuild",
                cursor=cursor,
                asset_events=events,
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
        return dg.SensorResult(run_requests=[request], cursor=cursor, asset_events=events)

    return rebuild_on_new_data


def build_defs(minimum_interval_seconds: int = DEFAULT_MINIMUM_INTERVAL_SECONDS) -> dg.Definitions:
    """The rebuild sensor on ``build_dataset`` (resources ``dataset`` and ``s3`` bound by the
    caller; the ``built_from_current_sources`` check it records comes with the compile
    definitions). Pass ``sensor.minimum_interval_seconds`` from the config when it is known."""
    sensor = make_rebuild_sensor(build_job, minimum_interval_seconds=minimum_interval_seconds)
    return dg.Definitions(sensors=[sensor])
