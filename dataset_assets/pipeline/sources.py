"""Listing and opening source files, local or in S3 (compressed files are decoded later, by
:func:`dataset_assets.core.sources.iter_source_items`, from the file name)."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from dataset_assets.core.config import SourceFamily
from dataset_assets.core.errors import ConfigError
from dataset_assets.core.layout import parse_s3_uri
from dataset_assets.core.sources import SourceRef, expand_local, is_source_name
from dataset_assets.core.streams import open_chunks
from dataset_assets.storage import S3ObjectStore


def list_sources(
    family: SourceFamily, store: S3ObjectStore | None, *, root: Path | None = None
) -> list[SourceRef]:
    """Every input file of a family: local globs expanded, s3:// prefixes listed.

    Args:
        family: the family to list.
        store: the dataset bucket's store (required when the family has ``s3://`` paths).
        root: the config file's folder. Local uris are then POSIX paths relative to it, so no
            host path reaches records, quarantine entries or the manifest; a file name that is
            not UTF-8 is listed backslash-escaped (see
            :func:`dataset_assets.core.sources.local_uri`) and still opened by its real path.
            ``s3://`` uris are unchanged. Everything that compares uris (the compile's manifest
            ``inputs`` and the rebuild sensor) must list with the same ``root``.

    Each file is listed once, where a path first names it (prefixes may overlap).

    Raises:
        ConfigError: an ``s3://`` path outside the dataset bucket.
    """
    refs = expand_local(family, root)
    for path in family.paths:
        if not path.startswith("s3://"):
            continue
        bucket, prefix = parse_s3_uri(path)
        if store is None or bucket != store.bucket:
            raise ConfigError(
                f"family {family.name!r} reads {path!r}, but sources must be in the dataset bucket "
                f"{store.bucket if store else '(no store)'!r}"
            )
        for info in store.list(prefix):
            if is_source_name(info.key):
                refs.append(SourceRef(family.name, store.uri(info.key), info.size, info.etag))
    # overlapping prefixes (s3://b/x/ and s3://b/x/y/) list a file twice: it is one input
    unique: dict[str, SourceRef] = {}
    for ref in refs:
        unique.setdefault(ref.uri, ref)
    return list(unique.values())


@contextmanager
def open_source(ref: SourceRef, store: S3ObjectStore | None) -> Iterator[BinaryIO]:
    """A buffered binary stream over a source file (local files by ``ref.path``)."""
    if not ref.path and ref.uri.startswith("s3://"):
        assert store is not None  # list_sources refused S3 sources without a store
        _, key = parse_s3_uri(ref.uri)
        stream = open_chunks(store.iter_bytes(key))
        try:
            yield stream
        finally:
            stream.close()
    else:
        with open(ref.path or ref.uri, "rb", buffering=1 << 20) as fh:
            yield fh
