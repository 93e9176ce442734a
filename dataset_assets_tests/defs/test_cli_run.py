"""What `make run` (``dataset-assets run``) executes: its definitions resolve the
``build_dataset`` job and build a dataset, and the code location's job is the same one."""

import re
import uuid
from pathlib import Path

import dagster as dg
import yaml

from dataset_assets.cli.local import run_defs
from dataset_assets.core.manifest import Manifest
from dataset_assets.definitions import graph_defs
from dataset_assets.storage import S3Settings
from dataset_assets_tests.builds import config_and_store, dagster_resources, write_build_config

SHIPPED_INSTANCE = Path(__file__).resolve().parents[2] / "deploy" / "dagster.yaml"


def test_the_run_command_definitions_build_the_dataset(tmp_path: Path, seaweed: S3Settings) -> None:
    config_path = write_build_config(tmp_path, f"run-{uuid.uuid4().hex[:12]}")
    cfg, store = config_and_store(config_path, seaweed)
    defs = run_defs(dagster_resources(config_path, seaweed))

    job = defs.resolve_job_def("build_dataset")
    # the shipped instance config's python_logs: the package's log lines reach the run's log
    python_logs = yaml.safe_load(SHIPPED_INSTANCE.read_text())["python_logs"]
    with dg.instance_for_test(overrides={"python_logs": python_logs}) as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        compile_lines = [
            e.user_message
            for e in instance.all_logs(result.run_id)
            if e.dagster_event is None and e.step_key == "compile"
        ]
    assert result.success
    # the compile's phase timings, as the UI shows them in the compile step's log
    for phase in (r"stage 1 of 3 new partitions \(0 reused\)", "dedup stage", "leakage check"):
        pattern = re.compile(rf"compile: {phase} in \d+\.\d s")
        assert any(pattern.fullmatch(line) for line in compile_lines), compile_lines
    manifest = Manifest.from_json(cfg.manifest_path.read_bytes())
    assert manifest.shards and store.exists(f"{cfg.prefix}/manifest.json")
    # the same steps as the code location's build_dataset (the UI's), none more
    code_location = dg.Definitions.merge(
        graph_defs(cfg), dg.Definitions(resources=dagster_resources(config_path, seaweed))
    ).resolve_job_def("build_dataset")
    assert {n.name for n in job.nodes} == {n.name for n in code_location.nodes}
