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

import gc
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from dataset_assets.core.config import DatasetConfig, load_config
from dataset_assets.defs import compile as compile_defs
from dataset_assets.defs import migration as migration_defs
from dataset_assets.defs import sensors as sensor_defs
from dataset_assets.defs import sources as source_defs
from dataset_assets.defs.io_manager import S3PublishIOManager
from dataset_assets.defs.resources import DatasetConfigResource, ObjectStoreResource
from dataset_assets.environments import credential_env, s3_settings

# Importing Dagster, its dependencies and this package leaves ~230k objects that live as long as
# the process. Frozen, no garbage collection traverses them again: each full collection during a
# build cost ~0.1 s (6 per build), and the collections at interpreter exit ~0.5 s per process
# (each build's process, and each step's under the multiprocess executor). Measured on a no-op
# rebuild, `dagster job execute`: 5.6-5.7 s -> 4.9 s.
gc.freeze()

# The package logs its INFO lines (the compile's phase timings) and warnings; the shipped
# dagster.yaml (python_logs.managed_python_loggers) puts them in each run's event log.
logging.getLogger("dataset_assets").setLevel(logging.INFO)


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
    cfg = _load_if_present(Path(config_path))
    return dg.Definitions.merge(
        graph_defs(cfg),
        sensor_defs.build_defs(_sensor_interval(cfg)),
        dg.Definitions(
            resources=make_resources(os.environ, config_path), executor=make_executor(os.environ)
        ),
    )


def graph_defs(cfg: DatasetConfig | None) -> dg.Definitions:
    """The asset graph: each family's ``source/<family>`` upstream of the compile's outputs, the
    build's assets and job, and the migration (``migration/local_files`` → ``migrated_file``)."""
    compiled = compile_defs.build_defs()
    keys = list(source_defs.source_keys(cfg).values()) if cfg is not None else []
    return dg.Definitions.merge(
        source_defs.build_defs(cfg),
        dg.Definitions(
            assets=source_defs.with_source_deps(compiled.assets or [], keys),
            asset_checks=compiled.asset_checks,
            jobs=compiled.jobs,
        ),
        migration_defs.build_defs(cfg),
    )


def _load_if_present(config_path: Path) -> DatasetConfig | None:
    """The dataset config; a missing file gives ``None`` (no source assets, the default sensor
    interval; the sensor's tick then fails with the config error, visible in the UI). An
    invalid config fails the code location with the config error."""
    if not config_path.exists():
        return None
    return load_config(config_path)


def _sensor_interval(cfg: DatasetConfig | None) -> int:
    """The rebuild sensor's poll interval from the config (the default without one)."""
    if cfg is None:
        return sensor_defs.DEFAULT_MINIMUM_INTERVAL_SECONDS
    return cfg.sensor.minimum_interval_seconds
