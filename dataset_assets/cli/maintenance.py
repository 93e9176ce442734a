"""``dataset-assets verify`` and ``gc``: check a published build, collect old ones."""

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dataset_assets.core.config import load_config
from dataset_assets.core.layout import build_manifest_key, latest_manifest_key
from dataset_assets.core.manifest import Manifest
from dataset_assets.environments import s3_settings
from dataset_assets.pipeline.build import build_problems
from dataset_assets.pipeline.commit import (
    ConditionalWritesUnsupportedError,
    probe_conditional_writes,
)
from dataset_assets.pipeline.lease import BuildInProgressError, BuildLease
from dataset_assets.pipeline.maintenance import (
    GcPlan,
    collect_garbage,
    manifest_files,
    plan_gc,
)
from dataset_assets.storage import S3ObjectStore

console = Console()
ConfigOption = Annotated[Path, typer.Option(help="dataset config file")]


def _store(config: Path) -> tuple[S3ObjectStore, str]:
    cfg = load_config(config)
    return S3ObjectStore(cfg.bucket, s3_settings(os.environ), part_size=cfg.part_size), cfg.prefix


def verify(
    config: ConfigOption = Path("dataset.yaml"),
    build: Annotated[str | None, typer.Option(help="build id (default: the latest)")] = None,
    readback: Annotated[bool, typer.Option(help="stream every object back and hash it")] = False,
) -> None:
    """Check that every object of a published build is in S3 with its size and sha256."""
    store, prefix = _store(config)
    key = build_manifest_key(prefix, build) if build else latest_manifest_key(prefix)
    manifest = Manifest.from_json(store.get_bytes(key), store.uri(key))
    # Every build's export is immutable (the fixed name is a copy), so any build is checkable.
    problems = build_problems(store, manifest, readback=readback)
    for problem in problems:
        console.print(f"[red]{problem}[/red]")
    if problems:
        console.print(f"build {manifest.build_id}: {len(problems)} problem(s)")
        raise typer.Exit(1)
    mode = "readback" if readback else "head"
    n = len(manifest_files(manifest))
    console.print(f"build {manifest.build_id}: all {n} objects verified ({mode})")


def gc(
    keep: Annotated[
        int, typer.Option(help="newest builds to keep (the latest is always kept)")
    ] = 3,
    apply: Annotated[bool, typer.Option("--apply", help="delete (default: dry run)")] = False,
    grace_hours: Annotated[
        float,
        typer.Option(help="keep builds written, or replaced as the latest, less than this ago"),
    ] = 24.0,
    min_age_hours: Annotated[float, typer.Option(help="never delete younger objects")] = 24.0,
    config: ConfigOption = Path("dataset.yaml"),
) -> None:
    """Garbage-collect old builds: dry run by default, `--apply` deletes (holding the build
    lease, so no build runs meanwhile). A build replaced as the latest stays intact for
    `--grace-hours` (training jobs pinned to it keep working)."""
    store, prefix = _store(config)
    grace, min_age = timedelta(hours=grace_hours), timedelta(hours=min_age_hours)
    if not apply:
        _print_plan(plan_gc(store, prefix, keep, grace=grace, min_age=min_age))
        console.print("dry run: nothing deleted (add --apply)")
        return
    try:
        probe_conditional_writes(store, prefix)  # the lease below depends on them
        # A stable owner: a gc rerun after a killed gc takes its own lease back at once.
        with BuildLease(store, prefix, "dataset-assets-gc", ttl_s=120):
            plan = plan_gc(store, prefix, keep, grace=grace, min_age=min_age)
            _print_plan(plan)
            result = collect_garbage(store, plan)
    except (BuildInProgressError, ConditionalWritesUnsupportedError) as exc:
        console.print(f"[red]{exc}[/red]\nnothing deleted")
        raise typer.Exit(1) from exc
    console.print(
        f"deleted {len(result.deleted)} object(s), aborted {len(result.aborted)} upload(s)"
        + (f"; {len(result.skipped)} became protected and were kept" if result.skipped else "")
    )


def _print_plan(plan: GcPlan) -> None:
    console.print(f"keep {len(plan.kept_builds)} build(s): {', '.join(plan.kept_builds)}")
    console.print(
        f"drop {len(plan.dropped_builds)} build(s): {', '.join(plan.dropped_builds) or '-'}"
    )
    console.print(f"{len(plan.delete_keys)} object(s), {plan.delete_bytes:,} bytes unreferenced")
    console.print(f"{len(plan.abort_uploads)} incomplete multipart upload(s) older than grace")
