"""The S3 secret key never leaves the process's memory: after a real Dagster materialization
(keys from the environment, as deployed), the secret is searched in the captured logs and
output, every event of the run, every file of the Dagster instance, every object the build
wrote to S3 (manifests, journals, run references under ``{prefix}/_runs/``, shards, card),
the local staging folder and manifest copy, and the GraphQL resource view of the UI."""

import json
import logging
import os
import uuid
from pathlib import Path

import dagster as dg
import pytest
from dagster_graphql.test.utils import (
    define_out_of_process_context,
    execute_dagster_graphql,
    infer_repository_selector,
)

import dataset_assets.definitions as definitions_module
from dataset_assets.definitions import make_resources
from dataset_assets.defs.assets import COMPILE_ASSETS
from dataset_assets.storage import S3ObjectStore, S3Settings
from dataset_assets_tests.builds import write_build_config
from dataset_assets_tests.defs.test_resources import RESOURCES_QUERY


def _files_containing(root: Path, needle: bytes) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and needle in path.read_bytes():
            hits.append(str(path.relative_to(root)))
    return hits


def test_the_secret_key_appears_nowhere_after_a_dagster_build(
    seaweed: S3Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    secret = seaweed.secret_access_key
    assert secret and len(secret) >= 20
    project = tmp_path / "project"
    bucket = f"sec-{uuid.uuid4().hex[:12]}"
    config = write_build_config(project, bucket, compile={"workers": 1})
    monkeypatch.setenv("DATASET_ASSETS_ENV", "aws")
    monkeypatch.setenv("DATASET_ASSETS_CONFIG", str(config))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", str(seaweed.endpoint_url))
    monkeypatch.setenv("AWS_REGION", str(seaweed.region))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", str(seaweed.access_key_id))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    caplog.set_level(logging.DEBUG)
    home = tmp_path / "dagster_home"
    home.mkdir()

    with dg.instance_for_test(temp_dir=str(home)) as instance:
        result = dg.materialize(
            COMPILE_ASSETS,
            resources=make_resources(os.environ, str(config)),
            instance=instance,
        )
        assert result.success  # the secret was used: every request was signed with it
        events = instance.all_logs(result.run_id)
        assert len(events) > 50
        leaking_events = [
            e.dagster_event_type or e.user_message
            for e in events
            if secret in dg.serialize_value(e) or secret in str(e)
        ]
        with define_out_of_process_context(
            definitions_module.__file__, "defs", instance
        ) as context:
            graphql = execute_dagster_graphql(
                context, RESOURCES_QUERY, {"selector": infer_repository_selector(context)}
            )
    assert graphql.errors is None, graphql.errors
    assert leaking_events == []
    assert secret not in json.dumps(graphql.data)
    assert _files_containing(home, secret.encode()) == []
    # Controls: the places scanned do hold this run's details (the scans are not blind).
    assert _files_containing(home, result.run_id.encode())
    assert any(bucket in str(e) for e in events)
    assert bucket in json.dumps(graphql.data) or "127.0.0.1" in json.dumps(graphql.data)
    assert result.run_id in caplog.text

    # Everything the build wrote to S3, the run references included.
    store = S3ObjectStore(bucket, seaweed)
    keys = [o.key for o in store.list("")]
    prefix = "final_dataset"
    assert any(k.startswith(f"{prefix}/_runs/") for k in keys), keys
    assert any("/journal-" in k for k in keys), keys
    assert f"{prefix}/manifest.json" in keys
    assert [k for k in keys if secret.encode() in store.get_bytes(k)] == []

    # Local state: manifest copy, staging, journals, cache.
    assert _files_containing(project, secret.encode()) == [], "secret in project files"
    assert secret not in caplog.text
    out, err = capfd.readouterr()
    assert secret not in out and secret not in err
    assert secret not in repr(store.settings) and secret not in repr(store)


def test_the_scan_finds_a_planted_secret(tmp_path: Path) -> None:
    """The control: the file scan is not blind."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "log.txt").write_bytes(b"xx CISECRET yy")
    assert _files_containing(tmp_path, b"CISECRET") == ["a/b/log.txt"]
