"""Quality gates with real Dagster runs against SeaweedFS: leakage, quarantine ratio, provenance."""

import uuid
from pathlib import Path

import dagster as dg
import orjson

from dataset_assets.core.manifest import Manifest
from dataset_assets.core.provenance import read_provenance
from dataset_assets.defs.assets import COMPILE_ASSETS
from dataset_assets.defs.checks import COMPILE_CHECKS
from dataset_assets.defs.quality import QUALITY_CHECKS
from dataset_assets.storage import S3Settings
from dataset_assets_tests.builds import config_and_store, dagster_resources, write_build_config


def _materialize(config_path: Path, settings: S3Settings) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*COMPILE_ASSETS, *COMPILE_CHECKS, *QUALITY_CHECKS],
        resources=dagster_resources(config_path, settings),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def test_clean_build_passes_quality_checks_and_references_provenance(tmp_path, seaweed) -> None:
    config_path = write_build_config(tmp_path, f"q-{uuid.uuid4().hex[:12]}")
    _, store = config_and_store(config_path, seaweed)
    result = _materialize(config_path, seaweed)
    assert result.success
    checks = _checks(result)
    assert checks["no_split_leakage"].passed
    assert checks["quarantine_ratio_below_max"].passed
    assert checks["no_split_leakage"].metadata["train_conversations"].value > 0

    q_meta = result.asset_materializations_for_node("quarantine")[0].metadata
    assert q_meta["by_reason"].value == {"malformed_json": 3, "unknown_shape": 3, "empty_turn": 3}

    manifest = Manifest.from_json((tmp_path / ".local" / "manifest.json").read_bytes())
    assert manifest.provenance is not None
    rows = read_provenance(store.get_bytes(manifest.provenance.key))
    assert len(rows) == manifest.counts.published_records
    shard = store.get_bytes(manifest.shards[0].key).splitlines()[0]
    meta = orjson.loads(shard)["metadata"]
    by_hash = {r["h"]: r for r in rows}
    prov = by_hash[meta["content_hash"]]
    assert (prov["family"], prov["source"], prov["line"]) == (
        meta["family"],
        meta["source"],
        meta["line"],
    )


def _write_leaky_source(tmp_path: Path) -> None:
    """Near-duplicate pairs (one word changed) whose members land in different splits."""
    words = " ".join(f"w{i}" for i in range(80))
    lines = []
    for i in range(40):
        base = f"topic {i} {words} end of conversation number {i}"
        changed = base.replace("w40", "zz")
        for text in (base, changed):
            msg = [
                {"role": "user", "content": f"question {i}"},
                {"role": "assistant", "content": text},
            ]
            lines.append(orjson.dumps({"messages": msg}))
    folder = tmp_path / "data" / "generated" / "leaky"
    folder.mkdir(parents=True)
    (folder / "pairs.jsonl").write_bytes(b"\n".join(lines) + b"\n")


def test_planted_near_duplicate_leak_fails_check_and_blocks_manifest(tmp_path, seaweed) -> None:
    bucket = f"leak-{uuid.uuid4().hex[:12]}"
    config_path = write_build_config(tmp_path, bucket)
    import yaml

    data = yaml.safe_load(config_path.read_text())
    data["families"].append({"name": "leaky", "paths": ["data/generated/leaky/*.jsonl"]})
    data["dedup"] = {"near": False}  # lets the near-duplicates through dedup
    config_path.write_text(yaml.safe_dump(data))
    _write_leaky_source(tmp_path)
    result = _materialize(config_path, seaweed)
    leak = _checks(result)["no_split_leakage"]
    assert not leak.passed
    assert leak.metadata["near_leaks"].value > 0
    pairs = leak.metadata["sample_pairs"].value
    assert 0 < len(pairs) <= 20 and pairs[0]["kind"] == "near"
    assert not result.asset_materializations_for_node("manifest")
    assert not (tmp_path / ".local" / "manifest.json").exists()


def test_quarantine_ratio_above_max_blocks_the_manifest(tmp_path, seaweed) -> None:
    config_path = write_build_config(
        tmp_path, f"qr-{uuid.uuid4().hex[:12]}", quarantine_max_ratio=0.001
    )
    result = _materialize(config_path, seaweed)
    check = _checks(result)["quarantine_ratio_below_max"]
    assert not check.passed
    assert check.metadata["quarantined"].value == 9
    assert not result.asset_materializations_for_node("manifest")
