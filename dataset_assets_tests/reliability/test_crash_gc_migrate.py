"""SIGKILL during gc and during a migration, then a rerun in a fresh process."""

import dataclasses
import hashlib
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from dataset_assets.core.layout import build_manifest_key, migrated_key
from dataset_assets.core.migration import read_ledger
from dataset_assets.core.sample import write_sample
from dataset_assets.pipeline.build import Build, build_dataset
from dataset_assets.pipeline.lease import BuildInProgressError
from dataset_assets.pipeline.maintenance import plan_gc
from dataset_assets.storage import S3Settings
from dataset_assets_tests.builds import config_and_store, write_build_config
from dataset_assets_tests.faults import FaultProxy
from dataset_assets_tests.reliability.harness import (
    Child,
    assert_no_manifest_names_a_missing_object,
    assert_no_record_lost,
    latest,
    published_hashes,
    read_all,
)


def test_sigkill_during_gc_then_the_rerun_finishes_and_the_latest_build_is_intact(
    tmp_path: Path, seaweed: S3Settings
) -> None:
    config = write_build_config(
        tmp_path, f"gc-{uuid.uuid4().hex[:10]}", records_per_family=150, compile={"workers": 1}
    )
    cfg, store = config_and_store(config, seaweed)
    a = build_dataset(cfg, store, run_id="build-a")
    write_sample(tmp_path / "data" / "generated", records_per_family=150, seed=1)
    b = build_dataset(cfg, store, run_id="build-b")
    b_uri = store.uri(build_manifest_key(cfg.prefix, b.build_id))
    a_only = {s.key for s in a.shards} - {s.key for s in b.shards}
    zero = timedelta(0)
    planned = set(plan_gc(store, cfg.prefix, keep=1, grace=zero, min_age=zero).delete_keys)
    assert a_only <= planned and len(planned) > 10

    with FaultProxy(upstream=str(seaweed.endpoint_url)) as proxy:
        settings = dataclasses.replace(seaweed, endpoint_url=proxy.endpoint_url)
        hold = proxy.hold("DELETE", f"/{cfg.prefix}/", skip=6)  # the 7th delete
        child = Child(
            tmp_path, "gc-killed", settings, action="gc", config=str(config), owner="gc-owner"
        )
        child.wait_for(hold.reached.is_set)
        child.kill()
        deletes = [p for m, p in proxy.log if m == "DELETE"]
    # gc deletes old manifests first: A is no longer named by any manifest, half its data left
    assert not store.exists(build_manifest_key(cfg.prefix, a.build_id))
    left = {k for k in planned if store.exists(k)}
    # the 7th DELETE is held: the probe's and 5 planned deletes went through
    assert left and len(planned - left) == 5, deletes
    assert_no_manifest_names_a_missing_object(store, cfg.prefix)
    with pytest.raises(BuildInProgressError, match="gc-owner"):
        Build(cfg, store, "a-build-meanwhile").compile()

    rerun = Child(tmp_path, "gc-rerun", seaweed, action="gc", config=str(config), owner="gc-owner")
    assert rerun.finish()["deleted"] >= len(left)
    assert not any(store.exists(k) for k in planned)
    assert latest(store, cfg.prefix).build_id == b.build_id
    assert_no_manifest_names_a_missing_object(store, cfg.prefix)
    assert_no_record_lost(store, b, tmp_path / "data" / "generated")
    assert read_all(b_uri, seaweed) == published_hashes(store, b)


def test_sigkill_between_verify_and_local_delete_of_a_migration_then_the_rerun_finishes(
    tmp_path: Path, seaweed: S3Settings
) -> None:
    config = write_build_config(
        tmp_path,
        f"mig-{uuid.uuid4().hex[:10]}",
        records_per_family=20,
        migration={"data_root": "legacy", "stable_seconds": 0},
    )
    cfg, store = config_and_store(config, seaweed)
    files = write_sample(tmp_path / "legacy" / "old", records_per_family=300, seed=7)
    originals = {f"old/{p.name}": p.read_bytes() for p in files}

    child = Child(
        tmp_path,
        "mig-killed",
        seaweed,
        action="migrate",
        config=str(config),
        run_id="mig-1",
        gate={"step": "verify", "outcome": "ok", "key_contains": ".jsonl"},
    )
    child.wait_for(child.marker.exists)
    child.kill()
    first = sorted(originals)[0]
    # verified in S3, not yet in the ledger, still local
    assert store.exists(migrated_key(cfg.migration.prefix, first))
    assert first not in read_ledger(cfg.migration.ledger_path)
    assert (cfg.migration.data_root / first).exists()

    rerun = Child(
        tmp_path, "mig-rerun", seaweed, action="migrate", config=str(config), run_id="mig-2"
    )
    statuses = rerun.finish()
    assert statuses[first] == "already_in_s3"
    assert all(statuses[rel] == "uploaded" for rel in originals if rel != first)
    ledger = read_ledger(cfg.migration.ledger_path)
    for rel, data in originals.items():
        assert not (cfg.migration.data_root / rel).exists()
        stored = store.get_bytes(migrated_key(cfg.migration.prefix, rel))
        assert stored == data  # every line of every file, byte for byte
        assert ledger[rel].sha256 == hashlib.sha256(data).hexdigest()
