"""The one Dagster entry point: environment → resources → Definitions.

``DATASET_ASSETS_ENV`` chooses the environment:
- ``local`` (default): the embedded SeaweedFS server on 127.0.0.1 (``dataset-assets local-s3
  start``), unless ``AWS_ENDPOINT_URL_S3`` points elsewhere;
- ``aws``: the standard AWS configuration chain (profile, env keys, instance role,
  ``AWS_ENDPOINT_URL_S3`` for S3-compatible servers such as MinIO or Ceph).
``DATASET_ASSETS_CONFIG`` is the dataset config file (default ``dataset.yaml``).
"""

import os

import dagster as dg

from dataset_assets.defs import compile as compile_defs
from dataset_assets.defs import migration as migration_defs
from dataset_assets.defs import sensors as sensor_defs
from dataset_assets.defs.io_manager import S3PublishIOManager
from dataset_assets.defs.resources import DatasetConfigResource, ObjectStoreResource
from dataset_assets.local_env import LOCAL_ACCESS_KEY, LOCAL_ENDPOINT, LOCAL_REGION, LOCAL_SECRET_KEY

ENVIRONMENTS = ("local", "aws")


def object_store_resource(env: str) -> ObjectStoreResource:
    if env == "local":
        return ObjectStoreResource(
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3", LOCAL_ENDPOINT),
            region=os.environ.get("AWS_REGION", LOCAL_REGION),
            access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", LOCAL_ACCESS_KEY),
            secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", LOCAL_SECRET_KEY),
        )
    if env == "aws":
        return ObjectStoreResource(
            request_checksum_calculation=os.environ.get(  # type: ignore[arg-type]
                "DATASET_ASSETS_REQUEST_CHECKSUM_CALCULATION", "when_supported"
            ),
            response_checksum_validation=os.environ.get(  # type: ignore[arg-type]
                "DATASET_ASSETS_RESPONSE_CHECKSUM_VALIDATION", "when_supported"
            ),
        )
    raise ValueError(f"DATASET_ASSETS_ENV must be one of {', '.join(ENVIRONMENTS)}, got {env!r}")


def make_resources(env: str, config_path: str) -> dict[str, object]:
    dataset = DatasetConfigResource(config_path=config_path)
    s3 = object_store_resource(env)
    return {
        "dataset": dataset,
        "s3": s3,
        "s3_publish": S3PublishIOManager(dataset=dataset, s3=s3),
    }


@dg.definitions
def defs() -> dg.Definitions:
    env = os.environ.get("DATASET_ASSETS_ENV", "local")
    config_path = os.environ.get("DATASET_ASSETS_CONFIG", "dataset.yaml")
    return dg.Definitions.merge(
        compile_defs.build_defs(),
        sensor_defs.build_defs(),
        migration_defs.build_defs(),
        dg.Definitions(resources=make_resources(env, config_path)),
    )
