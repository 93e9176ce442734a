"""Sources in the asset graph: each family's files as ``source/<family>`` upstream of compile,
``migration/local_files`` upstream of ``migrated_file``, made from the config at load."""

import random
import re
import uuid
from pathlib import Path

import dagster as dg
import orjson
import pytest

from dataset_assets.core.config import load_config
from dataset_assets.core.layout import latest_manifest_key
from dataset_assets.core.manifest import Manifest
from dataset_assets.definitions import graph_defs
from dataset_assets.defs.migration import LOCAL_FILES
from dataset_assets.defs.sensors import CURRENT_CHECK
from dataset_assets.defs.sources import family_key_parts
from dataset_assets.pipeline.build import build_dataset
from dataset_assets.storage import S3Settings
from dataset_assets_tests.builds import config_and_store, dagster_resources, write_build_config

COMPILE_OUTPUTS = ("conversations", "quarantine", "provenance", "dedup_decisions")
VALID_PART = re.compile(r"^[A-Za-z0-9_]+$")


def test_family_names_become_distinct_valid_key_parts() -> None:
    names = ["chat", "web.v2", "web_v2", "web-v2", "a-b", "a.b", "x.y"]

    parts = family_key_parts(names)

    assert all(VALID_PART.match(p) for p in parts.values()), parts
    assert len(set(parts.values())) == len(names), parts
    assert parts["chat"] == "chat" and parts["web_v2"] == "web_v2"  # valid names kept
    assert parts["x.y"] == "x_y"  # sanitized without a clash: still readable
    assert parts["web.v2"].startswith("web_v2_") and parts["web-v2"].startswith("web_v2_")
    shuffled = names[:]
    random.Random(0).shuffle(shuffled)
    assert family_key_parts(shuffled) == parts  # the same keys whatever the config order


def write_config(root: Path, families: list[dict[str, object]]) -> Path:
    path = root / "dataset.yaml"
    path.write_bytes(orjson.dumps({"bucket": "sources-test", "families": families}))
    return path


def loaded(config: Path | None) -> dg.Definitions:
    """The graph of ``config`` (None: no config file) with the sensors and resources bound
    (an S3 endpoint nothing listens on: loading never talks to S3)."""
    from dataset_assets.defs.sensors import build_defs

    settings = S3Settings(endpoint_url="http://127.0.0.1:9", region="us-east-1")
    resources = dagster_resources(config or Path("missing.yaml"), settings)
    cfg = load_config(config) if config is not None else None
    defs = dg.Definitions.merge(graph_defs(cfg), build_defs(), dg.Definitions(resources=resources))
    dg.Definitions.validate_loadable(defs)
    return defs


def test_each_family_is_an_external_source_upstream_of_every_compile_output(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path,
        [
            {"name": "chat.v2", "paths": ["data/chat/*.jsonl"]},
            {"name": "web", "paths": ["data/web/*.jsonl", "s3://sources-test/web/"]},
            {"name": "eval", "paths": ["../shared/eval.jsonl"], "holdout": True},
        ],
    )
    asset_graph = loaded(config).get_repository_def().asset_graph
    keys = {
        "chat.v2": dg.AssetKey(["source", "chat_v2"]),
        "web": dg.AssetKey(["source", "web"]),
        "eval": dg.AssetKey(["source", "eval"]),
    }

    for name, key in keys.items():
        node = asset_graph.get(key)
        assert not node.is_executable  # observed, never materialized
        assert node.group_name == "sources"
        assert f"`{name}`" in (node.description or "")
    web = asset_graph.get(keys["web"])
    assert web.kinds == {"file", "s3"}
    assert "`data/web/*.jsonl`, `s3://sources-test/web/`" in (web.description or "")
    assert "`../shared/eval.jsonl`" in (asset_graph.get(keys["eval"]).description or "")
    assert str(tmp_path) not in (web.description or "")  # no host path in the UI
    for output in COMPILE_OUTPUTS:
        assert set(asset_graph.get(dg.AssetKey(output)).parent_keys) == set(keys.values())
    assert set(asset_graph.get(dg.AssetKey("train_shards")).parent_keys) == {
        dg.AssetKey("conversations")
    }


def test_migrated_file_reads_the_observed_local_files(tmp_path: Path) -> None:
    config = write_config(tmp_path, [{"name": "a", "paths": ["x/*"]}])
    asset_graph = loaded(config).get_repository_def().asset_graph

    local = asset_graph.get(LOCAL_FILES)
    assert not local.is_executable and local.group_name == "migration"
    assert "`data`" in (local.description or "")
    assert set(asset_graph.get(dg.AssetKey("migrated_file")).parent_keys) == {LOCAL_FILES}


def test_without_a_config_file_the_graph_loads_without_sources() -> None:
    asset_graph = loaded(None).get_repository_def().asset_graph

    assert not [k for k in asset_graph.get_all_asset_keys() if k.path[0] == "source"]
    assert asset_graph.get(dg.AssetKey("conversations")).parent_keys == set()
    assert LOCAL_FILES in asset_graph.get_all_asset_keys()


def test_manifest_carries_the_built_from_current_sources_check(tmp_path: Path) -> None:
    config = write_config(tmp_path, [{"name": "a", "paths": ["x/*"]}])
    checks = loaded(config).get_repository_def().asset_graph.asset_check_keys

    assert dg.AssetCheckKey(dg.AssetKey("manifest"), CURRENT_CHECK) in checks


def test_build_job_with_sources_in_the_graph_publishes_the_same_build(
    tmp_path: Path, seaweed: S3Settings
) -> None:
    """The source assets are lineage only: the Dagster build commits exactly the build the
    plain-Python build of the same sources committed (same build id, nothing new)."""
    config = write_build_config(
        tmp_path, f"src-{uuid.uuid4().hex[:12]}", records_per_family=20, quarantine_max_ratio=0.5
    )
    cfg, store = config_and_store(config, seaweed)
    plain = build_dataset(cfg, store)
    from dataset_assets.defs.sensors import build_defs

    defs = dg.Definitions.merge(
        graph_defs(cfg),
        build_defs(),
        dg.Definitions(resources=dagster_resources(config, seaweed)),
    )
    sources = [k for k in defs.get_repository_def().asset_graph.get_all_asset_keys()]
    assert [k for k in sources if k.path[0] == "source"], "the graph has no source assets"

    result = defs.resolve_job_def("build_dataset").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )

    assert result.success
    latest = Manifest.from_json(store.get_bytes(latest_manifest_key(cfg.prefix)))
    assert latest.build_id == plain.build_id


@pytest.mark.parametrize("name", ["web.v2", "a-b", "x_y"])
def test_source_keys_of_any_valid_family_name_load(tmp_path: Path, name: str) -> None:
    config = write_config(tmp_path, [{"name": name, "paths": ["x/*"]}])
    keys = loaded(config).get_repository_def().asset_graph.get_all_asset_keys()
    (source,) = [k for k in keys if k.path[0] == "source"]
    assert VALID_PART.match(source.path[1])
