"""The environments: where the object store is and how to reach it (DESIGN §6).

``DATASET_ASSETS_ENV`` selects one; ``definitions.py`` and the CLI both resolve S3 settings here,
so the Dagster runs and ``dataset-assets migrate`` always talk to the same store.
- ``local`` (default): the embedded SeaweedFS on 127.0.0.1 (``dataset-assets local-s3 start``);
  ``AWS_ENDPOINT_URL_S3`` / ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` override it.
- ``aws``: the standard AWS configuration chain (profile, env keys, instance role,
  ``AWS_ENDPOINT_URL_S3`` for S3-compatible servers).
"""

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from dataset_assets.storage import S3Settings

ENVIRONMENTS = ("local", "aws")
LOCAL_S3_PORT = 8333
LOCAL_ENDPOINT = f"http://127.0.0.1:{LOCAL_S3_PORT}"
# Credentials of the embedded development server only (written into its own s3 config file).
LOCAL_ACCESS_KEY = "LOCALACCESSKEY000000"
LOCAL_SECRET_KEY = "LOCALSECRETKEY0000000000000000000000000"
LOCAL_REGION = "us-east-1"


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


def local_state_dir(project_dir: Path) -> Path:
    """``.local/`` under the project: S3 data, Dagster home, staging, manifest copy."""
    return project_dir / ".local"
