"""`dataset-assets verify` and `dataset-assets gc` against real builds in SeaweedFS."""

import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataset_assets.cli import app
from dataset_assets.core.layout import build_manifest_key, export_key
from dataset_assets.core.manifest import Manifest
from dataset_assets.pipeline import build_dataset
from dataset_assets.pipeline.maintenance import manifest_files, verify_build
from dataset_assets.storage import S3Settings
from dataset_assets_tests.builds import config_and_store, write_build_config


def _env(settings: S3Settings, config: Path) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL_S3": settings.endpoint_url or "",
        "AWS_ACCESS_KEY_ID": settings.access_key_id or "",
        "AWS_SECRET_ACCESS_KEY": settings.secret_access_key or "",
        "DATASET_ASSETS_CONFIG": str(config),
    }


@pytest.fixture
def three_builds(tmp_path, seaweed, monkeypatch):
    # intermediates in S3: gc must keep the kept builds' (cache_keys)
    config = write_build_config(
        tmp_path, f"gc-{uuid.uuid4().hex[:10]}", compile={"intermediates": "s3"}
    )
    cfg, store = config_and_store(config, seaweed)
    for key, value in _env(seaweed, config).items():
        monkeypatch.setenv(key, value)
    builds = []
    for i in range(3):
        if i:
            time.sleep(1.1)  # gc orders builds by S3 LastModified, which has 1 s resolution
            extra = tmp_path / "data" / "generated" / f"coding_help-{i}.jsonl"
            extra.write_text(
                f'{{"messages": [{{"role": "user", "content": "q{i}"}}, '
                f'{{"role": "assistant", "content": "a{i}"}}]}}\n'
            )
        builds.append(build_dataset(cfg, store))
    return config, cfg, store, builds


def test_verify_passes_then_names_the_object_that_changed(three_builds) -> None:
    config, cfg, store, builds = three_builds
    runner = CliRunner()
    ok = runner.invoke(app, ["verify", "--config", str(config), "--readback"])
    assert ok.exit_code == 0, ok.output
    assert f"build {builds[-1].build_id}: all" in ok.output
    shard = builds[-1].shards[0]
    store.put_bytes(shard.key, b"not the shard\n")
    bad = runner.invoke(app, ["verify", "--config", str(config)])
    assert bad.exit_code == 1
    assert shard.uri in bad.output


def test_gc_is_a_dry_run_until_applied_then_keeps_the_newest_builds_whole(three_builds) -> None:
    config, cfg, store, builds = three_builds
    runner = CliRunner()
    args = ["gc", "--keep", "2", "--min-age-hours", "0", "--grace-hours", "0"]
    args += ["--config", str(config)]
    before = {o.key for o in store.list(cfg.prefix + "/")}
    dry = runner.invoke(app, args)
    assert dry.exit_code == 0, dry.output
    assert "dry run: nothing deleted" in dry.output
    assert {o.key for o in store.list(cfg.prefix + "/")} == before

    applied = runner.invoke(app, [*args, "--apply"])
    assert applied.exit_code == 0, applied.output
    oldest, kept = builds[0], builds[1:]
    assert not store.exists(build_manifest_key(cfg.prefix, oldest.build_id))
    for build in kept:
        m = Manifest.from_json(store.get_bytes(build_manifest_key(cfg.prefix, build.build_id)))
        assert verify_build(store, m, with_export=build is builds[-1]) == []
    only_oldest = {f.key for f in manifest_files(oldest)} - {
        f.key for b in kept for f in manifest_files(b)
    }
    assert only_oldest and not any(store.exists(k) for k in only_oldest)

    # then down to the latest alone: it stays whole and an unchanged rebuild reproduces it
    args = ["gc", "--keep", "1", "--min-age-hours", "0", "--grace-hours", "0", "--apply"]
    result = runner.invoke(app, [*args, "--config", str(config)])
    assert result.exit_code == 0, result.output
    latest = builds[-1]
    assert verify_build(store, latest, readback=True) == []
    assert latest.export is not None
    assert store.head(export_key(cfg.prefix, ".jsonl.zst")).size == latest.export.bytes
    # the intermediates it names (keys, and folders ending in "/") are all still there: a
    # folder must still hold objects (a HEAD of "folder/" can answer 200 on some servers)
    for key in latest.cache_keys:
        if key.endswith("/"):
            assert list(store.list(key)), f"gc emptied {key}"
        else:
            assert store.exists(key), key
    partitions = [k for k in latest.cache_keys if "/_cache/partitions/" in k]
    assert partitions and all(store.exists(k + "summary.json") for k in partitions)
    assert not store.exists(build_manifest_key(cfg.prefix, builds[1].build_id))
    again = build_dataset(cfg, store)
    assert again.build_id == latest.build_id
    assert verify_build(store, again, readback=True) == []


def test_gc_never_touches_objects_younger_than_min_age(three_builds) -> None:
    config, cfg, store, builds = three_builds
    result = CliRunner().invoke(app, ["gc", "--keep", "1", "--apply", "--config", str(config)])
    assert result.exit_code == 0, result.output
    for build in builds:
        assert verify_build(store, build, with_export=build is builds[-1]) == []
