"""Migration of existing local dataset files to S3: discovery rules and the local ledger.

Discovery finds every file that should move (one Dagster dynamic partition per file, keyed by its
path relative to the data root): every ``.jsonl`` under the data root, plus files of at least
``min_package_file_bytes`` under the package-data roots. It never follows symlinks and refuses
anything that would leave its root, or whose name is not valid UTF-8, with a message that says
why. Files that a source family reads (the dataset's own inputs, listed by the same function the
compile uses) are *in use*: kept where they are unless ``migration.allow_active_sources`` is set,
since moving them would leave the next build without its input. The ledger is an append-only
JSONL file recording where each file went (local path → S3 URI, bytes, sha256, time).
"""

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import orjson

from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.errors import MigrationError
from dataset_assets.core.layout import migrated_key, s3_uri
from dataset_assets.core.sources import is_temporary_name, local_source_paths

QUARANTINE_DIR_NAMES = frozenset({"quarantine", "_quarantine"})
# Substrings Dagster refuses in partition keys (dagster.core.definitions.partitions.utils).
_BAD_KEY_SUBSTRINGS: tuple[str, ...] = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")


class FileChangedError(MigrationError):
    """The file changed while it was being hashed (still being written): retry later."""


class SourceInUseError(MigrationError):
    """The file is an input of a source family and ``migration.allow_active_sources`` is off."""


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as printable text: bytes that are not valid UTF-8 are shown backslash-escaped
    (``bad\\xff.jsonl``), so a message about such a file never fails to print or serialize."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def allow_active_sources(cfg: DatasetConfig) -> bool:
    """``migration.allow_active_sources`` (off when the config model has no such field)."""
    return bool(getattr(cfg.migration, "allow_active_sources", False))


@dataclass(frozen=True, order=True)
class Candidate:
    """A local file that discovery would migrate.

    Attributes:
        relative_path: the partition key and the key suffix under the migration prefix.
        path: the absolute local path.
        size: bytes at discovery time (the publish hashes the bytes present when it runs).
    """

    relative_path: str
    path: Path
    size: int


@dataclass(frozen=True, order=True)
class Refusal:
    """A path discovery will not migrate, and why (shown to the user, never silently dropped)."""

    path: str
    reason: str

    def message(self) -> str:
        return f"refused {self.path}: {self.reason}"


@dataclass(frozen=True, order=True)
class InUse:
    """A file discovery keeps because a source family reads it (the partition key it would have,
    its local path, and the message naming the family and how to migrate it anyway)."""

    relative_path: str
    path: str
    reason: str

    def message(self) -> str:
        return f"kept {self.path}: {self.reason}"


@dataclass(frozen=True)
class Discovery:
    """Result of one discovery pass.

    Attributes:
        candidates: files to migrate, sorted by relative path.
        refused: symlinks, escaping paths and unusable names, each with a reason.
        waiting: files modified less than ``stable_seconds`` ago (picked up by a later pass).
        in_use: files a source family reads, kept in place (``migration.allow_active_sources``
            off), each with the family and how to migrate it anyway. Not an error: the default.
    """

    candidates: tuple[Candidate, ...]
    refused: tuple[Refusal, ...]
    waiting: tuple[str, ...]
    in_use: tuple[InUse, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(c.size for c in self.candidates)

    def partition_keys(self) -> list[str]:
        return [c.relative_path for c in self.candidates]


@dataclass(frozen=True)
class _Root:
    path: Path
    label: str | None  # None for the data root; the folder name for a package-data root
    min_bytes: int
    jsonl_only: bool


def _roots(cfg: DatasetConfig) -> list[_Root]:
    mig = cfg.migration
    roots = [_Root(mig.data_root, None, 0, True)]
    roots += [_Root(p, p.name, mig.min_package_file_bytes, False) for p in mig.package_data_roots]
    return roots


def _excluded_paths(cfg: DatasetConfig) -> tuple[Path, ...]:
    return (cfg.manifest_path, cfg.staging_dir, cfg.migration.ledger_path)


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _partition_key(root: _Root, data_root: Path, path: Path) -> str:
    if _is_within(path, data_root):
        return path.relative_to(data_root).as_posix()
    rel = path.relative_to(root.path).as_posix()
    return f"{root.label}/{rel}" if root.label else rel


def _package_labels(cfg: DatasetConfig) -> dict[str, Path]:
    """Package-data roots outside the data root, by the folder name that prefixes their keys."""
    mig = cfg.migration
    return {p.name: p for p in mig.package_data_roots if not _is_within(p, mig.data_root)}


def _label_clash(cfg: DatasetConfig, root: _Root, key: str) -> str | None:
    head = key.partition("/")[0]
    if root.label is None and head in _package_labels(cfg):
        return (
            f"its first folder {head!r} has the name of a package-data root, so the partition "
            f"key {key!r} would be ambiguous; rename the folder or the package-data root"
        )
    return None


def check_partition_key(key: str) -> str | None:
    """Why ``key`` cannot be a migration partition key, or ``None`` if it can."""
    rel = PurePosixPath(key)
    if not key or rel.is_absolute() or ".." in rel.parts:
        return f"relative path {display_path(key)!r} escapes the data root"
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return (
            "its name is not valid UTF-8 (S3 keys and Dagster partition keys must be); "
            "rename it to migrate it"
        )
    bad = [s for s in _BAD_KEY_SUBSTRINGS if s in key]
    if bad:
        return f"file name contains {bad[0]!r}, which Dagster does not allow in partition keys"
    return None


def active_sources(cfg: DatasetConfig) -> dict[Path, tuple[str, ...]]:
    """Every local file a source family reads (resolved path → family names, config order).

    Listed with :func:`~dataset_assets.core.sources.local_source_paths`, the function the compile
    and the rebuild sensor use, so "in use" means exactly "read by the next build".
    """
    readers: dict[Path, list[str]] = {}
    for family in cfg.families:
        for pattern in family.paths:
            if pattern.startswith("s3://"):
                continue
            for path in local_source_paths(pattern):
                names = readers.setdefault(path.resolve(), [])
                if family.name not in names:
                    names.append(family.name)
    return {path: tuple(names) for path, names in readers.items()}


def in_use_reason(cfg: DatasetConfig, relative_path: str, families: tuple[str, ...]) -> str:
    """Why a family's input is not migrated, and how to migrate it anyway."""
    noun = "family" if len(families) == 1 else "families"
    return (
        f"in use by {noun} {', '.join(families)}; set migration.allow_active_sources: true "
        f"and point the {noun} at {migrated_folder_uri(cfg, relative_path)} to migrate it"
    )


def migrated_folder_uri(cfg: DatasetConfig, relative_path: str) -> str:
    """The ``s3://`` folder a migrated file lands in: what a family lists to read it there."""
    folder = PurePosixPath(relative_path).parent
    prefix = cfg.migration.prefix
    key = prefix if folder == PurePosixPath(".") else migrated_key(prefix, folder.as_posix())
    return s3_uri(cfg.bucket, key) + "/"


def check_not_in_use(cfg: DatasetConfig, relative_path: str, path: Path) -> tuple[str, ...]:
    """The families reading ``path`` (empty if none).

    Raises:
        SourceInUseError: a family reads it and ``migration.allow_active_sources`` is off.
    """
    families = active_sources(cfg).get(path.resolve(), ())
    if families and not allow_active_sources(cfg):
        raise SourceInUseError(
            f"refused {display_path(path)}: {in_use_reason(cfg, relative_path, families)}"
        )
    return families


def discover(cfg: DatasetConfig, *, now: float | None = None) -> Discovery:
    """Walk the data root and package-data roots and list what the migration would move.

    Excluded without a message: the kept manifest, the staging folder, the ledger, quarantine
    folders, dot-folders and temporary names. Refused with a message: symlinks (files or folders;
    the target may live anywhere and deleting a link proves nothing), names that are not valid
    UTF-8 (shown backslash-escaped) and keys Dagster cannot use. Files a family reads are
    ``in_use`` unless ``migration.allow_active_sources``. Files modified within
    ``migration.stable_seconds`` are ``waiting``.
    """
    now = time.time() if now is None else now
    mig = cfg.migration
    excluded = _excluded_paths(cfg)
    readers = {} if allow_active_sources(cfg) else active_sources(cfg)
    found: dict[str, Candidate] = {}
    refused: list[Refusal] = []
    in_use: list[InUse] = []
    waiting: list[str] = []
    for root in _roots(cfg):
        if not root.path.is_dir():
            if root.label is None and not root.path.exists():
                continue  # no data root yet: nothing to migrate
            refused.append(Refusal(display_path(root.path), "is not a directory"))
            continue
        for path, refusal in _walk(root.path, excluded):
            if refusal is not None:
                refused.append(refusal)
                continue
            if root.jsonl_only and path.suffix != ".jsonl":
                continue
            try:
                st = path.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if st.st_size < root.min_bytes:
                continue
            key = _partition_key(root, mig.data_root, path)
            problem = check_partition_key(key) or _label_clash(cfg, root, key)
            families = readers.get(path.resolve(), ())
            if problem is not None:
                refused.append(Refusal(display_path(path), problem))
            elif families:
                in_use.append(InUse(key, display_path(path), in_use_reason(cfg, key, families)))
            elif now - st.st_mtime < mig.stable_seconds:
                waiting.append(display_path(path))
            elif key in found and found[key].path != path:
                other = display_path(found[key].path)
                refused.append(
                    Refusal(display_path(path), f"same relative path {key!r} as {other}")
                )
            else:
                found[key] = Candidate(key, path, st.st_size)
    return Discovery(
        candidates=tuple(sorted(found.values())),
        refused=tuple(sorted(set(refused))),
        waiting=tuple(sorted(waiting)),
        in_use=tuple(sorted(set(in_use))),
    )


def _walk(root: Path, excluded: tuple[Path, ...]) -> Iterator[tuple[Path, Refusal | None]]:
    """Regular files under ``root``; symlinks are yielded as refusals, never followed."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        keep: list[str] = []
        for name in sorted(dirnames):
            sub = here / name
            if name.startswith(".") or name in QUARANTINE_DIR_NAMES or sub in excluded:
                continue
            if sub.is_symlink():
                yield sub, _symlink_refusal(sub, root)
                continue
            keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            path = here / name
            if is_temporary_name(name) or path in excluded:
                continue
            if path.is_symlink():
                yield path, _symlink_refusal(path, root)
            elif path.is_file():
                yield path, None


def _symlink_refusal(path: Path, root: Path) -> Refusal:
    target = Path(os.path.realpath(path))
    shown = display_path(target)
    if _is_within(target, root):
        reason = f"is a symlink to {shown}; migrate the target itself, not the link"
    else:
        reason = f"is a symlink to {shown}, which escapes the migration root {display_path(root)}"
    return Refusal(display_path(path), reason)


def resolve_partition(cfg: DatasetConfig, key: str) -> Path:
    """The local path of partition ``key`` (which may no longer exist: it may be migrated).

    Raises:
        MigrationError: the key escapes its root, or the path is (or goes through) a symlink.
    """
    problem = check_partition_key(key)
    if problem is not None:
        raise MigrationError(f"cannot migrate partition {key!r}: {problem}")
    root = cfg.migration.data_root
    rel = key
    labelled = _package_labels(cfg)
    head, _, rest = key.partition("/")
    if head in labelled and rest:
        root, rel = labelled[head], rest
    path = root / rel
    real = Path(os.path.realpath(path))
    if real != path.absolute():
        raise MigrationError(
            f"refused {path}: it is or goes through a symlink (resolves to {real}); "
            f"only regular files inside {root} are migrated"
        )
    if not _is_within(real, root):
        raise MigrationError(f"refused {path}: it escapes the migration root {root}")
    return path


# --- ledger -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerEntry:
    """One migrated file: where it was, where it went, and what was verified."""

    relative_path: str
    local_path: str
    uri: str
    key: str
    size: int
    sha256: str
    migrated_at: str
    run_id: str | None = None

    def to_line(self) -> bytes:
        """One JSONL line; the size is written as ``bytes``."""
        data = asdict(self)
        data["bytes"] = data.pop("size")
        return orjson.dumps(data) + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> "LedgerEntry":
        data = orjson.loads(line)
        data["size"] = data.pop("bytes")
        return cls(**data)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def append_ledger(path: Path, entry: LedgerEntry) -> None:
    """Append one line durably. One ``write`` on an O_APPEND descriptor, so concurrent runs (one
    per partition) never interleave within a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, entry.to_line())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_ledger(path: Path) -> dict[str, LedgerEntry]:
    """Latest ledger entry per relative path. A torn last line (crash mid-write) is ignored;
    any other unreadable line is an error, since the ledger is how people find their files."""
    if not path.exists():
        return {}
    entries: dict[str, LedgerEntry] = {}
    lines = path.read_bytes().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = LedgerEntry.from_line(line)
        except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
            if number == len(lines):
                break
            raise MigrationError(
                f"migration ledger {path} line {number} is unreadable: {exc}"
            ) from exc
        entries[entry.relative_path] = entry
    return entries


def format_bytes(size: int) -> str:
    """``1536`` → ``1.5 KiB``."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} TiB"


def refusal_lines(refusals: Iterable[Refusal]) -> list[str]:
    return [r.message() for r in refusals]
