"""Small hand-made published datasets (shard JSONL + manifest) for fast loader tests.

Records carry a unique ``metadata.line`` ("{split}:{n}") so tests can compare multisets and
orders exactly. ``publish_s3`` uploads shards and both manifests (immutable + latest pointer) the
way the pipeline lays them out (docs/architecture.md, "Keys").
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import orjson
import zstandard

from dataset_assets.core.layout import (
    build_manifest_key,
    data_suffix,
    latest_manifest_key,
    s3_uri,
    shard_id,
    shard_key,
)
from dataset_assets.core.manifest import BuildCounts, Manifest, ShardEntry
from dataset_assets.storage import S3ObjectStore

PREFIX = "final_dataset"
FAMILIES = ("alpha", "beta", "gamma")


def record(split: str, n: int, build: str = "b1") -> dict[str, object]:
    family = FAMILIES[n % len(FAMILIES)]
    return {
        "messages": [
            {"role": "user", "content": f"question {split} {n} ({build})"},
            {"role": "assistant", "content": f"answer {n} " + "x" * (n % 37)},
        ],
        "metadata": {"family": family, "source": f"{family}.jsonl", "line": f"{split}:{n}"},
    }


@dataclass(frozen=True)
class Dataset:
    manifest: Manifest
    shard_bytes: dict[str, bytes]  # key -> bytes
    records: dict[str, list[dict[str, object]]]  # split -> records in publish order


def make_dataset(
    bucket: str,
    shard_sizes: dict[str, list[int]],
    build: str = "b1",
    uri_of: "str | None" = None,
    compression: "str | None" = None,
) -> Dataset:
    """Shards of the given record counts per split; ``uri_of='local'`` stores relative paths;
    ``compression='zstd'``: each shard is one zstd frame (``.jsonl.zst``), as builds publish."""
    shards: list[ShardEntry] = []
    blobs: dict[str, bytes] = {}
    records: dict[str, list[dict[str, object]]] = {}
    per_family: dict[str, int] = {}
    for split, sizes in shard_sizes.items():
        n = 0
        records[split] = []
        for index, size in enumerate(sizes):
            recs = [record(split, n + i, build) for i in range(size)]
            n += size
            records[split].extend(recs)
            data = b"".join(orjson.dumps(r) + b"\n" for r in recs)
            if compression == "zstd":
                data = zstandard.ZstdCompressor(level=3).compress(data)
            sha = hashlib.sha256(data).hexdigest()
            sid = shard_id(split, index, sha)
            key = shard_key(PREFIX, split, sid, data_suffix(compression))
            fams: dict[str, int] = {}
            for r in recs:
                fam = str(r["metadata"]["family"])  # type: ignore[index]
                fams[fam] = fams.get(fam, 0) + 1
                per_family[fam] = per_family.get(fam, 0) + 1
            uri = key if uri_of == "local" else s3_uri(bucket, key)
            shards.append(
                ShardEntry(
                    key=key,
                    uri=uri,
                    bytes=len(data),
                    sha256=sha,
                    records=size,
                    families=fams,
                    split=split,
                    shard_id=sid,  # type: ignore[arg-type]
                    compression="zstd" if compression == "zstd" else None,
                )
            )
            blobs[key] = data
    manifest = Manifest(
        build_id=hashlib.sha256(build.encode()).hexdigest()[:16],
        bucket=bucket,
        prefix=PREFIX,
        config_digest="0" * 64,
        shards=shards,
        counts=BuildCounts(
            published_records=sum(len(v) for v in records.values()),
            per_split={k: len(v) for k, v in records.items()},
            per_family=per_family,
        ),
    )
    return Dataset(manifest, blobs, records)


def write_local(ds: Dataset, root: Path) -> Path:
    """Shard files under ``root`` and ``root/manifest.json``; returns the manifest path."""
    for key, data in ds.shard_bytes.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    path = root / "manifest.json"
    path.write_bytes(ds.manifest.to_json())
    return path


def publish_s3(ds: Dataset, store: S3ObjectStore) -> str:
    """Upload shards, the immutable manifest, then the latest pointer; returns its URI."""
    for key, data in ds.shard_bytes.items():
        store.put_bytes(key, data)
    body = ds.manifest.to_json()
    store.put_bytes(build_manifest_key(PREFIX, ds.manifest.build_id), body)
    latest = latest_manifest_key(PREFIX)
    store.put_bytes(latest, body)
    return store.uri(latest)


def ident(rec: dict[str, object]) -> str:
    return str(rec["metadata"]["line"])  # type: ignore[index]
