"""Source files in the asset graph: each family's input files as an external asset.

Lineage in the UI starts at the data: ``source/<family>`` (group ``sources``, kinds ``file`` /
``s3``, the family's paths in its description) for every family of the dataset config, made at
definitions load, and upstream of every output of ``compile``. Nothing materializes them;
the rebuild sensor *observes* them: when a family's files change it records an
``AssetObservation`` with the file count, bytes, a short fingerprint digest and the files
(see :func:`family_observation`). Lineage only: what a build reads and publishes is unchanged.

Asset key parts here are ``[A-Za-z0-9_]`` (the characters Dagster allows in names and op input
names); :func:`family_key_parts` maps family names onto them, stable and collision-free.
"""

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import orjson

from dataset_assets.core.config import DatasetConfig, SourceFamily
from dataset_assets.core.watch import Fingerprint
from dataset_assets.defs.assets import OWNERS, compile_assets

SOURCE_GROUP = "sources"
SOURCE_PREFIX = "source"
MAX_LISTED_FILES = 50  # rows of an observation's file table

FILES_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("path", "string", "relative to the config folder, or s3:// URI"),
        dg.TableColumn("bytes", "int", "size when observed"),
        dg.TableColumn("version", "string", "mtime_ns (local) or ETag (S3)"),
    ]
)

_INVALID = re.compile(r"[^A-Za-z0-9_]")


def family_key_parts(names: Iterable[str]) -> dict[str, str]:
    """Family name → asset key part of ``[A-Za-z0-9_]``.

    A valid name is kept as it is. Any other character becomes ``_`` (``web.v2`` →
    ``web_v2``); if that collides with another family's part, the sanitized name gets the first
    6 hex digits of the name's sha256 (``web_v2_1f3c9a``), so two families never share a key.
    """
    names = list(names)
    valid = {n for n in names if not _INVALID.search(n)}
    sanitized = {n: _INVALID.sub("_", n) for n in names}
    parts: dict[str, str] = {}
    for name in names:
        part = sanitized[name]
        clash = name not in valid and (
            part in valid or sum(1 for p in sanitized.values() if p == part) > 1
        )
        if clash:
            part = f"{part}_{hashlib.sha256(name.encode()).hexdigest()[:6]}"
        parts[name] = part
    return parts


def source_keys(cfg: DatasetConfig) -> dict[str, dg.AssetKey]:
    """Family name → ``source/<part>`` asset key, in config (priority) order."""
    parts = family_key_parts(f.name for f in cfg.families)
    return {f.name: dg.AssetKey([SOURCE_PREFIX, parts[f.name]]) for f in cfg.families}


def shown_path(path: str, config_dir: Path | None) -> str:
    """A path as the user wrote it: relative to the config folder, ``s3://`` URIs unchanged."""
    if path.startswith("s3://") or config_dir is None:
        return path
    return os.path.relpath(path, config_dir)


def source_spec(
    family: SourceFamily, key: dg.AssetKey, priority: int, config_dir: Path | None
) -> dg.AssetSpec:
    """The external asset of one family's input files."""
    paths = [shown_path(p, config_dir) for p in family.paths]
    kinds = {"s3" if p.startswith("s3://") else "file" for p in family.paths}
    role = "test split only (holdout)" if family.holdout else "train/val/test"
    description = (
        f"Input files of the source family `{family.name}` (dedup priority {priority}, "
        f"{role}): {', '.join(f'`{p}`' for p in paths)}. Read by `compile`; observed by the "
        "`rebuild_on_new_data` sensor (files, bytes, fingerprint) whenever its files change."
    )
    return dg.AssetSpec(
        key=key,
        group_name=SOURCE_GROUP,
        kinds=kinds,
        description=description,
        owners=OWNERS,
        metadata={
            "family": family.name,
            "paths": dg.MetadataValue.json(paths),
            "priority": priority,
            "holdout": family.holdout,
        },
    )


def source_specs(cfg: DatasetConfig) -> list[dg.AssetSpec]:
    keys = source_keys(cfg)
    return [
        source_spec(fam, keys[fam.name], i, cfg.config_dir)
        for i, fam in enumerate(cfg.families, start=1)
    ]


def with_source_deps(assets: Iterable[Any], keys: Sequence[dg.AssetKey]) -> list[Any]:
    """``assets`` with every output of the ``compile`` multi-asset depending on ``keys``
    (lineage only: Nothing inputs, the compile still lists its sources itself)."""
    compile_keys = set(compile_assets.keys)

    def add(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key not in compile_keys:
            return spec
        return spec.replace_attributes(deps=[*spec.deps, *keys])

    return [
        a.map_asset_specs(add) if isinstance(a, dg.AssetsDefinition) and keys else a for a in assets
    ]


def fingerprint_digest(fingerprints: Iterable[Fingerprint]) -> str:
    """A short digest of a set of files (path, size, version): equal iff the files are."""
    rows = sorted({(fp.path, fp.size, fp.version) for fp in fingerprints})
    return hashlib.sha256(orjson.dumps(rows)).hexdigest()[:16]


def files_table(rows: Sequence[tuple[str, int, str]]) -> dg.MetadataValue:
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({"path": p, "bytes": b, "version": v})
            for p, b, v in rows[:MAX_LISTED_FILES]
        ],
        schema=FILES_SCHEMA,
    )


def family_observation(
    key: dg.AssetKey,
    family: str,
    fingerprints: Sequence[Fingerprint],
    config_dir: Path | None,
    *,
    digest: str,
) -> dg.AssetObservation:
    """What a family's files are now: count, bytes, fingerprint digest, the files (first
    ``MAX_LISTED_FILES``)."""
    rows = sorted((shown_path(fp.path, config_dir), fp.size, fp.version) for fp in fingerprints)
    metadata: Mapping[str, dg.RawMetadataValue] = {
        "family": family,
        "files": len(rows),
        "bytes": sum(r[1] for r in rows),
        "fingerprint": digest,
        "file_list": files_table(rows),
        "files_listed": min(len(rows), MAX_LISTED_FILES),
    }
    return dg.AssetObservation(asset_key=key, metadata=dict(metadata))


def build_defs(cfg: DatasetConfig | None) -> dg.Definitions:
    """The families' source assets (none without a config)."""
    return dg.Definitions(assets=source_specs(cfg) if cfg is not None else [])
