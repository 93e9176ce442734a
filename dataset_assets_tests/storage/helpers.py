"""Small builders shared by the storage tests."""

import os
from pathlib import Path

from dataset_assets.core.hashing import digest_file
from dataset_assets.core.staged import StagedFile
from dataset_assets.storage import S3ObjectStore


def stage(
    store: S3ObjectStore,
    directory: Path,
    key: str,
    size: int,
    *,
    data: bytes | None = None,
    keep_local: bool = False,
) -> StagedFile:
    """Write ``size`` random bytes (or ``data``) and stage them for ``store``'s part size."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / key.replace("/", "__")
    path.write_bytes(data if data is not None else os.urandom(size))
    return StagedFile(
        path=path,
        key=key,
        digest=digest_file(path, store.part_size),
        records=3,
        families={"fam": 3},
        keep_local=keep_local,
    )
