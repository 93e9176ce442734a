"""The S3 client and verified upload shared by the peer scripts (plain boto3, like a user's script).

``S3_*`` arguments come from the benchmark as one JSON string: endpoint_url, region,
access_key_id, secret_access_key.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

import boto3
import botocore.config
from boto3.s3.transfer import TransferConfig

MiB = 1024 * 1024
TRANSFER = TransferConfig(multipart_threshold=16 * MiB, multipart_chunksize=16 * MiB)


def client(settings_json: str) -> Any:
    s = json.loads(settings_json)
    return boto3.client(
        "s3",
        endpoint_url=s["endpoint_url"],
        region_name=s.get("region") or "us-east-1",
        aws_access_key_id=s["access_key_id"],
        aws_secret_access_key=s["secret_access_key"],
        config=botocore.config.Config(s3={"addressing_style": "path"}, max_pool_connections=16),
    )


def ensure_bucket(s3: Any, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError:
        s3.create_bucket(Bucket=bucket)


def upload_verify_delete(s3: Any, bucket: str, key: str, path: Path, sha256: str) -> int:
    """``upload_file`` with sha256/size metadata, HEAD to check size and metadata, delete the
    local file; returns the size. Raises on any mismatch (the file then stays)."""
    size = path.stat().st_size
    s3.upload_file(
        str(path),
        bucket,
        key,
        ExtraArgs={"Metadata": {"sha256": sha256, "size": str(size)}},
        Config=TRANSFER,
    )
    head = s3.head_object(Bucket=bucket, Key=key)
    if head["ContentLength"] != size or head["Metadata"].get("sha256") != sha256:
        raise RuntimeError(f"s3://{bucket}/{key}: HEAD disagrees with the local file")
    path.unlink()
    return size


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()
