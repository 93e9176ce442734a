"""End to end with real Dagster runs against a real SeaweedFS server."""

import uuid
from pathlib import Path

import dagster as dg
import orjson
import pytest

from dataset_assets.core.hashing import digest_stream
from dataset_assets.core.layout import latest_manifest_key
from dataset_assets.core.manifest import Manifest
from dataset_assets.defs.assets import COMPILE_ASSETS
from dataset_assets.pipeline.export import export_problems
from dataset_assets.storage import S3ObjectStore, S3Settings
from dataset_assets_tests.builds import (
    config_and_store,
    dagster_resources,
    object_lines,
    write_build_config,
)


def _materialize(config_path: Path, settings: S3Settings) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        COMPILE_ASSETS,
        resources=dagster_resources(config_path, settings),
        instance=dg.DagsterInstance.ephemeral(),
    )


def _object_sha256(store: S3ObjectStore, key: str) -> tuple[int, str]:
    import io

    data = store.get_bytes(key)
    digest = digest_stream(io.BytesIO(data))
    return digest.size, digest.sha256


@pytest.fixture
def built(
    tmp_path: Path, seaweed: S3Settings
) -> tuple[Path, S3ObjectStore, dg.ExecuteInProcessResult]:
    config_path = write_build_config(tmp_path, f"e2e-{uuid.uuid4().hex[:12]}")
    cfg, store = config_and_store(config_path, seaweed)
    result = _materialize(config_path, seaweed)
    return config_path, store, result


def test_materialize_publishes_a_verified_dataset_and_leaves_no_local_copies(built) -> None:
    config_path, store, result = built
    assert result.success
    for check in result.get_asset_check_evaluations():
        assert check.passed, check.check_name
    tmp = config_path.parent
    local_manifest = tmp / ".local" / "manifest.json"
    manifest = Manifest.from_json(local_manifest.read_bytes())
    assert store.get_bytes(latest_manifest_key(manifest.prefix)) == local_manifest.read_bytes()
    assert store.exists(f"{manifest.prefix}/manifests/{manifest.build_id}.json")
    # every step ran in this process (in_process executor): stage 1's intermediates stayed in
    # the machine's cache, none was uploaded
    assert not list(store.list(f"{manifest.prefix}/_cache/partitions/"))
    card = store.get_bytes(f"{manifest.prefix}/README.md").decode()
    assert card.startswith("---\n") and "configs:" in card and manifest.build_id in card

    journal_keys = [o.key for o in store.list(f"{manifest.prefix}/builds/{manifest.build_id}/")]
    assert len(journal_keys) == 1 and "journal-" in journal_keys[0]
    journal = [orjson.loads(line) for line in store.get_bytes(journal_keys[0]).splitlines()]
    verified = {e["key"] for e in journal if e["step"] == "verify" and e["outcome"] == "ok"}
    assert {s.key for s in manifest.shards} <= verified
    assert all(e["run_id"] == result.run_id for e in journal)

    assert manifest.export is not None
    assert export_problems(store, manifest, readback=True) == []
    files = [*manifest.shards, manifest.quarantine, manifest.dedup]
    for entry in files:
        assert entry is not None
        assert _object_sha256(store, entry.key) == (entry.bytes, entry.sha256), entry.key
    assert {s.split for s in manifest.shards} == {"train", "val", "test"}
    assert len(manifest.split_shards("train")) > 1  # 64 KiB shards: several per split

    staging = tmp / ".local" / "staging"
    assert not list((staging / "runs").glob("*"))  # work folders, staged shards: all gone
    # what stays is this machine's cache: the build's partition intermediates, the shared LSH
    # keys the next build's dedup stage may start from, each partition's provenance
    assert {p.relative_to(staging).parts[:2] for p in staging.rglob("*") if p.is_file()} == {
        ("cache", "partitions"),
        ("cache", "clustering"),
        ("cache", "provenance"),
    }

    c = manifest.counts
    assert (
        c.input_records
        == c.published_records + c.exact_duplicates + c.near_duplicates + c.quarantined
    )
    assert sum(s.records for s in manifest.shards) == c.published_records == manifest.export.records
    # the sample holds 3 bad lines per family and ≥ 1 duplicate per family
    assert c.quarantined == 9
    assert c.exact_duplicates >= 3
    assert set(c.quarantined_by_reason) == {"malformed_json", "unknown_shape", "empty_turn"}
    # holdout family (daily_coaching) only in test
    for shard in manifest.shards:
        if shard.split != "test":
            assert "daily_coaching" not in shard.families

    quarantine_lines = store.get_bytes(manifest.quarantine.key).splitlines()
    entries = [orjson.loads(line) for line in quarantine_lines]
    assert len(entries) == 9
    assert all(e["source"].endswith(".jsonl") and e["line"] > 0 and e["reason"] for e in entries)
    # published paths are relative to the config file's folder: no host path leaks
    assert all(e["source"].startswith("data/generated/") for e in entries)
    assert all(i.uri.startswith("data/generated/") for i in manifest.inputs)
    first = orjson.loads(object_lines(store, manifest.shards[0])[0])
    assert first["metadata"]["source"].startswith("data/generated/")

    # the export is the shards' bytes, in manifest order (composed in S3, never re-uploaded)
    export = store.get_bytes(manifest.export.key)
    assert export == b"".join(store.get_bytes(s.key) for s in manifest.shards)


def test_second_materialization_uploads_nothing_and_keeps_shard_keys(built, seaweed) -> None:
    config_path, store, first = built
    first_manifest = Manifest.from_json(
        (config_path.parent / ".local" / "manifest.json").read_bytes()
    )
    second = _materialize(config_path, seaweed)
    assert second.success
    mats = second.asset_materializations_for_node("split_shards")
    assert len(mats) == 3
    for mat in mats:
        assert mat.metadata["written_shards"].value == 0
        assert mat.metadata["uploaded_shards"].value == 0
    second_manifest = Manifest.from_json(
        (config_path.parent / ".local" / "manifest.json").read_bytes()
    )
    assert [s.key for s in second_manifest.shards] == [s.key for s in first_manifest.shards]
    assert second_manifest.build_id == first_manifest.build_id


def test_invalid_config_fails_before_any_byte_is_written(tmp_path, seaweed) -> None:
    config_path = write_build_config(tmp_path, f"bad-{uuid.uuid4().hex[:8]}", splits={"train": 0.5})
    result = dg.materialize(
        COMPILE_ASSETS,
        resources=dagster_resources(config_path, seaweed),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert "train + val + test must be 1.0" in failure.event_specific_data.error.cause.message
    assert not (tmp_path / ".local").exists()


def test_rebuild_with_new_data_replaces_export_and_latest_manifest_keeps_old_build(
    built, seaweed
) -> None:
    config_path, store, _ = built
    local = config_path.parent / ".local" / "manifest.json"
    first = Manifest.from_json(local.read_bytes())
    extra = config_path.parent / "data" / "generated" / "coding_help-extra.jsonl"
    extra.write_bytes(
        b'{"messages": [{"role": "user", "content": "a brand new question"},'
        b' {"role": "assistant", "content": "a brand new answer"}]}\n'
    )
    assert _materialize(config_path, seaweed).success
    second = Manifest.from_json(local.read_bytes())
    assert second.build_id != first.build_id
    assert second.counts.published_records == first.counts.published_records + 1
    assert Manifest.from_json(store.get_bytes(latest_manifest_key(second.prefix))) == second
    old = store.get_bytes(f"{first.prefix}/manifests/{first.build_id}.json")
    assert Manifest.from_json(old) == first
    assert second.export is not None and first.export is not None
    assert second.export.key != first.export.key
    assert export_problems(store, second, readback=True) == []
    # the fixed export name now holds the committed build's export
    fixed = store.get_bytes(f"{second.prefix}/compiled/final_training_dataset.jsonl.zst")
    assert fixed == store.get_bytes(second.export.key)


def test_materializing_only_the_manifest_commits_from_the_latest_upstream_run(
    tmp_path, seaweed
) -> None:
    config_path = write_build_config(tmp_path, f"sel-{uuid.uuid4().hex[:10]}")
    _, store = config_and_store(config_path, seaweed)
    resources = dagster_resources(config_path, seaweed)
    instance = dg.DagsterInstance.ephemeral()
    full = dg.materialize(COMPILE_ASSETS, resources=resources, instance=instance)
    assert full.success
    first = Manifest.from_json((tmp_path / ".local" / "manifest.json").read_bytes())
    # what a UI "Materialize" of the manifest alone does: inputs from the latest materializations
    only = dg.materialize(
        COMPILE_ASSETS, selection=["manifest"], resources=resources, instance=instance
    )
    assert only.success
    assert only.asset_materializations_for_node("manifest")
    again = Manifest.from_json((tmp_path / ".local" / "manifest.json").read_bytes())
    assert again == first
    assert Manifest.from_json(store.get_bytes(f"{first.prefix}/manifest.json")) == first


def test_materialize_with_the_export_off_commits_a_manifest_without_export(
    tmp_path: Path, seaweed
) -> None:
    config_path = write_build_config(
        tmp_path, f"noexp-{uuid.uuid4().hex[:12]}", compiled_export=False
    )
    _, store = config_and_store(config_path, seaweed)
    result = _materialize(config_path, seaweed)
    assert result.success
    local = Manifest.from_json((tmp_path / ".local" / "manifest.json").read_bytes())
    assert local.export is None and local.shards
    assert not list(store.list(f"{local.prefix}/compiled/"))
    export_meta = result.asset_materializations_for_node("compiled_export")[0].metadata
    assert "compiled_export: false" in str(export_meta["export"].value)
