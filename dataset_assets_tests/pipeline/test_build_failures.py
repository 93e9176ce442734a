"""What a build does when things go wrong: it stops early, keeps local files, publishes nothing
it cannot vouch for."""

import dataclasses
import uuid

import orjson
import pytest

from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.errors import ConfigError, IntegrityError, ManifestError
from dataset_assets.core.layout import SPLITS
from dataset_assets.core.partition import RECORDS_NAME
from dataset_assets.core.sample import write_sample
from dataset_assets.pipeline.build import Build
from dataset_assets.pipeline.manifest import assemble_manifest
from dataset_assets.storage import PublishError, S3ObjectStore, S3Settings
from dataset_assets_tests.builds import config_and_store, write_build_config
from dataset_assets_tests.faults import FaultProxy


def test_shard_writer_stops_at_the_first_failed_publish_and_keeps_what_it_wrote(
    tmp_path, seaweed
) -> None:
    config_path = write_build_config(
        tmp_path,
        f"fail-{uuid.uuid4().hex[:10]}",
        records_per_family=2500,
        max_publishes_in_flight=2,
        compile={"workers": 1},
    )
    cfg, store = config_and_store(config_path, seaweed)
    result = Build(cfg, store, "r1").compile()
    with FaultProxy(upstream=seaweed.endpoint_url) as proxy:
        settings = dataclasses.replace(seaweed, endpoint_url=proxy.endpoint_url)
        failing = S3ObjectStore(cfg.bucket, settings, part_size=cfg.part_size)
        proxy.only_path(f"/{cfg.prefix}/train/")
        proxy.corrupt_request_body(times=None)  # the server rejects every shard body: BadDigest
        with pytest.raises(PublishError):
            Build(cfg, failing, "r1").shards(result)
    staged = list((cfg.staging_dir / "runs" / "r1" / "shards").rglob("*.jsonl*"))
    # each family writes > 10 train shards; each stopped after its first failure
    assert 1 <= len(staged) <= cfg.max_publishes_in_flight + 1
    assert not list(store.list(f"{cfg.prefix}/train/"))


def test_a_cut_intermediate_is_an_integrity_error_not_fewer_records(tmp_path, seaweed) -> None:
    config_path = write_build_config(
        tmp_path, f"cut-{uuid.uuid4().hex[:10]}", records_per_family=600
    )
    cfg, store = config_and_store(config_path, seaweed)
    result = Build(cfg, store, "r2").compile()
    part = result.partitions[0]
    cached = cfg.staging_dir / "cache" / "partitions" / part.digest / RECORDS_NAME
    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])
    with pytest.raises(IntegrityError, match="records"):
        Build(cfg, store, "r2").shards(result)


def test_manifest_refuses_shards_that_disagree_with_the_counts(tmp_path, seaweed) -> None:
    config_path = write_build_config(tmp_path, f"bad-{uuid.uuid4().hex[:10]}")
    cfg, store = config_and_store(config_path, seaweed)
    build = Build(cfg, store, "r3")
    result = build.compile()
    shards, _ = build.shards(result)
    assert all(shards[s] for s in SPLITS)
    with pytest.raises(ManifestError, match="val: shards hold 0"):
        assemble_manifest(cfg, result, shards["train"], None)  # val and test shards missing


def _compile_with_every_intermediate_upload_corrupted(
    cfg: DatasetConfig, seaweed: S3Settings, run_id: str
) -> None:
    """Compile through a proxy that corrupts every stage-1 intermediate upload (BadDigest):
    the compile must fail with PublishError."""
    with FaultProxy(upstream=seaweed.endpoint_url) as proxy:
        settings = dataclasses.replace(seaweed, endpoint_url=proxy.endpoint_url)
        failing = S3ObjectStore(cfg.bucket, settings, part_size=cfg.part_size)
        proxy.only_path(f"/{cfg.prefix}/_cache/partitions/")
        proxy.corrupt_request_body(times=None)
        with pytest.raises(PublishError):
            Build(cfg, failing, run_id).compile()


def test_a_failed_intermediate_upload_stops_stage_one_before_every_file_is_processed(
    tmp_path, seaweed
) -> None:
    """Stage 1's intermediates are published while the workers go on with later files: the
    first failed publish stops the stage (only a bounded window of files is ever started ahead),
    and no partition is marked complete in S3."""
    config_path = write_build_config(
        tmp_path,
        f"s1fail-{uuid.uuid4().hex[:10]}",
        records_per_family=300,
        compile={"workers": 2, "intermediates": "s3"},
    )
    generated = tmp_path / "data" / "generated"
    for k in range(1, 7):
        for path in write_sample(tmp_path / f"more-{k}", records_per_family=300, seed=k):
            path.rename(generated / f"{path.stem}-{k}.jsonl")
    files = len(list(generated.glob("*.jsonl")))
    cfg, store = config_and_store(config_path, seaweed)
    _compile_with_every_intermediate_upload_corrupted(cfg, seaweed, "r1")
    started = list((cfg.staging_dir / "cache" / "partitions").iterdir())
    assert files >= 20 and 1 <= len(started) <= 2 * 2 + 3 < files
    in_s3 = [o.key for o in store.list(f"{cfg.prefix}/_cache/partitions/")]
    assert not [k for k in in_s3 if k.endswith("summary.json")]


def test_a_build_whose_paths_match_no_file_says_so(tmp_path, seaweed) -> None:
    config_path = write_build_config(tmp_path, f"none-{uuid.uuid4().hex[:10]}")
    for path in (tmp_path / "data" / "generated").iterdir():
        path.unlink()  # the families' globs now match nothing
    cfg, store = config_and_store(config_path, seaweed)
    with pytest.raises(ConfigError, match="no source files: no family's paths match a file"):
        Build(cfg, store, "r-empty").compile()
    # nothing published; the build lease is released
    assert [o.key for o in store.list(f"{cfg.prefix}/")] == [f"{cfg.prefix}/_lease.json"]
    assert orjson.loads(store.get_bytes(f"{cfg.prefix}/_lease.json"))["expires_at"] == 0.0


def test_a_publish_failing_after_stage_one_ends_publishes_no_decisions(tmp_path, seaweed) -> None:
    """The dedup stage starts while the last intermediates upload: when that upload fails, the
    compile fails with it and nothing that names the partition (decisions, sidecars) is in S3."""
    config_path = write_build_config(
        tmp_path, f"late-{uuid.uuid4().hex[:10]}", compile={"intermediates": "s3"}
    )
    files = sorted((tmp_path / "data" / "generated").iterdir())
    for path in files[1:]:
        path.unlink()  # one source file: its publish is the one still running
    cfg, store = config_and_store(config_path, seaweed)
    _compile_with_every_intermediate_upload_corrupted(cfg, seaweed, "r-late")
    keys = [o.key for o in store.list(f"{cfg.prefix}/")]
    assert not [k for k in keys if "/_cache/decisions/" in k or k.endswith("summary.json")]
    assert not [k for k in keys if "quarantine" in k or "provenance" in k or "dedup" in k]
