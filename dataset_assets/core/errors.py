"""The one exception tree of dataset_assets.

    DatasetError
    ├── ConfigError                 invalid configuration (raised before any byte is written)
    ├── InvalidRecordError          one input record cannot be parsed/normalized (has a ``reason``)
    ├── ManifestError               a manifest cannot be read, parsed or trusted
    ├── IntegrityError              bytes do not match their recorded sha256/size
    ├── MigrationError              a local file cannot be migrated (symlink escape, ...)
    └── StorageError                anything the object store did wrong (translated in storage/)
        ├── ObjectNotFoundError     the key does not exist
        ├── PreconditionFailedError a conditional write lost (If-Match / If-None-Match)
        ├── UploadFailedError       the upload itself failed; the local file is kept
        └── VerificationError       the object in S3 does not match the local bytes; local kept

Lower-level errors (botocore, OSError) are translated once, at the layer boundary, with
``raise Mapped(...) from exc``.
"""


class DatasetError(Exception):
    """Base of every error raised on purpose by dataset_assets."""

    def __reduce__(self) -> tuple[object, ...]:
        # Picklable whatever a subclass's __init__ takes: errors cross process boundaries
        # (worker pools, Dagster step processes) with their message and attributes intact.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(
    cls: type[DatasetError], args: tuple[object, ...], state: dict[str, object]
) -> DatasetError:
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class ConfigError(DatasetError):
    """The dataset configuration is invalid; the message names the field and what is allowed."""


class InvalidRecordError(DatasetError):
    """A record cannot be turned into a conversation. ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ManifestError(DatasetError):
    """A manifest is missing, malformed or inconsistent."""


class IntegrityError(DatasetError):
    """Bytes do not match their recorded checksum or size."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"{what}: expected {expected}, got {actual}")
        self.what = what
        self.expected = expected
        self.actual = actual


class MigrationError(DatasetError):
    """A local dataset file cannot be migrated."""


class StorageError(DatasetError):
    """The object store failed; ``key`` names the object concerned when there is one."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class ObjectNotFoundError(StorageError):
    """The requested key does not exist."""


class PreconditionFailedError(StorageError):
    """A conditional write (If-Match / If-None-Match) was rejected with 412."""


class UploadFailedError(StorageError):
    """The upload failed; the local file was kept."""


class VerificationError(StorageError):
    """The stored object does not match the local bytes; the local file was kept."""

    def __init__(self, key: str, field: str, expected: str, actual: str) -> None:
        super().__init__(
            f"verification of s3 key {key!r} failed: {field} expected {expected}, got {actual}",
            key=key,
        )
        self.field = field
        self.expected = expected
        self.actual = actual


class ConcurrentPublishError(ManifestError):
    """A build's commit was refused: the latest pointer moved since the build started (another
    build committed first). The build's objects stay unreferenced; nothing was pointed at them."""


class QualityGateError(DatasetError):
    """A blocking quality gate failed (split leakage, quarantine ratio): nothing is committed."""


class StagingSpaceError(DatasetError):
    """The local staging disk is full: the message names the folder and its free/total bytes.
    Nothing unverified was deleted; rerun with room (or a smaller shard_size / fewer workers)."""
