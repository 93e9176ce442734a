"""Committing a build: the immutable manifest, then the latest pointer, in the order builds began.

A build records the pointer it started from (:func:`read_pointer`) before it reads any source,
and commits with :func:`commit_manifest`, which replaces ``manifest.json`` only if the pointer
has not moved since (``If-Match`` on the recorded ETag, or ``If-None-Match: *`` when there was
none). A build that lost the race raises :class:`ConcurrentPublishError`: its immutable manifest
and data objects stay unreferenced (collected by gc), and no local copy is written. A pointer
that moved to the very same build id (identical content) is a success.

Ordering relies on the server honouring conditional writes; :func:`probe_conditional_writes`
checks that once per bucket and process and refuses a server that ignores them.
"""

import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from dataset_assets.core.errors import (
    ConcurrentPublishError,
    ManifestError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StorageError,
)
from dataset_assets.core.layout import build_manifest_key, latest_manifest_key, probe_key
from dataset_assets.core.manifest import Manifest
from dataset_assets.pipeline.maintenance import verify_build
from dataset_assets.storage import S3ObjectStore

_JSON = "application/json"


@dataclass(frozen=True)
class PointerState:
    """The latest pointer as a build saw it when it started.

    Attributes:
        etag: ETag of ``manifest.json``; None when there was no pointer yet.
        build_id: the build it named (None when absent or unreadable).
    """

    etag: str | None
    build_id: str | None

    @property
    def absent(self) -> bool:
        return self.etag is None

    def describe(self) -> str:
        return "absent" if self.etag is None else f"build {self.build_id} (ETag {self.etag})"

    def to_json(self) -> str:
        """A string to carry the state from a build's first step to its commit step."""
        return orjson.dumps({"etag": self.etag, "build_id": self.build_id}).decode()

    @classmethod
    def from_json(cls, text: str) -> "PointerState":
        body = orjson.loads(text)
        return cls(etag=body["etag"], build_id=body["build_id"])


class ConditionalWritesUnsupportedError(StorageError):
    """The server accepted a write its condition should have refused: ordering cannot hold."""


def read_pointer(store: S3ObjectStore, prefix: str) -> PointerState:
    """The current latest pointer of ``prefix`` (record it when a build starts)."""
    key = latest_manifest_key(prefix)
    try:
        data, info = store.read(key)
    except ObjectNotFoundError:
        return PointerState(etag=None, build_id=None)
    return PointerState(etag=info.etag, build_id=_build_id_of(data))


def _build_id_of(data: bytes) -> str | None:
    # Read leniently: a pointer written by another schema version still orders commits.
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    build_id = body.get("build_id") if isinstance(body, dict) else None
    return build_id if isinstance(build_id, str) else None


def commit_manifest(
    store: S3ObjectStore, manifest: Manifest, local_path: Path, started_from: PointerState
) -> str:
    """Publish ``manifests/{build_id}.json``, check every object it names is in S3, then swap
    ``manifest.json`` only if it still is ``started_from``; then write the local copy.

    Returns the URI of the immutable manifest.

    Raises:
        ConcurrentPublishError: the pointer moved to another build since ``started_from``.
        ManifestError: an object the manifest names is missing or differs (e.g. collected by
            a gc run with no grace period): nothing is pointed at it.
    """
    data = manifest.to_json()
    uri = put_immutable_manifest(store, manifest, data)
    problems = verify_build(store, manifest)
    if problems:
        raise ManifestError(
            f"build {manifest.build_id} not committed, {len(problems)} object(s) it names are "
            "not in S3 as published: " + "; ".join(problems[:5])
        )
    swap_pointer(store, manifest, data, started_from)
    write_local_copy(local_path, data)
    return uri


def put_immutable_manifest(store: S3ObjectStore, manifest: Manifest, data: bytes) -> str:
    """Create ``manifests/{build_id}.json``; an existing identical one is fine (same build)."""
    key = build_manifest_key(manifest.prefix, manifest.build_id)
    try:
        store.put_bytes(key, data, if_none_match=True, content_type=_JSON)
    except PreconditionFailedError:
        if store.get_bytes(key) != data:
            raise StorageError(
                f"{store.uri(key)} exists with different content; build ids must be unique",
                key=key,
            ) from None
    return store.uri(key)


def swap_pointer(
    store: S3ObjectStore, manifest: Manifest, data: bytes, started_from: PointerState
) -> None:
    """Replace the latest pointer with ``data`` only if it is still ``started_from``."""
    key = latest_manifest_key(manifest.prefix)
    try:
        if started_from.etag is None:
            store.put_bytes(key, data, if_none_match=True, content_type=_JSON)
        else:
            store.put_bytes(key, data, if_match=started_from.etag, content_type=_JSON)
    except PreconditionFailedError:
        now = read_pointer(store, manifest.prefix)
        if now.build_id == manifest.build_id:
            return  # another run committed this very build: same content, nothing to do
        raise ConcurrentPublishError(
            f"concurrent publish: {store.uri(key)} moved from {started_from.describe()} to "
            f"{now.describe()} while build {manifest.build_id} ran; not committed (its objects "
            "stay unreferenced until gc); rerun the build to publish on top of the new latest"
        ) from None


def write_local_copy(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name (fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


_probed: set[tuple[str | None, str]] = set()
_probe_lock = threading.Lock()


def probe_conditional_writes(store: S3ObjectStore, prefix: str = "") -> None:
    """Check once per process and bucket that the server honours ``If-None-Match: *`` and
    ``If-Match`` on PUT: a create over an existing object and a replace with a wrong ETag must
    both be refused (412), a replace with the right ETag accepted.

    Raises:
        ConditionalWritesUnsupportedError: naming the endpoint; publishing must not proceed
            (ordered commits and the build lease depend on these conditions).
    """
    cache_key = (store.settings.endpoint_url, store.bucket)
    with _probe_lock:
        if cache_key in _probed:
            return
        _run_probe(store, probe_key(prefix, uuid.uuid4().hex))
        _probed.add(cache_key)


def _run_probe(store: S3ObjectStore, key: str) -> None:
    endpoint = store.settings.endpoint_url or "the default AWS endpoint"
    first = store.put_bytes(key, b'{"probe": 1}', if_none_match=True, content_type=_JSON)
    try:
        failures = []
        if _accepted(lambda: store.put_bytes(key, b'{"probe": 2}', if_none_match=True)):
            failures.append("a second If-None-Match: * create")
        wrong = "0" * 32
        if _accepted(lambda: store.put_bytes(key, b'{"probe": 3}', if_match=wrong)):
            failures.append("an If-Match with a wrong ETag")
        if failures:
            raise ConditionalWritesUnsupportedError(
                f"{endpoint} (bucket {store.bucket}) accepted {' and '.join(failures)}: this "
                "server ignores conditional writes; refusing to publish",
                key=key,
            )
        store.put_bytes(key, b'{"probe": 4}', if_match=first.etag)
    finally:
        store.delete(key)


def _accepted(write: Callable[[], object]) -> bool:
    try:
        write()
    except PreconditionFailedError:
        return False
    return True
