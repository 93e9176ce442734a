"""The rebuild sensor, evaluated with build_sensor_context on real files (and a real S3 server)."""

import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import orjson
import pytest

from dataset_assets.core.layout import latest_manifest_key
from dataset_assets.core.manifest import BuildCounts, InputFingerprint, Manifest, with_build_id
from dataset_assets.core.watch import Fingerprint, WatchCursor, observe
from dataset_assets.defs.jobs import build_job
from dataset_assets.defs.resources import DatasetConfigResource, ObjectStoreResource
from dataset_assets.defs.sensors import SensorCursor, build_defs, make_rebuild_sensor
from dataset_assets.pipeline.build import build_dataset
from dataset_assets.pipeline.sources import list_sources
from dataset_assets.storage import S3ObjectStore, S3Settings
from dataset_assets_tests.builds import config_and_store, write_build_config

OLD = time.time() - 3600  # an mtime far older than any stable_seconds used here


def evaluate(
    sensor: dg.SensorDefinition,
    cursor: str | None,
    instance: dg.DagsterInstance,
    resources: Mapping[str, object],
) -> dg.SensorResult:
    """One tick of ``sensor`` from ``cursor``, as the daemon would run it."""
    context = dg.build_sensor_context(cursor=cursor, instance=instance, resources=resources)
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def s3_resource(settings: S3Settings) -> ObjectStoreResource:
    return ObjectStoreResource(
        endpoint_url=settings.endpoint_url,
        region=settings.region,
        access_key_id=settings.access_key_id,
        secret_access_key=settings.secret_access_key,
    )


class Project:
    """A temp project: dataset.yaml plus a generated-data folder the sensor watches, and an
    empty bucket on the test S3 server (where a build would publish its manifest)."""

    def __init__(
        self,
        root: Path,
        settings: S3Settings,
        *,
        stable_seconds: float = 10,
        on_removal: str = "report",
        extra_paths: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self.generated = root / "data" / "generated"
        self.generated.mkdir(parents=True)
        paths = ["data/generated/*.jsonl", *extra_paths]
        config = {
            "bucket": f"sensor-{uuid.uuid4().hex[:12]}",
            "families": [{"name": "generated", "paths": paths}],
            "sensor": {"stable_seconds": stable_seconds, "on_removal": on_removal},
        }
        (root / "dataset.yaml").write_bytes(orjson.dumps(config))  # JSON is YAML
        self.resources = {
            "dataset": DatasetConfigResource(config_path=str(root / "dataset.yaml")),
            "s3": s3_resource(settings),
        }
        self.sensor = make_rebuild_sensor(build_job)
        self.instance = dg.DagsterInstance.ephemeral()

    def write(self, name: str, text: str, *, mtime: float | None = OLD) -> Path:
        path = self.generated / name
        path.write_text(text)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        return path

    def tick(self, cursor: str | None) -> dg.SensorResult:
        return evaluate(self.sensor, cursor, self.instance, self.resources)


def known(result: dg.SensorResult) -> dict[str, tuple[int, str]]:
    return dict(SensorCursor.from_json(result.cursor).watch.known)


def pending(result: dg.SensorResult) -> list[str]:
    return sorted(SensorCursor.from_json(result.cursor).watch.pending)


def version(path: Path) -> tuple[int, str]:
    st = path.stat()
    return (st.st_size, str(st.st_mtime_ns))


@pytest.fixture
def project(tmp_path: Path, seaweed: S3Settings) -> Project:
    return Project(tmp_path, seaweed)


def test_first_tick_requests_one_build_of_everything_present(project: Project) -> None:
    a = project.write("a.jsonl", "a\n")
    b = project.write("b.jsonl", "bb\n")

    result = project.tick(None)

    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.run_key and request.run_key.startswith("rebuild-")
    assert request.tags["dataset_assets/changed_files"] == "2"
    assert known(result) == {str(a): version(a), str(b): version(b)}
    assert pending(result) == []


def test_nothing_new_skips_and_keeps_the_cursor(project: Project) -> None:
    project.write("a.jsonl", "a\n")
    first = project.tick(None)

    second = project.tick(first.cursor)

    assert second.run_requests == []
    assert second.skip_reason is not None
    assert "nothing new (1 files known)" in str(second.skip_reason.skip_message)
    assert second.cursor == first.cursor


def test_new_file_requests_a_build_keyed_by_that_change(project: Project) -> None:
    project.write("a.jsonl", "a\n")
    first = project.tick(None)
    c = project.write("c.jsonl", "ccc\n")

    result = project.tick(first.cursor)

    assert len(result.run_requests) == 1
    assert result.run_requests[0].run_key != first.run_requests[0].run_key
    assert result.run_requests[0].tags["dataset_assets/changes"] == "added c.jsonl"
    assert known(result)[str(c)] == version(c)
    assert len(known(result)) == 2


def test_modified_file_requests_a_build(project: Project) -> None:
    a = project.write("a.jsonl", "a\n")
    first = project.tick(None)
    project.write("a.jsonl", "a changed\n", mtime=OLD + 60)

    result = project.tick(first.cursor)

    assert len(result.run_requests) == 1
    assert result.run_requests[0].tags["dataset_assets/changes"] == "modified a.jsonl"
    assert known(result) == {str(a): version(a)}


def test_file_still_growing_never_triggers_until_stable(project: Project) -> None:
    project.write("a.jsonl", "a\n")
    cursor = project.tick(None).cursor
    growing = project.write("big.jsonl", "part 1\n", mtime=None)  # mtime = now

    first = project.tick(cursor)
    with growing.open("a") as fh:
        fh.write("part 2\n")
    second = project.tick(first.cursor)

    assert first.run_requests == [] and second.run_requests == []
    assert "1 still being written" in str(second.skip_reason.skip_message)  # type: ignore[union-attr]
    assert pending(second) == [str(growing)]
    assert str(growing) not in known(second)

    os.utime(growing, (OLD, OLD))  # the writer finished long ago
    done = project.tick(second.cursor)

    assert len(done.run_requests) == 1
    assert done.run_requests[0].tags["dataset_assets/changes"] == "added big.jsonl"
    assert pending(done) == []


def test_two_files_in_one_tick_make_exactly_one_run(project: Project) -> None:
    project.write("a.jsonl", "a\n")
    cursor = project.tick(None).cursor
    x = project.write("x.jsonl", "x\n")
    y = project.write("y.jsonl", "y\n")

    result = project.tick(cursor)

    assert len(result.run_requests) == 1
    assert result.run_requests[0].tags["dataset_assets/changed_files"] == "2"
    assert result.run_requests[0].tags["dataset_assets/changes"] == "added x.jsonl, added y.jsonl"
    assert {str(x), str(y)} <= set(known(result))


def test_same_change_seen_twice_has_the_same_run_key(project: Project) -> None:
    project.write("a.jsonl", "a\n")
    cursor = project.tick(None).cursor
    project.write("n.jsonl", "n\n")

    once = project.tick(cursor)
    again = project.tick(cursor)  # e.g. the tick is retried before its cursor was stored

    assert once.run_requests[0].run_key == again.run_requests[0].run_key


def test_temporary_names_are_ignored(tmp_path: Path, seaweed: S3Settings) -> None:
    project = Project(tmp_path, seaweed, extra_paths=("data/generated/*",))
    project.write("real.jsonl", "r\n")
    for name in (".hidden.jsonl", "x.jsonl.tmp", "y.jsonl.part", "z.jsonl~"):
        project.write(name, "tmp\n")

    result = project.tick(None)

    assert list(known(result)) == [str(project.generated / "real.jsonl")]


def test_removal_is_reported_without_a_rebuild_by_default(project: Project) -> None:
    a = project.write("a.jsonl", "a\n")
    project.write("b.jsonl", "b\n")
    cursor = project.tick(None).cursor
    a.unlink()

    result = project.tick(cursor)

    assert result.run_requests == []
    assert "removed a.jsonl" in str(result.skip_reason.skip_message)  # type: ignore[union-attr]
    assert str(a) not in known(result)


def test_removal_rebuilds_when_configured(tmp_path: Path, seaweed: S3Settings) -> None:
    project = Project(tmp_path, seaweed, on_removal="rebuild")
    a = project.write("a.jsonl", "a\n")
    project.write("b.jsonl", "b\n")
    cursor = project.tick(None).cursor
    a.unlink()

    result = project.tick(cursor)

    assert len(result.run_requests) == 1
    assert result.run_requests[0].tags["dataset_assets/changes"] == "removed a.jsonl"


def test_unreadable_cursor_fails_the_tick(project: Project) -> None:
    with pytest.raises(ValueError, match="unreadable rebuild sensor cursor"):
        project.tick("{not json")


def test_missing_config_fails_the_tick(tmp_path: Path, seaweed: S3Settings) -> None:
    project = Project(tmp_path, seaweed)
    (tmp_path / "dataset.yaml").unlink()
    with pytest.raises(Exception, match="cannot read dataset config"):
        project.tick(None)


def test_s3_prefix_is_watched_by_etag(tmp_path: Path, seaweed_store: S3ObjectStore) -> None:
    prefix = f"s3://{seaweed_store.bucket}/incoming/"
    project = Project(tmp_path, seaweed_store.settings, extra_paths=(prefix,))
    seaweed_store.put_bytes("incoming/one.jsonl", b"1\n")
    first = project.tick(None)
    seaweed_store.put_bytes("incoming/one.jsonl", b"1 changed\n")

    second = project.tick(first.cursor)

    uri = f"s3://{seaweed_store.bucket}/incoming/one.jsonl"
    assert len(first.run_requests) == 1 and uri in known(first)
    assert second.run_requests[0].tags["dataset_assets/changes"] == "modified one.jsonl"
    assert known(second)[uri][1] != known(first)[uri][1]  # the ETag


def test_stability_counts_from_first_sight_at_that_size() -> None:
    fresh = Fingerprint("/d/a.jsonl", 10, "1", modified_at=1000.0)
    grown = Fingerprint("/d/a.jsonl", 20, "2", modified_at=1005.0)

    t0 = observe(WatchCursor(), [fresh], now=1000.0, stable_seconds=10, rebuild_on_removal=False)
    t1 = observe(t0.cursor, [grown], now=1005.0, stable_seconds=10, rebuild_on_removal=False)
    t2 = observe(t1.cursor, [grown], now=1014.0, stable_seconds=10, rebuild_on_removal=False)
    t3 = observe(t2.cursor, [grown], now=1015.0, stable_seconds=10, rebuild_on_removal=False)

    assert [bool(t.changes) for t in (t0, t1, t2, t3)] == [False, False, False, True]
    assert t1.cursor.pending["/d/a.jsonl"].first_seen == 1005.0
    assert t3.cursor.known == {"/d/a.jsonl": (20, "2")} and not t3.cursor.pending


def test_rebuild_sensor_starts_running() -> None:
    (sensor,) = build_defs().sensors or []
    assert isinstance(sensor, dg.SensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "build_dataset"


# -- no rebuild of a dataset already built from exactly these sources --------------------------


class Built:
    """A real build (`make run`'s sample project) and the rebuild sensor of a fresh Dagster
    home pointed at the same config and S3 (what `make dev` after `make run` starts)."""

    def __init__(self, root: Path, settings: S3Settings) -> None:
        config = write_build_config(
            root, f"built-{uuid.uuid4().hex[:12]}", records_per_family=15, quarantine_max_ratio=0.5
        )
        self.cfg, self.store = config_and_store(config, settings)
        self.generated = root / "data" / "generated"
        for source in self.generated.glob("*.jsonl"):  # written long before `make dev`
            os.utime(source, (OLD, OLD))
        self.manifest = build_dataset(self.cfg, self.store)
        self.sensor = make_rebuild_sensor(build_job)
        self.instance = dg.DagsterInstance.ephemeral()
        self.resources = {
            "dataset": DatasetConfigResource(config_path=str(config)),
            "s3": s3_resource(settings),
        }

    def tick(self, cursor: str | None) -> dg.SensorResult:
        return evaluate(self.sensor, cursor, self.instance, self.resources)


@pytest.fixture
def built(tmp_path: Path, seaweed: S3Settings) -> Built:
    return Built(tmp_path, seaweed)


def test_first_tick_after_a_build_of_the_same_sources_requests_nothing(built: Built) -> None:
    sources = sorted(built.generated.glob("*.jsonl"))

    first = built.tick(None)

    assert first.run_requests == []
    assert first.skip_reason is not None
    message = str(first.skip_reason.skip_message)
    assert f"sources unchanged since build {built.manifest.build_id}" in message
    assert len(known(first)) == len(sources) == len(built.manifest.inputs)

    new = built.generated / f"{built.cfg.families[0].name}_late.jsonl"
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    new.write_bytes(orjson.dumps({"messages": turns}) + b"\n")
    os.utime(new, (OLD, OLD))
    second = built.tick(first.cursor)

    assert len(second.run_requests) == 1
    assert second.run_requests[0].tags["dataset_assets/changes"] == f"added {new.name}"


def test_first_tick_after_a_source_changed_since_the_build_requests_one(built: Built) -> None:
    source = sorted(built.generated.glob("*.jsonl"))[0]
    with source.open("ab") as fh:
        fh.write(b'{"messages": [{"role": "user", "content": "one more"}]}\n')
    os.utime(source, (OLD + 60, OLD + 60))

    first = built.tick(None)

    assert len(first.run_requests) == 1
    assert first.run_requests[0].tags["dataset_assets/changed_files"] == str(len(known(first)))


def test_a_file_whose_name_is_not_utf8_does_not_break_the_tick(project: Project) -> None:
    project.write("good.jsonl", "g\n")
    bad = project.generated / os.fsdecode(b"bad-\xff.jsonl")
    bad.write_text("b\n")
    os.utime(bad, (OLD, OLD))

    result = project.tick(None)

    assert len(result.run_requests) == 1
    assert result.run_requests[0].tags["dataset_assets/changed_files"] == "2"
    assert str(project.generated / "bad-\\xff.jsonl") in known(result)


def publish_manifest_of(
    project: Project, settings: S3Settings, *names: str, root: Path | None = None
) -> Manifest:
    """A published manifest (pointer in S3) whose inputs are ``names``, recorded the way the
    compile records them (its own listing function; local uris relative to ``root`` if given,
    else absolute)."""
    cfg = DatasetConfigResource(config_path=str(project.root / "dataset.yaml")).load()
    store = S3ObjectStore(cfg.bucket, settings, part_size=cfg.part_size)
    store.ensure_bucket()
    refs = [
        r
        for f in cfg.families
        for r in list_sources(f, store, root=root)
        if Path(r.uri).name in names
    ]
    assert len(refs) == len(names)
    inputs = [
        InputFingerprint(uri=r.uri, family=r.family, bytes=r.size, fingerprint=r.fingerprint)
        for r in refs
    ]
    manifest = with_build_id(
        Manifest(
            build_id="",
            bucket=cfg.bucket,
            prefix=cfg.prefix,
            config_digest=cfg.digest(),
            shards=[],
            counts=BuildCounts(),
            inputs=inputs,
        )
    )
    store.put_bytes(latest_manifest_key(cfg.prefix), manifest.to_json())
    return manifest


@pytest.mark.parametrize("relative", [True, False], ids=["uris-relative", "uris-absolute"])
def test_first_tick_requests_nothing_when_the_latest_manifest_read_exactly_these_files(
    project: Project, seaweed: S3Settings, relative: bool
) -> None:
    project.write("a.jsonl", "a\n")
    project.write("b.jsonl", "bb\n")
    root = project.root.resolve() if relative else None
    manifest = publish_manifest_of(project, seaweed, "a.jsonl", "b.jsonl", root=root)

    first = project.tick(None)
    project.write("c.jsonl", "ccc\n")
    second = project.tick(first.cursor)

    assert first.run_requests == []
    assert f"unchanged since build {manifest.build_id}" in str(first.skip_reason.skip_message)  # type: ignore[union-attr]
    assert len(known(first)) == 2
    assert len(second.run_requests) == 1
    assert second.run_requests[0].tags["dataset_assets/changes"] == "added c.jsonl"


def test_first_tick_builds_when_the_latest_manifest_read_other_files(
    project: Project, seaweed: S3Settings
) -> None:
    project.write("a.jsonl", "a\n")
    project.write("b.jsonl", "bb\n")
    publish_manifest_of(project, seaweed, "a.jsonl")

    first = project.tick(None)

    assert len(first.run_requests) == 1


def test_first_tick_builds_when_a_file_the_latest_manifest_read_is_gone(
    tmp_path: Path, seaweed: S3Settings
) -> None:
    project = Project(tmp_path, seaweed, on_removal="rebuild")
    project.write("a.jsonl", "a\n")
    gone = project.write("b.jsonl", "bb\n")
    publish_manifest_of(project, seaweed, "a.jsonl", "b.jsonl")
    gone.unlink()

    first = project.tick(None)

    assert len(first.run_requests) == 1
