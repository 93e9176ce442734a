"""The shipped instance configs (deploy/*.yaml): run monitoring on, and the Postgres one loads
into a working Dagster instance against a real PostgreSQL server."""

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from dataset_assets_tests.e2e.postgres import running_postgres

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONFIGS = ["dagster.yaml", "dagster.postgres.yaml"]


@pytest.mark.parametrize("name", CONFIGS)
def test_run_monitoring_fails_dead_runs_instead_of_holding_the_build_slot(name: str) -> None:
    config = yaml.safe_load((DEPLOY / name).read_text())
    monitoring = config["run_monitoring"]

    assert monitoring["enabled"] is True
    assert 0 < monitoring["poll_interval_seconds"] <= 60
    assert monitoring["max_runtime_seconds"] >= 6 * 3600  # a long build is not killed
    assert monitoring["max_resume_run_attempts"] == 0  # the default launcher cannot resume
    assert config["run_retries"]["enabled"] is True


def test_postgres_config_makes_a_working_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(DEPLOY / "dagster.postgres.yaml", tmp_path / "dagster.yaml")
    with running_postgres() as pg:
        for key, value in pg.env().items():
            monkeypatch.setenv(key, value)
        with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
            result = dg.materialize([dg.asset(lambda: 1, name="probe")], instance=instance)
            runs = instance.get_runs()

            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert instance.run_monitoring_enabled
            assert instance.run_monitoring_max_runtime_seconds == 43200
            assert result.success and [r.run_id for r in runs] == [result.run_id]
