"""The build lease in S3: one build at a time whatever starts it, real servers and processes."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dataset_assets.core.layout import lease_key
from dataset_assets.pipeline.lease import BuildInProgressError, BuildLease, LeaseRecord
from dataset_assets.storage import S3ObjectStore

PREFIX = "final_dataset"
REPO = Path(__file__).resolve().parents[2]


def holder(store: S3ObjectStore) -> LeaseRecord:
    record = LeaseRecord.from_json(store.get_bytes(lease_key(PREFIX)))
    assert record is not None
    return record


def test_second_acquirer_is_refused_with_the_holder_named(store: S3ObjectStore) -> None:
    with BuildLease(store, PREFIX, "run-A", ttl_s=30):
        with pytest.raises(BuildInProgressError, match="another build is in progress") as err:
            BuildLease(store, PREFIX, "run-B", ttl_s=30).acquire()
        message = str(err.value)
        assert "run-A" in message and f"pid {os.getpid()}" in message
        assert "lease expires 20" in message  # the ISO expiry time
        assert holder(store).owner == "run-A"


def test_release_lets_the_next_build_in(store: S3ObjectStore) -> None:
    with BuildLease(store, PREFIX, "run-A", ttl_s=30):
        pass
    assert not holder(store).live(time.time())
    with BuildLease(store, PREFIX, "run-B", ttl_s=30) as lease:
        assert lease.held and holder(store).owner == "run-B"


def test_expired_lease_is_taken_over_and_the_stalled_holder_cannot_release_it(
    store: S3ObjectStore, caplog: pytest.LogCaptureFixture
) -> None:
    stalled = BuildLease(store, PREFIX, "run-stalled", ttl_s=1.0, heartbeat=False)
    stalled.acquire()
    time.sleep(1.2)
    with caplog.at_level(logging.WARNING), BuildLease(store, PREFIX, "run-new", ttl_s=30):
        assert "took over the expired build lease of run-stalled" in caplog.text
        stalled.refresh()
        assert stalled.lost
        with pytest.raises(BuildInProgressError, match="no longer held by run-stalled"):
            stalled.ensure_held()
        stalled.release()  # finds another owner: does nothing
        assert holder(store).owner == "run-new" and holder(store).live(time.time())
        assert "not released" in caplog.text


def test_heartbeat_keeps_the_lease_alive_past_its_ttl(store: S3ObjectStore) -> None:
    with BuildLease(store, PREFIX, "run-long", ttl_s=1.5) as lease:
        first_expiry = holder(store).expires_at
        time.sleep(3.5)  # more than twice the ttl
        assert lease.held
        assert holder(store).expires_at > first_expiry + 1
        with pytest.raises(BuildInProgressError, match="run-long"):
            BuildLease(store, PREFIX, "run-B", ttl_s=30).acquire()


_HOLDER = """
import sys, time
from dataset_assets.pipeline.lease import BuildLease
from dataset_assets.storage import S3ObjectStore, S3Settings
settings = S3Settings(endpoint_url=sys.argv[1], region="us-east-1", access_key_id=sys.argv[2],
                      secret_access_key=sys.argv[3], addressing_style="path")
lease = BuildLease(S3ObjectStore(sys.argv[4], settings), sys.argv[5], "run-killed", ttl_s=2.0)
lease.acquire()
print("acquired", flush=True)
time.sleep(600)
"""


def test_sigkilled_holder_lease_expires_and_the_next_build_takes_over(
    store: S3ObjectStore,
) -> None:
    s = store.settings
    args = [s.endpoint_url, s.access_key_id, s.secret_access_key, store.bucket, PREFIX]
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, *[str(a) for a in args]],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "acquired"
        time.sleep(1.0)  # let its heartbeat run at least once
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        with pytest.raises(BuildInProgressError, match=f"run-killed.*pid {proc.pid}"):
            BuildLease(store, PREFIX, "run-next", ttl_s=30).acquire()
        deadline = time.monotonic() + 10
        while True:
            try:
                lease = BuildLease(store, PREFIX, "run-next", ttl_s=30)
                lease.acquire()
                break
            except BuildInProgressError:
                assert time.monotonic() < deadline, "the killed holder's lease never expired"
                time.sleep(0.25)
        waited = time.monotonic() - (deadline - 10)
        assert waited <= 2.0 + 1.0  # at most the ttl after its last refresh
        assert holder(store).owner == "run-next"
        lease.release()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("expired_first", [False, True], ids=["create", "takeover"])
def test_concurrent_acquirers_exactly_one_wins(store: S3ObjectStore, expired_first: bool) -> None:
    if expired_first:
        BuildLease(store, PREFIX, "run-old", ttl_s=0.2, heartbeat=False).acquire()
        time.sleep(0.3)
    leases = [BuildLease(store, PREFIX, f"run-{i}", ttl_s=30, heartbeat=False) for i in range(6)]
    barrier = threading.Barrier(len(leases))

    def attempt(lease: BuildLease) -> bool:
        barrier.wait()
        try:
            lease.acquire()
        except BuildInProgressError:
            return False
        return True

    with ThreadPoolExecutor(len(leases)) as pool:
        won = list(pool.map(attempt, leases))
    assert won.count(True) == 1
    winner = leases[won.index(True)]
    assert holder(store).owner == winner.owner


def test_steps_of_one_build_hand_the_lease_on_and_no_other_build_gets_in_between(
    store: S3ObjectStore,
) -> None:
    with BuildLease(store, PREFIX, "run-A", ttl_s=30, hold_after_exit=True):
        pass  # first step done: the lease stays for the next step
    assert holder(store).owner == "run-A" and holder(store).live(time.time())
    with pytest.raises(BuildInProgressError, match="run-A"):
        BuildLease(store, PREFIX, "run-B", ttl_s=30).acquire()
    with BuildLease(store, PREFIX, "run-A", ttl_s=30) as last_step:  # same owner: taken back
        assert last_step.held
    with BuildLease(store, PREFIX, "run-B", ttl_s=30) as other:
        assert other.held


def test_a_failing_step_releases_the_lease(store: S3ObjectStore) -> None:
    with (
        pytest.raises(RuntimeError),
        BuildLease(store, PREFIX, "run-A", ttl_s=30, hold_after_exit=True),
    ):
        raise RuntimeError("step failed")
    assert not holder(store).live(time.time())
