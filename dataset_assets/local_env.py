"""The embedded default environment: where local state lives and how to reach the local S3."""

from pathlib import Path

LOCAL_S3_PORT = 8333
LOCAL_ENDPOINT = f"http://127.0.0.1:{LOCAL_S3_PORT}"
# Credentials of the embedded development server only (written into its own s3 config file).
LOCAL_ACCESS_KEY = "LOCALACCESSKEY000000"
LOCAL_SECRET_KEY = "LOCALSECRETKEY0000000000000000000000000"
LOCAL_REGION = "us-east-1"


def local_state_dir(project_dir: Path) -> Path:
    """``.local/`` under the project: S3 data, Dagster home, staging, manifest copy."""
    return project_dir / ".local"
