"""Checking a published build against S3, and garbage-collecting old builds (dry run first)."""

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson

from dataset_assets.core.errors import ManifestError, ObjectNotFoundError
from dataset_assets.core.layout import (
    SPLITS,
    SUFFIXES,
    build_id_of_manifest_key,
    build_manifest_key,
    build_sidecar_prefix,
    export_key,
    latest_manifest_key,
    lease_key,
    manifests_prefix,
    readme_key,
    run_prefix,
)
from dataset_assets.core.manifest import FileEntry, Manifest
from dataset_assets.storage import ObjectInfo, S3ObjectStore
from dataset_assets.storage.objects import MultipartUpload


def manifest_files(manifest: Manifest, *, with_export: bool = True) -> list[FileEntry]:
    """Every object a manifest references. Older manifests name the fixed export key, which
    each build replaces: their export can be checked only while they are the latest
    (``with_export``); an immutable per-build export is always included."""
    export = manifest.export
    if export is not None and not with_export and export.key == export_key(manifest.prefix):
        export = None
    extra = (export, manifest.quarantine, manifest.provenance, manifest.dedup)
    return [*manifest.shards, *(f for f in extra if f is not None)]


def entry_problem(store: S3ObjectStore, entry: FileEntry, *, readback: bool = False) -> str | None:
    """What is wrong with one published object in S3, or None.

    Compared: size; our ``sha256`` metadata when the object carries it (a file composed in S3
    from parts carries none); the ETag the manifest recorded, when it recorded one;
    ``readback`` streams the object and hashes it (when the manifest has a whole sha256) —
    the only content check of an object that has neither sha256 metadata nor a recorded ETag.
    """
    try:
        info = store.head(entry.key)
    except ObjectNotFoundError:
        return f"{entry.uri}: missing"
    if info.size != entry.bytes:
        return f"{entry.uri}: expected {entry.bytes} bytes, S3 has {info.size}"
    if info.sha256 is not None and entry.sha256 is not None and info.sha256 != entry.sha256:
        return f"{entry.uri}: expected sha256 {entry.sha256}, S3 has sha256 {info.sha256}"
    if entry.etag is not None and info.etag != entry.etag.strip('"'):
        return f"{entry.uri}: expected ETag {entry.etag}, S3 has {info.etag}"
    if readback and entry.sha256 is not None:
        sha = hashlib.sha256()
        for chunk in store.iter_bytes(entry.key):
            sha.update(chunk)
        if sha.hexdigest() != entry.sha256:
            return f"{entry.uri}: bytes hash to {sha.hexdigest()}, not {entry.sha256}"
    return None


def verify_build(
    store: S3ObjectStore,
    manifest: Manifest,
    *,
    readback: bool = False,
    with_export: bool = True,
    threads: int = 8,
) -> list[str]:
    """Problems with the objects a manifest references (see :func:`entry_problem`), in
    manifest order. Empty means the build is intact."""
    entries = manifest_files(manifest, with_export=with_export)
    with ThreadPoolExecutor(threads) as pool:
        found = pool.map(lambda e: entry_problem(store, e, readback=readback), entries)
        return [p for p in found if p is not None]


# -- garbage collection ---------------------------------------------------------------------------
#
# A key is protected when it is named by (a) the latest pointer as re-read right before each
# delete batch, (b) one of the ``keep`` newest manifests, (c) a manifest inside the grace period:
# written less than ``grace`` ago, or replaced as the latest by a newer build less than ``grace``
# ago. Objects younger than ``min_age`` are never deleted either (new objects of a running build).

_GC_FOLDERS = (*SPLITS, "quarantine", "provenance", "dedup", "compiled", "_cache")
_NEVER_COLLECTED = frozenset({"manifests", "builds", "_assets", "_probe", "_runs"})


@dataclass(frozen=True)
class _ManifestObject:
    build_id: str
    key: str
    committed: datetime


@dataclass
class _Protection:
    """What gc must not delete, as of one reading of the pointer and the manifests."""

    latest: str
    kept_builds: list[str]
    keys: set[str]
    manifests: list[_ManifestObject]

    def covers(self, key: str) -> bool:
        """``key`` is named, or is inside a named folder (a ``cache_keys`` entry ending in
        ``/``: a partition's intermediates, a clustering's decisions)."""
        return key in self.keys or any(folder in self.keys for folder in _parents(key))


def _parents(key: str) -> set[str]:
    """Every folder above ``key`` (``a/``, ``a/b/`` for ``a/b/c``)."""
    parts = key.split("/")[:-1]
    return {"/".join(parts[: i + 1]) + "/" for i in range(len(parts))}


@dataclass(frozen=True)
class Retention:
    """What gc keeps: the ``keep`` newest manifests, builds inside ``grace``, young objects."""

    keep: int
    grace: timedelta
    min_age: timedelta


@dataclass
class GcPlan:
    """What ``collect_garbage`` would delete: manifests outside retention and grace, the data
    objects and journals only they named, and incomplete multipart uploads older than grace."""

    prefix: str
    retention: Retention
    now: datetime | None
    kept_builds: list[str]
    dropped_builds: list[str]
    delete_keys: list[str] = field(default_factory=list)
    delete_bytes: int = 0
    abort_uploads: list[MultipartUpload] = field(default_factory=list)


@dataclass
class GcResult:
    """What ``collect_garbage`` did; ``skipped`` keys had become protected since the plan."""

    deleted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    aborted: list[MultipartUpload] = field(default_factory=list)


def _time(obj: ObjectInfo) -> datetime:
    return obj.last_modified or datetime.min.replace(tzinfo=UTC)


def named_keys(data: bytes, bucket: str, prefix: str) -> set[str]:
    """Every key under ``prefix`` a manifest names, in any field (file entries, export parts,
    ``cache_keys``, fields added later), as a key or as an ``s3://`` URI of the bucket."""
    root, uri_root = f"{prefix}/", f"s3://{bucket}/"
    found: set[str] = set()
    try:
        stack: list[object] = [orjson.loads(data)]
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"a manifest under {prefix} is not JSON; refusing to collect") from exc
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            key = item.removeprefix(uri_root)
            if key.startswith(root):
                found.add(key)
    return found


class _ManifestCache:
    """Named keys per build id (immutable manifests are read once per gc)."""

    def __init__(self, store: S3ObjectStore, prefix: str) -> None:
        self.store, self.prefix = store, prefix
        self._keys: dict[str, set[str]] = {}

    def keys(self, build_id: str) -> set[str]:
        if build_id not in self._keys:
            key = build_manifest_key(self.prefix, build_id)
            try:
                data = self.store.get_bytes(key)
            except ObjectNotFoundError:
                return set()
            try:
                named = named_keys(data, self.store.bucket, self.prefix)
            except ManifestError as exc:
                raise ManifestError(f"{self.store.uri(key)}: {exc}") from exc
            self._keys[build_id] = named | {key}
        return self._keys[build_id]


def _list_manifests(store: S3ObjectStore, prefix: str) -> list[_ManifestObject]:
    return [
        _ManifestObject(build_id_of_manifest_key(o.key), o.key, _time(o))
        for o in store.list(manifests_prefix(prefix))
        if o.key.endswith(".json")
    ]


def _protect(
    store: S3ObjectStore, prefix: str, rules: Retention, now: datetime, cache: _ManifestCache
) -> _Protection:
    """Read the pointer and the manifests now and compute what must not be deleted."""
    try:
        pointer, pointer_info = store.read(latest_manifest_key(prefix))
    except ObjectNotFoundError as exc:
        raise ManifestError(
            f"no {store.uri(latest_manifest_key(prefix))}: nothing to keep, refusing to collect"
        ) from exc
    latest_id = _pointer_build_id(pointer, store.uri(latest_manifest_key(prefix)))
    manifests = _list_manifests(store, prefix)
    # S3 times have a 1 s resolution: among manifests of the same second the pointer's build
    # is the newest (else two quick builds could both be kept, the older instead of the latest)
    newest = sorted(manifests, key=lambda m: (m.committed, m.build_id == latest_id), reverse=True)[
        : rules.keep
    ]
    kept = {latest_id, *(m.build_id for m in newest)} | _inside_grace(
        manifests, latest_id, _time(pointer_info), rules, now
    )
    keys = named_keys(pointer, store.bucket, prefix)
    for build_id in kept:
        keys |= cache.keys(build_id)
    order = [m.build_id for m in sorted(manifests, key=lambda m: m.committed, reverse=True)]
    kept_order = [b for b in order if b in kept] + ([] if latest_id in order else [latest_id])
    return _Protection(latest_id, kept_order, keys, manifests)


def _inside_grace(
    manifests: list[_ManifestObject],
    latest_id: str,
    pointer_time: datetime,
    rules: Retention,
    now: datetime,
) -> set[str]:
    """Builds written less than ``grace`` (or ``min_age``) ago, and builds replaced by a newer
    one less than ``grace`` ago (the latest counts from when the pointer named it)."""
    committed = {m.build_id: m.committed for m in manifests}
    committed[latest_id] = max(committed.get(latest_id, pointer_time), pointer_time)
    order = sorted(committed, key=lambda b: committed[b], reverse=True)
    young = now - max(rules.grace, rules.min_age)
    kept = {b for b in order if committed[b] > young}
    for newer, older in zip(order, order[1:], strict=False):
        if committed[newer] > now - rules.grace:  # older was the latest less than grace ago
            kept |= {newer, older}
    return kept


def _pointer_build_id(data: bytes, source: str) -> str:
    try:
        build_id = orjson.loads(data).get("build_id")
    except (orjson.JSONDecodeError, AttributeError) as exc:
        raise ManifestError(f"{source} is not a manifest; refusing to collect") from exc
    if not isinstance(build_id, str) or not build_id:
        raise ManifestError(f"{source} names no build_id; refusing to collect")
    return build_id


def _fixed_keys(prefix: str) -> frozenset[str]:
    """Keys replaced in place, never collected: the pointer, the fixed export, the lease."""
    return frozenset(
        {
            latest_manifest_key(prefix),
            *(export_key(prefix, suffix) for suffix in SUFFIXES),
            lease_key(prefix),
            readme_key(prefix),
        }
    )


def _candidate_folders(prefix: str, cache: _ManifestCache, build_ids: list[str]) -> list[str]:
    """Data folders gc may collect in: the standard ones plus every folder a manifest names
    (e.g. per-build exports), never the pointer, lease, references, manifests or journals."""
    folders = set(_GC_FOLDERS)
    for build_id in build_ids:
        for key in cache.keys(build_id):
            rest = key.removeprefix(f"{prefix}/")
            if "/" in rest:
                folders.add(rest.split("/", 1)[0])
    return sorted(folders - _NEVER_COLLECTED)


def plan_gc(
    store: S3ObjectStore,
    prefix: str,
    keep: int,
    *,
    grace: timedelta = timedelta(hours=24),
    min_age: timedelta = timedelta(hours=24),
    now: datetime | None = None,
) -> GcPlan:
    """Plan the removal of every manifest outside the ``keep`` newest and the grace period, and
    of every object no protected manifest names.

    How long a pinned build is safe: a training job (or anything) that resolved a manifest
    keeps every object it names for as long as that build is the latest or among the ``keep``
    newest, and then for ``grace`` after a newer build replaced it (counted from the newer
    manifest's upload; a build whose own manifest is younger than ``grace`` is kept too). With
    the default 24 h: a job pinned to a build stays readable for at least 24 h after the next
    build commits.

    A build in progress: ``gc --apply`` holds the build lease, so it never runs beside a build
    that holds it. A collector that ignores the lease protects a running build's reused objects
    only when a kept or in-grace manifest names them; otherwise the build's commit refuses
    (its manifest would name a missing object) instead of publishing it.

    Args:
        keep: newest manifests (by their own LastModified) always kept; ≥ 1.
        grace: see above (``--grace-hours``).
        min_age: objects younger than this are never deleted, whatever names them.
        now: the current time (tests); default: the clock, re-read before every delete batch.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the latest build is never collected), got {keep}")
    at = now or datetime.now(UTC)
    cache = _ManifestCache(store, prefix)
    rules = Retention(keep, grace, min_age)
    protection = _protect(store, prefix, rules, at, cache)
    manifests = protection.manifests
    ids = [m.build_id for m in sorted(manifests, key=lambda m: m.committed, reverse=True)]
    dropped = [i for i in ids if i not in protection.kept_builds]
    plan = GcPlan(prefix, rules, now, protection.kept_builds, dropped)
    young = at - min_age
    for m in manifests:
        if m.build_id in dropped and m.committed <= young:
            plan.delete_keys.append(m.key)
    for folder in _candidate_folders(prefix, cache, ids):
        for obj in store.list(f"{prefix}/{folder}/"):
            owned = obj.key not in _fixed_keys(prefix)
            if owned and not protection.covers(obj.key) and _time(obj) <= young:
                plan.delete_keys.append(obj.key)
                plan.delete_bytes += obj.size
    _plan_journals(store, prefix, plan, set(ids) - set(dropped), young)
    _plan_run_folders(store, prefix, plan, at - grace)
    plan.abort_uploads = [
        u
        for u in store.list_multipart_uploads(f"{prefix}/")
        if u.initiated is not None and u.initiated <= at - grace
    ]
    return plan


def _plan_journals(
    store: S3ObjectStore, prefix: str, plan: GcPlan, live: set[str], young: datetime
) -> None:
    """Journals of builds whose manifest is deleted by this plan or already gone."""
    deleted = {build_id_of_manifest_key(k) for k in plan.delete_keys if "/manifests/" in k}
    for obj in store.list(f"{prefix}/builds/"):
        build_id = obj.key.removeprefix(f"{prefix}/builds/").split("/", 1)[0]
        orphan = build_id not in live and build_id not in plan.dropped_builds
        if build_id in deleted or (orphan and _time(obj) <= young):
            plan.delete_keys.append(obj.key)
            plan.delete_bytes += obj.size


def _is_protected(key: str, prefix: str, protection: _Protection) -> bool:
    journals = (build_sidecar_prefix(prefix, b) for b in protection.kept_builds)
    return protection.covers(key) or any(key.startswith(j) for j in journals)


def _plan_run_folders(store: S3ObjectStore, prefix: str, plan: GcPlan, cutoff: datetime) -> None:
    """Run-scoped references and step journals (``_runs/{run_id}/``) of runs that wrote
    nothing for the grace period: finished, failed or killed runs (a retry of a failed run
    reads its parent's references, so they stay for the grace period)."""
    runs: dict[str, list[ObjectInfo]] = {}
    root = run_prefix(prefix, "")
    for obj in store.list(root):
        runs.setdefault(obj.key.removeprefix(root).split("/", 1)[0], []).append(obj)
    for objects in runs.values():
        if max(_time(o) for o in objects) <= cutoff:
            plan.delete_keys += [o.key for o in objects]
            plan.delete_bytes += sum(o.size for o in objects)


def collect_garbage(store: S3ObjectStore, plan: GcPlan, *, batch_size: int = 500) -> GcResult:
    """Delete what ``plan_gc`` planned, ``batch_size`` keys at a time: old manifests first (a
    crash never leaves a manifest whose data is gone), then data, then journals. Right before
    each batch the pointer and the manifests are read again and any key that became protected
    (a build committed meanwhile, reusing it) is skipped. Then old multipart uploads are aborted.
    """
    order = sorted(plan.delete_keys, key=lambda k: ("/manifests/" not in k, "/builds/" in k))
    result = GcResult()
    cache = _ManifestCache(store, plan.prefix)
    for start in range(0, len(order), batch_size):
        now = plan.now or datetime.now(UTC)
        protection = _protect(store, plan.prefix, plan.retention, now, cache)
        for key in order[start : start + batch_size]:
            if _is_protected(key, plan.prefix, protection):
                result.skipped.append(key)
                continue
            store.delete(key)
            result.deleted.append(key)
    for upload in plan.abort_uploads:
        store.abort_multipart_upload(upload.key, upload.upload_id)
        result.aborted.append(upload)
    return result
