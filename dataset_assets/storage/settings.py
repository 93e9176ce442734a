"""Connection settings for an S3 or S3-compatible object store.

Library code never reads the environment itself: the caller builds :class:`S3Settings` explicitly
or passes its environment mapping to :meth:`S3Settings.from_env`.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

ChecksumWhen = Literal["when_supported", "when_required"]
AddressingStyle = Literal["auto", "path", "virtual"]
ServerSideEncryption = Literal["AES256", "aws:kms"]

_CHECKSUM_CHOICES: tuple[str, ...] = ("when_supported", "when_required")
SSE_CHOICES: tuple[str, ...] = ("AES256", "aws:kms")


def _checksum_when(environ: Mapping[str, str], name: str) -> ChecksumWhen:
    value = environ.get(name, "when_supported").strip().lower() or "when_supported"
    if value == "when_supported":
        return "when_supported"
    if value == "when_required":
        return "when_required"
    raise ValueError(f"{name} must be one of {', '.join(_CHECKSUM_CHOICES)}, got {value!r}")


def _sse(environ: Mapping[str, str]) -> ServerSideEncryption | None:
    name = "DATASET_ASSETS_SSE"
    value = environ.get(name, "").strip()
    if value.lower() in ("", "none", "off"):
        return None
    if value.upper() == "AES256":
        return "AES256"
    if value.lower() == "aws:kms":
        return "aws:kms"
    raise ValueError(f"{name} must be one of none, {', '.join(SSE_CHOICES)}, got {value!r}")


def _etag_is_md5(environ: Mapping[str, str]) -> bool | None:
    name = "DATASET_ASSETS_ETAG_IS_MD5"
    value = environ.get(name, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ValueError(f"{name} must be auto, true or false, got {value!r}")


@dataclass(frozen=True)
class S3Settings:
    """How to reach the object store.

    ``None`` fields fall back to the standard AWS configuration chain of a boto3 ``Session``
    (``AWS_PROFILE``, ``~/.aws/config``, instance roles...).

    Attributes:
        endpoint_url: e.g. ``http://127.0.0.1:8333`` for a local server; ``None`` for AWS.
        region: region name.
        access_key_id: static credentials (both keys or neither).
        secret_access_key: static credentials.
        profile: a named profile from the AWS config files.
        addressing_style: ``auto`` means path-style when ``endpoint_url`` is set, else virtual.
        request_checksum_calculation: botocore's flexible checksum default; ``when_required``
            for S3-compatible servers that reject boto3 ≥ 1.36 default CRC32 headers.
        response_checksum_validation: same for validating response checksums.
        max_attempts: botocore retry attempts (standard mode).
        connect_timeout: seconds.
        read_timeout: seconds.
        server_side_encryption: ``AES256`` (SSE-S3) or ``aws:kms`` (SSE-KMS) on every write
            the store makes; ``None`` sends no encryption header (the bucket default applies).
            A server that answers a write without the requested encryption is refused
            (:class:`~dataset_assets.storage.objects.EncryptionNotAppliedError`).
        sse_kms_key_id: the KMS key (id, ARN or alias) for ``aws:kms``; ``None`` = the
            account's default ``aws/s3`` key.
        etag_is_md5: whether the server's ETag of a single-part object is the MD5 of its
            bytes (multipart: md5-of-md5s). ``None`` = detected: False with ``aws:kms`` (AWS
            computes SSE-KMS ETags over ciphertext), True otherwise. When False, uploads are
            verified with the server's ``ChecksumSHA256`` or, without one, by reading back.
    """

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    profile: str | None = None
    addressing_style: AddressingStyle = "auto"
    request_checksum_calculation: ChecksumWhen = "when_supported"
    response_checksum_validation: ChecksumWhen = "when_supported"
    max_attempts: int = 5
    connect_timeout: float = 10
    read_timeout: float = 60
    server_side_encryption: ServerSideEncryption | None = None
    sse_kms_key_id: str | None = None
    etag_is_md5: bool | None = None

    def __post_init__(self) -> None:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("access_key_id and secret_access_key must be given together")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be ≥ 1, got {self.max_attempts}")
        if self.server_side_encryption not in (None, *SSE_CHOICES):
            raise ValueError(
                f"server_side_encryption must be None, {', '.join(SSE_CHOICES)}, "
                f"got {self.server_side_encryption!r}"
            )
        if self.sse_kms_key_id is not None and self.server_side_encryption != "aws:kms":
            raise ValueError(
                "sse_kms_key_id is only used with server_side_encryption='aws:kms', got "
                f"server_side_encryption={self.server_side_encryption!r}"
            )

    def __repr__(self) -> str:
        # The secret never appears in a repr (logs, tracebacks, Dagster metadata).
        secret = None if self.secret_access_key is None else "***"
        return (
            f"S3Settings(endpoint_url={self.endpoint_url!r}, region={self.region!r}, "
            f"access_key_id={self.access_key_id!r}, secret_access_key={secret!r}, "
            f"profile={self.profile!r}, server_side_encryption={self.server_side_encryption!r})"
        )

    @property
    def etag_is_content_md5(self) -> bool:
        """``etag_is_md5``, detected when unset (False under SSE-KMS)."""
        if self.etag_is_md5 is not None:
            return self.etag_is_md5
        return self.server_side_encryption != "aws:kms"

    @property
    def encryption_args(self) -> dict[str, str]:
        """The SSE arguments of every write call (PutObject, CreateMultipartUpload, CopyObject,
        transfer-manager ``ExtraArgs``); empty when no encryption is configured."""
        args: dict[str, str] = {}
        if self.server_side_encryption is not None:
            args["ServerSideEncryption"] = self.server_side_encryption
        if self.sse_kms_key_id is not None:
            args["SSEKMSKeyId"] = self.sse_kms_key_id
        return args

    @property
    def effective_addressing_style(self) -> Literal["path", "virtual", "auto"]:
        """Path-style for custom endpoints unless told otherwise (S3-compatible servers)."""
        if self.addressing_style == "auto" and self.endpoint_url:
            return "path"
        return self.addressing_style

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "S3Settings":
        """Settings from an environment mapping (pass ``os.environ``).

        Reads ``AWS_ENDPOINT_URL_S3`` (else ``AWS_ENDPOINT_URL``), ``AWS_REGION`` (else
        ``AWS_DEFAULT_REGION``), ``AWS_PROFILE``, ``DATASET_ASSETS_REQUEST_CHECKSUM_CALCULATION``,
        ``DATASET_ASSETS_RESPONSE_CHECKSUM_VALIDATION``, ``DATASET_ASSETS_SSE``
        (``none`` | ``AES256`` | ``aws:kms``), ``DATASET_ASSETS_SSE_KMS_KEY_ID`` and
        ``DATASET_ASSETS_ETAG_IS_MD5`` (``auto`` | ``true`` | ``false``). Credentials are left
        to boto3's chain, which reads ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` itself.
        """
        return cls(
            endpoint_url=environ.get("AWS_ENDPOINT_URL_S3")
            or environ.get("AWS_ENDPOINT_URL")
            or None,
            region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None,
            profile=environ.get("AWS_PROFILE") or None,
            request_checksum_calculation=_checksum_when(
                environ, "DATASET_ASSETS_REQUEST_CHECKSUM_CALCULATION"
            ),
            response_checksum_validation=_checksum_when(
                environ, "DATASET_ASSETS_RESPONSE_CHECKSUM_VALIDATION"
            ),
            server_side_encryption=_sse(environ),
            sse_kms_key_id=environ.get("DATASET_ASSETS_SSE_KMS_KEY_ID", "").strip() or None,
            etag_is_md5=_etag_is_md5(environ),
        )
