"""A big plain JSONL file read in byte ranges on several cores gives exactly what one reading
of the whole file gives: the same records with the same line numbers, the same index rows, the
same quarantine entries and counts."""

from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from bench.gen_corpus import generate
from dataset_assets.core.config import parse_config
from dataset_assets.core.partition import (
    INDEX_NAME,
    QUARANTINE_NAME,
    PartitionSpec,
    merge_ranges,
    process_partition,
    read_records,
)
from dataset_assets.core.ranges import open_range, plan_ranges

BOM = b"\xef\xbb\xbf"


def _hostile_jsonl(path: Path, records: int = 1500) -> bytes:
    """Chats with the lines a cut must respect: a BOM on line 1 (itself over the limit),
    blank lines, malformed JSON, a record that does not normalize, lines over
    ``max_line_bytes`` (4 KiB here) and a truncated last record without a newline."""
    lines = [BOM + orjson.dumps({"messages": [{"role": "user", "content": "first" * 1000}]})]
    for i, (rec, _) in enumerate(generate(records, seed=7)):
        lines.append(orjson.dumps(rec))
        if i % 97 == 0:
            lines.append(b"")
        if i % 131 == 0:
            lines.append(b'{"messages": [broken')
        if i % 173 == 0:
            lines.append(orjson.dumps({"no": "messages"}))
        if i % 211 == 0:
            lines.append(orjson.dumps({"messages": [{"role": "user", "content": "x" * 9000}]}))
    data = b"\n".join(lines) + b'\n{"messages": [{"role": "user", "content": "cut'
    path.write_bytes(data)
    return data


def test_ranges_cut_at_line_starts_and_number_their_first_line(tmp_path: Path) -> None:
    data = _hostile_jsonl(tmp_path / "chats.jsonl")
    for range_bytes in (50_000, 333_333, len(data) // 2, len(data)):
        ranges = plan_ranges(tmp_path / "chats.jsonl", len(data), range_bytes)
        assert len(ranges) == max(1, round(len(data) / range_bytes))
        assert ranges[0].start == 0 and ranges[-1].end == len(data)
        for before, after in zip(ranges, ranges[1:], strict=False):
            assert before.end == after.start
        for r in ranges:
            assert r.start == 0 or data[r.start - 1 : r.start] == b"\n"
            assert r.first_line == data.count(b"\n", 0, r.start) + 1
            with open_range(str(tmp_path / "chats.jsonl"), r) as stream:
                assert stream.read() == data[r.start : r.end]


def test_a_line_longer_than_the_ranges_is_never_cut(tmp_path: Path) -> None:
    data = b"a\n" + b"x" * 100_000 + b"\nb\nc\n"
    (tmp_path / "long.jsonl").write_bytes(data)
    ranges = plan_ranges(tmp_path / "long.jsonl", len(data), 10_000)
    assert [(r.start, r.first_line) for r in ranges] == [(0, 1), (100_003, 3), (100_005, 4)]
    assert ranges[-1].end == len(data)


@pytest.mark.parametrize("near", [True, False])
def test_a_file_read_in_ranges_gives_the_outputs_of_one_reading(tmp_path: Path, near: bool) -> None:
    path = tmp_path / "chats.jsonl"
    data = _hostile_jsonl(path)
    cfg = parse_config(
        {
            "bucket": "ranges",
            "families": [{"name": "chats", "paths": ["chats.jsonl"]}],
            "normalize": {"max_line_bytes": 4096},
            "dedup": {"near": near},
        },
        tmp_path,
    )
    spec = PartitionSpec("chats", False, "chats.jsonl", len(data), "f")
    with path.open("rb") as stream:
        whole = process_partition(stream, spec, cfg, tmp_path / "whole")

    ranges = plan_ranges(path, len(data), 200_000)
    assert len(ranges) > 5
    outs, summaries = [], []
    for i, r in enumerate(ranges):
        with open_range(str(path), r) as stream:
            summaries.append(process_partition(stream, spec, cfg, tmp_path / f"r{i}", r.first_line))
        outs.append(tmp_path / f"r{i}")
    merged = merge_ranges(outs, summaries, tmp_path / "merged")

    assert merged == whole
    assert whole.quarantined_by_reason.keys() >= {
        "malformed_json",
        "line_too_long",
        "truncated_record",
    }
    assert list(read_records(tmp_path / "merged" / "records.jsonl.zst")) == list(
        read_records(tmp_path / "whole" / "records.jsonl.zst")
    )
    assert pq.read_table(tmp_path / "merged" / INDEX_NAME).equals(
        pq.read_table(tmp_path / "whole" / INDEX_NAME)
    )
    quarantine = (tmp_path / "merged" / QUARANTINE_NAME).read_bytes()
    assert quarantine == (tmp_path / "whole" / QUARANTINE_NAME).read_bytes()
    # the line numbers are the file's: each quarantined line is the line it names
    file_lines = data.split(b"\n")
    for entry in map(orjson.loads, quarantine.splitlines()):
        if entry["reason"] == "malformed_json":
            assert file_lines[entry["line"] - 1] == b'{"messages": [broken'
    assert not any(out.exists() for out in outs)  # the range folders are removed
