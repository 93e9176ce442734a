"""Local disk stays bounded while shards are published as they are written."""

import uuid

import dagster as dg

from dataset_assets.core.manifest import Manifest
from dataset_assets.defs.assets import COMPILE_ASSETS
from dataset_assets.pipeline.export import export_problems
from dataset_assets_tests.builds import config_and_store, dagster_resources, write_build_config

SHARD = 64 * 1024
K = 2


def test_peak_staged_bytes_stay_within_k_plus_one_shards_per_worker_and_export_is_intact(
    tmp_path, seaweed
) -> None:
    # ~2,500 records per family: > 20 train shards of 64 KiB and an export > 5 MiB.
    config_path = write_build_config(
        tmp_path,
        f"bound-{uuid.uuid4().hex[:10]}",
        records_per_family=2500,
        shard_size=SHARD,
        max_publishes_in_flight=K,
        # plain shards: the export then spans several 5 MiB parts with this small sample
        # (zstd shards bound the same JSONL bytes and stage ~1/5 of them)
        shard_compression="none",
    )
    cfg, store = config_and_store(config_path, seaweed)
    result = dg.materialize(
        COMPILE_ASSETS,
        resources=dagster_resources(config_path, seaweed),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    by_asset = {
        m.asset_key.path[-1]: m.metadata
        for m in result.asset_materializations_for_node("split_shards")
    }
    meta = by_asset["train_shards"]
    assert meta["shards"].value >= 20
    # each partition worker holds at most K shards in flight plus the one being written
    peak = meta["peak_staged_bytes_per_worker"].value
    assert 0 < peak <= (K + 1) * SHARD

    manifest = Manifest.from_json(cfg.manifest_path.read_bytes())
    assert all(s.bytes <= SHARD for s in manifest.shards)
    export = manifest.export
    assert export is not None and export.bytes > cfg.part_size
    assert export_problems(store, manifest, readback=True) == []
