"""The dataset card: what a build holds, in Markdown, rendered from its manifest and config.

Two renderings of the same facts:

- :func:`render_card`: the card shown on the ``manifest`` asset in the Dagster UI — families,
  the splits table (split | records | shards | bytes), counts, the dedup and quarantine summary,
  the config digest, the build id, and the exact snippet that loads the build with
  ``S3DatasetLoader``;
- :func:`render_hf_readme`: a Hugging Face-style dataset card (``README.md`` with YAML front
  matter: ``configs`` / ``data_files`` per split pointing at the build's shard keys, ``license``,
  ``pretty_name``, description), published next to the manifest so that the prefix reads like a
  Hub dataset repository.

Both are pure functions of their arguments: identical builds get byte-identical cards.
"""

from collections.abc import Iterable

import yaml

from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.layout import SPLITS, build_manifest_key, latest_manifest_key, s3_uri
from dataset_assets.core.manifest import FileEntry, Manifest

# Hugging Face's canonical split names (``datasets`` recognises ``validation``, not ``val``).
HF_SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}
DEFAULT_LICENSE = "other"
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: int) -> str:
    """``1536`` → ``1.5 KiB`` (binary units, one decimal; bytes as an integer)."""
    if n < 1024:
        return f"{n} B"
    value = float(n) / 1024
    index = 1
    while value >= 1024 and index < len(_UNITS) - 1:
        value /= 1024
        index += 1
    return f"{value:.1f} {_UNITS[index]}"


def _table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f} %" if whole else "0.00 %"


def splits_table(manifest: Manifest) -> list[str]:
    """The splits table: split | records | shards | bytes, then a total row."""
    rows: list[list[object]] = []
    for split in SPLITS:
        shards = manifest.split_shards(split)
        size = sum(s.bytes for s in shards)
        rows.append([split, manifest.split_records(split), len(shards), human_bytes(size)])
    total_bytes = sum(s.bytes for s in manifest.shards)
    rows.append(
        [
            "**total**",
            sum(manifest.split_records(s) for s in SPLITS),
            len(manifest.shards),
            human_bytes(total_bytes),
        ]
    )
    return _table(["split", "records", "shards", "bytes"], rows)


def _families_table(manifest: Manifest, cfg: DatasetConfig) -> list[str]:
    by_split = manifest.counts.per_split_family
    holdout = {f.name: f.holdout for f in cfg.families}
    names = [f.name for f in cfg.families]
    names += [n for n in manifest.families() if n not in holdout]
    rows = []
    for name in names:
        per = [by_split.get(split, {}).get(name, 0) for split in SPLITS]
        rows.append(
            [
                f"`{name}`",
                "yes" if holdout.get(name) else "no",
                *per,
                manifest.counts.per_family.get(name, 0),
            ]
        )
    return _table(["family", "holdout", *SPLITS, "total"], rows)


def _dedup_and_quarantine(manifest: Manifest, cfg: DatasetConfig) -> list[str]:
    c = manifest.counts
    d = cfg.dedup
    near = (
        f"MinHash LSH, {d.bands} bands × {d.num_perm // d.bands} rows, "
        f"Jaccard ≥ {d.threshold:g} on word {d.shingle_words}-grams"
        if d.near
        else "off"
    )
    lines = _table(
        ["", "records", "share of input"],
        [
            ["input", c.input_records, _percent(c.input_records, c.input_records)],
            ["published", c.published_records, _percent(c.published_records, c.input_records)],
            ["exact duplicates", c.exact_duplicates, _percent(c.exact_duplicates, c.input_records)],
            ["near duplicates", c.near_duplicates, _percent(c.near_duplicates, c.input_records)],
            ["quarantined", c.quarantined, _percent(c.quarantined, c.input_records)],
        ],
    )
    lines += [
        "",
        f"- Exact dedup on the canonical content (fold whitespace: "
        f"{'yes' if d.fold_whitespace else 'no'}, fold case: {'yes' if d.fold_case else 'no'}); "
        f"near dedup: {near}. The winner of a duplicate group is the family listed first "
        "in the config, then the first seen.",
        f"- Quarantine limit: {cfg.quarantine_max_ratio:.2%} of the input "
        f"(this build: {_percent(c.quarantined, c.input_records)}).",
    ]
    if c.quarantined_by_reason:
        lines += ["", "Quarantined by reason:", ""]
        lines += _table(
            ["reason", "records"],
            [[f"`{r}`", n] for r, n in sorted(c.quarantined_by_reason.items())],
        )
    return lines


def _files(manifest: Manifest) -> list[str]:
    entries: list[tuple[str, FileEntry | None]] = [
        ("export", manifest.export),
        ("quarantine", manifest.quarantine),
        ("provenance", manifest.provenance),
    ]
    rows = [
        [name, f"`{e.uri}`", e.records, human_bytes(e.bytes), _evidence(e)]
        for name, e in entries
        if e is not None
    ]
    if not rows:
        return []
    return ["## Files", "", *_table(["file", "uri", "records", "bytes", "sha256"], rows), ""]


def _evidence(entry: FileEntry) -> str:
    """The whole file's sha256, or for a file composed in S3 from published parts (no whole-file
    hash exists), how it was verified."""
    if entry.sha256 is not None:
        return f"`{entry.sha256}`"
    etag = f", ETag `{entry.etag}`" if entry.etag else ""
    return f"composed from {len(entry.parts)} verified parts{etag}"


def loader_snippet(manifest: Manifest, *, endpoint_url: str | None = None) -> str:
    """Python that streams this exact build (the immutable manifest, not the latest pointer).

    Credentials never appear: the loader takes them from the standard AWS chain
    (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, instance roles).
    """
    pinned = s3_uri(manifest.bucket, build_manifest_key(manifest.prefix, manifest.build_id))
    lines = [
        "from dataset_assets.loader import S3DatasetLoader",
        "from dataset_assets.storage import S3Settings",
        "",
    ]
    if endpoint_url:
        lines += [
            "# keys: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), as for boto3",
            f'settings = S3Settings(endpoint_url="{endpoint_url}")',
        ]
    else:
        lines.append("settings = S3Settings()  # the standard AWS configuration chain")
    lines += [
        "loader = S3DatasetLoader(",
        f'    "{pinned}",',
        '    settings=settings, split="train", seed=0, rank=0, world_size=1,',
        ")",
        "for record in loader:  # {'messages': [...], 'metadata': {...}}",
        "    ...",
    ]
    return "\n".join(lines)


def _body(manifest: Manifest, cfg: DatasetConfig, endpoint_url: str | None) -> list[str]:
    latest = s3_uri(manifest.bucket, latest_manifest_key(manifest.prefix))
    pinned = s3_uri(manifest.bucket, build_manifest_key(manifest.prefix, manifest.build_id))
    ratios = cfg.splits
    return [
        f"- **build id**: `{manifest.build_id}`",
        f"- **config digest**: `{manifest.config_digest}`",
        f"- **manifest**: `{pinned}` (this build); latest pointer `{latest}`",
        f"- **families**: {', '.join(f'`{n}`' for n in manifest.families()) or 'none'}",
        f"- **split ratios**: train {ratios.train:g}, val {ratios.val:g}, test {ratios.test:g} "
        f"(seed {cfg.seed}); holdout families go to test only",
        "",
        "## Splits",
        "",
        *splits_table(manifest),
        "",
        "## Families",
        "",
        *_families_table(manifest, cfg),
        "",
        "## Dedup and quarantine",
        "",
        *_dedup_and_quarantine(manifest, cfg),
        "",
        *_files(manifest),
        "## Load it",
        "",
        "```python",
        loader_snippet(manifest, endpoint_url=endpoint_url),
        "```",
        "",
        "Records are ChatML: `messages` (role, content) and `metadata` (family, source, line, "
        "content_hash). Every shard is verified (sha256) while it streams.",
        "",
    ]


def render_card(manifest: Manifest, cfg: DatasetConfig, *, endpoint_url: str | None = None) -> str:
    """The dataset card of a build as Markdown (the ``manifest`` asset's card in the UI).

    Args:
        manifest: the build's manifest.
        cfg: the config the build was made with (families, holdout, dedup options, ratios).
        endpoint_url: the S3 endpoint for the loader snippet (None: the AWS chain decides).
    """
    title = f"# Dataset `{manifest.prefix}` in `s3://{manifest.bucket}` — build {manifest.build_id}"
    return "\n".join([title, "", *_body(manifest, cfg, endpoint_url)])


def hf_data_files(manifest: Manifest) -> list[dict[str, object]]:
    """``configs[0].data_files`` entries: one per split with shards, paths relative to the
    prefix (where the README is published), in shard order."""
    out: list[dict[str, object]] = []
    root = manifest.prefix.strip("/") + "/"
    for split in SPLITS:
        paths = [
            s.key[len(root) :] if s.key.startswith(root) else s.key
            for s in manifest.split_shards(split)
        ]
        if paths:
            out.append({"split": HF_SPLIT_NAMES[split], "path": paths})
    return out


def render_hf_readme(
    manifest: Manifest,
    cfg: DatasetConfig,
    *,
    license: str = DEFAULT_LICENSE,
    description: str | None = None,
    pretty_name: str | None = None,
    endpoint_url: str | None = None,
) -> str:
    """A Hugging Face-style dataset card (``README.md``) for the build, published next to its
    manifest (``{prefix}/README.md``).

    The YAML front matter declares one ``default`` config whose ``data_files`` list each split's
    shard keys relative to the prefix (``val`` is named ``validation``, the Hub's name), so
    ``datasets.load_dataset("json", data_files=...)`` or a Hub upload of the prefix reads the same
    files the manifest names.

    Args:
        manifest: the build's manifest.
        cfg: the config the build was made with.
        license: SPDX-style license id for the ``license`` field (``other`` when unknown).
        description: one paragraph shown under the title (default: a generated summary).
        pretty_name: the card's title (default: the prefix).
        endpoint_url: the S3 endpoint for the loader snippet.
    """
    name = pretty_name or manifest.prefix
    published = manifest.counts.published_records
    front: dict[str, object] = {
        "pretty_name": name,
        "license": license,
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": ["chatml", "conversational", *manifest.families()],
        "size_categories": [_size_category(published)],
        "configs": [{"config_name": "default", "data_files": hf_data_files(manifest)}],
    }
    summary = description or (
        f"{published} chat conversations (ChatML) from {len(manifest.families())} source "
        f"families, deduplicated (exact and near), split into train/val/test, published as "
        f"verified JSONL shards (zstd-compressed when their names end in `.zst`). "
        f"Build `{manifest.build_id}`."
    )
    yaml_text = yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
    return "\n".join(
        ["---", yaml_text.rstrip("\n"), "---", "", f"# {name}", "", summary, ""]
        + _body(manifest, cfg, endpoint_url)
    )


def _size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket of ``n`` records."""
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
        (1_000_000_000, "100M<n<1B"),
        (10_000_000_000, "1B<n<10B"),
        (100_000_000_000, "10B<n<100B"),
        (1_000_000_000_000, "100B<n<1T"),
    ]
    for bound, label in bounds:
        if n < bound:
            return label
    return "n>1T"
