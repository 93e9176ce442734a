"""Resources: the dataset config and the object store, shared by every asset, sensor and check.

``s3`` is dagster-aws's ``S3Resource`` (:class:`ObjectStoreResource` extends it): the config
fields Dagster users know — ``endpoint_url``, ``region_name``, ``profile_name``,
``max_attempts``, ``aws_access_key_id`` / ``aws_secret_access_key`` as ``dg.EnvVar`` so the UI
and GraphQL show the variable's name, never the secret — plus the two botocore checksum switches
that some S3-compatible servers need. The storage layer never sees the resource: it takes the
:class:`~dataset_assets.storage.S3Settings` the resource makes, and one boto3 client is built per
(settings, bucket, part size) per process. ``S3Resource.get_client()`` builds a new boto3
session on every call (~0.4 s), and Dagster builds resources for every step, so nothing here
calls it per operation.

Why the project's own IO manager (``S3PublishIOManager``) and not dagster-aws's
``S3PickleIOManager``: the pickle IO manager serializes a whole Python object in memory and
uploads it under a key derived from the asset key, with no verification and nothing to clean up
locally. The outputs here are files larger than memory (shards, a streamed export) that must be
published by the project's protocol — staged with sha256 and the expected ETag computed while
writing, uploaded with the transfer manager, verified in S3 (size, sha256, ETag), only then
deleted locally, at most K in flight — under content-addressed keys that training code reads,
with the manifest committed last. Downstream assets load a small JSON reference to what was
published, never the bytes.
"""

import threading
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field

from dataset_assets.core.config import DatasetConfig, load_config
from dataset_assets.core.errors import ConfigError
from dataset_assets.core.hashing import DEFAULT_PART_SIZE
from dataset_assets.storage import S3ObjectStore, S3Settings
from dataset_assets.storage.settings import ServerSideEncryption

_CACHE_LOCK = threading.Lock()
_STORES: dict[tuple[S3Settings, str, int], S3ObjectStore] = {}
_ENSURED: set[tuple[S3Settings, str, int]] = set()
_CLIENT_BUCKET = "-"  # get_client(): a client not tied to a bucket
# Field names of the previous resource (before S3Resource), still accepted by the constructor.
_LEGACY_NAMES = {
    "region": "region_name",
    "profile": "profile_name",
    "access_key_id": "aws_access_key_id",
    "secret_access_key": "aws_secret_access_key",
}
ChecksumWhen = Literal["when_supported", "when_required"]


def _sse(value: str | None) -> ServerSideEncryption | None:
    if value is None:
        return None
    if value == "AES256":
        return "AES256"
    if value == "aws:kms":
        return "aws:kms"
    raise ConfigError(f"server_side_encryption must be 'AES256' or 'aws:kms', got {value!r}")


class DatasetConfigResource(dg.ConfigurableResource):
    """Points at the declarative dataset config file (YAML); validated on first use."""

    config_path: str = Field(
        description=(
            "Path of the dataset config (YAML: bucket, prefix, families, splits, dedup...). "
            "Relative paths inside it are resolved against its folder."
        )
    )

    def load(self) -> DatasetConfig:
        return load_config(Path(self.config_path))


def _plain(value: Any) -> Any:
    """A field's value; an ``EnvVar`` is resolved (it stays unresolved when the resource is
    built outside a Dagster run, e.g. in a script or test)."""
    return value.get_value() if isinstance(value, dg.EnvVar) else value


class ObjectStoreResource(S3Resource):
    """The S3 or S3-compatible object store (dagster-aws ``S3Resource`` config).

    Unset fields fall back to boto3's AWS configuration chain (``AWS_PROFILE``,
    ``~/.aws/config``, instance roles); ``definitions.py`` fills them from the selected
    environment. Assets call :meth:`store_for` to get the dataset bucket's store.
    """

    request_checksum_calculation: ChecksumWhen = Field(
        default="when_supported",
        description=(
            "botocore's request checksums: 'when_required' for S3-compatible servers that "
            "reject boto3 >= 1.36's default CRC32 headers."
        ),
    )
    response_checksum_validation: ChecksumWhen = Field(
        default="when_supported",
        description="botocore's response checksum validation ('when_required': same reason).",
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto",
        description=(
            "S3 addressing: 'auto' is path-style when endpoint_url is set "
            "(S3-compatible servers), virtual-hosted on AWS."
        ),
    )
    # str, not Literal: Dagster config enums cannot hold "aws:kms"; checked in settings().
    server_side_encryption: str | None = Field(
        default=None,
        description=(
            "Server-side encryption of every write: 'AES256' (SSE-S3) or 'aws:kms' (SSE-KMS); "
            "unset = no header (the bucket default applies). A server that ignores it is "
            "refused before anything is written."
        ),
    )
    sse_kms_key_id: str | None = Field(
        default=None,
        description="KMS key id, ARN or alias for 'aws:kms' (unset: the account's aws/s3 key).",
    )
    etag_is_md5: bool | None = Field(
        default=None,
        description=(
            "Whether ETags are MD5s of the bytes (unset: detected, false with 'aws:kms'); when "
            "false uploads are verified by ChecksumSHA256 or by reading them back."
        ),
    )

    def __init__(self, **data: Any) -> None:
        # Callers of the previous resource pass region/profile/access_key_id/secret_access_key.
        super().__init__(**{_LEGACY_NAMES.get(name, name): value for name, value in data.items()})

    @classmethod
    def _is_dagster_maintained(cls) -> bool:
        return False

    @classmethod
    def from_settings(cls, settings: S3Settings) -> "ObjectStoreResource":
        """The resource for explicit settings (scripts and tests; secrets as plain values)."""
        return cls(
            endpoint_url=settings.endpoint_url,
            region_name=settings.region,
            profile_name=settings.profile,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            max_attempts=settings.max_attempts,
            addressing_style=settings.addressing_style,
            request_checksum_calculation=settings.request_checksum_calculation,
            response_checksum_validation=settings.response_checksum_validation,
            server_side_encryption=settings.server_side_encryption,
            sse_kms_key_id=settings.sse_kms_key_id,
            etag_is_md5=settings.etag_is_md5,
        )

    def settings(self) -> S3Settings:
        """The storage layer's settings for this resource's config.

        Raises:
            ConfigError: a dagster-aws option the object store does not support is set.
        """
        unsupported = {
            "use_unsigned_session": self.use_unsigned_session,
            "use_ssl": not self.use_ssl,  # http vs https is the endpoint_url's scheme
            "verify": self.verify is False,
            "aws_session_token": bool(self.aws_session_token),
        }
        bad = [name for name, is_set in unsupported.items() if is_set]
        if bad:
            raise ConfigError(
                f"S3 resource options not supported by the object store: {', '.join(bad)} "
                "(leave them at their defaults; temporary credentials work through the AWS "
                "chain when aws_access_key_id is unset)"
            )
        return S3Settings(
            endpoint_url=_plain(self.endpoint_url),
            region=_plain(self.region_name),
            access_key_id=_plain(self.aws_access_key_id),
            secret_access_key=_plain(self.aws_secret_access_key),
            profile=_plain(self.profile_name),
            addressing_style=self.addressing_style,
            request_checksum_calculation=self.request_checksum_calculation,
            response_checksum_validation=self.response_checksum_validation,
            max_attempts=self.max_attempts,
            server_side_encryption=_sse(self.server_side_encryption),
            sse_kms_key_id=self.sse_kms_key_id,
            etag_is_md5=self.etag_is_md5,
        )

    def store(self, bucket: str, part_size: int, *, create: bool = False) -> S3ObjectStore:
        """One cached store (one boto3 client) per (settings, bucket, part size) per process:
        boto3 sessions take ~0.4 s and Dagster builds resources per step. ``create`` makes sure
        the bucket exists (checked once per process)."""
        settings = self.settings()
        key = (settings, bucket, part_size)
        with _CACHE_LOCK:
            store = _STORES.get(key)
            if store is None:
                store = _STORES[key] = S3ObjectStore(bucket, settings, part_size=part_size)
            if create and key not in _ENSURED:
                store.ensure_bucket()
                _ENSURED.add(key)
        return store

    def store_for(self, cfg: DatasetConfig) -> S3ObjectStore:
        """The dataset bucket's store (the bucket is created if missing)."""
        return self.store(cfg.bucket, cfg.part_size, create=True)

    def get_client(self) -> Any:
        """A boto3 S3 client for these settings, built once per process (dagster-aws's builds a
        new session on every call)."""
        return self.store(_CLIENT_BUCKET, DEFAULT_PART_SIZE).client
