"""The bounded publish pipeline: disk stays ≤ (K+1) × file size, reruns upload nothing."""

import dataclasses
import os
import threading
from pathlib import Path

import pytest

from dataset_assets.core.errors import UploadFailedError
from dataset_assets.core.hashing import digest_file
from dataset_assets.core.staged import StagedFile
from dataset_assets.storage import (
    Journal,
    PublishedObject,
    Publisher,
    PublishError,
    S3ObjectStore,
    S3Settings,
)
from dataset_assets_tests.faults import FaultProxy
from dataset_assets_tests.storage.helpers import stage

FILE_SIZE = 256 * 1024
N_FILES = 20


def stage_all(store: S3ObjectStore, directory: Path) -> list[StagedFile]:
    """Deterministic contents, so a rerun stages byte-identical files."""
    return [
        stage(
            store,
            directory,
            f"final_dataset/train/train-{i:05d}.jsonl",
            FILE_SIZE,
            data=bytes([i]) * FILE_SIZE,
        )
        for i in range(N_FILES)
    ]


class DiskWatcher:
    """Measures the staged bytes really on disk each time the writer finishes a file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.peak = 0

    def sample(self) -> None:
        on_disk = 0
        for path in self.directory.iterdir():
            try:
                on_disk += path.stat().st_size
            except FileNotFoundError:  # published and deleted meanwhile
                continue
        self.peak = max(self.peak, on_disk)


def test_bounded_publishes_keep_disk_under_k_plus_one_files_and_rerun_skips(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    journal = Journal(tmp_path / "journal.jsonl", run_id="build-1")
    stage_dir = tmp_path / "stage"
    stage_dir.mkdir()
    watcher = DiskWatcher(stage_dir)
    with Publisher(store, max_in_flight=2, journal=journal) as publisher:
        for i in range(N_FILES):
            # the writer produces one file at a time, blocking in submit when K are pending
            staged = stage(
                store,
                stage_dir,
                f"final_dataset/train/train-{i:05d}.jsonl",
                FILE_SIZE,
                data=bytes([i]) * FILE_SIZE,
            )
            watcher.sample()
            publisher.submit(staged)
        results = publisher.wait()

    assert publisher.peak_staged_bytes <= 3 * FILE_SIZE
    assert publisher.peak_staged_bytes >= 2 * FILE_SIZE  # uploads really overlapped the writer
    assert watcher.peak <= 3 * FILE_SIZE
    assert publisher.in_flight_bytes == 0
    assert [r.key for r in results] == [
        f"final_dataset/train/train-{i:05d}.jsonl" for i in range(N_FILES)
    ]
    assert all(r.uploaded for r in results)
    assert list(stage_dir.iterdir()) == []
    assert len(list(store.list("final_dataset/train/"))) == N_FILES
    steps = {(e["step"], e["outcome"]) for e in journal.entries()}
    assert steps == {("stage", "ok"), ("upload", "ok"), ("verify", "ok"), ("delete", "ok")}

    rerun = Publisher(store, max_in_flight=2)
    for staged in stage_all(store, stage_dir):
        rerun.submit(staged)
    again = rerun.wait()
    rerun.close()
    assert [r.uploaded for r in again] == [False] * N_FILES
    assert [r.etag for r in again] == [r.etag for r in results]
    assert list(stage_dir.iterdir()) == []


def test_wait_reports_every_failure_and_keeps_the_good_results(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    with FaultProxy(store.settings.endpoint_url or "") as proxy:
        settings = dataclasses.replace(
            store.settings, endpoint_url=proxy.endpoint_url, max_attempts=1
        )
        proxied = S3ObjectStore(store.bucket, settings, part_size=store.part_size)
        proxy.only_path("/bad-")
        proxy.reset(times=None)
        publisher = Publisher(proxied, max_in_flight=2)
        staged = [
            stage(store, tmp_path, key, 10_000)
            for key in ("ok-1", "bad-1", "ok-2", "bad-2", "ok-3")
        ]
        for s in staged:
            publisher.submit(s)
        with pytest.raises(PublishError) as err:
            publisher.wait()
        publisher.close()
    failures = err.value.failures
    assert [f.key for f in failures] == ["bad-1", "bad-2"]
    assert all(isinstance(f, UploadFailedError) for f in failures)
    assert "bad-1" in str(err.value) and "bad-2" in str(err.value)
    assert [s.path.exists() for s in staged] == [False, True, False, True, False]
    assert sorted(o.key for o in store.list("ok-")) == ["ok-1", "ok-2", "ok-3"]


def test_context_manager_waits_for_in_flight_publishes_when_the_writer_fails(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    release = threading.Event()
    futures = []

    class SlowStore(S3ObjectStore):
        def upload_file(self, *args: object, **kwargs: object) -> None:
            release.wait(10)
            super().upload_file(*args, **kwargs)  # type: ignore[arg-type]

    slow = SlowStore(store.bucket, store.settings, part_size=store.part_size)
    with pytest.raises(RuntimeError, match="writer broke"), Publisher(slow) as publisher:
        futures.append(publisher.submit(stage(store, tmp_path, "cm-1", 1000)))
        threading.Timer(0.2, release.set).start()
        raise RuntimeError("writer broke")
    assert futures[0].done()
    assert isinstance(futures[0].result(), PublishedObject)
    assert store.exists("cm-1")


def test_settings_from_env_reads_the_standard_variables() -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://generic:1",
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000",
        "AWS_DEFAULT_REGION": "eu-west-3",
        "AWS_PROFILE": "ovh",
        "DATASET_ASSETS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    }
    settings = S3Settings.from_env(env)
    assert settings.endpoint_url == "http://127.0.0.1:9000"
    assert settings.region == "eu-west-3"
    assert settings.profile == "ovh"
    assert settings.request_checksum_calculation == "when_required"
    assert settings.response_checksum_validation == "when_supported"
    assert settings.effective_addressing_style == "path"
    assert S3Settings.from_env({}).effective_addressing_style == "auto"
    with pytest.raises(ValueError, match="DATASET_ASSETS_RESPONSE_CHECKSUM_VALIDATION"):
        S3Settings.from_env({"DATASET_ASSETS_RESPONSE_CHECKSUM_VALIDATION": "always"})


def test_digest_hashed_with_another_part_size_is_rehashed_before_verifying(
    seaweed_store: S3ObjectStore, tmp_path: Path
) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(os.urandom(11 * 1024 * 1024))
    staged = StagedFile(
        path=path, key="rehash/big.jsonl", digest=digest_file(path, 16 * 1024 * 1024)
    )
    assert "-" not in staged.digest.etag  # one 16 MiB part; the store uploads 3 parts of 5 MiB

    published = Publisher(seaweed_store).publish(staged)

    assert published.etag.endswith("-3")
    assert published.sha256 == staged.digest.sha256
