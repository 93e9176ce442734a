"""Checking a published build against S3, and garbage-collecting old builds (dry run first)."""

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dataset_assets.core.errors import ManifestError, ObjectNotFoundError
from dataset_assets.core.layout import SPLITS, build_manifest_key, latest_manifest_key
from dataset_assets.core.manifest import FileEntry, Manifest
from dataset_assets.storage import S3ObjectStore


def manifest_files(manifest: Manifest, *, with_export: bool = True) -> list[FileEntry]:
    """Every object a manifest references. The export's key is fixed and replaced by each
    build, so only the latest build's export can be checked (``with_export``)."""
    extra = (manifest.export if with_export else None, manifest.quarantine, manifest.provenance)
    return [*manifest.shards, *(f for f in extra if f is not None)]


def verify_build(
    store: S3ObjectStore, manifest: Manifest, *, readback: bool = False, with_export: bool = True
) -> list[str]:
    """Problems with the objects a manifest references (missing, size or sha256 differs);
    ``readback`` also streams every object and hashes it. Empty means the build is intact."""
    problems = []
    for entry in manifest_files(manifest, with_export=with_export):
        try:
            info = store.head(entry.key)
        except ObjectNotFoundError:
            problems.append(f"{entry.uri}: missing")
            continue
        if info.size != entry.bytes or info.sha256 != entry.sha256:
            problems.append(
                f"{entry.uri}: expected {entry.bytes} bytes sha256 {entry.sha256}, "
                f"S3 has {info.size} bytes sha256 {info.sha256}"
            )
        elif readback:
            sha = hashlib.sha256()
            for chunk in store.iter_bytes(entry.key):
                sha.update(chunk)
            if sha.hexdigest() != entry.sha256:
                problems.append(f"{entry.uri}: bytes hash to {sha.hexdigest()}, not {entry.sha256}")
    return problems


@dataclass
class GcPlan:
    """What ``collect_garbage`` would delete: builds beyond the retention count and every data
    object no kept build references. The latest build is always kept."""

    kept_builds: list[str]
    dropped_builds: list[str]
    delete_keys: list[str] = field(default_factory=list)
    delete_bytes: int = 0


def plan_gc(
    store: S3ObjectStore, prefix: str, keep: int, *, min_age: timedelta = timedelta(hours=24)
) -> GcPlan:
    """Plan the removal of all but the ``keep`` newest builds (by the upload time of their
    immutable manifest, S3 LastModified: 1 s resolution).

    Objects younger than ``min_age`` are never planned: a build in progress has published
    shards that no manifest references yet.
    """
    cutoff = datetime.now(UTC) - min_age
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the latest build is never collected), got {keep}")
    manifests = sorted(
        store.list(f"{prefix}/manifests/"),
        key=lambda o: o.last_modified or datetime.min.replace(tzinfo=UTC),
        reverse=True,
    )
    ids = [o.key.rsplit("/", 1)[-1].removesuffix(".json") for o in manifests]
    try:
        latest = Manifest.from_json(store.get_bytes(latest_manifest_key(prefix))).build_id
    except ObjectNotFoundError as exc:
        raise ManifestError(
            f"no {store.uri(latest_manifest_key(prefix))}: nothing to keep"
        ) from exc
    kept = [latest, *[i for i in ids if i != latest][: keep - 1]]
    referenced: set[str] = set()
    for build_id in kept:
        m = Manifest.from_json(store.get_bytes(build_manifest_key(prefix, build_id)))
        referenced |= {f.key for f in manifest_files(m, with_export=False)}
        referenced.add(build_manifest_key(prefix, build_id))
    plan = GcPlan(kept_builds=kept, dropped_builds=[i for i in ids if i not in kept])
    folders = [*SPLITS, "quarantine", "provenance", "manifests"]
    for folder in folders:
        for obj in store.list(f"{prefix}/{folder}/"):
            old = obj.last_modified is not None and obj.last_modified <= cutoff
            if obj.key not in referenced and old:
                plan.delete_keys.append(obj.key)
                plan.delete_bytes += obj.size
    for build_id in plan.dropped_builds:
        for obj in store.list(f"{prefix}/builds/{build_id}/"):
            plan.delete_keys.append(obj.key)
            plan.delete_bytes += obj.size
    return plan


def collect_garbage(store: S3ObjectStore, plan: GcPlan) -> None:
    """Delete what ``plan_gc`` planned: old manifests first, so a crash never leaves a manifest
    whose data is gone (orphaned data is collected by the next run)."""
    manifests = [k for k in plan.delete_keys if "/manifests/" in k]
    for key in manifests + [k for k in plan.delete_keys if "/manifests/" not in k]:
        store.delete(key)
