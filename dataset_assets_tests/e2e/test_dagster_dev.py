"""End to end: ``dagster dev`` (webserver + daemon) on a temp Dagster home and a real SeaweedFS,
with the shipped instance config (``deploy/dagster.yaml``, SQLite) and again with run and event
storage in a real PostgreSQL server (``deploy/dagster.postgres.yaml``).

0. The dataset is built first, as ``make run`` does; the rebuild sensor's first tick in the fresh
   Dagster home requests nothing (the latest manifest was built from exactly these sources).
1. A new file dropped into the generated folder → the rebuild sensor's run publishes a manifest
   that reads it. SQLite variant: that run's worker is SIGKILLed mid-build; the run is marked
   FAILED, re-executed by run_retries, and the retry publishes the manifest (no stalled slot).
2. The migration partitions are registered and a backfill over all of them is launched through
   GraphQL ``launchPartitionBackfill``; it completes with every file in S3 and none left locally,
   and the families' own sources are never offered.
"""

import contextlib
import hashlib
import json
import os
import re
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
from dataset_assets.pipeline.build import build_dataset
from dataset_assets.storage import S3ObjectStore, S3Settings
from dataset_assets_tests.builds import config_and_store, write_build_config
from dataset_assets_tests.e2e.postgres import running_postgres

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DAGSTER = Path(sys.executable).parent / "dagster"
DG = Path(sys.executable).parent / "dg"
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
    """A ``dagster dev`` process group and a tiny GraphQL client for it.

    ``dg=True`` runs what ``make dev`` runs instead: ``dg dev`` from the repository root (the
    project as pyproject.toml's ``[tool.dg]`` declares it), the project's venv active."""

    def __init__(self, project: Path, home: Path, env: dict[str, str], *, dg: bool = False) -> None:
        self.port = free_port()
        self.log = home / "dagster-dev.log"
        if dg:
            cmd = [str(DG), "dev", "-h", "127.0.0.1", "-p", str(self.port)]
            cwd, env = REPO, {**env, "VIRTUAL_ENV": str(Path(sys.executable).parents[1])}
        else:
            cmd = [str(DAGSTER), "dev", "-h", "127.0.0.1", "-p", str(self.port)]
            cmd += ["-m", "dataset_assets.definitions"]
            cwd = project
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
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

    def runs(self, job: str | None = None) -> list[dict[str, Any]]:
        data = self.query(
            "{ runsOrError(limit: 100) { __typename ... on Runs"
            " { results { runId status jobName tags { key value } } } } }"
        )
        runs: list[dict[str, Any]] = data["runsOrError"]["results"]
        return [r for r in runs if job is None or r["jobName"] == job]

    def sensor_ticks(self, name: str) -> list[dict[str, Any]]:
        selector = {**self.selector(), "sensorName": name}
        data = self.query(SENSOR_TICKS, {"selector": selector})["sensorOrError"]
        ticks: list[dict[str, Any]] = data["sensorState"]["ticks"]
        return ticks

    def check_execution(self, asset: str, check: str) -> dict[str, Any] | None:
        """The UI's status of an asset check for the asset's latest materialization (None:
        not evaluated since it), with the evaluation's description."""
        nodes = self.query(CHECK_STATUS, {"key": {"path": [asset]}})["assetNodes"]
        checks = nodes[0]["assetChecksOrError"]["checks"]
        (found,) = [c for c in checks if c["name"] == check]
        execution: dict[str, Any] | None = found["executionForLatestMaterialization"]
        return execution

    def selector(self) -> dict[str, str]:
        return {"repositoryLocationName": self.location, "repositoryName": "__repository__"}

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # children left behind by the daemon (run workers, code server) share the group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def _group_processes(pgid: int) -> dict[int, tuple[int, str]]:
    """pid → (parent pid, command line) of every process in a process group (from /proc)."""
    found: dict[int, tuple[int, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found[int(stat.parent.name)] = (int(fields[1]), cmd)
    return found


def _descendants(procs: dict[int, tuple[int, str]], root: int) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += [child for child, (ppid, _) in procs.items() if ppid == pid]
    return out


def tag(run: dict[str, Any], key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def instance_config(storage: str) -> dict[str, Any]:
    """The shipped instance config, with a run-monitoring poll interval fit for a test."""
    name = "dagster.postgres.yaml" if storage == "postgres" else "dagster.yaml"
    config: dict[str, Any] = yaml.safe_load((DEPLOY / name).read_text())
    config["run_monitoring"]["poll_interval_seconds"] = 2
    return config


ARCHIVE = {  # old dataset files no family reads: what the migration should move
    "archive/2023/old_chats.jsonl": 30,
    "archive/old_prompts.jsonl": 20,
}


@pytest.fixture(params=["sqlite", "postgres"])
def dagster_dev(
    request: pytest.FixtureRequest, tmp_path: Path, seaweed: S3Settings
) -> Iterator[tuple[DagsterDev, Path, str]]:
    storage: str = request.param
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
    for relative, count in ARCHIVE.items():
        path = project / "data" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\n".join(chat_line(i) for i in range(count)) + b"\n")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config(storage)))
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
    # `make run` first: the dataset is built before the Dagster home exists
    build_dataset(*config_and_store(config, seaweed))
    with contextlib.ExitStack() as stack:
        if storage == "postgres":
            env.update(stack.enter_context(running_postgres()).env())
        dev = DagsterDev(project, home, env)
        stack.callback(dev.stop)
        yield dev, config, storage


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


RUN_LOGS = """
query($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection { events { __typename ... on MessageEvent { message } } }
  }
}"""

CHECK_STATUS = """query Checks($key: AssetKeyInput!) { assetNodes(assetKeys: [$key]) {
  assetChecksOrError { ... on AssetChecks { checks { name
    executionForLatestMaterialization { status evaluation { success description } } } } } } }"""
SENSOR_TICKS = """
query($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { ticks(limit: 20) { status skipReason runIds } } }
  }
}"""

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


def worker_pid(dev: DagsterDev, run_id: str) -> int | None:
    """The run worker's pid, from the run's own log (both executors name it)."""
    events = dev.query(RUN_LOGS, {"runId": run_id})["logsForRun"].get("events") or []
    for event in events:
        message = event.get("message") or ""
        found = re.search(r"(?:parent process|steps in process) \(pid: (\d+)\)", message)
        if found:
            return int(found.group(1))
    return None


def kill_tree(dev: DagsterDev, pid: int) -> None:
    """SIGKILL a process and everything it started (the run worker and its step processes)."""
    for victim in _descendants(_group_processes(dev.proc.pid), pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def launch_migration_backfill(dev: DagsterDev, keys: list[str]) -> str:
    for key in keys:
        added = dev.query(
            ADD_PARTITION, {"selector": dev.selector(), "name": "migration_files", "key": key}
        )["addDynamicPartition"]["__typename"]
        assert added in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"), added
    params = {"assetSelection": [{"path": ["migrated_file"]}], "partitionNames": keys}
    launched = dev.query(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return str(launched["backfillId"])


def test_sensor_rebuild_then_migration_backfill(
    dagster_dev: tuple[DagsterDev, Path, str], seaweed: S3Settings
) -> None:
    dev, config_path, storage = dagster_dev
    cfg = load_config(config_path)
    store = S3ObjectStore(cfg.bucket, seaweed, part_size=cfg.part_size)
    generated = config_path.parent / "data" / "generated"
    initial = latest_manifest(store, cfg.prefix)
    assert initial is not None
    killed: set[str] = set()

    dev.location = wait_for("the code location to load", dev.loaded_location, 180, dev.log)

    # -- 0. a fresh Dagster home on a built dataset: the first tick requests nothing ----------
    def first_tick() -> dict[str, Any] | None:
        done = [t for t in dev.sensor_ticks("rebuild_on_new_data") if t["status"] != "STARTED"]
        return done[-1] if done else None  # ticks are newest first

    tick = wait_for("the rebuild sensor's first tick", first_tick, 120, dev.log)
    assert tick["status"] == "SKIPPED", tick
    assert f"sources unchanged since build {initial['build_id']}" in tick["skipReason"]
    assert dev.runs("build_dataset") == []

    # -- 2 (started now, runs beside the rebuild). Migration backfill of every local file ------
    found = discover(cfg)
    keys = found.partition_keys()
    assert sorted(keys) == sorted(ARCHIVE)  # the families' own sources are never offered
    assert "coding_help.jsonl" in {Path(u.path).name for u in found.in_use}
    if storage == "postgres":
        keys = keys[:1]  # the reduced scenario: one file is a real backfill already
    expected = {
        k: hashlib.sha256((cfg.migration.data_root / k).read_bytes()).hexdigest() for k in keys
    }
    backfill_id = launch_migration_backfill(dev, keys)

    # -- 1. a new file → one rebuild (SQLite: its worker is killed, the retry publishes) ------
    new_file = generated / "coding_help_e2e.jsonl"
    tmp = new_file.with_suffix(".jsonl.tmp")  # a temp name: must never trigger on its own
    tmp.write_bytes(b"\n".join(chat_line(i) for i in range(25)) + b"\n")
    tmp.rename(new_file)

    # from the tick that sees the file until a build commits it, the manifest is overdue (FAILED,
    # recorded by the sensor; the build the sensor launches does not run the check)
    def not_current() -> dict[str, Any] | None:
        execution = dev.check_execution("manifest", "built_from_current_sources")
        return execution if execution and execution["status"] != "SUCCEEDED" else None

    late = wait_for("the manifest's check to leave 'current'", not_current, 60, dev.log)
    assert late["status"] == "FAILED", late
    assert "(1 added, 0 changed, 0 removed)" in late["evaluation"]["description"], late

    def builds_ok() -> list[dict[str, Any]]:
        runs = dev.runs("build_dataset")
        failed = [r for r in runs if r["status"] in ("FAILURE", "CANCELED")]
        if [r for r in failed if r["runId"] not in killed]:
            pytest.fail(f"build run failed: {failed}\n{dev.log.read_text()[-6000:]}")
        return runs

    if storage == "sqlite":

        def started_worker() -> tuple[str, int] | None:
            started = [r["runId"] for r in builds_ok() if r["status"] == "STARTED"]
            pid = worker_pid(dev, started[0]) if started else None
            return (started[0], pid) if started and pid else None

        run_id, pid = wait_for("the rebuild run's worker", started_worker, 120, dev.log)
        time.sleep(2)  # mid-build
        killed.add(run_id)
        kill_tree(dev, pid)

        def killed_run_failed() -> bool:
            return any(r["runId"] == run_id and r["status"] == "FAILURE" for r in builds_ok())

        wait_for("the killed run to be marked FAILED", killed_run_failed, 60, dev.log)

    def manifest_with_new_file() -> dict[str, Any] | None:
        builds_ok()  # fails fast on a failed run
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

    def builds_finished() -> list[dict[str, Any]] | None:
        runs = builds_ok()
        return runs if all(r["status"] in ("SUCCESS", "FAILURE") for r in runs) else None

    runs = wait_for("the rebuild run to finish", builds_finished, 120, dev.log)

    def current() -> dict[str, Any] | None:
        execution = dev.check_execution("manifest", "built_from_current_sources")
        return execution if execution and execution["status"] == "SUCCEEDED" else None

    fresh = wait_for("the manifest's check to pass after the rebuild", current, 60, dev.log)
    assert manifest["build_id"] in fresh["evaluation"]["description"], fresh
    succeeded = [r for r in runs if r["status"] == "SUCCESS"]
    assert len(succeeded) == 1, runs
    if killed:
        (retry,) = succeeded  # run_retries re-executed the killed run; nothing stalled
        assert tag(retry, "dagster/parent_run_id") in killed, retry
    else:
        assert tag(succeeded[0], "dataset_assets/changes") == "added coding_help_e2e.jsonl"

    # -- 2. (end) the backfill moved every archive file, and only those ------------------------
    def backfill_done() -> str | None:
        status = dev.query(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        return (
            None if status["status"] in ("REQUESTED", "FAILING", "CANCELING") else status["status"]
        )

    assert wait_for("the migration backfill", backfill_done, 300, dev.log) == "COMPLETED_SUCCESS"
    for key, sha256 in expected.items():
        info = store.head(migrated_key(cfg.migration.prefix, key))
        assert info.sha256 == sha256, key
        assert not (cfg.migration.data_root / key).exists(), key
    assert new_file.exists() and (generated / "coding_help.jsonl").exists()
    ledger = [orjson.loads(line) for line in cfg.migration.ledger_path.read_bytes().splitlines()]
    assert {e["relative_path"] for e in ledger} == set(keys)
