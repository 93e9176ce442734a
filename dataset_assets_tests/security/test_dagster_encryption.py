"""The Dagster path encrypts too: DATASET_ASSETS_SSE reaches the ``s3`` resource, and after a
materialization every object the build wrote reports that encryption.

Needs the ``defs/resources.py`` / ``definitions.py`` / ``storage/compose.py`` changes handed to
the lead (strict xfail until they land).
"""

import os
import uuid
from pathlib import Path

import dagster as dg
import pytest

from dataset_assets.definitions import make_resources, make_s3_resource
from dataset_assets.defs.assets import COMPILE_ASSETS
from dataset_assets.defs.resources import ObjectStoreResource
from dataset_assets.storage import S3ObjectStore, S3Settings
from dataset_assets_tests.builds import write_build_config


def test_sse_settings_round_trip_through_the_resource() -> None:
    settings = S3Settings(
        endpoint_url="http://127.0.0.1:1",
        server_side_encryption="aws:kms",
        sse_kms_key_id="alias/k",
        etag_is_md5=False,
    )
    assert ObjectStoreResource.from_settings(settings).settings() == settings
    resource = make_s3_resource({"DATASET_ASSETS_ENV": "aws", "DATASET_ASSETS_SSE": "AES256"})
    assert resource.settings().server_side_encryption == "AES256"


def test_every_object_of_a_dagster_build_is_encrypted(
    seaweed: S3Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = f"sse-{uuid.uuid4().hex[:12]}"
    config = write_build_config(tmp_path, bucket, compile={"workers": 1})
    for name, value in {
        "DATASET_ASSETS_ENV": "aws",
        "DATASET_ASSETS_SSE": "AES256",
        "AWS_ENDPOINT_URL_S3": str(seaweed.endpoint_url),
        "AWS_REGION": str(seaweed.region),
        "AWS_ACCESS_KEY_ID": str(seaweed.access_key_id),
        "AWS_SECRET_ACCESS_KEY": str(seaweed.secret_access_key),
    }.items():
        monkeypatch.setenv(name, value)
    result = dg.materialize(
        COMPILE_ASSETS,
        resources=make_resources(os.environ, str(config)),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    store = S3ObjectStore(bucket, seaweed)
    keys = [o.key for o in store.list("")]
    assert any("/compiled/" in k for k in keys) and any(k.endswith("manifest.json") for k in keys)
    plain = [k for k in keys if store.head(k).server_side_encryption != "AES256"]
    assert plain == []
