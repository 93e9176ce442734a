"""Quality gates with real Dagster runs against SeaweedFS: leakage, quarantine ratio, provenance."""

import uuid
from pathlib import Path

import dagster as dg
import orjson

from dataset_assets.core.manifest import Manifest
from dataset_assets.core.provenance import read_provenance
from dataset_assets.defs.assets import COMPILE_ASSETS
from dataset_assets.storage import S3Settings
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
    assert checks["no_split_leakage"].metadata["covers"].value == "exact and near duplicates"

    q_meta = next(
        m.metadata
        for m in result.asset_materializations_for_node("compile")
        if m.asset_key == dg.AssetKey("quarantine")
    )
    reasons = {k: v.value for k, v in q_meta.items() if k.startswith("reason/")}
    assert reasons == {
        "reason/malformed_json": 3,
        "reason/unknown_shape": 3,
        "reason/empty_turn": 3,
    }

    manifest = Manifest.from_json((tmp_path / ".local" / "manifest.json").read_bytes())
    assert manifest.provenance is not None
    rows = read_provenance(store.get_bytes(manifest.provenance.key))
    assert len(rows) == manifest.counts.published_records
    shard = object_lines(store, manifest.shards[0])[0]
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


def test_with_near_dedup_off_the_build_completes_and_the_check_says_it_covers_exact_only(
    tmp_path, seaweed
) -> None:
    bucket = f"leak-{uuid.uuid4().hex[:12]}"
    config_path = write_build_config(tmp_path, bucket)
    import yaml

    data = yaml.safe_load(config_path.read_text())
    data["families"].append({"name": "leaky", "paths": ["data/generated/leaky/*.jsonl"]})
    data["dedup"] = {"near": False}  # lets the near-duplicates through dedup
    config_path.write_text(yaml.safe_dump(data))
    _write_leaky_source(tmp_path)
    result = _materialize(config_path, seaweed)
    assert result.success
    leak = _checks(result)["no_split_leakage"]
    assert leak.passed
    assert leak.metadata["covers"].value == "exact duplicates only (dedup.near is off)"
    manifest = Manifest.from_json((tmp_path / ".local" / "manifest.json").read_bytes())
    assert manifest.counts.per_family["leaky"] == 80  # both members of every pair published
    assert manifest.counts.near_duplicates == 0


def test_quarantine_ratio_above_max_blocks_the_manifest(tmp_path, seaweed) -> None:
    config_path = write_build_config(
        tmp_path, f"qr-{uuid.uuid4().hex[:12]}", quarantine_max_ratio=0.001
    )
    result = _materialize(config_path, seaweed)
    check = _checks(result)["quarantine_ratio_below_max"]
    assert not check.passed
    assert check.metadata["quarantined"].value == 9
    assert not result.asset_materializations_for_node("manifest")
