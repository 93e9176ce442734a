"""Migration of local dataset files to S3 (no Dagster): the asset and the CLI both call this.

Each file goes through the publish protocol (upload → verify) under
``{migration.prefix}/{relative_path}``; then a ledger line is written, and only then is the local
file deleted, so a file never disappears locally without a record of where it went. A file that
a source family reads is refused (:class:`SourceInUseError`) unless
``migration.allow_active_sources`` is set; then the outcome names the families, which must list
the migrated ``s3://`` folder to keep reading it. The bytes
published are the bytes hashed when the publish runs (not at discovery); a file that changes
while it is being hashed or uploaded fails verification and stays local.
"""

import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.errors import DatasetError, MigrationError, ObjectNotFoundError
from dataset_assets.core.hashing import digest_file
from dataset_assets.core.layout import migrated_key
from dataset_assets.core.migration import (
    Candidate,
    Discovery,
    FileChangedError,
    LedgerEntry,
    append_ledger,
    check_not_in_use,
    discover,
    migrated_folder_uri,
    read_ledger,
    resolve_partition,
    utc_now,
)
from dataset_assets.core.staged import StagedFile
from dataset_assets.storage import Journal, Publisher, S3ObjectStore

Status = Literal["uploaded", "already_in_s3", "already_migrated"]


@dataclass(frozen=True)
class MigrationOutcome:
    """One partition that ended verified in S3.

    ``status``: ``uploaded`` (bytes sent and verified), ``already_in_s3`` (an identical object
    was there; nothing sent, local deleted), ``already_migrated`` (no local file; the ledger and
    a HEAD of the object agree: a rerun no-op).
    """

    relative_path: str
    local_path: str
    key: str
    uri: str
    size: int
    sha256: str
    status: Status
    read_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class MigrationFailure:
    """One file that could not be migrated; its local copy is kept."""

    relative_path: str
    local_path: str
    error: str


@dataclass
class MigrationReport:
    """Everything one ``migrate_all`` did (or, for a dry run, would do)."""

    discovery: Discovery
    dry_run: bool
    outcomes: list[MigrationOutcome] = field(default_factory=list)
    failures: list[MigrationFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and not self.discovery.refused

    @property
    def moved_bytes(self) -> int:
        return sum(o.size for o in self.outcomes if o.status != "already_migrated")


def make_migration_publisher(
    cfg: DatasetConfig, store: S3ObjectStore, run_id: str = ""
) -> Publisher:
    """A publisher whose journal sits next to the migration ledger."""
    ledger = cfg.migration.ledger_path
    journal = Journal(ledger.with_name(ledger.stem + "-journal.jsonl"), run_id=run_id)
    return Publisher(
        store, max_in_flight=cfg.max_publishes_in_flight, verify=cfg.verify, journal=journal
    )


def migrate_file(
    cfg: DatasetConfig,
    store: S3ObjectStore,
    relative_path: str,
    *,
    publisher: Publisher,
    run_id: str = "",
) -> MigrationOutcome:
    """Publish one local file to ``{migration.prefix}/{relative_path}``, record it, delete it.

    Raises:
        SourceInUseError: a source family reads the file (``migration.allow_active_sources``
            off); nothing is sent.
        MigrationError: the path is refused (symlink, escape), changed while being hashed, or
            is gone locally without a verified copy in S3.
        UploadFailedError, VerificationError: the publish failed; the local file is kept.
    """
    path = resolve_partition(cfg, relative_path)
    key = migrated_key(cfg.migration.prefix, relative_path)
    if not path.exists():
        return confirm_migrated(cfg, store, relative_path, key, path, run_id=run_id)
    read_by = check_not_in_use(cfg, relative_path, path)
    if not path.is_file():
        raise MigrationError(f"refused {path}: not a regular file")
    before = path.stat()
    digest = digest_file(path, store.upload_part_size(before.st_size))
    after = path.stat()
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise FileChangedError(
            f"{path} changed while it was being hashed; it is still being written"
        )
    staged = StagedFile(path=path, key=key, digest=digest, keep_local=True)
    published = publisher.publish(staged)
    now = path.stat()
    if (before.st_size, before.st_mtime_ns) != (now.st_size, now.st_mtime_ns):
        if published.uploaded:  # our own, now stale, upload: remove it so a retry starts clean
            store.delete(key)
        raise FileChangedError(
            f"{path} changed after its upload to {published.uri}; kept locally (the stale "
            f"upload was removed), a retry publishes its new bytes"
        )
    entry = LedgerEntry(
        relative_path=relative_path,
        local_path=str(path),
        uri=published.uri,
        key=published.key,
        size=published.size,
        sha256=published.sha256,
        migrated_at=utc_now(),
        run_id=run_id or None,
    )
    append_ledger(cfg.migration.ledger_path, entry)
    path.unlink()
    status: Status = "uploaded" if published.uploaded else "already_in_s3"
    return _outcome(entry, status, read_by)


def confirm_migrated(
    cfg: DatasetConfig,
    store: S3ObjectStore,
    relative_path: str,
    key: str,
    path: Path,
    *,
    run_id: str = "",
) -> MigrationOutcome:
    """The local file is gone: succeed only if S3 holds the bytes the ledger recorded.

    When the ledger has no line for it (the ledger file was moved or lost), the object's own
    sha256/size metadata, written at upload time, is recorded as the ledger line instead.
    """
    try:
        info = store.head(key)
    except ObjectNotFoundError as exc:
        raise MigrationError(
            f"{path} does not exist locally and {store.uri(key)} does not exist either: "
            f"nothing to migrate (was the file deleted or renamed since discovery?)"
        ) from exc
    recorded = read_ledger(cfg.migration.ledger_path).get(relative_path)
    if recorded is None:
        if info.sha256 is None:
            raise MigrationError(
                f"{path} is gone locally, the ledger has no entry for it, and {store.uri(key)} "
                f"carries no sha256 metadata: cannot confirm it is the same file"
            )
        entry = LedgerEntry(
            relative_path=relative_path,
            local_path=str(path),
            uri=store.uri(key),
            key=key,
            size=info.size,
            sha256=info.sha256,
            migrated_at=utc_now(),
            run_id=run_id or None,
        )
        append_ledger(cfg.migration.ledger_path, entry)
        return _outcome(entry, "already_migrated")
    if (info.size, info.sha256) != (recorded.size, recorded.sha256):
        raise MigrationError(
            f"{path} is gone locally; the ledger says it went to {recorded.uri} with "
            f"{recorded.size} bytes, sha256 {recorded.sha256}, but S3 now holds {info.size} bytes, "
            f"sha256 {info.sha256}"
        )
    return _outcome(recorded, "already_migrated")


def _outcome(entry: LedgerEntry, status: Status, read_by: tuple[str, ...] = ()) -> MigrationOutcome:
    return MigrationOutcome(
        relative_path=entry.relative_path,
        local_path=entry.local_path,
        key=entry.key,
        uri=entry.uri,
        size=entry.size,
        sha256=entry.sha256,
        status=status,
        read_by=read_by,
    )


def source_moved_note(cfg: DatasetConfig, outcome: MigrationOutcome) -> str | None:
    """What the user must change after migrating a family's input (``None`` if no family read
    it): the family keeps reading it only if it lists the migrated folder."""
    if not outcome.read_by:
        return None
    noun = "family" if len(outcome.read_by) == 1 else "families"
    names = ", ".join(outcome.read_by)
    return (
        f"{outcome.relative_path} was read by {noun} {names} and is now only in S3: add "
        f"{migrated_folder_uri(cfg, outcome.relative_path)} to the paths of {noun} {names} in "
        f"the dataset config, or the next build will not read it"
    )


OnDone = Callable[[Candidate, MigrationOutcome | MigrationFailure], None]


def migrate_all(
    cfg: DatasetConfig,
    store_factory: Callable[[], S3ObjectStore] | None,
    *,
    dry_run: bool = False,
    run_id: str = "",
    discovery: Discovery | None = None,
    on_done: OnDone | None = None,
) -> MigrationReport:
    """Discover (unless ``discovery`` is given) and migrate every local dataset file,
    ``max_publishes_in_flight`` at a time.

    A failing file is recorded and the others continue; the caller turns ``report.ok`` into an
    exit code. A dry run discovers only: it never contacts S3 (``store_factory`` may be None).
    """
    discovery = discover(cfg) if discovery is None else discovery
    report = MigrationReport(discovery=discovery, dry_run=dry_run)
    if dry_run or not discovery.candidates:
        return report
    if store_factory is None:
        raise ValueError("store_factory is required unless dry_run=True")
    store = store_factory()
    lock = threading.Lock()

    def run_one(candidate: Candidate) -> None:
        result: MigrationOutcome | MigrationFailure
        try:
            result = migrate_file(
                cfg, store, candidate.relative_path, publisher=publisher, run_id=run_id
            )
        except (DatasetError, OSError) as exc:
            result = MigrationFailure(candidate.relative_path, str(candidate.path), str(exc))
        with lock:
            if isinstance(result, MigrationOutcome):
                report.outcomes.append(result)
            else:
                report.failures.append(result)
        if on_done is not None:
            on_done(candidate, result)

    workers = cfg.max_publishes_in_flight
    with (
        make_migration_publisher(cfg, store, run_id) as publisher,
        concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="migrate") as pool,
    ):
        for future in [pool.submit(run_one, c) for c in discovery.candidates]:
            future.result()
    report.outcomes.sort(key=lambda o: o.relative_path)
    report.failures.sort(key=lambda f: f.relative_path)
    return report
