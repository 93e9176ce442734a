"""What a build does when things go wrong: it stops early, keeps local files, publishes nothing
it cannot vouch for."""

import dataclasses
import uuid

import pytest

from dataset_assets.core.errors import IntegrityError, ManifestError
from dataset_assets.core.spool import spool_path
from dataset_assets.pipeline.build import make_publisher
from dataset_assets.pipeline.compile import compile_conversations
from dataset_assets.pipeline.manifest import assemble_manifest
from dataset_assets.pipeline.shards import publish_shards, stage_split_shards
from dataset_assets.storage import PublishError, S3ObjectStore
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
    )
    cfg, _ = config_and_store(config_path, seaweed)
    result = compile_conversations(cfg, None, run_id="r1")
    with FaultProxy(upstream=seaweed.endpoint_url) as proxy:
        settings = dataclasses.replace(seaweed, endpoint_url=proxy.endpoint_url)
        store = S3ObjectStore(cfg.bucket, settings, part_size=cfg.part_size)
        proxy.corrupt_request_body(times=None)  # the server rejects every body: BadDigest
        with pytest.raises(PublishError), make_publisher(cfg, store, "r1") as publisher:
            publish_shards(stage_split_shards(cfg, result, "train"), publisher)
    staged = list((result.work_dir / "shards" / "train").glob("*.jsonl"))
    # > 20 train shards would be written; the writer stopped after the first failure
    assert 1 <= len(staged) <= 2 * (cfg.max_publishes_in_flight + 1)
    assert not list(store.list(f"{cfg.prefix}/train/"))


def test_a_cut_spool_is_an_integrity_error_not_fewer_records(tmp_path, seaweed) -> None:
    config_path = write_build_config(
        tmp_path, f"cut-{uuid.uuid4().hex[:10]}", records_per_family=600
    )
    cfg, _ = config_and_store(config_path, seaweed)
    result = compile_conversations(cfg, None, run_id="r2")
    path = spool_path(result.spool, "train")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(IntegrityError, match="records"):
        list(result.records("train"))


def test_manifest_refuses_shards_that_disagree_with_the_counts(tmp_path, seaweed) -> None:
    config_path = write_build_config(tmp_path, f"bad-{uuid.uuid4().hex[:10]}")
    cfg, store = config_and_store(config_path, seaweed)
    result = compile_conversations(cfg, None, run_id="r3")
    with make_publisher(cfg, store, "r3") as publisher:
        published = publish_shards(stage_split_shards(cfg, result, "train"), publisher)
    from dataset_assets.pipeline.entries import shard_entry

    train = [shard_entry("train", p) for p in published]
    with pytest.raises(ManifestError, match="val: shards hold 0"):
        assemble_manifest(cfg, result, train, None)  # val and test shards missing
