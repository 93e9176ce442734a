"""The manifest: a build's commit record, written last; the only thing readers trust
(docs/architecture.md, "Commit rules").

The manifest is deterministic for identical inputs: ``build_id`` is derived from the config digest
and the published content, and nothing run-specific (times, run ids) is stored in it, so a rebuild
of unchanged inputs publishes nothing new. Times live in the publish journal.
"""

import hashlib
from typing import Any, Literal, Self

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from dataset_assets.core.errors import ManifestError
from dataset_assets.core.layout import SPLITS

SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _drop_unset_optional(data: dict[str, Any], optional: frozenset[str]) -> dict[str, Any]:
    """Leave out optional fields added after schema 1 while they hold no value, so a manifest
    that does not use them reads the same to an older reader and keeps its build id."""
    return {k: v for k, v in data.items() if k not in optional or v not in (None, [], {})}


_FILE_OPTIONAL = frozenset({"md5", "etag", "parts", "compression"})
_MANIFEST_OPTIONAL = frozenset({"dedup", "cache_keys"})


_SHA256 = r"^[0-9a-f]{64}$"
_MD5 = r"^[0-9a-f]{32}$"


class FileEntry(_Model):
    """One published object.

    Attributes:
        sha256: of the whole object. None only for a file composed in S3 from other published
            files (``parts``) without reading it: no sha256 of the whole exists then, and each
            part's byte range is checked against that part's own entry instead.
        md5: whole-file MD5 when it was computed while writing (shards: the evidence an
            ``UploadPartCopy`` of the file is checked against).
        etag: the S3 ETag the object was verified with (composed files: ``md5-of-md5s-N``).
        parts: keys of the published files this object is the concatenation of, in order.
        compression: ``zstd`` when the object is JSONL compressed with zstd (one frame per
            shard; a composed export is their concatenation, itself a valid zstd stream);
            None: plain bytes. ``bytes``, ``sha256``, ``md5`` and ``etag`` are of the object
            as stored (compressed).
    """

    key: str
    uri: str
    bytes: int = Field(ge=0)
    sha256: str | None = Field(default=None, pattern=_SHA256)
    records: int = Field(ge=0)
    families: dict[str, int] = Field(default_factory=dict)
    md5: str | None = Field(default=None, pattern=_MD5)
    etag: str | None = None
    parts: list[str] = Field(default_factory=list)
    compression: Literal["zstd"] | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return _drop_unset_optional(data, _FILE_OPTIONAL)

    @model_validator(mode="after")
    def _evidence(self) -> Self:
        if self.sha256 is None and not self.parts:
            raise ValueError(f"{self.key}: a file entry needs a sha256 unless it lists its parts")
        return self


class ShardEntry(FileEntry):
    split: Literal["train", "val", "test"]
    shard_id: str
    sha256: str = Field(pattern=_SHA256)


class InputFingerprint(_Model):
    """A source file as it was read: enough to tell whether it changed since."""

    uri: str
    family: str
    bytes: int
    fingerprint: str  # mtime_ns for local files, ETag for S3 objects


class BuildCounts(_Model):
    input_records: int = 0
    published_records: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    quarantined: int = 0
    quarantined_by_reason: dict[str, int] = Field(default_factory=dict)
    per_split: dict[str, int] = Field(default_factory=dict)
    per_family: dict[str, int] = Field(default_factory=dict)
    per_split_family: dict[str, dict[str, int]] = Field(default_factory=dict)


class Manifest(_Model):
    schema_version: int = SCHEMA_VERSION
    build_id: str
    bucket: str
    prefix: str
    config_digest: str
    shards: list[ShardEntry]
    export: FileEntry | None = None
    quarantine: FileEntry | None = None
    provenance: FileEntry | None = None
    dedup: FileEntry | None = None
    counts: BuildCounts
    inputs: list[InputFingerprint] = Field(default_factory=list)
    cache_keys: list[str] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return _drop_unset_optional(data, _MANIFEST_OPTIONAL)

    def split_shards(self, split: str) -> list[ShardEntry]:
        if split not in SPLITS:
            raise ManifestError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
        return [s for s in self.shards if s.split == split]

    def split_records(self, split: str) -> int:
        return sum(s.records for s in self.split_shards(split))

    def families(self) -> list[str]:
        return sorted(self.counts.per_family)

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_INDENT_2) + b"\n"

    @classmethod
    def from_json(cls, data: bytes, source: str = "manifest") -> "Manifest":
        try:
            return cls.model_validate(orjson.loads(data))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            raise ManifestError(f"{source} is not a valid manifest: {exc}") from exc


def with_build_id(manifest: Manifest) -> Manifest:
    """The manifest with ``build_id`` derived from everything else in it (files, counts, inputs,
    config): identical builds get the same id, any difference gives another one."""
    body = manifest.model_dump(mode="json", exclude={"build_id"})
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return manifest.model_copy(update={"build_id": digest[:16]})


def check_consistent(manifest: Manifest) -> None:
    """Refuse a manifest whose files disagree with its counts (before anything is published)."""
    c = manifest.counts
    problems = []
    for split in SPLITS:
        in_shards = manifest.split_records(split)
        if in_shards != c.per_split.get(split, 0):
            problems.append(
                f"{split}: shards hold {in_shards}, compile counted {c.per_split.get(split, 0)}"
            )
    if manifest.export is not None:
        if manifest.export.records != c.published_records:
            problems.append(
                f"export holds {manifest.export.records}, compile counted {c.published_records}"
            )
        problems += _export_parts_problems(manifest, manifest.export)
    accounted = c.published_records + c.exact_duplicates + c.near_duplicates + c.quarantined
    if accounted != c.input_records:
        problems.append(f"{c.input_records} input records but {accounted} accounted for")
    if problems:
        raise ManifestError("inconsistent build, manifest not published: " + "; ".join(problems))


def _export_parts_problems(manifest: Manifest, export: FileEntry) -> list[str]:
    """A composed export must be exactly the manifest's shards, in manifest order."""
    if not export.parts:
        return []
    shards = [s.key for split in SPLITS for s in manifest.split_shards(split)]
    if export.parts != shards:
        return [f"export is composed of {len(export.parts)} parts that are not the shards in order"]
    size = sum(s.bytes for s in manifest.shards)
    if export.bytes != size:
        return [f"export holds {export.bytes} bytes, its parts {size}"]
    return []
