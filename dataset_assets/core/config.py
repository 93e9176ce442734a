"""The declarative dataset configuration (YAML), validated before any byte is written."""

import hashlib
from pathlib import Path
from typing import Literal

import orjson
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from dataset_assets.core.errors import ConfigError
from dataset_assets.core.layout import parse_s3_uri

MiB = 1024 * 1024
MIN_SHARD_SIZE = 64 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceFamily(_Strict):
    """A named group of input files. Families listed first win dedup ties (priority order)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    paths: list[str] = Field(min_length=1, description="local globs and/or s3://bucket/prefix")
    holdout: bool = False

    @field_validator("paths")
    @classmethod
    def _check_paths(cls, paths: list[str]) -> list[str]:
        for p in paths:
            if p.startswith("s3://"):
                parse_s3_uri(p)
            elif "://" in p:
                raise ValueError(f"path {p!r}: allowed are local globs and s3:// prefixes")
        return paths


class SplitRatios(_Strict):
    train: float = Field(0.90, ge=0, le=1)
    val: float = Field(0.05, ge=0, le=1)
    test: float = Field(0.05, ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> "SplitRatios":
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"train + val + test must be 1.0, got {total:g}")
        return self


class NormalizeOptions(_Strict):
    system_prompt: Literal["keep", "strip"] = "keep"
    default_system_prompt: str | None = None
    max_line_bytes: int = Field(64 * MiB, ge=1024)


class DedupOptions(_Strict):
    fold_whitespace: bool = True
    fold_case: bool = False
    near: bool = True
    near_system_turns: bool = Field(
        False,
        description="near duplicates are found on the conversations without their system turns "
        "(a long system prompt shared by generated conversations made distinct ones near "
        "duplicates); true: with them. Exact duplicates always include them",
    )
    # 3 % word edits give Jaccard 0.72-0.86 on word 3-grams (measured, bench/bench_dedup.py):
    # a 0.7 threshold with 32 bands x 4 rows keeps recall >= 0.99 with no false merges.
    threshold: float = Field(0.7, gt=0, le=1)
    num_perm: int = Field(128, ge=16, le=1024)
    bands: int = Field(32, ge=1)
    shingle_words: int = Field(3, ge=1, le=10)

    @model_validator(mode="after")
    def _bands_divide(self) -> "DedupOptions":
        if self.num_perm % self.bands:
            raise ValueError(
                f"num_perm ({self.num_perm}) must be a multiple of bands ({self.bands})"
            )
        return self


class MigrationOptions(_Strict):
    """Migration of existing local dataset files to S3 (one dynamic partition per file)."""

    data_root: Path = Path("data")
    package_data_roots: list[Path] = Field(default_factory=list)
    min_package_file_bytes: int = Field(1024 * 1024, ge=0)
    prefix: str = "datasets/local/ai/training_ready"
    ledger_path: Path = Path(".local/migration-ledger.jsonl")
    stable_seconds: float = Field(5.0, ge=0)
    allow_active_sources: bool = Field(
        False,
        description="also migrate files a family reads (then point the family at the migrated "
        "s3:// prefix, or the next build loses them)",
    )

    @field_validator("prefix")
    @classmethod
    def _clean_prefix(cls, value: str) -> str:
        return _clean_key_prefix(value)


class SensorOptions(_Strict):
    """How the rebuild sensor treats the generated-data locations (the families' paths)."""

    stable_seconds: float = Field(10.0, ge=0)
    minimum_interval_seconds: int = Field(30, ge=1)
    on_removal: Literal["report", "rebuild"] = "report"


class CompileOptions(_Strict):
    """How the compile uses the machine (none of these change the published bytes)."""

    workers: int = Field(
        0, ge=0, le=256, description="processes for the partition and shard stages; 0 = all cores"
    )
    local_cache: bool = Field(
        True,
        description="keep partition intermediates under staging_dir/cache (after uploading "
        "them when they are shared: later builds on this machine skip the download); false = "
        "every step reads S3",
    )
    intermediates: Literal["auto", "s3", "local"] = Field(
        "auto",
        description="where stage 1's per-file intermediates are kept for the later steps and "
        "builds: s3 = uploaded under {prefix}/_cache/partitions/ (any machine reuses them: "
        "needed when a run's steps, its re-executions or later runs land on other machines); "
        "local = this machine's cache only (staging_dir/cache, no upload); auto = local when "
        "every step, retry and later run runs on this machine (the in_process and multiprocess "
        "executors with Dagster's default run launcher, or the plain build_dataset path) and "
        "local_cache is on, else s3",
    )
    memory_mib: int = Field(512, ge=64, description="DuckDB memory limit of the dedup stage")
    range_mib: int = Field(
        0,
        ge=0,
        description="local plain JSONL files of at least 1.5 times this are read in byte ranges "
        "of about this size on several cores; 0 = automatic (a quarter of each worker's share "
        "of the input, at least 32 MiB)",
    )

    @model_validator(mode="after")
    def _local_needs_the_cache(self) -> "CompileOptions":
        if self.intermediates == "local" and not self.local_cache:
            raise ValueError(
                "intermediates: local keeps them in the local cache: it needs local_cache: true"
            )
        return self


class CardOptions(_Strict):
    """Fields of the published dataset card (README.md next to the manifest)."""

    pretty_name: str | None = None
    description: str | None = None
    license: str = Field("other", description="an SPDX id, or 'other'")


def _clean_key_prefix(value: str) -> str:
    value = value.strip("/")
    if not value or ".." in value.split("/"):
        raise ValueError(f"must be a non-empty key prefix without '..', got {value!r}")
    return value


class DatasetConfig(_Strict):
    """Everything a build needs. Relative paths are resolved against the config file's folder."""

    bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$")
    prefix: str = "final_dataset"
    families: list[SourceFamily] = Field(min_length=1)
    splits: SplitRatios = SplitRatios()
    seed: int = 0
    shard_size: int = Field(
        256 * MiB,
        ge=MIN_SHARD_SIZE,
        description="JSONL bytes per shard, before compression (a shard object is ~1/3 of it "
        "with zstd)",
    )
    shard_compression: Literal["zstd", "none"] = Field(
        "zstd",
        description="zstd: shards and the export are JSONL compressed with zstd "
        "(``.jsonl.zst``, level 3, ~3.5x smaller: less to upload, store, copy and download; "
        "the loader and the Hugging Face datasets library decompress them); none: plain "
        "``.jsonl``",
    )
    part_size: int = Field(16 * MiB, ge=5 * MiB)
    staging_dir: Path = Path(".local/staging")
    manifest_path: Path = Path(".local/manifest.json")
    max_publishes_in_flight: int = Field(2, ge=1, le=64)
    verify: Literal["head", "readback"] = "head"
    compiled_export: bool = Field(
        True,
        description="compose the single compiled export (every conversation in one file) in "
        "each build; off: builds publish shards, sidecars and manifest only, and the fixed "
        "export key is removed when such a build commits",
    )
    quarantine_max_ratio: float = Field(0.05, ge=0, le=1)
    normalize: NormalizeOptions = NormalizeOptions()
    dedup: DedupOptions = DedupOptions()
    migration: MigrationOptions = MigrationOptions()
    sensor: SensorOptions = SensorOptions()
    compile: CompileOptions = CompileOptions()
    card: CardOptions = CardOptions()
    # The config file's folder: published source paths are relative to it (never in the digest).
    _config_dir: Path | None = PrivateAttr(default=None)

    @property
    def config_dir(self) -> Path | None:
        return self._config_dir

    @field_validator("families")
    @classmethod
    def _unique_families(cls, families: list[SourceFamily]) -> list[SourceFamily]:
        names = [f.name for f in families]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"family names must be unique, repeated: {', '.join(dupes)}")
        return families

    @field_validator("prefix")
    @classmethod
    def _clean_prefix(cls, value: str) -> str:
        return _clean_key_prefix(value)

    @property
    def data_compression(self) -> str | None:
        """The compression of shards and the export: ``"zstd"``, or None for plain JSONL."""
        return None if self.shard_compression == "none" else self.shard_compression

    def digest(self) -> str:
        """sha256 of the canonical config (identifies what a build was made with)."""
        body = self.model_dump(mode="json", exclude={"compile"})  # machine use, not content
        if body.get("shard_compression") == "none":  # the format before the option existed:
            del body["shard_compression"]  # such configs keep their digest (and build ids)
        if not body["dedup"]["near_system_turns"]:  # the default, added later: same digests
            del body["dedup"]["near_system_turns"]
        data = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(data).hexdigest()

    def family(self, name: str) -> SourceFamily:
        for fam in self.families:
            if fam.name == name:
                return fam
        allowed = ", ".join(f.name for f in self.families)
        raise ConfigError(f"unknown family {name!r}; configured families: {allowed}")


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid dataset config {source}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        got = err.get("input")
        got_text = "" if isinstance(got, dict | list) else f" (got {got!r})"
        lines.append(f"  {loc}: {err['msg']}{got_text}")
    return "\n".join(lines)


def parse_config(data: object, base_dir: Path, source: str = "<dict>") -> DatasetConfig:
    """Validate a mapping into a DatasetConfig, resolving relative paths against ``base_dir``."""
    try:
        cfg = DatasetConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from exc
    resolved_families = [
        fam.model_copy(
            update={"paths": [p if p.startswith("s3://") else str(base_dir / p) for p in fam.paths]}
        )
        for fam in cfg.families
    ]
    mig = cfg.migration
    migration = mig.model_copy(
        update={
            "data_root": (base_dir / mig.data_root).resolve(),
            "package_data_roots": [(base_dir / p).resolve() for p in mig.package_data_roots],
            "ledger_path": (base_dir / mig.ledger_path).resolve(),
        }
    )
    resolved = cfg.model_copy(
        update={
            "families": resolved_families,
            "migration": migration,
            "staging_dir": (base_dir / cfg.staging_dir).resolve(),
            "manifest_path": (base_dir / cfg.manifest_path).resolve(),
        }
    )
    resolved._config_dir = base_dir.resolve()
    return resolved


def load_config(path: Path) -> DatasetConfig:
    """Read and validate a YAML dataset config file."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read dataset config {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"dataset config {path} is not valid YAML: {exc}") from exc
    return parse_config(data, path.resolve().parent, source=str(path))
