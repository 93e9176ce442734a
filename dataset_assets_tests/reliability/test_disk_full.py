"""Disk full while staging: a 2 MiB tmpfs as ``staging_dir``. The build fails, deletes nothing
that is not verified in S3, publishes no manifest, releases its lease; with room again the same
owner's rerun publishes every record."""

import errno
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataset_assets.core.config import load_config
from dataset_assets.core.errors import StagingSpaceError
from dataset_assets.core.layout import manifests_prefix, run_prefix
from dataset_assets.core.sample import write_sample
from dataset_assets.pipeline.build import Build, build_dataset
from dataset_assets.pipeline.lease import BuildLease
from dataset_assets.storage import S3Settings
from dataset_assets_tests.builds import config_and_store, write_build_config
from dataset_assets_tests.reliability.harness import (
    assert_no_manifest_names_a_missing_object,
    assert_no_record_lost,
    latest,
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only: the test runner is root in CI)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _on(config: Path, staging: Path) -> Path:
    """The same dataset config with its staging dir on ``staging``."""
    data: dict[str, Any] = yaml.safe_load(config.read_text())
    data["staging_dir"] = str(staging)
    path = config.with_name("small-disk.yaml")
    path.write_text(yaml.safe_dump(data))
    return path


def test_disk_full_in_the_shard_step_deletes_nothing_unverified_and_publishes_no_manifest(
    tmp_path: Path, seaweed: S3Settings, small_disk: Path
) -> None:
    config = write_build_config(
        tmp_path,
        f"full-{uuid.uuid4().hex[:10]}",
        records_per_family=100,
        # the shard step runs with another staging folder: it reads the intermediates from S3
        compile={"workers": 1, "intermediates": "s3"},
        max_publishes_in_flight=1,
        shard_size=1024 * 1024,  # K + 1 = 2 staged shards of 1 MiB + the spool exceed 2 MiB
        shard_compression="none",  # (zstd shards of this sample would be ~1/5 of that)
    )
    cfg, store = config_and_store(config, seaweed)
    a = build_dataset(cfg, store, run_id="build-a")
    write_sample(tmp_path / "data" / "generated", records_per_family=1500, seed=1)
    small = load_config(_on(config, small_disk / "staging"))
    result = Build(cfg, store, "run-b", owner="b").compile()

    with pytest.raises(StagingSpaceError) as failed:
        Build(small, store, "run-b", owner="b").shards(result)
    assert isinstance(failed.value.__cause__, OSError)
    assert failed.value.__cause__.errno == errno.ENOSPC

    journal = [
        json.loads(line)
        for line in store.get_bytes(run_prefix(cfg.prefix, "run-b") + "journal-shards.jsonl")
        .decode()
        .splitlines()
    ]
    verified = {e["key"]: e["sha256"] for e in journal if e["step"] == "verify" and e["outcome"]}
    deleted = [e["key"] for e in journal if e["step"] == "delete"]
    assert deleted, "some shards were published before the disk filled"
    for key in deleted:  # every local delete follows a verified upload of the same bytes
        assert store.head(key).sha256 == verified[key]
    assert latest(store, cfg.prefix).build_id == a.build_id
    assert {o.key for o in store.list(manifests_prefix(cfg.prefix))} == {
        f"{cfg.prefix}/manifests/{a.build_id}.json"
    }
    assert_no_manifest_names_a_missing_object(store, cfg.prefix)

    # With room again, the same owner finishes the build: nothing lost.
    b = build_dataset(cfg, store, run_id="run-b2")
    assert latest(store, cfg.prefix).build_id == b.build_id != a.build_id
    assert_no_record_lost(store, b, tmp_path / "data" / "generated")
    assert_no_manifest_names_a_missing_object(store, cfg.prefix)


def test_disk_full_in_the_compile_leaves_the_latest_build_and_releases_the_lease(
    tmp_path: Path, seaweed: S3Settings, small_disk: Path
) -> None:
    config = write_build_config(
        tmp_path, f"fullc-{uuid.uuid4().hex[:10]}", records_per_family=150, compile={"workers": 1}
    )
    cfg, store = config_and_store(config, seaweed)
    a = build_dataset(cfg, store, run_id="build-a")
    write_sample(tmp_path / "data" / "generated", records_per_family=2000, seed=2)
    small = load_config(_on(config, small_disk / "staging"))
    with pytest.raises(StagingSpaceError) as failed:
        build_dataset(small, store, run_id="run-b")
    assert isinstance(failed.value.__cause__, OSError)
    assert failed.value.__cause__.errno == errno.ENOSPC
    assert latest(store, cfg.prefix).build_id == a.build_id
    assert len(list(store.list(manifests_prefix(cfg.prefix)))) == 1
    with BuildLease(store, cfg.prefix, "another-owner"):  # released: taken at once
        pass


def test_disk_full_is_a_typed_error_naming_the_path_and_the_bytes(
    tmp_path: Path, seaweed: S3Settings, small_disk: Path
) -> None:
    config = write_build_config(
        tmp_path, f"fullt-{uuid.uuid4().hex[:10]}", records_per_family=2000, compile={"workers": 1}
    )
    cfg, store = config_and_store(config, seaweed)
    small = load_config(_on(config, small_disk / "staging"))
    with pytest.raises(Exception) as failed:
        build_dataset(small, store, run_id="run-t")
    message = str(failed.value)
    assert not isinstance(failed.value, OSError)  # a DatasetError the CLI and Dagster show
    assert str(small_disk) in message and "bytes" in message, message
