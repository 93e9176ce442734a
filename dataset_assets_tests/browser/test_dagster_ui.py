"""The Dagster UI in a real browser: headless Chromium (chromedriver) against ``dg dev`` (what
``make dev`` runs) on a built dataset in a real SeaweedFS.

What a user opening ``make dev`` after ``make run`` must see: the asset graph with every dataset
asset, each family's source files upstream of the compile, on the ``manifest`` asset's page the
dataset card (its splits table) and a link that opens the manifest object in S3, and the
manifest's ``built_from_current_sources`` check passed (the sources are what it was built from).
On failure, a screenshot and the page's DOM of the failing step are kept under
``.local/test-artifacts/browser/`` (``BROWSER_ARTIFACTS`` overrides it).

Needs the Debian packages ``chromium`` and ``chromium-driver`` (scripts/install-test-deps.sh)
and the ``selenium`` package; a missing one fails the test with that message, never skips it.
"""

import contextlib
import os
import re
import shutil
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from dataset_assets.core.layout import build_manifest_key, latest_manifest_key
from dataset_assets.core.manifest import Manifest
from dataset_assets.core.sample import SAMPLE_FAMILIES
from dataset_assets.storage import S3ObjectStore, S3Settings
from dataset_assets_tests.builds import write_build_config
from dataset_assets_tests.e2e.test_dagster_dev import REPO, DagsterDev, wait_for

pytestmark = pytest.mark.slow

DATASET_ASSETS = (
    "conversations",
    "train_shards",
    "val_shards",
    "test_shards",
    "quarantine",
    "provenance",
    "compiled_export",
    "manifest",
)
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PAGE_TIMEOUT = 40
ARTIFACTS = Path(
    os.environ.get("BROWSER_ARTIFACTS", REPO / ".local" / "test-artifacts" / "browser")
)
SPLITS_TABLE = "//table[.//th[normalize-space()='split'] and .//th[normalize-space()='shards']]"


@dataclass
class BuiltUI:
    dev: DagsterDev
    store: S3ObjectStore
    settings: S3Settings
    manifest: Manifest

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.dev.port}{path}"


def build_dataset(env: dict[str, str]) -> None:
    """The ``build_dataset`` job, in this process, on the Dagster home ``dagster dev`` will use
    (the materializations are what the UI shows)."""
    import dagster as dg

    from dataset_assets.definitions import defs

    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith(("AWS_", "DAGSTER_", "DATASET_"))]:
            mp.delenv(name)
        for name, value in env.items():
            mp.setenv(name, value)
        with dg.DagsterInstance.get() as instance:
            result = (
                defs()
                .resolve_job_def("build_dataset")
                .execute_in_process(instance=instance, raise_on_error=False)
            )
    assert result.success, "the build_dataset job failed before the UI could be checked"


@pytest.fixture(scope="module")
def built_ui(tmp_path_factory: pytest.TempPathFactory, seaweed: S3Settings) -> Iterator[BuiltUI]:
    root = tmp_path_factory.mktemp("browser")
    project = root / "project"
    project.mkdir()
    bucket = f"ui-{uuid.uuid4().hex[:12]}"
    config = write_build_config(project, bucket, records_per_family=40, quarantine_max_ratio=0.5)
    home = root / "dagster_home"
    home.mkdir()
    # Runs the daemon would launch (the rebuild sensor's first tick) stay queued: the UI is
    # checked on the build made below, and no second build competes for the 2 cores.
    instance_yaml = {
        "telemetry": {"enabled": False},
        "concurrency": {"runs": {"max_concurrent_runs": 0}},
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml))
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
    import dagster as dg

    # Create the SQLite storages once, before two processes (dagster dev, the build) open them.
    dg.DagsterInstance.from_config(str(home)).dispose()
    dev = DagsterDev(project, home, env, dg=True)  # starts loading while the dataset is built
    try:
        build_dataset(env)
        store = S3ObjectStore(bucket, seaweed)
        manifest = Manifest.from_json(store.get_bytes(latest_manifest_key("final_dataset")))
        dev.location = wait_for("the code location", dev.loaded_location, 120, dev.log)
        yield BuiltUI(dev, store, seaweed, manifest)
    finally:
        # Nothing to shut down gracefully (a throwaway home): the whole process group at once.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(dev.proc.pid, signal.SIGKILL)
        dev.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the selenium package is missing: install the project's dev extra")
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(binary):
            pytest.fail(f"{binary} is missing: run scripts/install-test-deps.sh", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        # The graph only renders the nodes in view: a window that holds the whole dataset group.
        "--window-size=2600,2200",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def artifacts_on_failure(driver: Any, name: str) -> Iterator[None]:
    """Keep a screenshot and the DOM of the page when the block fails."""
    try:
        yield
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        with contextlib.suppress(Exception):
            driver.save_screenshot(str(ARTIFACTS / f"{stem}.png"))
            (ARTIFACTS / f"{stem}.html").write_text(driver.page_source)
        raise


def body_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    text: str = driver.find_element(By.TAG_NAME, "body").text
    return text


def dismiss_dialogs(driver: Any) -> None:
    """The first visit shows a 'Join the Dagster community' dialog; skip it."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
        with contextlib.suppress(WebDriverException):
            button.click()


def click(driver: Any, element: Any, timeout: float = PAGE_TIMEOUT) -> None:
    """Click ``element``. The community dialog can open over the page a moment after it
    loaded (after the wait for its content returned): it is dismissed and the click retried."""
    from selenium.common.exceptions import ElementClickInterceptedException

    deadline = time.monotonic() + timeout
    while True:
        dismiss_dialogs(driver)
        try:
            element.click()
            return
        except ElementClickInterceptedException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def wait_until(driver: Any, what: str, condition: Any, timeout: float = PAGE_TIMEOUT) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def probe(d: Any) -> Any:
        dismiss_dialogs(d)
        return condition(d)

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(probe)
    except TimeoutException:
        pytest.fail(f"{what} did not appear within {timeout:.0f} s at {driver.current_url}")


def test_asset_graph_shows_every_dataset_asset(built_ui: BuiltUI, browser: Any) -> None:
    with artifacts_on_failure(browser, "asset-graph"):
        browser.get(
            built_ui.url(f"/locations/{built_ui.dev.location}/asset-groups/dataset/lineage")
        )
        # The graph renders names first and each node's status when its query returns.
        wait_until(
            browser,
            "every dataset asset in the graph, with its materialized status",
            lambda d: (
                all(name in body_text(d) for name in DATASET_ASSETS)
                and "Materialized" in body_text(d)
            ),
        )


SOURCES = tuple(f"source/{name}" for name, _shape, _holdout in SAMPLE_FAMILIES)
UPSTREAM = """query Upstream($key: AssetKeyInput!) { assetNodes(assetKeys: [$key]) {
  dependencyKeys { path } } }"""
OBSERVED = """query Observed($key: AssetKeyInput!) { assetOrError(assetKey: $key) {
  ... on Asset { assetObservations(limit: 1) { metadataEntries { label
    ... on IntMetadataEntry { intValue } } } } } }"""


def test_dev_server_output_has_no_superseded_command_warning(built_ui: BuiltUI) -> None:
    log = built_ui.dev.log.read_text(errors="replace")
    assert "Serving dagster-webserver" in log, log[-3000:]
    for warning in ("superseded", "SupersessionWarning", "does not match the virtual environment"):
        assert warning not in log, log[-3000:]


def test_sources_are_upstream_of_the_compile_in_the_graph(built_ui: BuiltUI, browser: Any) -> None:
    upstream = built_ui.dev.query(UPSTREAM, {"key": {"path": ["conversations"]}})["assetNodes"]
    assert {"/".join(k["path"]) for k in upstream[0]["dependencyKeys"]} == set(SOURCES)
    with artifacts_on_failure(browser, "sources-upstream"):
        # conversations' upstream lineage: the `sources` group with one node per family
        browser.get(built_ui.url("/assets/conversations?view=lineage&lineageScope=upstream"))
        wait_until(
            browser,
            "the sources group with every family's source asset upstream of conversations",
            lambda d: (
                "\nsources\n" in body_text(d)
                and all(f"\n{name.split('/')[1]}\n" in body_text(d) for name in SOURCES)
            ),
        )

    def observed() -> dict[str, int] | None:
        files = {}
        for name in SOURCES:
            data = built_ui.dev.query(OBSERVED, {"key": {"path": name.split("/")}})
            events = data["assetOrError"].get("assetObservations") or []
            if not events:
                return None
            entries = {e["label"]: e.get("intValue") for e in events[0]["metadataEntries"]}
            files[name] = entries["files"]
        return files

    # the rebuild sensor's first tick in the daemon observed each family's files
    files = wait_for("an observation of every source", observed, 90, built_ui.dev.log)
    assert files == {f"source/{name}": 1 for name, _, _ in SAMPLE_FAMILIES}, files


def test_manifest_is_current_with_its_sources(built_ui: BuiltUI) -> None:
    def check() -> dict[str, Any] | None:
        execution = built_ui.dev.check_execution("manifest", "built_from_current_sources")
        return execution if execution and execution["status"] != "IN_PROGRESS" else None

    execution = wait_for("the built_from_current_sources check", check, 60, built_ui.dev.log)
    assert execution["status"] == "SUCCEEDED", execution
    assert built_ui.manifest.build_id in execution["evaluation"]["description"]


def manifest_page(built_ui: BuiltUI, browser: Any) -> None:
    browser.get(built_ui.url("/assets/manifest"))
    wait_until(
        browser,
        "the manifest's latest materialization metadata",
        lambda d: built_ui.manifest.build_id in body_text(d),
    )


def test_manifest_page_links_to_the_manifest_object_in_s3(built_ui: BuiltUI, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    m = built_ui.manifest
    key = build_manifest_key(m.prefix, m.build_id)
    expected = f"{built_ui.settings.endpoint_url}/{m.bucket}/{key}"
    with artifacts_on_failure(browser, "manifest-link"):
        manifest_page(built_ui, browser)
        hrefs = wait_until(
            browser,
            f"a link to {expected}",
            lambda d: [
                a.get_attribute("href")
                for a in d.find_elements(By.XPATH, "//a[@href]")
                if a.get_attribute("href") == expected
            ],
        )
        assert hrefs
    assert built_ui.store.exists(key)  # the link names the object this build committed
    # Following the link reaches that object on the S3 server: its bytes when the server allows
    # anonymous reads, else the server's own answer naming this bucket and key.
    try:
        with urllib.request.urlopen(expected, timeout=10) as resp:
            assert orjson.loads(resp.read())["build_id"] == m.build_id
    except urllib.error.HTTPError as exc:
        answer = exc.read().decode(errors="replace")
        assert exc.code == 403, answer
        assert f"<Key>{key}</Key>" in answer and f"<BucketName>{m.bucket}</BucketName>" in answer


def test_manifest_page_shows_the_dataset_card_splits_table(built_ui: BuiltUI, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    m = built_ui.manifest
    with artifacts_on_failure(browser, "dataset-card"):
        manifest_page(built_ui, browser)
        # Markdown metadata is behind a "[Show Markdown]" button; the card is the manifest's.
        buttons = wait_until(
            browser,
            "the dataset card (Markdown metadata 'card')",
            lambda d: d.find_elements(
                By.XPATH,
                "//tr[.//*[normalize-space()='card']]//*[contains(text(), 'Show Markdown')]",
            ),
        )
        click(browser, buttons[0])
        tables = wait_until(
            browser,
            "the card's splits table",
            lambda d: [t for t in d.find_elements(By.XPATH, SPLITS_TABLE) if "total" in t.text],
        )
        rows = [re.split(r"\s+", line.strip()) for line in tables[0].text.splitlines()]
        assert rows[0] == ["split", "records", "shards", "bytes"], rows
        by_split = {row[0]: row[1:] for row in rows[1:]}
        for split in ("train", "val", "test"):
            records, shards = by_split[split][:2]
            assert int(records) == m.split_records(split), rows
            assert int(shards) == len(m.split_shards(split)), rows
        assert int(by_split["total"][0]) == m.counts.published_records, rows
