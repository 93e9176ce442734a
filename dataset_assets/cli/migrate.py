"""``dataset-assets migrate``: move local dataset files to S3 (verify, then delete local).

The same code as the Dagster ``migrated_file`` asset (:mod:`dataset_assets.pipeline.migrate`),
for people who want it from a terminal: a progress bar (files and bytes), a summary table, and a
non-zero exit code when any file failed or was refused. Files a source family reads are kept and
listed (not an error: that is the default, ``migration.allow_active_sources`` changes it).
"""

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from dataset_assets.core.config import DatasetConfig, load_config
from dataset_assets.core.errors import DatasetError
from dataset_assets.core.layout import migrated_key, s3_uri
from dataset_assets.core.migration import Candidate, Discovery, discover, format_bytes
from dataset_assets.environments import s3_settings
from dataset_assets.pipeline.migrate import (
    MigrationFailure,
    MigrationOutcome,
    MigrationReport,
    migrate_all,
    source_moved_note,
)
from dataset_assets.storage import S3ObjectStore

console = Console()


def _with_data_dir(cfg: DatasetConfig, data_dir: Path | None) -> DatasetConfig:
    if data_dir is None:
        return cfg
    if not data_dir.is_dir():
        raise DatasetError(f"--data-dir {data_dir} is not a directory")
    migration = cfg.migration.model_copy(update={"data_root": data_dir.resolve()})
    return cfg.model_copy(update={"migration": migration})


def _store_factory(cfg: DatasetConfig) -> S3ObjectStore:
    store = S3ObjectStore(cfg.bucket, s3_settings(os.environ), part_size=cfg.part_size)
    store.ensure_bucket()
    return store


def _plan_table(cfg: DatasetConfig, found: Discovery) -> Table:
    table = Table(title=f"Would migrate {len(found.candidates)} files", show_lines=False)
    table.add_column("local file")
    table.add_column("bytes", justify="right")
    table.add_column("destination")
    for c in found.candidates:
        uri = s3_uri(cfg.bucket, migrated_key(cfg.migration.prefix, c.relative_path))
        table.add_row(c.relative_path, format_bytes(c.size), uri)
    table.add_section()
    table.add_row("total", format_bytes(found.total_bytes), "")
    return table


def _summary_table(report: MigrationReport) -> Table:
    table = Table(title="Migration summary")
    table.add_column("outcome")
    table.add_column("files", justify="right")
    table.add_column("bytes", justify="right")
    for status in ("uploaded", "already_in_s3", "already_migrated"):
        rows = [o for o in report.outcomes if o.status == status]
        table.add_row(
            status.replace("_", " "), str(len(rows)), format_bytes(sum(o.size for o in rows))
        )
    failed_bytes = {c.relative_path: c.size for c in report.discovery.candidates}
    failed = sum(failed_bytes.get(f.relative_path, 0) for f in report.failures)
    table.add_row("[red]failed (kept locally)", str(len(report.failures)), format_bytes(failed))
    table.add_row("[yellow]refused", str(len(report.discovery.refused)), "")
    table.add_row("in use by a source family (kept)", str(len(report.discovery.in_use)), "")
    table.add_row("still being written", str(len(report.discovery.waiting)), "")
    return table


def _in_use_table(found: Discovery) -> Table | None:
    if not found.in_use:
        return None
    table = Table(title="Kept: in use by a source family", show_lines=True)
    table.add_column("path", overflow="fold")  # never cut a path: the user must find the file
    table.add_column("why", overflow="fold")
    for entry in found.in_use:
        table.add_row(entry.path, entry.reason)
    return table


def _problems_table(report: MigrationReport) -> Table | None:
    if not report.failures and not report.discovery.refused:
        return None
    table = Table(title="Problems", show_lines=True)
    table.add_column("path", overflow="fold")
    table.add_column("why", overflow="fold")
    for f in report.failures:
        table.add_row(f.relative_path, f"[red]{f.error}")
    for r in report.discovery.refused:
        table.add_row(r.path, f"[yellow]{r.reason}")
    return table


def _run_with_progress(cfg: DatasetConfig, found: Discovery) -> MigrationReport:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        files = progress.add_task("files", total=len(found.candidates))
        size = progress.add_task("bytes", total=max(found.total_bytes, 1))

        def on_done(candidate: Candidate, result: MigrationOutcome | MigrationFailure) -> None:
            progress.advance(files)
            progress.advance(size, candidate.size)
            if isinstance(result, MigrationFailure):
                progress.console.print(f"[red]failed[/] {candidate.relative_path}: {result.error}")

        return migrate_all(cfg, lambda: _store_factory(cfg), discovery=found, on_done=on_done)


def migrate(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would move; touch nothing.")
    ] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Data root to migrate (default: migration.data_root)."),
    ] = None,
    config: Annotated[
        Path,
        typer.Option("--config", "-c", envvar="DATASET_ASSETS_CONFIG", help="Dataset config."),
    ] = Path("dataset.yaml"),
) -> None:
    """Migrate local dataset files to S3: upload, verify, record in the ledger, delete local.

    S3 is reached through the standard AWS configuration (AWS_ENDPOINT_URL_S3, AWS_PROFILE,
    AWS_ACCESS_KEY_ID...). Exit code 1 when any file failed or was refused. Files a source
    family reads are kept and listed unless migration.allow_active_sources is true.
    """
    try:
        cfg = _with_data_dir(load_config(config), data_dir)
        found = discover(cfg)
        if dry_run:
            console.print(_plan_table(cfg, found))
            report = MigrationReport(discovery=found, dry_run=True)
        else:
            report = _run_with_progress(cfg, found)
            console.print(_summary_table(report))
            console.print(f"ledger: {cfg.migration.ledger_path}")
    except DatasetError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(code=1) from exc
    for table in (_in_use_table(found), _problems_table(report)):
        if table is not None:
            console.print(table)
    for outcome in report.outcomes:
        note = source_moved_note(cfg, outcome)
        if note is not None:
            console.print(f"[yellow]note:[/] {note}")
    for path in found.waiting:
        console.print(f"[dim]not yet (still being written): {path}")
    if not report.ok:
        raise typer.Exit(code=1)
