"""The distributed-executor configs under deploy/ are valid for Dagster's own config schemas.

- ``deploy/k8s/executor.yaml`` and ``deploy/celery/executor.yaml``: run config of the executor
  the project picks for ``DATASET_ASSETS_EXECUTOR=k8s`` / ``celery`` (``k8s_job_executor`` /
  ``celery_executor``), validated against that executor's schema, and as the run config of a
  job using it (the ``execution: config:`` wrapping); the celery file also through the loader
  the workers use (``dagster-celery worker start -y``).
- ``deploy/k8s/values.yaml`` (Helm chart values): the parts the chart renders into the instance's
  dagster.yaml (K8sRunLauncher, QueuedRunCoordinator, Postgres storage, run retries) are mapped
  like the chart's templates do and validated with Dagster's schemas; every key must be one the
  chart knows, so a typo fails here instead of at ``helm install``.
"""

import copy
import importlib.util
import re
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.run_coordinator import QueuedRunCoordinator

dagster_k8s = pytest.importorskip("dagster_k8s", reason="pip install dataset-assets[deploy]")
dagster_celery = pytest.importorskip("dagster_celery", reason="pip install dataset-assets[deploy]")
from dagster_celery.cli import get_validated_config  # noqa: E402
from dagster_postgres import PostgresRunStorage  # noqa: E402

from dataset_assets.definitions import make_executor  # noqa: E402

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# What a celery deployment exports (the executor config reads them with {env: ...})
CELERY_ENV = {
    "DAGSTER_CELERY_BROKER_URL": "redis://redis:6379/0",
    "DAGSTER_CELERY_BACKEND_URL": "redis://redis:6379/1",
}
# Each run config file and the DATASET_ASSETS_EXECUTOR value its deployment sets.
EXECUTORS = {
    "k8s/executor.yaml": make_executor({"DATASET_ASSETS_EXECUTOR": "k8s"}),
    "celery/executor.yaml": make_executor({"DATASET_ASSETS_EXECUTOR": "celery"}),
}


def _load(rel: str) -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / rel).read_text())
    assert isinstance(data, dict)
    return data


def _errors(config_type: Any, value: Any) -> list[str]:
    result = validate_config(config_type, value)
    return [] if result.success else [e.message for e in result.errors]


def _executor_type(executor: dg.ExecutorDefinition) -> Any:
    return executor.config_schema.as_field().config_type


@dg.asset
def _one() -> int:
    return 1


def _job_with(executor: dg.ExecutorDefinition) -> dg.JobDefinition:
    defs = dg.Definitions(
        assets=[_one],
        jobs=[dg.define_asset_job("build", selection=[_one])],
        executor=executor,
    )
    return defs.resolve_job_def("build")


# ------------------------------------------------------------------------------ executors


@pytest.fixture(autouse=True)
def _celery_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CELERY_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("rel", sorted(EXECUTORS))
def test_executor_run_config_validates(rel: str) -> None:
    run_config = _load(rel)
    executor = EXECUTORS[rel]
    assert _errors(_executor_type(executor), run_config["execution"]["config"]) == []
    # the whole file is a valid run config of a job whose code location selects the executor
    dg.validate_run_config(_job_with(executor), run_config)


@pytest.mark.parametrize("rel", sorted(EXECUTORS))
def test_a_misspelled_executor_key_is_rejected(rel: str) -> None:
    for key in _load(rel)["execution"]["config"]:
        broken = _load(rel)
        cfg = broken["execution"]["config"]
        cfg[key + "x"] = cfg.pop(key)
        assert _errors(_executor_type(EXECUTORS[rel]), cfg), f"{key}x was accepted"
        with pytest.raises(dg.DagsterInvalidConfigError):
            dg.validate_run_config(_job_with(EXECUTORS[rel]), broken)


def test_the_project_picks_the_executors_these_files_configure() -> None:
    assert EXECUTORS["k8s/executor.yaml"] is dagster_k8s.k8s_job_executor
    assert EXECUTORS["celery/executor.yaml"] is dagster_celery.celery_executor
    (deployment,) = _load("k8s/values.yaml")["dagster-user-deployments"]["deployments"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert make_executor(env) is dagster_k8s.k8s_job_executor


def test_k8s_steps_share_the_staging_volume_and_s3_secret() -> None:
    cfg = _load("k8s/executor.yaml")["execution"]["config"]
    volumes = {v["name"] for v in cfg["volumes"]}
    assert {m["name"] for m in cfg["volume_mounts"]} <= volumes
    assert "dataset-assets-s3" in cfg["env_secrets"]
    values = _load("k8s/values.yaml")
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert {"name": "dataset-assets-s3"} in deployment["envSecrets"]


def test_celery_worker_loads_the_same_file() -> None:
    """``dagster-celery worker start -y deploy/celery/executor.yaml`` reads and validates it."""
    config = get_validated_config(str(DEPLOY / "celery" / "executor.yaml"))
    assert config["broker"] == CELERY_ENV["DAGSTER_CELERY_BROKER_URL"]
    assert config["backend"] == CELERY_ENV["DAGSTER_CELERY_BACKEND_URL"]
    assert config["config_source"]["worker_prefetch_multiplier"] == 1


def test_celery_worker_rejects_a_misspelled_file(tmp_path: Path) -> None:
    text = (DEPLOY / "celery" / "executor.yaml").read_text().replace("backend:", "backnd:")
    (tmp_path / "celery.yaml").write_text(text)
    with pytest.raises(Exception, match="backnd"):
        get_validated_config(str(tmp_path / "celery.yaml"))


# ------------------------------------------------------------------------------ Helm values

# Keys of the dagster/dagster chart 1.13 this file may use (from the chart's values schema).
CHART_TOP_LEVEL = {
    "global", "nameOverride", "fullnameOverride", "rbacEnabled", "imagePullSecrets",
    "dagsterWebserver", "dagster-user-deployments", "pipelineRun", "computeLogManager",
    "pythonLogs", "runLauncher", "postgresql", "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret", "rabbitmq", "redis", "flower", "ingress", "dagsterDaemon",
    "busybox", "migrate", "telemetry", "serviceAccount", "retention", "concurrency",
    "additionalInstanceConfig", "extraManifests", "scheduler",
}  # fmt: skip
USER_DEPLOYMENT_KEYS = {
    "name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns",
    "deploymentNamespace", "port", "replicaCount", "env", "envConfigMaps", "envSecrets",
    "annotations", "nodeSelector", "affinity", "tolerations", "podSecurityContext",
    "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe", "labels",
    "volumes", "volumeMounts", "schedulerName", "initContainers", "sidecarContainers",
    "deploymentStrategy", "service", "serviceAccountName", "deploymentLabels",
}  # fmt: skip
# runLauncher.config.k8sRunLauncher keys → K8sRunLauncher config fields (the chart's template)
K8S_LAUNCHER_KEYS = {
    "image": "job_image", "imagePullPolicy": "image_pull_policy",
    "jobNamespace": "job_namespace", "loadInclusterConfig": "load_incluster_config",
    "kubeconfigFile": "kubeconfig_file", "envConfigMaps": "env_config_maps",
    "envSecrets": "env_secrets", "envVars": "env_vars", "volumeMounts": "volume_mounts",
    "volumes": "volumes", "labels": "labels", "resources": "resources",
    "schedulerName": "scheduler_name", "securityContext": "security_context",
    "runK8sConfig": "run_k8s_config", "failPodOnRunFailure": "fail_pod_on_run_failure",
}  # fmt: skip
RUN_K8S_CONFIG_KEYS = {
    "containerConfig": "container_config", "podSpecConfig": "pod_spec_config",
    "podTemplateSpecMetadata": "pod_template_spec_metadata", "jobSpecConfig": "job_spec_config",
    "jobMetadata": "job_metadata",
}  # fmt: skip
QUEUED_KEYS = {
    "maxConcurrentRuns": "max_concurrent_runs", "tagConcurrencyLimits": "tag_concurrency_limits",
    "dequeueIntervalSeconds": "dequeue_interval_seconds",
    "dequeueUseThreads": "dequeue_use_threads", "dequeueNumWorkers": "dequeue_num_workers",
    "blockOpConcurrencyLimitedRuns": "block_op_concurrency_limited_runs",
}  # fmt: skip
POSTGRES_KEYS = {
    "enabled", "image", "postgresqlHost", "postgresqlUsername", "postgresqlPassword",
    "postgresqlDatabase", "postgresqlParams", "postgresqlScheme", "service",
}  # fmt: skip


def _rename(section: dict[str, Any], names: dict[str, str], where: str) -> dict[str, Any]:
    unknown = sorted(set(section) - set(names))
    assert not unknown, f"{where}: keys the chart does not know: {unknown}"
    return {names[k]: v for k, v in section.items()}


def render_instance(values: dict[str, Any]) -> dict[str, Any]:
    """The instance dagster.yaml the chart renders from these values (the parts we set)."""
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    k8s = _rename(
        launcher["config"]["k8sRunLauncher"], K8S_LAUNCHER_KEYS, "runLauncher.config.k8sRunLauncher"
    )
    for names in ("env_secrets", "env_config_maps"):
        if names in k8s:  # the chart takes [{name: x}] and writes [x]
            k8s[names] = [item["name"] for item in k8s[names]]
    if "run_k8s_config" in k8s:
        k8s["run_k8s_config"] = _rename(k8s["run_k8s_config"], RUN_K8S_CONFIG_KEYS, "runK8sConfig")
    k8s.update(
        dagster_home={"env": "DAGSTER_HOME"},
        instance_config_map={"env": "DAGSTER_K8S_INSTANCE_CONFIG_MAP"},
        postgres_password_secret={"env": "DAGSTER_K8S_PG_PASSWORD_SECRET"},
        service_account_name="dagster",
    )
    daemon = values["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    queued = _rename(
        coordinator["config"]["queuedRunCoordinator"], QUEUED_KEYS, "queuedRunCoordinator"
    )
    pg = values["postgresql"]
    assert not set(pg) - POSTGRES_KEYS, f"postgresql: unknown keys {set(pg) - POSTGRES_KEYS}"
    postgres_db = {
        "username": pg["postgresqlUsername"],
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": pg.get("postgresqlHost") or "dagster-postgresql",
        "db_name": pg["postgresqlDatabase"],
        "port": pg["service"]["port"],
    }
    storage = {"postgres": {"postgres_db": postgres_db}}
    retries = daemon["runRetries"]
    assert not set(retries) - {"enabled", "maxRetries", "retryOnAssetOrOpFailure"}
    return {
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": k8s},
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": queued,
        },
        "storage": storage,
        "run_retries": {"enabled": retries["enabled"], "max_retries": retries["maxRetries"]},
        "telemetry": values.get("telemetry", {"enabled": True}),
    }


def _validate_values(values: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    unknown = sorted(set(values) - CHART_TOP_LEVEL)
    assert not unknown, f"top-level keys the chart does not know: {unknown}"
    for deployment in values["dagster-user-deployments"]["deployments"]:
        extra = sorted(set(deployment) - USER_DEPLOYMENT_KEYS)
        assert not extra, f"user deployment keys the chart does not know: {extra}"
        assert {"name", "image", "port"} <= set(deployment)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", deployment["name"])
    instance = render_instance(values)
    launcher = instance["run_launcher"]["config"]
    assert _errors(dagster_k8s.K8sRunLauncher.config_type(), launcher) == []
    assert _errors(QueuedRunCoordinator.config_type(), instance["run_coordinator"]["config"]) == []
    pg = instance["storage"]["postgres"]
    assert _errors(PostgresRunStorage.config_type(), pg) == []
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance))
    config, _ = dagster_instance_config(str(tmp_path))
    return config


def test_helm_values_render_a_valid_instance(tmp_path: Path) -> None:
    config = _validate_values(_load("k8s/values.yaml"), tmp_path)
    # the same build policy as the single-machine instance (deploy/dagster.yaml)
    local = _load("dagster.yaml")["concurrency"]["runs"]["tag_concurrency_limits"]
    assert config["run_coordinator"]["config"]["tag_concurrency_limits"] == local
    assert config["run_retries"]["enabled"] is True


def test_helm_user_code_serves_the_project_definitions() -> None:
    (deployment,) = _load("k8s/values.yaml")["dagster-user-deployments"]["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    module = args[args.index("-m") + 1]
    assert module == "dataset_assets.definitions"
    assert importlib.util.find_spec(module) is not None
    env = {e["name"]: e["value"] for e in deployment["env"]}
    mounts = [m["mountPath"] for m in deployment["volumeMounts"]]
    assert any(env["DATASET_ASSETS_CONFIG"].startswith(m + "/") for m in mounts)


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("runLauncher", "config", "k8sRunLauncher", "envSecrets"), "envSecret"),
        (("runLauncher", "config", "k8sRunLauncher", "runK8sConfig", "containerConfig"), "cc"),
        (("dagsterDaemon", "runCoordinator", "config", "queuedRunCoordinator",
          "maxConcurrentRuns"), "maxConcurentRuns"),
        (("postgresql", "postgresqlUsername"), "postgresqlUser"),
        (("telemetry",), "telemetri"),
    ],
)  # fmt: skip
def test_a_misspelled_values_key_is_rejected(
    tmp_path: Path, path: tuple[str, ...], bad: str
) -> None:
    values = copy.deepcopy(_load("k8s/values.yaml"))
    parent = values
    for key in path[:-1]:
        parent = parent[key]
    parent[bad] = parent.pop(path[-1])
    with pytest.raises((AssertionError, KeyError)):
        _validate_values(values, tmp_path)


def test_a_wrongly_typed_launcher_value_is_rejected(tmp_path: Path) -> None:
    values = copy.deepcopy(_load("k8s/values.yaml"))
    values["runLauncher"]["config"]["k8sRunLauncher"]["loadInclusterConfig"] = "yes"
    with pytest.raises(AssertionError, match="load_incluster_config"):
        _validate_values(values, tmp_path)
