"""Connection settings for an S3 or S3-compatible object store.

Library code never reads the environment itself: the caller builds :class:`S3Settings` explicitly
or passes its environment mapping to :meth:`S3Settings.from_env`.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

ChecksumWhen = Literal["when_supported", "when_required"]
AddressingStyle = Literal["auto", "path", "virtual"]

_CHECKSUM_CHOICES: tuple[str, ...] = ("when_supported", "when_required")


def _checksum_when(environ: Mapping[str, str], name: str) -> ChecksumWhen:
    value = environ.get(name, "when_supported").strip().lower() or "when_supported"
    if value == "when_supported":
        return "when_supported"
    if value == "when_required":
        return "when_required"
    raise ValueError(f"{name} must be one of {', '.join(_CHECKSUM_CHOICES)}, got {value!r}")


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

    def __post_init__(self) -> None:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("access_key_id and secret_access_key must be given together")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be ≥ 1, got {self.max_attempts}")

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
        ``AWS_DEFAULT_REGION``), ``AWS_PROFILE``, ``DATASET_ASSETS_REQUEST_CHECKSUM_CALCULATION``
        and ``DATASET_ASSETS_RESPONSE_CHECKSUM_VALIDATION``. Credentials are left to boto3's
        chain, which reads ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` itself.
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
        )
