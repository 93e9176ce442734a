"""``dataset-assets inspect``: a summary of a manifest (local copy or s3://)."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dataset_assets.core.layout import SPLITS
from dataset_assets.core.manifest import Manifest

console = Console()


def print_manifest_summary(manifest: Manifest, source: str) -> None:
    c = manifest.counts
    console.print(f"[bold]build {manifest.build_id}[/bold]  ({source})")
    table = Table("split", "shards", "records", "bytes", title="published splits")
    for split in SPLITS:
        shards = manifest.split_shards(split)
        table.add_row(
            split,
            str(len(shards)),
            str(sum(s.records for s in shards)),
            f"{sum(s.bytes for s in shards):,}",
        )
    if manifest.export:
        table.add_row("export", "1", str(manifest.export.records), f"{manifest.export.bytes:,}")
    console.print(table)
    fam = Table("family", *SPLITS, title="records per family")
    for family in manifest.families():
        fam.add_row(family, *(str(c.per_split_family.get(s, {}).get(family, 0)) for s in SPLITS))
    console.print(fam)
    console.print(
        f"input records {c.input_records:,} = published {c.published_records:,} + exact dups "
        f"{c.exact_duplicates:,} + near dups {c.near_duplicates:,} + quarantined {c.quarantined:,}"
    )
    if c.quarantined_by_reason:
        console.print(f"quarantine by reason: {dict(sorted(c.quarantined_by_reason.items()))}")
    console.print(
        f"manifest: s3://{manifest.bucket}/{manifest.prefix}/manifests/{manifest.build_id}.json"
    )


def inspect(
    manifest_path: Annotated[Path, typer.Argument(help="local manifest copy")] = Path(
        ".local/manifest.json"
    ),
) -> None:
    """Print a summary of a published build from its manifest."""
    manifest = Manifest.from_json(manifest_path.read_bytes(), str(manifest_path))
    print_manifest_summary(manifest, str(manifest_path))
