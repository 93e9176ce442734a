"""Where a dataset comes from: resolving (and pinning) the manifest, and per-process readers.

A manifest is resolved exactly once. For ``…/manifest.json`` (the "latest" pointer) the
immutable ``…/manifests/{build_id}.json`` of the build it names is read too, and that URI is
what the loader reports as pinned; the parsed manifest is kept and travels with the loader to
DataLoader workers, so a build published meanwhile never changes what is read.
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dataset_assets.core.errors import ManifestError, ObjectNotFoundError
from dataset_assets.core.layout import build_manifest_key, parse_s3_uri, s3_uri
from dataset_assets.core.manifest import Manifest
from dataset_assets.loader.fetch import LocalFiles
from dataset_assets.storage.objects import S3ObjectStore
from dataset_assets.storage.settings import S3Settings


class ObjectReader(Protocol):
    """The read side of an object store the loader uses (S3ObjectStore satisfies it)."""

    def get_bytes(self, key: str) -> bytes: ...

    def iter_bytes(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = 1024 * 1024
    ) -> Iterator[bytes]: ...


class Readers:
    """Readers per bucket, re-created in a new process (boto3 connections must not be shared
    across ``fork``) and rebuilt after unpickling (spawned DataLoader workers).

    Args:
        store: a store to use for its bucket (and, when it is an :class:`S3ObjectStore`, whose
            settings are reused for other buckets and other processes).
        settings: connection settings when no store is given; None = the AWS default chain.
    """

    def __init__(self, store: ObjectReader | None, settings: S3Settings | None) -> None:
        self._store = store
        self._bucket = getattr(store, "bucket", None)
        if settings is None and isinstance(store, S3ObjectStore):
            settings = store.settings
        self._settings = settings if settings is not None else S3Settings()
        self._part_size = store.part_size if isinstance(store, S3ObjectStore) else None
        self._pid = os.getpid()
        self._by_bucket: dict[str, ObjectReader] = {}
        self.local = LocalFiles()

    def for_bucket(self, bucket: str) -> ObjectReader:
        if os.getpid() != self._pid:
            self._by_bucket.clear()
            self._pid = os.getpid()
            if isinstance(self._store, S3ObjectStore):
                self._store = None  # its pooled connections belong to the parent process
        reader = self._by_bucket.get(bucket)
        if reader is None:
            if self._store is not None and (self._bucket in (None, bucket)):
                reader = self._store
            elif self._part_size is not None:
                reader = S3ObjectStore(bucket, self._settings, part_size=self._part_size)
            else:
                reader = S3ObjectStore(bucket, self._settings)
            self._by_bucket[bucket] = reader
        return reader

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_by_bucket"] = {}
        if isinstance(self._store, S3ObjectStore):
            state["_store"] = None
        return state


@dataclass(frozen=True)
class ResolvedManifest:
    """A manifest resolved once.

    Attributes:
        manifest: the parsed, pinned manifest.
        uri: what the caller asked for.
        pinned_uri: the immutable manifest of the build when it exists, else ``uri``.
        local_dir: directory of a local manifest (for manifest-relative shard paths), else None.
    """

    manifest: Manifest
    uri: str
    pinned_uri: str
    local_dir: Path | None


def resolve_manifest(uri_or_path: str | os.PathLike[str], readers: Readers) -> ResolvedManifest:
    """Read and parse the manifest once; for S3, pin the build's immutable manifest."""
    text = os.fspath(uri_or_path)
    if not text.startswith("s3://"):
        path = Path(text[len("file://") :] if text.startswith("file://") else text)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ManifestError(f"cannot read manifest {path}: {exc}") from exc
        manifest = Manifest.from_json(data, source=str(path))
        return ResolvedManifest(manifest, text, str(path.resolve()), path.resolve().parent)
    try:
        bucket, key = parse_s3_uri(text)
    except ValueError as exc:
        raise ManifestError(str(exc)) from exc
    reader = readers.for_bucket(bucket)
    try:
        manifest = Manifest.from_json(reader.get_bytes(key), source=text)
    except ObjectNotFoundError as exc:
        raise ManifestError(f"no manifest at {text}: {exc}") from exc
    pinned_key = build_manifest_key(manifest.prefix, manifest.build_id)
    pinned_uri = text
    if pinned_key != key:
        try:
            pinned = Manifest.from_json(
                reader.get_bytes(pinned_key), source=s3_uri(bucket, pinned_key)
            )
        except ObjectNotFoundError:
            pinned = None  # a publisher without immutable manifests: the parsed one is the pin
        if pinned is not None:
            if pinned.build_id != manifest.build_id:
                raise ManifestError(
                    f"{s3_uri(bucket, pinned_key)} holds build {pinned.build_id}, "
                    f"expected {manifest.build_id}"
                )
            manifest, pinned_uri = pinned, s3_uri(bucket, pinned_key)
    return ResolvedManifest(manifest, text, pinned_uri, None)
