"""The build with every step in its own process, sharing nothing but S3, gives the same manifest
as the single-process build."""

import uuid
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.launcher import DefaultRunLauncher

from dataset_assets.core.manifest import Manifest
from dataset_assets.storage import S3Settings
from dataset_assets_tests.builds import config_and_store, write_build_config


def distributed_build_job() -> dg.JobDefinition:
    """``build_dataset`` from the real definitions (executor from DATASET_ASSETS_EXECUTOR)."""
    from dataset_assets.definitions import defs

    resolved = defs() if callable(defs) else defs
    return resolved.resolve_job_def("build_dataset")


def _env(monkeypatch: pytest.MonkeyPatch, settings: S3Settings, config_path: Path) -> None:
    monkeypatch.setenv("DATASET_ASSETS_CONFIG", str(config_path))
    monkeypatch.setenv("DATASET_ASSETS_ENV", "local")
    monkeypatch.setenv("DATASET_ASSETS_EXECUTOR", "multiprocess")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", settings.endpoint_url or "")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", settings.access_key_id or "")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", settings.secret_access_key or "")


def test_steps_in_separate_processes_without_a_shared_cache_build_the_same_manifest(
    tmp_path: Path, seaweed: S3Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = write_build_config(
        tmp_path, f"dist-{uuid.uuid4().hex[:10]}", compile={"local_cache": False}
    )
    _env(monkeypatch, seaweed, config_path)
    with dg.instance_for_test() as instance:
        result = dg.execute_job(dg.reconstructable(distributed_build_job), instance=instance)
        assert result.success
        starts = [e for e in result.all_events if e.event_type_value == "STEP_START"]
        pids = {e.step_key: e.pid for e in starts}
    assert set(pids) == {"compile", "split_shards", "compiled_export", "manifest"}
    assert len(set(pids.values())) == 4  # four processes

    local = Manifest.from_json((tmp_path / ".local" / "manifest.json").read_bytes())
    # nothing to share but S3: every partition's intermediates are there
    cfg, store = config_and_store(config_path, seaweed)
    summaries = [k.key for k in store.list(f"{cfg.prefix}/_cache/partitions/")]
    sources = len(list((tmp_path / "data" / "generated").glob("*.jsonl")))
    assert len([k for k in summaries if k.endswith("/summary.json")]) == sources
    staging = tmp_path / ".local" / "staging"
    assert not [p for p in staging.rglob("*") if p.is_file() and "journal" not in p.name]

    # the same sources built in one process with a local cache: the very same build
    data = yaml.safe_load(config_path.read_text())
    data["compile"] = {"local_cache": True, "workers": 1}
    config_path.write_text(yaml.safe_dump(data))
    cfg, store = config_and_store(config_path, seaweed)
    from dataset_assets.pipeline.build import build_dataset

    single = build_dataset(cfg, store)
    assert single.build_id == local.build_id
    assert single == local


class FreshMachineRunLauncher(DefaultRunLauncher):
    """Stands for a launcher that starts each run on a fresh machine (k8s, Docker, ECS): runs
    launched through it keep nothing of this machine's staging folder."""


def test_runs_launched_elsewhere_share_intermediates_through_s3(
    tmp_path: Path, seaweed: S3Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The multiprocess executor keeps a run's steps on its machine, but a run launcher that
    starts runs in fresh containers loses that machine's cache between runs (and retries):
    compile.intermediates: auto then uploads them."""
    config_path = write_build_config(tmp_path, f"fresh-{uuid.uuid4().hex[:10]}")
    _env(monkeypatch, seaweed, config_path)
    launcher = {"module": __name__, "class": FreshMachineRunLauncher.__name__}
    with dg.instance_for_test(overrides={"run_launcher": launcher}) as instance:
        result = dg.execute_job(dg.reconstructable(distributed_build_job), instance=instance)
        assert result.success
    cfg, store = config_and_store(config_path, seaweed)
    summaries = [o.key for o in store.list(f"{cfg.prefix}/_cache/partitions/")]
    sources = len(list((tmp_path / "data" / "generated").glob("*.jsonl")))
    assert len([k for k in summaries if k.endswith("/summary.json")]) == sources

    # the same machine's default launcher: nothing uploaded
    local_path = write_build_config(tmp_path / "local", f"here-{uuid.uuid4().hex[:10]}")
    _env(monkeypatch, seaweed, local_path)
    with dg.instance_for_test() as instance:
        assert dg.execute_job(dg.reconstructable(distributed_build_job), instance=instance).success
    cfg, store = config_and_store(local_path, seaweed)
    assert not list(store.list(f"{cfg.prefix}/_cache/partitions/"))


@pytest.mark.parametrize("name", ["in_process", "multiprocess", "k8s", "celery"])
def test_every_executor_choice_resolves_to_an_executor(name: str) -> None:
    from dataset_assets.definitions import make_executor

    assert isinstance(make_executor({"DATASET_ASSETS_EXECUTOR": name}), dg.ExecutorDefinition)


def test_an_unknown_executor_is_refused_naming_the_choices() -> None:
    from dataset_assets.definitions import make_executor

    with pytest.raises(ValueError, match="in_process, multiprocess, k8s, celery"):
        make_executor({"DATASET_ASSETS_EXECUTOR": "spark"})
