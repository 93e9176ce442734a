"""The compile pass over mixed sources: split stability, holdout, quarantine reasons, provenance."""

import gzip
from pathlib import Path

import orjson
import zstandard

from bench.gen_corpus import generate
from dataset_assets.core.config import DatasetConfig, parse_config
from dataset_assets.core.provenance import read_provenance
from dataset_assets.pipeline.compile import CompileResult, check_leakage, compile_conversations


def _config(tmp: Path, **overrides: object) -> DatasetConfig:
    data = {
        "bucket": "local-only",
        "families": [
            {"name": "main", "paths": ["data/main/*"]},
            {"name": "held", "paths": ["data/held/*"], "holdout": True},
        ],
        "splits": {"train": 0.8, "val": 0.1, "test": 0.1},
        **overrides,
    }
    return parse_config(data, tmp)


def _write(path: Path, records: list[dict], *, gz: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    path.write_bytes(gzip.compress(data) if gz else data)


def _assignments(result: CompileResult) -> dict[str, str]:
    out = {}
    for split in ("train", "val", "test"):
        for line, _family in result.records(split):
            out[orjson.loads(line)["metadata"]["content_hash"]] = split
    return out


def test_rebuild_with_ten_percent_more_data_moves_no_conversation(tmp_path: Path) -> None:
    records = [r for r, _ in generate(3300, seed=3, exact_rate=0.0, near_rate=0.0)]
    _write(tmp_path / "data/main/a.jsonl", records[:2000])
    _write(tmp_path / "data/held/h.jsonl", records[2000:3000])
    cfg = _config(tmp_path)
    first = _assignments(compile_conversations(cfg, None))
    assert len(first) == 3000

    _write(tmp_path / "data/main/b.jsonl.gz", records[3000:3300], gz=True)
    second_result = compile_conversations(cfg, None)
    second = _assignments(second_result)
    assert len(second) == 3300
    moved = [h for h, split in first.items() if second[h] != split]
    assert moved == []
    per_family = second_result.counts.per_split_family
    assert set(per_family["test"]) == {"main", "held"}
    assert "held" not in per_family.get("train", {}) and "held" not in per_family.get("val", {})
    assert check_leakage(cfg, second_result).passed


def test_every_bad_input_lands_in_quarantine_with_its_reason(tmp_path: Path) -> None:
    good = {
        "messages": [{"role": "user", "content": "fine"}, {"role": "assistant", "content": "ok"}]
    }
    lines = [
        orjson.dumps(good),
        b"{broken",
        b"\xff\xfe not utf8",
        orjson.dumps({"foo": "bar"}),
        orjson.dumps({"messages": [{"role": "narrator", "content": "x"}]}),
        orjson.dumps({"messages": [{"role": "user", "content": ""}]}),
        orjson.dumps({"messages": [{"role": "user", "content": 3}]}),
        orjson.dumps({"messages": [{"role": "system", "content": "only"}]}),
        orjson.dumps({"prompt": "x" * 5000, "response": "long"}),
    ]
    folder = tmp_path / "data/main"
    folder.mkdir(parents=True)
    (folder / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n" + b'{"messages": [{"ro')
    (folder / "cut.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress(orjson.dumps(good) + b"\n")[:-6]
    )
    (folder / "notarray.json").write_bytes(b'{"messages": []}')
    cfg = _config(tmp_path, normalize={"max_line_bytes": 4096})
    result = compile_conversations(cfg, None)
    assert result.counts.quarantined_by_reason == {
        "malformed_json": 1,
        "invalid_utf8": 1,
        "unknown_shape": 1,
        "unknown_role": 1,
        "empty_turn": 1,
        "non_string_content": 1,
        "empty_conversation": 1,
        "line_too_long": 1,
        "truncated_record": 2,
        "not_a_json_array": 1,
    }
    entries = [orjson.loads(x) for x in Path(result.quarantine_path).read_bytes().splitlines()]
    assert all(e["source"] and e["line"] >= 1 and e["reason"] for e in entries)
    by_reason = {e["reason"]: e for e in entries}
    assert by_reason["line_too_long"]["line"] == 9
    assert by_reason["malformed_json"]["raw_prefix"] == "{broken"


def test_provenance_sidecar_has_one_row_per_published_conversation(tmp_path: Path) -> None:
    records = [r for r, _ in generate(300, seed=5)]
    _write(tmp_path / "data/main/a.jsonl", records)
    result = compile_conversations(_config(tmp_path), None)
    rows = read_provenance(result.provenance.read_bytes())
    assert len(rows) == result.counts.published_records
    assert {r["h"] for r in rows} == set(_assignments(result))
    assert all(r["family"] == "main" and r["source"].endswith("a.jsonl") for r in rows)
    assert result.counts.near_duplicates > 0 and result.counts.exact_duplicates > 0
