"""gc never deletes what is used: the latest pointer at deletion time, kept manifests, manifests
inside the grace period (a running build, a training job pinned to an older build)."""

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from dataset_assets.cli import app
from dataset_assets.core.errors import ManifestError
from dataset_assets.core.layout import (
    build_manifest_key,
    build_sidecar_key,
    export_key,
    latest_manifest_key,
    lease_key,
)
from dataset_assets.core.manifest import Manifest
from dataset_assets.pipeline import build_dataset
from dataset_assets.pipeline.build import Build
from dataset_assets.pipeline.commit import commit_manifest, read_pointer
from dataset_assets.pipeline.lease import BuildLease
from dataset_assets.pipeline.maintenance import collect_garbage, plan_gc, verify_build
from dataset_assets.storage import S3ObjectStore, S3Settings
from dataset_assets_tests.builds import config_and_store, write_build_config
from dataset_assets_tests.pipeline.test_commit import publish_shards
from dataset_assets_tests.pipeline.test_maintenance import _env as _cli_env

PREFIX = "final_dataset"
ZERO = timedelta(0)
L1, L2, L3 = b'{"src": "kept"}\n', b'{"src": "dropped by B"}\n', b'{"src": "only in B"}\n'


@pytest.fixture
def gc_config(tmp_path: Path, seaweed: S3Settings, monkeypatch: pytest.MonkeyPatch) -> Path:
    bucket = f"gc-{uuid.uuid4().hex[:12]}"
    config = tmp_path / "dataset.yaml"
    config.write_text(
        f"bucket: {bucket}\nfamilies:\n  - name: a\n    paths: [data/*.jsonl]\n"
        "staging_dir: .local/staging\nmanifest_path: .local/manifest.json\n"
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweed.endpoint_url or "")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key_id or "")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_access_key or "")
    return config


def bucket_store(config: Path, settings: S3Settings) -> S3ObjectStore:
    bucket = config.read_text().split("\n", 1)[0].removeprefix("bucket: ")
    store = S3ObjectStore(bucket, settings)
    store.ensure_bucket()
    return store


def commit(store: S3ObjectStore, lines: list[bytes], tmp: Path) -> Manifest:
    start = read_pointer(store, PREFIX)
    manifest = publish_shards(store, PREFIX, lines)
    commit_manifest(store, manifest, tmp / "manifest.json", start)
    time.sleep(1.1)  # S3 LastModified has 1 s resolution: keep the builds ordered
    return manifest


def gc_cli(config: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["gc", "--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result.output


def _put_manifest_with_cache(store: S3ObjectStore, manifest: Manifest, cache: list[str]) -> None:
    body = orjson.loads(manifest.to_json())
    body["cache_keys"] = cache
    data = orjson.dumps(body)
    store.put_bytes(build_manifest_key(PREFIX, manifest.build_id), data)
    store.put_bytes(latest_manifest_key(PREFIX), data)


def test_gc_during_a_build_never_deletes_what_its_manifest_names(
    gc_config: Path, seaweed: S3Settings, tmp_path: Path
) -> None:
    store = bucket_store(gc_config, seaweed)
    commit(store, [L1, L2], tmp_path)  # build A
    commit(store, [L1, L3], tmp_path)  # build B without A's second source
    # build C starts with the source restored: its shards are A's (identical, not re-uploaded,
    # old LastModified); gc runs before C's manifest is committed
    c_start = read_pointer(store, PREFIX)
    c = publish_shards(store, PREFIX, [L1, L2])

    gc_cli(gc_config, "--keep", "1", "--min-age-hours", "0", "--apply")
    commit_manifest(store, c, tmp_path / "c.json", c_start)

    assert read_pointer(store, PREFIX).build_id == c.build_id
    assert verify_build(store, c, readback=True) == []


def test_gc_rereads_the_pointer_before_deleting(store: S3ObjectStore, tmp_path: Path) -> None:
    commit(store, [L1, L2], tmp_path)  # A
    commit(store, [L1, L3], tmp_path)  # B
    plan = plan_gc(store, PREFIX, 1, grace=ZERO, min_age=ZERO)
    reused = [k for k in plan.delete_keys if "/train/" in k]
    assert reused  # A's second shard is planned for deletion
    c = commit(store, [L1, L2], tmp_path)  # C commits meanwhile, naming that shard again

    result = collect_garbage(store, plan)

    assert verify_build(store, c) == []
    assert set(reused) <= set(result.skipped)


def test_a_pinned_build_is_safe_for_the_grace_period_after_a_newer_commit(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    a = commit(store, [L1, L2], tmp_path)
    b = commit(store, [L1, L3], tmp_path)
    b_committed = store.head(latest_manifest_key(PREFIX)).last_modified
    assert b_committed is not None
    grace = timedelta(hours=24)
    a_only = build_manifest_key(PREFIX, a.build_id)

    # A's own manifest is older than the grace period, but B replaced it less than that ago
    just_inside = b_committed + grace - timedelta(seconds=0.5)
    plan = plan_gc(store, PREFIX, 1, grace=grace, min_age=ZERO, now=just_inside)
    assert a.build_id in plan.kept_builds and a_only not in plan.delete_keys
    collect_garbage(store, plan)
    assert verify_build(store, a) == []

    after = b_committed + grace + timedelta(seconds=2)
    plan = plan_gc(store, PREFIX, 1, grace=grace, min_age=ZERO, now=after)
    assert plan.kept_builds == [b.build_id] and plan.dropped_builds == [a.build_id]
    collect_garbage(store, plan)
    assert not store.exists(a_only)
    assert not store.exists(a.shards[1].key)
    assert verify_build(store, b) == []


def test_objects_gc_does_not_own_are_never_touched(store: S3ObjectStore, tmp_path: Path) -> None:
    old_export = f"{PREFIX}/compiled/final_training_dataset-0123456789ab.jsonl"
    store.put_bytes(old_export, b"{}")
    a = publish_shards(store, PREFIX, [L1])
    _put_manifest_with_cache(store, a, [old_export])  # "compiled/" is now a data folder
    time.sleep(1.1)
    foreign = [
        export_key(PREFIX),
        lease_key(PREFIX),
        f"{PREFIX}/_assets/conversations.json",
        "elsewhere/train/x.jsonl",
    ]
    for key in foreign:
        store.put_bytes(key, b"{}")
    commit(store, [L2], tmp_path)
    plan = plan_gc(store, PREFIX, 1, grace=ZERO, min_age=ZERO)
    assert a.build_id in plan.dropped_builds
    collect_garbage(store, plan)
    assert not store.exists(old_export)
    assert all(store.exists(k) for k in foreign)


def test_a_manifest_too_young_to_delete_keeps_its_data(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    a = commit(store, [L1, L2], tmp_path)
    commit(store, [L3], tmp_path)
    # outside the grace period, but younger than min_age: neither A nor its data may go
    plan = plan_gc(store, PREFIX, 1, grace=ZERO, min_age=timedelta(hours=1))
    assert plan.delete_keys == []
    assert a.build_id in plan.kept_builds


def test_gc_without_grace_during_a_build_makes_its_commit_refuse_not_publish(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    commit(store, [L1, L2], tmp_path)
    b = commit(store, [L1, L3], tmp_path)
    c_start = read_pointer(store, PREFIX)
    c = publish_shards(store, PREFIX, [L1, L2])
    collect_garbage(store, plan_gc(store, PREFIX, 1, grace=ZERO, min_age=ZERO))

    with pytest.raises(ManifestError, match="not committed.*missing") as err:
        commit_manifest(store, c, tmp_path / "c.json", c_start)

    assert c.shards[1].uri in str(err.value)
    assert read_pointer(store, PREFIX).build_id == b.build_id
    assert verify_build(store, b) == []


def test_journals_of_deleted_manifests_are_deleted(store: S3ObjectStore, tmp_path: Path) -> None:
    a = commit(store, [L1], tmp_path)
    b = commit(store, [L2], tmp_path)
    for m in (a, b):
        store.put_bytes(build_sidecar_key(PREFIX, m.build_id, "journal-r.jsonl"), b"{}\n")
    plan = plan_gc(store, PREFIX, 1, grace=ZERO, min_age=ZERO)
    assert build_sidecar_key(PREFIX, a.build_id, "journal-r.jsonl") in plan.delete_keys
    collect_garbage(store, plan)
    assert not store.exists(build_sidecar_key(PREFIX, a.build_id, "journal-r.jsonl"))
    assert store.exists(build_sidecar_key(PREFIX, b.build_id, "journal-r.jsonl"))


def test_cache_keys_are_collected_only_when_no_kept_or_young_manifest_lists_them(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    cache = [f"{PREFIX}/_cache/dedup/{i}.sqlite" for i in range(3)]
    for key in cache:
        store.put_bytes(key, b"index")
    a = publish_shards(store, PREFIX, [L1])
    _put_manifest_with_cache(store, a, cache[:2])
    time.sleep(1.1)
    b = publish_shards(store, PREFIX, [L2])
    _put_manifest_with_cache(store, b, cache[1:2])
    now = datetime.now(UTC)

    young = plan_gc(store, PREFIX, 1, grace=timedelta(hours=1), min_age=ZERO, now=now)
    assert young.delete_keys == [cache[2]]  # A is young: its cache entries are kept

    later = now + timedelta(hours=2)
    plan = plan_gc(store, PREFIX, 1, grace=timedelta(hours=1), min_age=ZERO, now=later)
    assert sorted(k for k in plan.delete_keys if "/_cache/" in k) == [cache[0], cache[2]]
    collect_garbage(store, plan)
    assert [store.exists(k) for k in cache] == [False, True, False]


def test_incomplete_multipart_uploads_older_than_grace_are_aborted(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    commit(store, [L1], tmp_path)
    key = f"{PREFIX}/train/train-00009-abandoned.jsonl"
    upload = store.client.create_multipart_upload(Bucket=store.bucket, Key=key)["UploadId"]
    grace = timedelta(hours=24)

    fresh = plan_gc(store, PREFIX, 1, grace=grace, min_age=ZERO)
    assert fresh.abort_uploads == []
    old = plan_gc(store, PREFIX, 1, grace=grace, min_age=ZERO, now=datetime.now(UTC) + grace * 2)
    assert [(u.key, u.upload_id) for u in old.abort_uploads] == [(key, upload)]
    collect_garbage(store, old)
    assert list(store.list_multipart_uploads(PREFIX + "/")) == []


def test_gc_waits_for_no_build_it_refuses_while_one_holds_the_lease(
    gc_config: Path, seaweed: S3Settings, tmp_path: Path
) -> None:
    store = bucket_store(gc_config, seaweed)
    commit(store, [L1], tmp_path)
    with BuildLease(store, PREFIX, "run-building", ttl_s=30):
        result = CliRunner().invoke(
            app, ["gc", "--config", str(gc_config), "--keep", "1", "--apply"]
        )
    assert result.exit_code == 1
    assert "run-building" in result.output and "nothing deleted" in result.output
    out = gc_cli(gc_config, "--keep", "1", "--apply")
    assert "deleted" in out


def test_run_folders_idle_for_the_grace_period_are_collected(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    commit(store, [L1], tmp_path)
    refs = [f"{PREFIX}/_runs/{run}/conversations.json" for run in ("killed-run", "live-run")]
    store.put_bytes(refs[0], b"{}")
    time.sleep(1.1)
    cutoff = datetime.now(UTC)
    time.sleep(1.1)
    store.put_bytes(refs[1], b"{}")
    grace = timedelta(hours=1)
    plan = plan_gc(store, PREFIX, 1, grace=grace, min_age=ZERO, now=cutoff + grace)
    assert [k for k in plan.delete_keys if "/_runs/" in k] == [refs[0]]
    collect_garbage(store, plan)
    assert [store.exists(k) for k in refs] == [False, True]


def test_gc_during_a_real_build_never_deletes_what_it_commits(
    tmp_path: Path, seaweed: S3Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_build_config(tmp_path, f"gc-real-{uuid.uuid4().hex[:10]}")
    cfg, store = config_and_store(config, seaweed)
    for key, value in _cli_env(seaweed, config).items():
        monkeypatch.setenv(key, value)
    extra = tmp_path / "data" / "generated" / "coding_help-extra.jsonl"
    body = b"".join(
        orjson.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"question {i} " * 8},
                    {"role": "assistant", "content": f"answer {i} " * 8},
                ]
            }
        )
        + b"\n"
        for i in range(60)
    )
    extra.write_bytes(body)
    a = build_dataset(cfg, store)  # A
    extra.unlink()
    time.sleep(1.1)
    b = build_dataset(cfg, store)  # B without the source
    extra.write_bytes(body)
    time.sleep(1.1)
    c_build = Build(cfg, store, uuid.uuid4().hex, hand_on=True)  # C restored, up to its commit
    result = c_build.compile()
    shards, _ = c_build.shards(result)
    export = c_build.export(shards)
    reused = {s.key for split in shards.values() for s in split} - {s.key for s in b.shards}
    assert reused and reused <= {s.key for s in a.shards}  # C reuses A's shards

    refused = CliRunner().invoke(
        app, ["gc", "--config", str(config), "--keep", "1", "--min-age-hours", "0", "--apply"]
    )
    assert refused.exit_code == 1 and c_build.run_id in refused.output  # C holds the lease
    # a collector that ignores the lease still keeps A: its manifest is inside the grace period
    plan = plan_gc(store, cfg.prefix, 1, min_age=ZERO)
    assert a.build_id in plan.kept_builds
    collect_garbage(store, plan)
    c = c_build.commit(
        result, [e for split in ("train", "val", "test") for e in shards[split]], export
    )

    assert read_pointer(store, cfg.prefix).build_id == c.build_id
    assert verify_build(store, c, readback=True) == []


def test_gc_refuses_when_a_manifest_is_unreadable(store: S3ObjectStore, tmp_path: Path) -> None:
    commit(store, [L1, L2], tmp_path)
    commit(store, [L3], tmp_path)
    broken = build_manifest_key(PREFIX, "0123456789abcdef")
    store.put_bytes(broken, b"{not json")
    before = {o.key for o in store.list(PREFIX + "/")}
    with pytest.raises(ManifestError, match=f"{broken}.*refusing to collect"):
        plan_gc(store, PREFIX, 1, grace=ZERO, min_age=ZERO)
    assert {o.key for o in store.list(PREFIX + "/")} == before
