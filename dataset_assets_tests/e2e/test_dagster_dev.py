"""End to end: ``dagster dev`` (webserver + daemon) on a temp Dagster home and a real SeaweedFS.

1. A new file dropped into the generated folder → the rebuild sensor's run publishes a manifest
   that reads it.
2. The migration partitions are registered and a backfill over all of them is launched through
   GraphQL ``launchPartitionBackfill``; it completes with every file in S3 and none left locally.
"""

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import yaml

from dataset_assets.core.config import load_config
from dataset_assets.core.layout import latest_manifest_key, migrated_key
from dataset_assets.core.migration import discover
from dataset_assets.storage import S3ObjectStore, S3Settings
from dataset_assets_tests.builds import write_build_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).parent / "dagster"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, log: Path) -> T:
    """Poll ``probe`` until it returns something truthy; fail with the server log tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(1)
    tail = log.read_text(errors="replace")[-6000:] if log.exists() else "(no log)"
    pytest.fail(
        f"timed out after {timeout:.0f} s waiting for {what}\n--- dagster dev log ---\n{tail}"
    )


class DagsterDev:
    """A ``dagster dev`` process group and a tiny GraphQL client for it."""

    def __init__(self, project: Path, home: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log = home / "dagster-dev.log"
        cmd = [str(DAGSTER), "dev", "-h", "127.0.0.1", "-p", str(self.port)]
        cmd += ["-m", "dataset_assets.definitions"]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        self.location = ""

    def query(self, text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": text, "variables": variables or {}}).encode()
        req = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        if data.get("errors"):
            raise AssertionError(f"GraphQL errors: {data['errors']}")
        result: dict[str, Any] = data["data"]
        return result

    def loaded_location(self) -> str | None:
        """The code location's name once loaded; fails at once if it failed to load."""
        if self.proc.poll() is not None:
            pytest.fail(f"dagster dev exited with {self.proc.returncode}: {self.log.read_text()}")
        try:
            data = self.query(
                "{ workspaceOrError { __typename ... on Workspace { locationEntries { name"
                " loadStatus locationOrLoadError { __typename"
                " ... on PythonError { message stack } } } } } }"
            )
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None
        for entry in data["workspaceOrError"].get("locationEntries") or []:
            loaded = entry["locationOrLoadError"] or {}
            if loaded.get("__typename") == "PythonError":
                pytest.fail(f"code location failed to load: {loaded['message']}")
            if entry["loadStatus"] == "LOADED" and loaded.get("__typename") == "RepositoryLocation":
                return str(entry["name"])
        return None

    def runs(self) -> list[dict[str, Any]]:
        data = self.query(
            "{ runsOrError(limit: 100) { __typename ... on Runs"
            " { results { runId status jobName tags { key value } } } } }"
        )
        runs: list[dict[str, Any]] = data["runsOrError"]["results"]
        return runs

    def selector(self) -> dict[str, str]:
        return {"repositoryLocationName": self.location, "repositoryName": "__repository__"}

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # children left behind by the daemon (run workers, code server) share the group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def dagster_dev(tmp_path: Path, seaweed: S3Settings) -> Iterator[tuple[DagsterDev, Path]]:
    project = tmp_path / "project"
    project.mkdir()
    config = write_build_config(
        project,
        f"e2e-{uuid.uuid4().hex[:12]}",
        records_per_family=40,
        quarantine_max_ratio=0.5,  # the sample's deliberate bad lines are ~7 % of 40 records
        sensor={"stable_seconds": 1, "minimum_interval_seconds": 5},
        migration={"stable_seconds": 1},
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        yaml.safe_dump(
            {
                "telemetry": {"enabled": False},
                "concurrency": {"pools": {"default_limit": 2}, "runs": {"max_concurrent_runs": 4}},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(home),
        DATASET_ASSETS_CONFIG=str(config),
        AWS_ENDPOINT_URL_S3=seaweed.endpoint_url or "",
        AWS_ACCESS_KEY_ID=seaweed.access_key_id or "",
        AWS_SECRET_ACCESS_KEY=seaweed.secret_access_key or "",
        AWS_REGION=seaweed.region or "us-east-1",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    dev = DagsterDev(project, home, env)
    try:
        yield dev, config
    finally:
        dev.stop()


def chat_line(i: int) -> bytes:
    text = f"e2e question {i} {uuid.uuid4().hex}"
    messages = [
        {"role": "user", "content": text},
        {"role": "assistant", "content": f"an answer about {text}, with some detail"},
    ]
    return orjson.dumps({"messages": messages})


def latest_manifest(store: S3ObjectStore, prefix: str) -> dict[str, Any] | None:
    key = latest_manifest_key(prefix)
    if not store.exists(key):
        return None
    manifest: dict[str, Any] = orjson.loads(store.get_bytes(key))
    return manifest


ADD_PARTITION = """
mutation($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
    __typename
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}"""

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on UnauthorizedError { message }
  }
}"""

BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status }
    ... on PythonError { message }
  }
}"""


def test_sensor_rebuild_then_migration_backfill(
    dagster_dev: tuple[DagsterDev, Path], seaweed: S3Settings
) -> None:
    dev, config_path = dagster_dev
    cfg = load_config(config_path)
    store = S3ObjectStore(cfg.bucket, seaweed, part_size=cfg.part_size)
    generated = config_path.parent / "data" / "generated"

    dev.location = wait_for("the code location to load", dev.loaded_location, 180, dev.log)

    def builds_finished() -> list[dict[str, Any]] | None:
        runs = dev.runs()
        failed = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
        if failed:
            pytest.fail(f"build run failed: {failed}\n{dev.log.read_text()[-6000:]}")
        return runs if runs and all(r["status"] == "SUCCESS" for r in runs) else None

    # the sensor's first tick builds what is already there
    wait_for("the sensor's initial build", builds_finished, 300, dev.log)
    initial = latest_manifest(store, cfg.prefix)
    assert initial is not None

    new_file = generated / "coding_help_e2e.jsonl"
    tmp = new_file.with_suffix(".jsonl.tmp")  # a temp name: must never trigger on its own
    tmp.write_bytes(b"\n".join(chat_line(i) for i in range(25)) + b"\n")
    tmp.rename(new_file)

    def manifest_with_new_file() -> dict[str, Any] | None:
        builds_finished()  # fails fast on a failed run
        manifest = latest_manifest(store, cfg.prefix)
        if manifest and any(new_file.name in i["uri"] for i in manifest.get("inputs", [])):
            return manifest
        return None

    manifest = wait_for("a manifest that reads the new file", manifest_with_new_file, 300, dev.log)
    assert manifest["build_id"] != initial["build_id"]
    assert (
        manifest["counts"]["per_family"]["coding_help"]
        > initial["counts"]["per_family"]["coding_help"]
    )
    runs = wait_for("the rebuild run to finish", builds_finished, 120, dev.log)
    changes = sorted(
        t["value"] for r in runs for t in r["tags"] if t["key"] == "dataset_assets/changes"
    )
    assert len(runs) == 2 and "added coding_help_e2e.jsonl" in changes, runs

    # -- migration backfill over every local dataset file -----------------------------------
    found = discover(cfg)
    keys = found.partition_keys()
    expected = {
        k: hashlib.sha256((cfg.migration.data_root / k).read_bytes()).hexdigest() for k in keys
    }
    assert set(keys) >= {f"generated/{new_file.name}", "generated/coding_help.jsonl"}
    for key in keys:
        added = dev.query(
            ADD_PARTITION, {"selector": dev.selector(), "name": "migration_files", "key": key}
        )["addDynamicPartition"]["__typename"]
        assert added in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"), added
    params = {"assetSelection": [{"path": ["migrated_file"]}], "partitionNames": keys}
    launched = dev.query(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def backfill_done() -> str | None:
        status = dev.query(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        return (
            None if status["status"] in ("REQUESTED", "FAILING", "CANCELING") else status["status"]
        )

    assert wait_for("the migration backfill", backfill_done, 420, dev.log) == "COMPLETED_SUCCESS"
    for key, sha256 in expected.items():
        info = store.head(migrated_key(cfg.migration.prefix, key))
        assert info.sha256 == sha256, key
        assert not (cfg.migration.data_root / key).exists(), key
    ledger = [orjson.loads(line) for line in cfg.migration.ledger_path.read_bytes().splitlines()]
    assert {e["relative_path"] for e in ledger} == set(keys)
