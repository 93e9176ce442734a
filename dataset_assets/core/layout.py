"""Canonical object keys and file names (docs/architecture.md, "Keys"): every key is made here."""

from pathlib import PurePosixPath

SPLITS: tuple[str, ...] = ("train", "val", "test")
EXPORT_NAME = "final_training_dataset.jsonl"
JSONL = ".jsonl"
JSONL_ZST = ".jsonl.zst"
SUFFIXES: tuple[str, ...] = (JSONL, JSONL_ZST)
"""File name endings of shards and exports: plain JSONL, or JSONL compressed with zstd."""


def data_suffix(compression: str | None) -> str:
    """``.jsonl.zst`` for zstd-compressed shards and exports, ``.jsonl`` for plain ones."""
    return JSONL_ZST if compression == "zstd" else JSONL


def strip_suffix(name: str) -> str:
    """A shard or export file name without its ``.jsonl`` / ``.jsonl.zst`` ending."""
    return name.removesuffix(JSONL_ZST).removesuffix(JSONL)


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def shard_id(split: str, index: int, sha256: str) -> str:
    """Content-derived shard name: ``{split}-{index:05d}-{sha256[:12]}``."""
    return f"{split}-{index:05d}-{sha256[:12]}"


def shard_key(prefix: str, split: str, sid: str, suffix: str = JSONL) -> str:
    return _join(prefix, split, f"{sid}{suffix}")


def export_key(prefix: str, suffix: str = JSONL) -> str:
    """The fixed, well-known export key: ``{prefix}/compiled/final_training_dataset.jsonl``
    (``.jsonl.zst`` for a compressed export)."""
    return _join(prefix, "compiled", strip_suffix(EXPORT_NAME) + suffix)


def build_manifest_key(prefix: str, build_id: str) -> str:
    return _join(prefix, "manifests", f"{build_id}.json")


def latest_manifest_key(prefix: str) -> str:
    return _join(prefix, "manifest.json")


def build_sidecar_key(prefix: str, build_id: str, name: str) -> str:
    """Per-build files published next to the manifest (quarantine, journal, provenance)."""
    return _join(prefix, "builds", build_id, name)


def migrated_key(prefix: str, relative_path: str) -> str:
    rel = PurePosixPath(relative_path)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"relative path must stay inside the data root, got {relative_path!r}")
    return _join(prefix, rel.as_posix())


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into (bucket, key); raises ValueError naming the bad URI."""
    if not uri.startswith("s3://"):
        raise ValueError(f"expected an s3://bucket/key URI, got {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"s3 URI has no bucket: {uri!r}")
    return bucket, key


def quarantine_key(prefix: str, sha256: str) -> str:
    """Content-addressed quarantine file of a build."""
    return _join(prefix, "quarantine", f"quarantine-{sha256[:12]}.jsonl")


def provenance_key(prefix: str, sha256: str) -> str:
    """Content-addressed provenance sidecar of a build (content_hash → family, source, line)."""
    return _join(prefix, "provenance", f"provenance-{sha256[:12]}.jsonl.zst")


def manifests_prefix(prefix: str) -> str:
    """Folder of the immutable per-build manifests (``{prefix}/manifests/``)."""
    return _join(prefix, "manifests") + "/"


def build_id_of_manifest_key(key: str) -> str:
    """The build id named by an immutable manifest key (``…/manifests/{build_id}.json``)."""
    return key.rsplit("/", 1)[-1].removesuffix(".json")


def build_sidecar_prefix(prefix: str, build_id: str) -> str:
    """Folder of a build's sidecars (journals): ``{prefix}/builds/{build_id}/``."""
    return _join(prefix, "builds", build_id) + "/"


def cache_prefix(prefix: str) -> str:
    """Intermediate cache shared by builds (``{prefix}/_cache/``): collected by gc only when
    no kept or young manifest lists a key in its ``cache_keys``."""
    return _join(prefix, "_cache") + "/"


def lease_key(prefix: str) -> str:
    """The build lease: at most one build (or gc) of ``prefix`` at a time."""
    return _join(prefix, "_lease.json")


def probe_key(prefix: str, token: str) -> str:
    """A throwaway object used to check that the server honours conditional writes."""
    return _join(prefix, "_probe", f"{token}.json")


def build_export_key(prefix: str, digest: str, suffix: str = JSONL) -> str:
    """A build's immutable, content-addressed export:
    ``{prefix}/compiled/final_training_dataset-{digest[:12]}.jsonl[.zst]``. The fixed
    :func:`export_key` holds a copy of the latest committed build's."""
    return _join(prefix, "compiled", f"{strip_suffix(EXPORT_NAME)}-{digest[:12]}{suffix}")


def cache_partition_key(prefix: str, digest: str, name: str) -> str:
    """A partition's intermediate file, keyed by (input fingerprint, config digest)."""
    return _join(prefix, "_cache", "partitions", digest, name)


def cache_decisions_key(prefix: str, cluster_digest: str, partition_digest: str) -> str:
    """One partition's dedup/split decisions (a byte per record) of one clustering."""
    return _join(prefix, "_cache", "decisions", cluster_digest, f"{partition_digest}.bin")


def cache_clustering_key(prefix: str, cluster_digest: str) -> str:
    """A clean clustering's outcome (counts, leakage report, sidecars), beside its decisions."""
    return _join(prefix, "_cache", "decisions", cluster_digest, "clustering.json")


def cache_shards_key(prefix: str, digest: str) -> str:
    """The shard entries written for one (partition, split, decisions, shard size)."""
    return _join(prefix, "_cache", "shards", f"{digest}.json")


def dedup_key(prefix: str, sha256: str) -> str:
    """Content-addressed dedup-decisions sidecar of a build (every dropped duplicate)."""
    return _join(prefix, "dedup", f"dedup-{sha256[:12]}.jsonl.zst")


def run_ref_key(prefix: str, run_id: str, asset: str) -> str:
    """An asset's output reference of one run (what downstream steps of that run load)."""
    return _join(prefix, "_runs", run_id, f"{asset}.json")


def run_journal_key(prefix: str, run_id: str, step: str) -> str:
    """One step's publish journal of a run, until the commit gathers them next to the manifest."""
    return _join(prefix, "_runs", run_id, f"journal-{step}.jsonl")


def run_prefix(prefix: str, run_id: str) -> str:
    """Folder of a run's references and step journals (``{prefix}/_runs/{run_id}/``)."""
    return _join(prefix, "_runs", run_id) + "/"


def readme_key(prefix: str) -> str:
    """The dataset card (Hugging Face style README.md) of the latest committed build."""
    return _join(prefix, "README.md")
