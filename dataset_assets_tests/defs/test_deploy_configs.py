"""The shipped dagster.yaml files are valid instance configs (validated with Dagster's schema)."""

import shutil
from pathlib import Path

import pytest
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.mark.parametrize("name", ["dagster.yaml", "dagster.postgres.yaml"])
def test_shipped_instance_config_validates(tmp_path: Path, name: str) -> None:
    shutil.copy(DEPLOY / name, tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {"key": "dataset_assets/build", "limit": 1} in limits
    assert config["run_retries"]["enabled"] is True


def test_a_misspelled_key_is_rejected(tmp_path: Path) -> None:
    text = (
        (DEPLOY / "dagster.yaml").read_text().replace("max_concurrent_runs", "max_concurent_runs")
    )
    (tmp_path / "dagster.yaml").write_text(text)
    with pytest.raises(DagsterInvalidConfigError):
        dagster_instance_config(str(tmp_path))
