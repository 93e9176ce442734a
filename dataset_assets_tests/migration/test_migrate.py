"""Migration of local dataset files against a real SeaweedFS: pipeline, CLI and Dagster asset."""

import hashlib
import os
from pathlib import Path

import dagster as dg
import pytest
import typer
from typer.testing import CliRunner

from dataset_assets.cli.migrate import migrate
from dataset_assets.core.errors import MigrationError, VerificationError
from dataset_assets.core.migration import discover, read_ledger
from dataset_assets.defs.migration import (
    LOCAL_FILES,
    MIGRATION_PARTITIONS,
    build_defs,
    discover_migration_files,
    migrated_file,
)
from dataset_assets.pipeline.migrate import (
    FileChangedError,
    make_migration_publisher,
    migrate_all,
    migrate_file,
)
from dataset_assets_tests.faults import FaultProxy
from dataset_assets_tests.migration.conftest import KEPT, MIGRATED, MigrationProject

cli = typer.Typer()
cli.command()(migrate)


def run_cli(project: MigrationProject, *args: str, endpoint_url: str | None = None):  # noqa: ANN201
    # Wide enough that rich never wraps a table cell across lines (assertions read whole names).
    env = {**project.env(endpoint_url), "COLUMNS": "300"}
    return CliRunner().invoke(cli, ["--config", str(project.config_path), *args], env=env)


def s3_keys(project: MigrationProject) -> list[str]:
    return sorted(info.key for info in project.store.list(""))


def materialize(project: MigrationProject, key: str, instance: dg.DagsterInstance, **kw: object):  # noqa: ANN201
    if key not in instance.get_dynamic_partitions(MIGRATION_PARTITIONS):
        instance.add_dynamic_partitions(MIGRATION_PARTITIONS, [key])
    return dg.materialize(
        [migrated_file],
        partition_key=key,
        instance=instance,
        resources=project.resources(**kw),  # type: ignore[arg-type]
        raise_on_error=False,
    )


def retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(1 for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY")


# -- discovery --------------------------------------------------------------------------------


def test_discovery_finds_dataset_files_and_excludes_the_rest(project: MigrationProject) -> None:
    found = discover(project.cfg)

    assert found.partition_keys() == sorted(MIGRATED)
    assert found.refused == () and found.waiting == ()


def test_file_still_being_written_waits(project: MigrationProject) -> None:
    fresh = project.write("generated/fresh.jsonl", b"{}\n", mtime=None)

    found = discover(project.cfg)

    assert "generated/fresh.jsonl" not in found.partition_keys()
    assert found.waiting == (str(fresh),)


def test_symlink_escaping_the_root_is_refused(project: MigrationProject, tmp_path: Path) -> None:
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes(b"secret\n")
    (project.root / "data" / "link.jsonl").symlink_to(outside)
    (project.root / "data" / "linked_dir").symlink_to(tmp_path, target_is_directory=True)

    found = discover(project.cfg)
    with pytest.raises(MigrationError, match="symlink"):
        migrate_file(
            project.cfg,
            project.store,
            "link.jsonl",
            publisher=make_migration_publisher(project.cfg, project.store),
        )
    result = run_cli(project, "--dry-run")

    reasons = {Path(r.path).name: r.reason for r in found.refused}
    assert set(reasons) == {"link.jsonl", "linked_dir"}
    assert "escapes the migration root" in reasons["link.jsonl"]
    assert "link.jsonl" not in found.partition_keys()
    assert result.exit_code == 1 and "escapes the migration root" in result.output
    assert outside.read_bytes() == b"secret\n"
    assert s3_keys(project) == []


def test_relative_path_escaping_the_root_is_refused(project: MigrationProject) -> None:
    with pytest.raises(MigrationError, match="escapes the data root"):
        migrate_file(
            project.cfg,
            project.store,
            "../pkgdata/big.bin",
            publisher=make_migration_publisher(project.cfg, project.store),
        )


# -- pipeline / CLI ---------------------------------------------------------------------------


def test_dry_run_lists_exactly_what_would_move_and_moves_nothing(project: MigrationProject) -> None:
    report = migrate_all(project.cfg, None, dry_run=True)
    result = run_cli(project, "--dry-run")

    assert [c.relative_path for c in report.discovery.candidates] == sorted(MIGRATED)
    assert report.outcomes == [] and report.ok
    assert result.exit_code == 0, result.output
    for relative in MIGRATED:
        assert relative in result.output
        assert project.local(relative).exists()
    assert "Would migrate 3 files" in result.output
    assert s3_keys(project) == []
    assert not project.cfg.migration.ledger_path.exists()


def test_migration_leaves_every_file_verified_in_s3_and_none_locally(
    project: MigrationProject,
) -> None:
    result = run_cli(project)

    assert result.exit_code == 0, result.output
    assert s3_keys(project) == sorted(project.key(r) for r in MIGRATED)
    for relative, content in MIGRATED.items():
        project.assert_migrated(relative, content)
    for path in KEPT:
        assert (project.root / path).exists(), path
    ledger = read_ledger(project.cfg.migration.ledger_path)
    assert set(ledger) == set(MIGRATED)
    entry = ledger["old/2023/b.jsonl"]
    assert entry.uri == f"s3://{project.store.bucket}/{project.key('old/2023/b.jsonl')}"
    assert entry.sha256 == hashlib.sha256(MIGRATED["old/2023/b.jsonl"]).hexdigest()
    assert entry.local_path == str(project.local("old/2023/b.jsonl"))
    assert "Migration summary" in result.output


def test_failing_upload_keeps_that_file_local_and_exits_non_zero(
    project: MigrationProject,
) -> None:
    with FaultProxy(project.store.settings.endpoint_url or "") as proxy:
        proxy.only_path("b.jsonl")
        proxy.http_500(times=None)
        result = run_cli(project, endpoint_url=proxy.endpoint_url)

    assert result.exit_code == 1, result.output
    assert proxy.fired["http_500"] >= 1
    assert project.local("old/2023/b.jsonl").read_bytes() == MIGRATED["old/2023/b.jsonl"]
    assert project.key("old/2023/b.jsonl") not in s3_keys(project)
    project.assert_migrated("generated/a.jsonl", MIGRATED["generated/a.jsonl"])
    assert "old/2023/b.jsonl" not in read_ledger(project.cfg.migration.ledger_path)


def test_rerun_is_a_no_op(project: MigrationProject) -> None:
    first = migrate_all(project.cfg, lambda: project.store)
    etags = {i.key: i.etag for i in project.store.list("")}

    again = migrate_all(project.cfg, lambda: project.store)
    one = migrate_file(
        project.cfg,
        project.store,
        "old/2023/b.jsonl",
        publisher=make_migration_publisher(project.cfg, project.store),
    )

    assert first.ok and {o.status for o in first.outcomes} == {"uploaded"}
    assert again.ok and again.outcomes == [] and again.failures == []
    assert one.status == "already_migrated"
    assert {i.key: i.etag for i in project.store.list("")} == etags


def test_file_changed_since_discovery_is_published_as_its_new_bytes(
    project: MigrationProject,
) -> None:
    found = discover(project.cfg)
    new_bytes = b'{"messages": [{"role": "user", "content": "rewritten"}]}\n' * 7
    project.write("generated/a.jsonl", new_bytes)

    report = migrate_all(project.cfg, lambda: project.store, discovery=found)

    assert report.ok
    project.assert_migrated("generated/a.jsonl", new_bytes)
    entry = read_ledger(project.cfg.migration.ledger_path)["generated/a.jsonl"]
    assert entry.sha256 == hashlib.sha256(new_bytes).hexdigest() and entry.size == len(new_bytes)


def test_different_bytes_already_at_the_key_are_never_overwritten(
    project: MigrationProject,
) -> None:
    project.store.put_bytes(project.key("generated/a.jsonl"), b"someone else's bytes\n")

    with pytest.raises(VerificationError):
        migrate_file(
            project.cfg,
            project.store,
            "generated/a.jsonl",
            publisher=make_migration_publisher(project.cfg, project.store),
        )

    assert project.local("generated/a.jsonl").read_bytes() == MIGRATED["generated/a.jsonl"]
    assert project.store.get_bytes(project.key("generated/a.jsonl")) == b"someone else's bytes\n"


def test_gone_locally_and_changed_in_s3_fails(project: MigrationProject) -> None:
    migrate_all(project.cfg, lambda: project.store)
    project.store.put_bytes(project.key("generated/a.jsonl"), b"replaced\n")

    with pytest.raises(MigrationError, match="S3 now holds"):
        migrate_file(
            project.cfg,
            project.store,
            "generated/a.jsonl",
            publisher=make_migration_publisher(project.cfg, project.store),
        )


# -- Dagster ----------------------------------------------------------------------------------


def test_discovery_sensor_registers_one_partition_per_file(project: MigrationProject) -> None:
    instance = dg.DagsterInstance.ephemeral()
    context = dg.build_sensor_context(instance=instance, resources=project.resources())

    first = discover_migration_files(context)
    assert isinstance(first, dg.SensorResult)
    (request,) = first.dynamic_partitions_requests or []
    assert isinstance(request, dg.AddDynamicPartitionsRequest)
    assert sorted(request.partition_keys) == sorted(MIGRATED)
    instance.add_dynamic_partitions(MIGRATION_PARTITIONS, list(request.partition_keys))

    second = discover_migration_files(
        dg.build_sensor_context(instance=instance, resources=project.resources())
    )
    assert isinstance(second, dg.SensorResult)
    assert not second.dynamic_partitions_requests
    assert second.skip_reason is not None and "nothing new" in str(second.skip_reason.skip_message)


def test_discovery_sensor_observes_the_local_files_it_offers_when_they_change(
    project: MigrationProject,
) -> None:
    instance = dg.DagsterInstance.ephemeral()

    def tick(cursor: str | None) -> dg.SensorResult:
        context = dg.build_sensor_context(
            cursor=cursor, instance=instance, resources=project.resources()
        )
        result = discover_migration_files(context)
        assert isinstance(result, dg.SensorResult)
        return result

    first = tick(None)
    unchanged = tick(first.cursor)
    project.local("generated/a.jsonl").unlink()  # e.g. migrated meanwhile
    after = tick(unchanged.cursor)

    (seen,) = first.asset_events
    assert isinstance(seen, dg.AssetObservation) and seen.asset_key == LOCAL_FILES
    rows = [r.data for r in seen.metadata["file_list"].value.records]  # type: ignore[attr-defined]
    assert sorted(r["partition"] for r in rows) == sorted(MIGRATED)
    assert seen.metadata["files"].value == len(MIGRATED)
    assert seen.metadata["bytes"].value == sum(len(v) for v in MIGRATED.values())
    assert "data/current/live.jsonl" not in str(rows)  # a family input is not offered
    assert unchanged.asset_events == []
    (again,) = after.asset_events
    assert again.metadata["files"].value == len(MIGRATED) - 1  # type: ignore[union-attr]


def test_asset_migrates_one_partition_and_rerun_is_a_no_op(project: MigrationProject) -> None:
    instance = dg.DagsterInstance.ephemeral()

    first = materialize(project, "old/2023/b.jsonl", instance)
    second = materialize(project, "old/2023/b.jsonl", instance)

    assert first.success and second.success
    project.assert_migrated("old/2023/b.jsonl", MIGRATED["old/2023/b.jsonl"])
    meta = first.asset_materializations_for_node("migrated_file")[0].metadata
    assert meta["dagster/uri"].value == f"s3://{project.store.bucket}/" + project.key(
        "old/2023/b.jsonl"
    )
    assert meta["sha256"].value == hashlib.sha256(MIGRATED["old/2023/b.jsonl"]).hexdigest()
    assert meta["bytes"].value == len(MIGRATED["old/2023/b.jsonl"])
    assert meta["status"].value == "uploaded"
    rerun = second.asset_materializations_for_node("migrated_file")[0].metadata
    assert rerun["status"].value == "already_migrated"
    assert project.local("generated/a.jsonl").exists()  # only the one partition moved


def test_asset_run_fails_and_keeps_the_file_when_the_upload_fails(
    project: MigrationProject,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    with FaultProxy(project.store.settings.endpoint_url or "") as proxy:
        proxy.only_path("a.jsonl")
        proxy.http_500(times=None)
        result = materialize(
            project, "generated/a.jsonl", instance, endpoint_url=proxy.endpoint_url
        )

    assert not result.success
    assert retries(result) == 2  # the RetryPolicy tried again before failing the run
    assert project.local("generated/a.jsonl").read_bytes() == MIGRATED["generated/a.jsonl"]
    assert project.key("generated/a.jsonl") not in s3_keys(project)


def test_asset_refuses_a_symlink_without_retrying(
    project: MigrationProject, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes(b"secret\n")
    (project.root / "data" / "link.jsonl").symlink_to(outside)
    instance = dg.DagsterInstance.ephemeral()

    result = materialize(project, "link.jsonl", instance)

    assert not result.success
    assert retries(result) == 0
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "symlink" in str(failure.event_specific_data)
    assert os.path.islink(project.root / "data" / "link.jsonl") and outside.exists()


def test_migration_definitions_validate() -> None:
    defs = dg.Definitions.merge(build_defs())
    spec = defs.get_assets_def("migrated_file")
    assert spec.backfill_policy == dg.BackfillPolicy.multi_run(1)
    assert spec.op.pool == "s3_uploads"
    assert set(spec.dependency_keys) == {LOCAL_FILES}  # lineage: what it migrates


def test_a_file_appended_to_during_its_upload_is_kept_and_the_stale_copy_removed(
    project: MigrationProject,
) -> None:
    """The writer appends while the (slow, readback-verified) upload runs: nothing is lost."""
    path = project.local("generated/a.jsonl")

    class AppendingPublisher:
        def __init__(self, inner: object) -> None:
            self.inner = inner

        def publish(self, staged: object) -> object:
            result = self.inner.publish(staged)  # type: ignore[attr-defined]
            with path.open("ab") as fh:
                fh.write(b'{"messages": []}\n')
            return result

    publisher = AppendingPublisher(make_migration_publisher(project.cfg, project.store))
    with pytest.raises(FileChangedError):
        migrate_file(project.cfg, project.store, "generated/a.jsonl", publisher=publisher)  # type: ignore[arg-type]
    assert path.read_bytes() == MIGRATED["generated/a.jsonl"] + b'{"messages": []}\n'
    assert not project.store.exists(project.key("generated/a.jsonl"))
    outcome = migrate_file(
        project.cfg,
        project.store,
        "generated/a.jsonl",
        publisher=make_migration_publisher(project.cfg, project.store),
    )
    assert outcome.status == "uploaded" and not path.exists()
    assert project.store.get_bytes(project.key("generated/a.jsonl")).endswith(b'{"messages": []}\n')
