"""The one Dagster entry point: environment → resources → Definitions.

``DATASET_ASSETS_ENV`` chooses the environment:
- ``local`` (default): the embedded SeaweedFS server on 127.0.0.1 (``dataset-assets local-s3
  start``), unless ``AWS_ENDPOINT_URL_S3`` points elsewhere;
- ``aws``: the standard AWS configuration chain (profile, env keys, instance role,
  ``AWS_ENDPOINT_URL_S3`` for S3-compatible servers such as MinIO or Ceph).
``DATASET_ASSETS_CONFIG`` is the dataset config file (default ``dataset.yaml``).

The ``s3`` resource is dagster-aws's ``S3Resource`` (``ObjectStoreResource``); its keys are
``dg.EnvVar`` references, so the UI and GraphQL show variable names, never secrets.
"""

import os
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from dataset_assets.core.config import load_config
from dataset_assets.defs import compile as compile_defs
from dataset_assets.defs import migration as migration_defs
from dataset_assets.defs import sensors as sensor_defs
from dataset_assets.defs.io_manager import S3PublishIOManager
from dataset_assets.defs.resources import DatasetConfigResource, ObjectStoreResource
from dataset_assets.environments import credential_env, s3_settings


def make_s3_resource(environ: Mapping[str, str]) -> ObjectStoreResource:
    """The ``s3`` resource of the environment ``environ`` selects; keys as ``dg.EnvVar``."""
    settings = s3_settings(environ)
    creds = credential_env(environ)
    for name, value in creds.local_values:
        # The embedded server's public development keys, for EnvVar resolution in this process
        # and the run processes it starts (they load these definitions too).
        os.environ[name] = value
    return ObjectStoreResource(
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        profile_name=settings.profile,
        aws_access_key_id=dg.EnvVar(creds.access_key_id) if creds.access_key_id else None,
        aws_secret_access_key=(
            dg.EnvVar(creds.secret_access_key) if creds.secret_access_key else None
        ),
        max_attempts=settings.max_attempts,
        addressing_style=settings.addressing_style,
        request_checksum_calculation=settings.request_checksum_calculation,
        response_checksum_validation=settings.response_checksum_validation,
        server_side_encryption=settings.server_side_encryption,
        sse_kms_key_id=settings.sse_kms_key_id,
        etag_is_md5=settings.etag_is_md5,
    )


def make_resources(environ: Mapping[str, str], config_path: str) -> dict[str, object]:
    dataset = DatasetConfigResource(config_path=config_path)
    s3 = make_s3_resource(environ)
    return {
        "dataset": dataset,
        "s3": s3,
        "s3_publish": S3PublishIOManager(dataset=dataset, s3=s3),
    }


EXECUTORS = ("in_process", "multiprocess", "k8s", "celery")


def make_executor(environ: Mapping[str, str]) -> dg.ExecutorDefinition:
    """``DATASET_ASSETS_EXECUTOR``: where a run's steps execute.

    ``multiprocess`` (default): a process per step; a run whose worker is killed is marked
    failed within seconds (and retried), which the run-monitoring daemon alone would only do
    after ``max_runtime_seconds``. ``in_process``: one process per run, ~4 step start-ups
    cheaper (what ``dataset-assets run`` uses); the build parallelizes inside its steps either
    way (worker processes for partitions and shards, DuckDB threads). ``k8s``
    (dagster-k8s ``k8s_job_executor``: a pod per step, ``deploy/k8s/``) and ``celery``
    (dagster-celery, ``deploy/celery/``): steps on other machines; they share nothing but S3.
    """
    name = environ.get("DATASET_ASSETS_EXECUTOR", "multiprocess")
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if name == "celery":
        from dagster_celery import celery_executor

        return celery_executor
    raise ValueError(f"DATASET_ASSETS_EXECUTOR must be one of {', '.join(EXECUTORS)}, got {name!r}")


@dg.definitions
def defs() -> dg.Definitions:
    config_path = os.environ.get("DATASET_ASSETS_CONFIG", "dataset.yaml")
    return dg.Definitions.merge(
        compile_defs.build_defs(),
        sensor_defs.build_defs(_sensor_interval(Path(config_path))),
        migration_defs.build_defs(),
        dg.Definitions(
            resources=make_resources(os.environ, config_path), executor=make_executor(os.environ)
        ),
    )


def _sensor_interval(config_path: Path) -> int:
    """The rebuild sensor's poll interval from the config; a missing config file keeps the
    default (the sensor's tick then fails with the config error, visible in the UI)."""
    if not config_path.exists():
        return sensor_defs.DEFAULT_MINIMUM_INTERVAL_SECONDS
    return load_config(config_path).sensor.minimum_interval_seconds
