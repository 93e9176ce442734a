"""Migration never takes a build's input away, and never dies on a file name that is not UTF-8.

Files that a source family reads (the same listing the compile uses) are kept and named "in use"
by discovery, the discovery sensor, ``migrated_file`` and ``dataset-assets migrate``; only
``migration.allow_active_sources`` lets them move, and then the user is told which ``s3://``
folder the family must read instead.
"""

import os
import re
from pathlib import Path

import dagster as dg
import pytest

from dataset_assets.core.config import DatasetConfig, MigrationOptions, load_config
from dataset_assets.core.migration import SourceInUseError, discover
from dataset_assets.defs.migration import MIGRATION_PARTITIONS, discover_migration_files
from dataset_assets.pipeline.migrate import (
    make_migration_publisher,
    migrate_all,
    migrate_file,
    source_moved_note,
)
from dataset_assets.pipeline.sources import list_sources
from dataset_assets.storage import S3ObjectStore
from dataset_assets_tests.builds import write_build_config
from dataset_assets_tests.migration.conftest import (
    FAMILY,
    LIVE,
    MIGRATED,
    OLD,
    PREFIX,
    MigrationProject,
)
from dataset_assets_tests.migration.test_migrate import materialize, retries, run_cli, s3_keys

LIVE_KEY = "current/live.jsonl"


def flat(output: str) -> str:
    """CLI output without whitespace and table borders (rich wraps long cells)."""
    return re.sub(r"[\s│]", "", output)


BAD_NAME = os.fsdecode(b"bad-\xff\xfe.jsonl")  # not valid UTF-8
BAD_SHOWN = "bad-\\xff\\xfe.jsonl"  # how every message must show it


def allowing(cfg: DatasetConfig) -> DatasetConfig:
    """The config with ``migration.allow_active_sources: true``."""
    migration = cfg.migration.model_copy(update={"allow_active_sources": True})
    return cfg.model_copy(update={"migration": migration})


def live_path(project: MigrationProject) -> Path:
    return project.root / "data" / LIVE_KEY


def expected_hint(project: MigrationProject) -> str:
    return (
        f"in use by family {FAMILY}; set migration.allow_active_sources: true and point the "
        f"family at s3://{project.store.bucket}/{PREFIX}/current/ to migrate it"
    )


# -- the default project: nothing the build reads is offered -----------------------------------


def test_default_project_offers_none_of_the_generated_sources(
    tmp_path: Path, seaweed_store: S3ObjectStore
) -> None:
    """`make run`'s layout: families read data/generated/*.jsonl, the data root is data/."""
    cfg = load_config(write_build_config(tmp_path, seaweed_store.bucket, records_per_family=5))
    sources = sorted(p.name for p in (tmp_path / "data" / "generated").glob("*.jsonl"))

    found = discover(cfg)

    assert sources, "the sample wrote no sources"
    assert found.candidates == ()
    assert sorted(Path(u.path).name for u in found.in_use) == sources
    assert all("in use by family" in u.reason for u in found.in_use)


def test_discovery_keeps_a_family_input_and_says_how_to_migrate_it(
    project: MigrationProject,
) -> None:
    found = discover(project.cfg)

    assert LIVE_KEY not in found.partition_keys()
    assert found.partition_keys() == sorted(MIGRATED)
    (entry,) = found.in_use
    assert entry.relative_path == LIVE_KEY and entry.path == str(live_path(project))
    assert entry.reason == expected_hint(project)


def test_cli_keeps_the_family_input_and_migrates_the_rest(project: MigrationProject) -> None:
    result = run_cli(project)

    assert result.exit_code == 0, result.output
    assert live_path(project).read_bytes() == LIVE
    assert project.key(LIVE_KEY) not in s3_keys(project)
    for relative, content in MIGRATED.items():
        project.assert_migrated(relative, content)
    assert "inusebyfamilylive_chats" in flat(result.output)
    assert "migration.allow_active_sources:true" in flat(result.output)


def test_cli_dry_run_lists_the_family_input_as_kept(project: MigrationProject) -> None:
    result = run_cli(project, "--dry-run")

    assert result.exit_code == 0, result.output
    assert "Would migrate 3 files" in result.output
    assert "Kept: in use by a source family" in result.output
    assert live_path(project).exists()


def test_migrate_file_refuses_a_family_input(project: MigrationProject) -> None:
    with pytest.raises(SourceInUseError) as info:
        migrate_file(
            project.cfg,
            project.store,
            LIVE_KEY,
            publisher=make_migration_publisher(project.cfg, project.store),
        )

    assert expected_hint(project) in str(info.value)
    assert live_path(project).read_bytes() == LIVE
    assert s3_keys(project) == []


def test_asset_refuses_a_family_input_without_retrying(project: MigrationProject) -> None:
    instance = dg.DagsterInstance.ephemeral()

    result = materialize(project, LIVE_KEY, instance)

    assert not result.success
    assert retries(result) == 0
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert expected_hint(project) in str(failure.event_specific_data)
    assert live_path(project).read_bytes() == LIVE
    assert project.key(LIVE_KEY) not in s3_keys(project)


def test_discovery_sensor_never_registers_a_family_input_and_drops_an_old_one(
    project: MigrationProject,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(MIGRATION_PARTITIONS, [LIVE_KEY])  # registered long ago

    result = discover_migration_files(
        dg.build_sensor_context(instance=instance, resources=project.resources())
    )

    assert isinstance(result, dg.SensorResult)
    requests = result.dynamic_partitions_requests or []
    added = [
        k
        for r in requests
        if isinstance(r, dg.AddDynamicPartitionsRequest)
        for k in r.partition_keys
    ]
    deleted = [
        k
        for r in requests
        if isinstance(r, dg.DeleteDynamicPartitionsRequest)
        for k in r.partition_keys
    ]
    assert sorted(added) == sorted(MIGRATED)
    assert deleted == [LIVE_KEY]


# -- allowed explicitly: migrated, and the family is told where to read it ---------------------


def test_allowed_family_input_is_migrated_and_the_family_can_read_the_s3_copy(
    project: MigrationProject,
) -> None:
    cfg = allowing(project.cfg)

    found = discover(cfg)
    report = migrate_all(cfg, lambda: project.store)

    assert LIVE_KEY in found.partition_keys() and found.in_use == ()
    assert report.ok
    project.assert_migrated(LIVE_KEY, LIVE)
    (outcome,) = [o for o in report.outcomes if o.relative_path == LIVE_KEY]
    assert outcome.read_by == (FAMILY,)
    folder = f"s3://{project.store.bucket}/{PREFIX}/current/"
    note = source_moved_note(cfg, outcome)
    assert note is not None and folder in note and FAMILY in note
    # following the note: the family reads the migrated copy from S3
    family = cfg.family(FAMILY).model_copy(update={"paths": [folder]})
    assert [ref.uri for ref in list_sources(family, project.store)] == [
        f"s3://{project.store.bucket}/{PREFIX}/{LIVE_KEY}"
    ]


@pytest.mark.skipif(
    "allow_active_sources" not in MigrationOptions.model_fields,
    reason="migration.allow_active_sources is not in the config model yet",
)
def test_allow_active_sources_from_the_config_file(project: MigrationProject) -> None:
    text = project.config_path.read_text()
    project.config_path.write_text(
        text.replace('"stable_seconds":5', '"stable_seconds":5,"allow_active_sources":true')
    )

    result = run_cli(project)

    assert result.exit_code == 0, result.output
    project.assert_migrated(LIVE_KEY, LIVE)
    assert f"s3://{project.store.bucket}/{PREFIX}/current/" in flat(result.output)


# -- file names that are not UTF-8 ---------------------------------------------------------------


def write_bad_name(project: MigrationProject) -> Path:
    path = project.root / "data" / "old" / BAD_NAME
    path.write_bytes(b'{"messages": []}\n')
    os.utime(path, (OLD, OLD))
    return path


def test_discovery_refuses_a_name_that_is_not_utf8(project: MigrationProject) -> None:
    bad = write_bad_name(project)

    found = discover(project.cfg)

    assert found.partition_keys() == sorted(MIGRATED)
    (refusal,) = found.refused
    assert refusal.path.endswith("old/" + BAD_SHOWN)
    assert "not valid UTF-8" in refusal.reason
    assert refusal.message().encode("utf-8")  # printable, serializable
    assert bad.exists()


def test_cli_refuses_a_name_that_is_not_utf8_and_migrates_the_rest(
    project: MigrationProject,
) -> None:
    bad = write_bad_name(project)

    result = run_cli(project)

    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    assert BAD_SHOWN in flat(result.output) and "notvalidUTF-8" in flat(result.output)
    for relative, content in MIGRATED.items():
        project.assert_migrated(relative, content)
    assert bad.exists()


def test_discovery_sensor_survives_a_name_that_is_not_utf8(project: MigrationProject) -> None:
    write_bad_name(project)
    instance = dg.DagsterInstance.ephemeral()

    result = discover_migration_files(
        dg.build_sensor_context(instance=instance, resources=project.resources())
    )

    assert isinstance(result, dg.SensorResult)
    (request,) = result.dynamic_partitions_requests or []
    assert isinstance(request, dg.AddDynamicPartitionsRequest)
    assert sorted(request.partition_keys) == sorted(MIGRATED)
