"""Where stage 1 keeps its intermediates (``compile.intermediates``): on this machine when every
step runs here, in S3 when another machine may need them; the published build is the same."""

import logging
import uuid
from pathlib import Path

import pytest
import yaml

from dataset_assets.core.config import load_config
from dataset_assets.core.errors import ConfigError, ObjectNotFoundError
from dataset_assets.pipeline.build import Build, build_dataset
from dataset_assets.pipeline.compile import shares_intermediates
from dataset_assets.storage import S3ObjectStore, S3Settings
from dataset_assets_tests.builds import config_and_store, write_build_config


def _intermediates_in_s3(store: S3ObjectStore, prefix: str) -> list[str]:
    return [o.key for o in store.list(f"{prefix}/_cache/partitions/")]


def _set_compile(config_path: Path, **options: object) -> None:
    data = yaml.safe_load(config_path.read_text())
    data["compile"] = {**data.get("compile", {}), **options}
    config_path.write_text(yaml.safe_dump(data))


def test_a_one_machine_build_uploads_no_intermediates_and_shares_them_when_asked(
    tmp_path: Path, seaweed: S3Settings, caplog: pytest.LogCaptureFixture
) -> None:
    config_path = write_build_config(tmp_path, f"inter-{uuid.uuid4().hex[:10]}")
    cfg, store = config_and_store(config_path, seaweed)
    local = build_dataset(cfg, store)  # the plain path: every step in this process
    assert _intermediates_in_s3(store, cfg.prefix) == []
    cache = cfg.staging_dir / "cache" / "partitions"
    sources = len(list((tmp_path / "data" / "generated").glob("*.jsonl")))
    assert len(list(cache.glob("*/summary.local.json"))) == sources
    assert not list(cache.glob("*/summary.json"))

    # the same sources with the intermediates shared: this machine's are uploaded, not redone
    _set_compile(config_path, intermediates="s3")
    cfg = load_config(config_path)
    with caplog.at_level(logging.INFO, logger="dataset_assets.pipeline.compile"):
        shared = build_dataset(cfg, store)
    assert f"stage 1 of 0 new partitions ({sources} reused)" in caplog.text
    assert shared.build_id == local.build_id
    keys = _intermediates_in_s3(store, cfg.prefix)
    assert len([k for k in keys if k.endswith("/summary.json")]) == sources
    assert len(list(cache.glob("*/summary.json"))) == sources
    assert not list(cache.glob("*/summary.local.json"))
    assert set(shared.cache_keys) >= {k.rsplit("/", 1)[0] + "/" for k in keys}


def test_a_shared_build_restores_intermediates_s3_lost_and_redoes_a_broken_cache(
    tmp_path: Path, seaweed: S3Settings, caplog: pytest.LogCaptureFixture
) -> None:
    config_path = write_build_config(
        tmp_path, f"inter-{uuid.uuid4().hex[:10]}", compile={"intermediates": "s3"}
    )
    cfg, store = config_and_store(config_path, seaweed)
    first = build_dataset(cfg, store)
    sources = len(list((tmp_path / "data" / "generated").glob("*.jsonl")))
    # S3 loses the intermediates (deleted by hand, or by an older gc) while the cache keeps them
    for key in _intermediates_in_s3(store, cfg.prefix):
        store.delete(key)
    # and one cached partition's marker is cut short (a crash of an older version)
    cache = cfg.staging_dir / "cache" / "partitions"
    broken = sorted(cache.glob("*/summary.json"))[0]
    broken.write_bytes(b'{"input_reco')
    with caplog.at_level(logging.INFO, logger="dataset_assets.pipeline.compile"):
        again = build_dataset(cfg, store)
    assert again.build_id == first.build_id
    assert f"stage 1 of 1 new partitions ({sources - 1} reused)" in caplog.text
    keys = _intermediates_in_s3(store, cfg.prefix)
    assert len([k for k in keys if k.endswith("/summary.json")]) == sources


def test_a_step_on_another_machine_names_the_setting_when_intermediates_stayed_local(
    tmp_path: Path, seaweed: S3Settings
) -> None:
    config_path = write_build_config(tmp_path, f"inter-{uuid.uuid4().hex[:10]}")
    cfg, store = config_and_store(config_path, seaweed)
    result = Build(cfg, store, "r-local").compile()
    # the shard step on a machine without this one's staging folder
    elsewhere = cfg.model_copy(update={"staging_dir": tmp_path / "other-machine"})
    with pytest.raises(ObjectNotFoundError, match="compile.intermediates: s3") as err:
        Build(elsewhere, store, "r-local").shards(result)
    assert "neither in this machine's cache" in str(err.value)


def test_the_executor_decides_where_auto_keeps_them(tmp_path: Path) -> None:
    config_path = write_build_config(tmp_path, "any-bucket")
    cfg = load_config(config_path)
    assert not shares_intermediates(cfg, one_machine=True)
    assert shares_intermediates(cfg, one_machine=False)
    no_cache = cfg.model_copy(
        update={"compile": cfg.compile.model_copy(update={"local_cache": False})}
    )
    assert shares_intermediates(no_cache, one_machine=True)  # nowhere else to keep them
    for mode, shared in (("s3", True), ("local", False)):
        _set_compile(config_path, intermediates=mode)
        assert shares_intermediates(load_config(config_path), one_machine=True) is shared
        assert shares_intermediates(load_config(config_path), one_machine=False) is shared

    _set_compile(config_path, intermediates="local", local_cache=False)
    with pytest.raises(ConfigError, match="needs local_cache: true"):
        load_config(config_path)
