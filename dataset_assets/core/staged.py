"""A file staged locally, hashed while it was written, waiting to be published."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from dataset_assets.core.hashing import Digest


@dataclass(frozen=True)
class StagedFile:
    """A local file ready for the publish protocol.

    Attributes:
        path: the local file (deleted by the publisher once its S3 copy is verified).
        key: the object key it is published under.
        digest: size, sha256 and expected ETag, computed while the file was written.
        records: JSONL records in the file (0 when unknown, e.g. migrated files).
        families: records per source family.
        keep_local: keep the local file after a verified publish (the manifest's local copy).
    """

    path: Path
    key: str
    digest: Digest
    records: int = 0
    families: dict[str, int] = field(default_factory=dict)
    keep_local: bool = False


@dataclass(frozen=True)
class StreamedFile:
    """A file published from a re-openable stream instead of a staged copy (the export).

    ``open`` must return the same bytes every time it is called (hashed once, uploaded once,
    and opened again only if a retry is needed).
    """

    key: str
    open: Callable[[], BinaryIO]
    digest: Digest
    records: int = 0
    families: dict[str, int] = field(default_factory=dict)
