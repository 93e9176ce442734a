"""The environments: where the object store is and how to reach it (docs/architecture.md,
"Environments").

``DATASET_ASSETS_ENV`` selects one; ``definitions.py`` and the CLI both resolve S3 settings here,
so the Dagster runs and ``dataset-assets migrate`` always talk to the same store.
- ``local`` (default): the embedded SeaweedFS on 127.0.0.1 (``dataset-assets local-s3 start``);
  ``AWS_ENDPOINT_URL_S3`` / ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` override it.
- ``aws``: the standard AWS configuration chain (profile, env keys, instance role,
  ``AWS_ENDPOINT_URL_S3`` for S3-compatible servers).

Credentials reach the Dagster resource only as the *names* of environment variables
(:func:`credential_env`), so the UI and GraphQL never show a secret.
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from dataset_assets.storage import S3Settings

ENVIRONMENTS = ("local", "aws")
LOCAL_S3_PORT = 8333
LOCAL_ENDPOINT = f"http://127.0.0.1:{LOCAL_S3_PORT}"
# Credentials of the embedded development server only (written into its own s3 config file).
LOCAL_ACCESS_KEY = "LOCALACCESSKEY000000"
LOCAL_SECRET_KEY = "LOCALSECRETKEY0000000000000000000000000"
LOCAL_REGION = "us-east-1"
# Where definitions.py puts the embedded server's keys for Dagster's EnvVar resolution (names of
# the project's own, so they never shadow a shell's AWS_* variables).
LOCAL_ACCESS_KEY_ENV = "DATASET_ASSETS_LOCAL_S3_ACCESS_KEY_ID"
LOCAL_SECRET_KEY_ENV = "DATASET_ASSETS_LOCAL_S3_SECRET_ACCESS_KEY"


@dataclass(frozen=True)
class CredentialEnv:
    """Which environment variables hold the S3 keys (None: boto3's chain finds credentials).

    Attributes:
        access_key_id: variable holding the access key id.
        secret_access_key: variable holding the secret.
        local_values: variables to set in the process first (the embedded server's public
            development keys), name → value.
    """

    access_key_id: str | None = None
    secret_access_key: str | None = None
    local_values: tuple[tuple[str, str], ...] = ()


def environment_name(environ: Mapping[str, str]) -> str:
    env = environ.get("DATASET_ASSETS_ENV", "local")
    if env not in ENVIRONMENTS:
        raise ValueError(
            f"DATASET_ASSETS_ENV must be one of {', '.join(ENVIRONMENTS)}, got {env!r}"
        )
    return env


def s3_settings(environ: Mapping[str, str]) -> S3Settings:
    """S3 settings of the selected environment."""
    base = S3Settings.from_env(environ)
    if environment_name(environ) == "aws":
        return base
    return replace(
        base,
        endpoint_url=base.endpoint_url or LOCAL_ENDPOINT,
        region=base.region or LOCAL_REGION,
        access_key_id=environ.get("AWS_ACCESS_KEY_ID", LOCAL_ACCESS_KEY),
        secret_access_key=environ.get("AWS_SECRET_ACCESS_KEY", LOCAL_SECRET_KEY),
        profile=None,
    )


def credential_env(environ: Mapping[str, str]) -> CredentialEnv:
    """The variables carrying the keys of the selected environment.

    ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` when both are set (in any environment),
    unless ``AWS_SESSION_TOKEN`` is set too: temporary credentials are left to boto3's chain,
    which reads all three. Otherwise ``local`` uses the embedded server's development keys
    (under the project's own variable names) and ``aws`` leaves everything to the chain.
    """
    has_keys = bool(environ.get("AWS_ACCESS_KEY_ID")) and bool(environ.get("AWS_SECRET_ACCESS_KEY"))
    if has_keys and not environ.get("AWS_SESSION_TOKEN"):
        return CredentialEnv("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    if environment_name(environ) == "aws" or has_keys:
        return CredentialEnv()
    return CredentialEnv(
        LOCAL_ACCESS_KEY_ENV,
        LOCAL_SECRET_KEY_ENV,
        ((LOCAL_ACCESS_KEY_ENV, LOCAL_ACCESS_KEY), (LOCAL_SECRET_KEY_ENV, LOCAL_SECRET_KEY)),
    )


def local_state_dir(project_dir: Path) -> Path:
    """``.local/`` under the project: S3 data, Dagster home, staging, manifest copy."""
    return project_dir / ".local"
