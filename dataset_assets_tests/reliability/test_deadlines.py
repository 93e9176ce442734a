"""Every S3 operation has a deadline: a 503 SlowDown storm, a request that never gets an answer
and a body trickled at 1 byte/s all end within a bounded time, with nothing lost. (Real
faults from the fault proxy; the budgets are the public S3Settings / RetryPolicy fields.)"""

import dataclasses
import threading
import time
import uuid
from pathlib import Path

import pytest

from dataset_assets.core.errors import StorageError, UploadFailedError
from dataset_assets.loader import RetryPolicy, S3DatasetLoader
from dataset_assets.pipeline.build import build_dataset
from dataset_assets.storage import Journal, Publisher, S3ObjectStore, S3Settings
from dataset_assets_tests.builds import config_and_store, write_build_config
from dataset_assets_tests.conftest import make_store
from dataset_assets_tests.faults import FaultProxy
from dataset_assets_tests.storage.helpers import stage


def _through(
    proxy: FaultProxy, settings: S3Settings, bucket: str, **budget: float
) -> S3ObjectStore:
    faulty = dataclasses.replace(settings, endpoint_url=proxy.endpoint_url, **budget)
    return S3ObjectStore(bucket, faulty, part_size=5 * 1024 * 1024)


def test_a_503_slowdown_storm_fails_the_publish_within_its_retry_budget_keeping_the_file(
    tmp_path: Path, seaweed: S3Settings
) -> None:
    store = make_store(seaweed)
    journal = Journal(tmp_path / "journal.jsonl", "storm")
    with FaultProxy(upstream=str(seaweed.endpoint_url)) as proxy:
        faulty = _through(proxy, seaweed, store.bucket, max_attempts=3)
        staged = stage(faulty, tmp_path / "staging", "data/storm.bin", 200_000)
        proxy.only_method("PUT")
        proxy.slowdown_503(times=None)  # every upload answered 503 SlowDown, for ever
        started = time.monotonic()
        with pytest.raises(UploadFailedError, match="SlowDown") as failed:
            Publisher(faulty, journal=journal).publish(staged)
        elapsed = time.monotonic() - started
        # exactly the budget: the first request plus max_attempts retries (botocore counts
        # retries in `max_attempts`; the message says "reached max retries: 3")
        assert proxy.fired["slowdown_503"] == 1 + 3
    assert elapsed < 45, elapsed  # standard-mode backoff: random, ≤ 2 ** n s per retry
    assert "data/storm.bin" in str(failed.value)
    assert staged.path.exists()  # the local file is kept
    assert not store.exists("data/storm.bin")
    last = journal.entries()[-1]
    assert (last["step"], last["outcome"]) == ("upload", "failed")
    assert "SlowDown" in last["detail"]


def test_a_short_503_storm_is_ridden_out_by_retries(tmp_path: Path, seaweed: S3Settings) -> None:
    store = make_store(seaweed)
    with FaultProxy(upstream=str(seaweed.endpoint_url)) as proxy:
        faulty = _through(proxy, seaweed, store.bucket, max_attempts=3)
        staged = stage(faulty, tmp_path / "staging", "data/short.bin", 200_000)
        proxy.slowdown_503(times=2)
        published = Publisher(faulty).publish(staged)
        assert proxy.fired["slowdown_503"] == 2
    assert published.uploaded and not staged.path.exists()
    assert store.head("data/short.bin").sha256 == staged.digest.sha256


def test_a_request_that_never_gets_an_answer_fails_within_the_timeouts(
    tmp_path: Path, seaweed: S3Settings
) -> None:
    store = make_store(seaweed)
    journal = Journal(tmp_path / "journal.jsonl", "blackhole")
    with FaultProxy(upstream=str(seaweed.endpoint_url)) as proxy:
        faulty = _through(proxy, seaweed, store.bucket, max_attempts=2, read_timeout=1)
        staged = stage(faulty, tmp_path / "staging", "data/hole.bin", 100_000)
        holds = [proxy.hold("HEAD", "/data/hole.bin") for _ in range(5)]  # never released
        started = time.monotonic()
        with pytest.raises(UploadFailedError, match="data/hole.bin"):
            Publisher(faulty, journal=journal).publish(staged)
        elapsed = time.monotonic() - started
        assert sum(h.reached.is_set() for h in holds) == 1 + 2  # each timed out after 1 s
    assert elapsed < 20, elapsed  # 3 × 1 s timeouts + backoff, on a loaded machine
    assert staged.path.exists()
    last = journal.entries()[-1]
    assert last["outcome"] == "failed" and "timeout" in last["detail"].lower()


def test_the_loader_resumes_after_a_trickled_and_a_stalled_stream_with_exact_records(
    tmp_path: Path, seaweed: S3Settings
) -> None:
    config = write_build_config(
        tmp_path, f"trickle-{uuid.uuid4().hex[:10]}", records_per_family=150, compile={"workers": 1}
    )
    cfg, store = config_and_store(config, seaweed)
    manifest = build_dataset(cfg, store)
    uri = store.uri(f"{cfg.prefix}/manifest.json")
    train = [s for s in manifest.shards if s.split == "train"]
    assert len(train) >= 3

    def read(settings: S3Settings, policy: RetryPolicy | None = None) -> list[bytes]:
        loader = S3DatasetLoader(
            uri, settings=settings, split="train", shuffle=False, read_ahead=0, retry=policy
        )
        loader.set_epoch(0)
        return [r["metadata"]["content_hash"] for r in loader]

    expected = read(seaweed)
    # a 64 KiB chunk must arrive within 1 s + 64 KiB / (64 KiB/s) = 2 s
    policy = RetryPolicy(min_bytes_per_s=64 * 1024, stall_grace_s=1, chunk_bytes=64 * 1024)
    with FaultProxy(upstream=str(seaweed.endpoint_url)) as proxy:
        faulty = dataclasses.replace(seaweed, endpoint_url=proxy.endpoint_url, read_timeout=2)
        proxy.only_path(f"/{train[0].key}")
        proxy.trickle(1.0, times=1)  # the first shard's body at 1 byte/s
        stalled = proxy.hold("GET", f"/{train[1].key}", after_forward=True)  # no byte, ever
        started = time.monotonic()
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.extend(read(faulty, policy)), daemon=True)
        reader.start()
        reader.join(60)  # without a deadline the trickled shard alone would take ~18 hours
        elapsed = time.monotonic() - started
        assert not reader.is_alive(), "the loader hangs on a trickled stream"
        assert proxy.fired["trickle"] == 1 and stalled.reached.is_set()
        ranged = [p for m, p in proxy.log if m == "GET" and train[0].key in p]
        assert len(ranged) == 2  # the trickled request, then the resumed one
    assert got == expected  # every record, once, in order
    assert elapsed < 30, elapsed  # deadlines of 2 s each; without them ~18 hours


def test_a_trickled_small_read_fails_within_a_deadline(seaweed: S3Settings) -> None:
    store = make_store(seaweed)
    store.put_bytes("pointer.json", b"x" * 4096)
    with FaultProxy(upstream=str(seaweed.endpoint_url)) as proxy:
        # a byte every second: well inside the 2 s read timeout
        faulty = _through(proxy, seaweed, store.bucket, max_attempts=1, read_timeout=2)
        proxy.trickle(1.0, times=None)
        outcome: list[BaseException | bytes] = []

        def get() -> None:
            try:
                outcome.append(faulty.get_bytes("pointer.json"))
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                outcome.append(exc)

        reader = threading.Thread(target=get, daemon=True)
        reader.start()
        # 4 KiB at 1 byte/s: 68 minutes without a deadline; with it, ~3 s after the response
        # head (2 s + 4 KiB at 64 KiB/s, noticed at the next byte). 10 s leaves room for the
        # server's own latency on a loaded 2-core machine (one CI run saw > 5 s).
        reader.join(10)
        assert not reader.is_alive(), "get_bytes still reading a trickled body after 10 s"
    assert isinstance(outcome[0], StorageError)
