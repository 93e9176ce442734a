"""What the rebuild sensor tells the UI besides run requests: observations of the
``source/<family>`` assets, and the manifest's ``built_from_current_sources`` check (overdue
while sources changed and no build committed them), recorded on a real Dagster instance."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import orjson
import pytest

from dataset_assets.core.watch import WatchCursor
from dataset_assets.defs.jobs import build_job
from dataset_assets.defs.resources import DatasetConfigResource
from dataset_assets.defs.sensors import CURRENT_CHECK, SensorCursor, make_rebuild_sensor
from dataset_assets.pipeline.build import build_dataset
from dataset_assets.storage import S3Settings
from dataset_assets_tests.builds import config_and_store, write_build_config
from dataset_assets_tests.defs.test_sensors import OLD, evaluate, s3_resource

CHAT = dg.AssetKey(["source", "chat"])
WEB = dg.AssetKey(["source", "web_v2"])
CHECK = dg.AssetCheckKey(dg.AssetKey("manifest"), CURRENT_CHECK)


def observations(result: dg.SensorResult) -> dict[dg.AssetKey, dg.AssetObservation]:
    found = [e for e in result.asset_events if isinstance(e, dg.AssetObservation)]
    return {e.asset_key: e for e in found}


def evaluations(result: dg.SensorResult) -> list[dg.AssetCheckEvaluation]:
    return [e for e in result.asset_events if isinstance(e, dg.AssetCheckEvaluation)]


def meta(event: Any, name: str) -> Any:
    return event.metadata[name].value


class TwoFamilies:
    """Families ``chat`` and ``web.v2`` (key part ``web_v2``) in local folders."""

    def __init__(self, root: Path, settings: S3Settings) -> None:
        self.root = root
        for folder in ("chat", "web"):
            (root / "data" / folder).mkdir(parents=True)
        config = {
            "bucket": f"signals-{uuid.uuid4().hex[:12]}",
            "families": [
                {"name": "chat", "paths": ["data/chat/*.jsonl"]},
                {"name": "web.v2", "paths": ["data/web/*.jsonl"]},
            ],
            "sensor": {"stable_seconds": 10},
        }
        (root / "dataset.yaml").write_bytes(orjson.dumps(config))
        self.resources = {
            "dataset": DatasetConfigResource(config_path=str(root / "dataset.yaml")),
            "s3": s3_resource(settings),
        }
        self.sensor = make_rebuild_sensor(build_job)

    def write(self, relative: str, text: str, *, mtime: float | None = OLD) -> Path:
        path = self.root / "data" / relative
        path.write_text(text)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        return path

    def tick(self, cursor: str | None) -> dg.SensorResult:
        return evaluate(self.sensor, cursor, dg.DagsterInstance.ephemeral(), self.resources)


@pytest.fixture
def two(tmp_path: Path, seaweed: S3Settings) -> TwoFamilies:
    return TwoFamilies(tmp_path, seaweed)


def test_first_tick_observes_every_family_with_its_files(two: TwoFamilies) -> None:
    two.write("chat/a.jsonl", "a\n")
    two.write("chat/b.jsonl", "bb\n")
    two.write("web/w.jsonl", "www\n")

    seen = observations(two.tick(None))

    assert set(seen) == {CHAT, WEB}
    assert meta(seen[CHAT], "files") == 2 and meta(seen[CHAT], "bytes") == 5
    assert meta(seen[WEB], "files") == 1 and meta(seen[WEB], "family") == "web.v2"
    rows = [r.data for r in meta(seen[CHAT], "file_list").records]
    assert [r["path"] for r in rows] == ["data/chat/a.jsonl", "data/chat/b.jsonl"]
    assert len(meta(seen[CHAT], "fingerprint")) == 16


def test_only_a_changed_family_is_observed_again(two: TwoFamilies) -> None:
    a = two.write("chat/a.jsonl", "a\n")
    two.write("web/w.jsonl", "w\n")
    first = two.tick(None)
    unchanged = two.tick(first.cursor)
    a.write_text("a changed\n")
    os.utime(a, (OLD + 5, OLD + 5))

    changed = two.tick(unchanged.cursor)

    assert observations(unchanged) == {} and evaluations(unchanged) == []
    assert set(observations(changed)) == {CHAT}
    before, after = observations(first)[CHAT], observations(changed)[CHAT]
    assert meta(after, "fingerprint") != meta(before, "fingerprint")
    assert meta(after, "bytes") == len("a changed\n")


def test_a_file_still_being_written_is_observed_only_once_stable(two: TwoFamilies) -> None:
    two.write("web/w.jsonl", "w\n")
    first = two.tick(None)
    two.write("web/growing.jsonl", "partial", mtime=None)  # modified just now

    while_written = two.tick(first.cursor)

    assert WEB not in observations(while_written)
    settled = SensorCursor.from_json(while_written.cursor)
    assert list(settled.watch.pending) == [str(two.root / "data" / "web" / "growing.jsonl")]


def test_a_family_whose_files_all_settle_is_observed_with_them_not_as_empty(
    two: TwoFamilies,
) -> None:
    """Files written moments before the first tick (a fresh Dagster home right after a build)
    are still settling: the family is observed once they settle, never as "0 files"."""
    two.write("chat/a.jsonl", "a\n")
    fresh = two.write("web/w.jsonl", "w\n", mtime=None)  # modified just now

    first = two.tick(None)

    assert set(observations(first)) == {CHAT}
    os.utime(fresh, (OLD, OLD))  # as if stable_seconds had passed
    settled = observations(two.tick(first.cursor))
    assert set(settled) == {WEB} and meta(settled[WEB], "files") == 1


def test_a_cursor_of_the_previous_version_keeps_its_known_files(two: TwoFamilies) -> None:
    """A Dagster home whose sensor ran the watch-only cursor: no rebuild of known files."""
    a = two.write("chat/a.jsonl", "a\n")
    st = a.stat()
    old = WatchCursor(known={str(a): (st.st_size, str(st.st_mtime_ns))}, initialized=True)

    result = two.tick(old.to_json())

    assert result.run_requests == []
    assert set(observations(result)) == {CHAT, WEB}  # first look at the sources


# -- the overdue signal on a real instance -----------------------------------------------------


class Recorded:
    """A real build, and the rebuild sensor's ticks recorded on a real (SQLite) instance the
    way the sensor daemon records them (``report_runless_asset_event`` for each asset event)."""

    def __init__(self, root: Path, settings: S3Settings, instance: dg.DagsterInstance) -> None:
        config = write_build_config(
            root, f"signal-{uuid.uuid4().hex[:12]}", records_per_family=15, quarantine_max_ratio=0.5
        )
        self.cfg, self.store = config_and_store(config, settings)
        self.generated = root / "data" / "generated"
        for source in self.generated.glob("*.jsonl"):
            os.utime(source, (OLD, OLD))
        self.manifest = build_dataset(self.cfg, self.store)
        self.sensor = make_rebuild_sensor(build_job)
        self.instance = instance
        self.resources = {
            "dataset": DatasetConfigResource(config_path=str(config)),
            "s3": s3_resource(settings),
        }
        self.cursor: str | None = None

    def tick(self) -> dg.SensorResult:
        result = evaluate(self.sensor, self.cursor, self.instance, self.resources)
        for event in result.asset_events:
            self.instance.report_runless_asset_event(event)
        self.cursor = result.cursor
        return result

    def check_history(self) -> list[Any]:
        """The check's recorded executions, newest first."""
        return list(
            self.instance.event_log_storage.get_asset_check_execution_history(CHECK, limit=20)
        )


@pytest.fixture
def recorded(tmp_path: Path, seaweed: S3Settings) -> Iterator[Recorded]:
    with dg.instance_for_test() as instance:
        yield Recorded(tmp_path, seaweed, instance)


def test_manifest_is_overdue_while_changed_sources_wait_and_current_after_the_build(
    recorded: Recorded,
) -> None:
    # a fresh Dagster home on a built dataset: the check passes, nothing is requested
    first = recorded.tick()
    assert first.run_requests == []
    (latest,) = recorded.check_history()[:1]
    assert latest.status.value == "SUCCEEDED"
    assert recorded.manifest.build_id in latest.evaluation.description

    # a new source file: a build is requested and the manifest is overdue
    new = recorded.generated / "coding_help_fresh.jsonl"
    new.write_bytes(b'{"messages": [{"role": "user", "content": "hi"}, '
                    b'{"role": "assistant", "content": "hello there"}]}\n')  # fmt: skip
    os.utime(new, (OLD, OLD))
    changed = recorded.tick()
    assert len(changed.run_requests) == 1
    overdue = recorded.check_history()[0]
    assert overdue.status.value == "FAILED"
    assert overdue.evaluation.severity == dg.AssetCheckSeverity.WARN
    assert overdue.evaluation.description.startswith("OVERDUE: sources changed since build")
    assert overdue.evaluation.metadata["added"].value == 1
    assert overdue.evaluation.metadata["changes"].value == [
        "added data/generated/coding_help_fresh.jsonl"
    ]

    # nothing new and no build yet: still overdue, and not recorded again
    waiting = recorded.tick()
    assert evaluations(waiting) == []
    assert len(recorded.check_history()) == 2

    # the build commits: the pointer moved, the next tick records the manifest current again
    rebuilt = build_dataset(recorded.cfg, recorded.store)
    assert rebuilt.build_id != recorded.manifest.build_id
    recorded.tick()
    current = recorded.check_history()[0]
    assert current.status.value == "SUCCEEDED"
    assert rebuilt.build_id in current.evaluation.description
    observed = recorded.instance.fetch_observations(
        dg.AssetKey(["source", "coding_help"]), limit=5
    ).records
    assert observed, "the family's source asset was never observed"


def test_a_tick_between_the_commit_and_the_materialization_is_recorded_again_after_it(
    recorded: Recorded,
) -> None:
    """A run moves the pointer in its IO manager, a moment before Dagster stores the manifest's
    materialization. A tick in between records 'current' before that materialization, which the
    UI does not show for it (its "latest materialization" status stays empty). The next tick
    sees the new materialization and records the outcome again, once."""
    recorded.tick()
    rebuilt_from = recorded.generated / "coding_help_more.jsonl"
    rebuilt_from.write_bytes(b'{"messages": [{"role": "user", "content": "hey"}, '
                             b'{"role": "assistant", "content": "hello again"}]}\n')  # fmt: skip
    os.utime(rebuilt_from, (OLD, OLD))
    recorded.tick()  # overdue
    rebuilt = build_dataset(recorded.cfg, recorded.store)  # the commit: the pointer moves
    in_between = recorded.tick()
    assert [e.passed for e in evaluations(in_between)] == [True]
    recorded.instance.report_runless_asset_event(dg.AssetMaterialization(CHECK.asset_key))
    (materialized,) = recorded.instance.fetch_materializations(CHECK.asset_key, limit=1).records

    after = recorded.tick()

    assert [e.passed for e in evaluations(after)] == [True]
    latest = recorded.check_history()[0]
    assert latest.status.value == "SUCCEEDED"
    assert rebuilt.build_id in latest.evaluation.description
    target = latest.evaluation.target_materialization_data  # what the UI matches it to
    assert target is not None and target.storage_id == materialized.storage_id
    assert evaluations(recorded.tick()) == []  # nothing changed since: not recorded again


def test_a_removed_source_leaves_the_manifest_overdue_without_a_rebuild(
    recorded: Recorded,
) -> None:
    """sensor.on_removal=report (the default): no build, but the manifest still holds the
    removed file's records, and the check says so."""
    recorded.tick()
    (gone,) = recorded.generated.glob("coding_help*.jsonl")
    gone.unlink()

    result = recorded.tick()

    assert result.run_requests == []
    overdue = recorded.check_history()[0]
    assert overdue.status.value == "FAILED"
    assert "(0 added, 0 changed, 1 removed)" in overdue.evaluation.description
    assert "sensor.on_removal=report" in overdue.evaluation.description
    assert overdue.evaluation.metadata["changes"].value == [f"removed data/generated/{gone.name}"]
    assert observations(result)[dg.AssetKey(["source", "coding_help"])].metadata["files"].value == 0
