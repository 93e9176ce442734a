"""Session fixtures: real S3 servers started by the test run (nothing needs to be running).

Fixtures:
    seaweed         session; starts SeaweedFS ``weed mini`` on free ports; yields S3Settings.
    ceph            session, lazy (only when a ceph test runs); starts Ceph RGW with
                    scripts/ceph-up.sh in a temp dir; yields S3Settings. Fails (never skips)
                    when radosgw is not installed: run scripts/install-test-deps.sh.
    s3_settings     parametrized over ["seaweed", "ceph"] (the ceph param carries @ceph).
    store           S3ObjectStore on a fresh, uniquely named bucket of the parametrized server,
                    part_size 5 MiB.
    seaweed_store   the same, SeaweedFS only.
"""

import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:  # running without an installed package
    sys.path.insert(0, _REPO)

from dataset_assets.storage import S3ObjectStore, S3Settings  # noqa: E402
from dataset_assets_tests.servers import CephMissingError, CephServer, start_seaweed  # noqa: E402

TEST_PART_SIZE = 5 * 1024 * 1024


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Settings]:
    server = start_seaweed(tmp_path_factory.mktemp("seaweed"))
    try:
        yield server.settings()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ceph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Settings]:
    server = CephServer(tmp_path_factory.mktemp("ceph") / "ceph")
    try:
        server.start()
    except CephMissingError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server.settings()
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)  # 20 GiB sparse BlueStore file


@pytest.fixture(
    scope="session",
    params=["seaweed", pytest.param("ceph", marks=pytest.mark.ceph)],
)
def s3_settings(request: pytest.FixtureRequest) -> S3Settings:
    settings: S3Settings = request.getfixturevalue(request.param)
    return settings


def make_store(settings: S3Settings) -> S3ObjectStore:
    """A store on a new bucket with a unique name."""
    store = S3ObjectStore(f"t-{uuid.uuid4().hex[:20]}", settings, part_size=TEST_PART_SIZE)
    store.ensure_bucket()
    return store


@pytest.fixture
def store(s3_settings: S3Settings) -> S3ObjectStore:
    return make_store(s3_settings)


@pytest.fixture
def seaweed_store(seaweed: S3Settings) -> S3ObjectStore:
    return make_store(seaweed)
