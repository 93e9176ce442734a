"""Every source container and format, cut files and over-long lines."""

import gzip
import io
import json
from pathlib import Path

import orjson
import pytest
import zstandard

from dataset_assets.core.sources import BadItem, RawItem, iter_source_items

MiB = 1024 * 1024
RECORDS = [
    {
        "messages": [
            {"role": "user", "content": f"hello {i}"},
            {"role": "assistant", "content": "hi"},
        ]
    }
    for i in range(50)
]
JSONL = b"".join(orjson.dumps(r) + b"\n" for r in RECORDS)
ARRAY = json.dumps(RECORDS, indent=1).encode()


def _items(data: bytes, name: str, max_line_bytes: int = 64 * MiB) -> list[RawItem | BadItem]:
    return list(iter_source_items(io.BytesIO(data), name, max_line_bytes))


def _encode(data: bytes, compression: str) -> bytes:
    if compression == "gz":
        return gzip.compress(data)
    if compression == "zst":
        return zstandard.ZstdCompressor().compress(data)
    return data


@pytest.mark.parametrize("compression", ["", "gz", "zst"])
@pytest.mark.parametrize(("fmt", "payload"), [("jsonl", JSONL), ("json", ARRAY)])
def test_every_container_yields_every_record(fmt, payload, compression) -> None:
    name = f"part.{fmt}" + (f".{compression}" if compression else "")
    items = _items(_encode(payload, compression), name)
    assert [i.value for i in items if isinstance(i, RawItem)] == RECORDS
    assert [i.line for i in items] == list(range(1, 51))


MANY = [
    {"messages": [{"role": "user", "content": f"q {i} " + "x" * (i % 97)}]} for i in range(6000)
]


@pytest.mark.parametrize("compression", ["", "gz", "zst"])
@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_truncated_file_yields_complete_records_then_one_truncated_entry(fmt, compression) -> None:
    if fmt == "jsonl":
        payload = b"".join(orjson.dumps(r) + b"\n" for r in MANY)
    else:
        payload = json.dumps(MANY).encode()
    encoded = _encode(payload, compression)
    cut = encoded[: int(len(encoded) * 0.6)]
    items = _items(cut, f"part.{fmt}" + (f".{compression}" if compression else ""))
    good = [i.value for i in items if isinstance(i, RawItem)]
    bad = [i for i in items if isinstance(i, BadItem)]
    # zstd can only decode whole blocks (<= 128 KiB): the records of the cut block are lost
    assert good == MANY[: len(good)] and 1000 < len(good) < 6000
    assert [b.reason for b in bad] == ["truncated_record"]
    assert bad[0].line == len(good) + 1


def test_bad_lines_are_reported_with_reason_and_line() -> None:
    data = JSONL[:200].rsplit(b"\n", 1)[0] + b"\n{not json\n\xff\xfe{}\n" + JSONL
    items = _items(data, "x.jsonl")
    bad = {i.reason: i.line for i in items if isinstance(i, BadItem)}
    assert set(bad) == {"malformed_json", "invalid_utf8"}
    assert sum(isinstance(i, RawItem) for i in items) > 50


def test_json_file_that_is_not_an_array_is_one_bad_item() -> None:
    items = _items(b'"a string"\n', "x.json")
    assert [(i.reason, i.line) for i in items if isinstance(i, BadItem)] == [
        ("not_a_json_array", 1)
    ]


def test_json_file_holding_objects_without_an_array_yields_each_object() -> None:
    assert [i.value for i in _items(b'{"messages": []}', "x.json")] == [{"messages": []}]
    assert [i.value for i in _items(JSONL, "x.json")] == RECORDS


def _big_record(size: int) -> bytes:
    text = "word " * (size // 5)
    return orjson.dumps({"messages": [{"role": "user", "content": text}]}) + b"\n"


def test_fifty_megabyte_line_is_a_record_under_the_limit() -> None:
    big = _big_record(50 * MiB)
    items = _items(JSONL[:100].rsplit(b"\n", 1)[0] + b"\n" + big + JSONL, "x.jsonl")
    sizes = [len(i.value["messages"][0]["content"]) for i in items if isinstance(i, RawItem)]
    assert max(sizes) >= 50 * MiB - 10
    assert not [i for i in items if isinstance(i, BadItem)]


def test_fifty_megabyte_line_over_the_limit_is_quarantined_and_reading_continues() -> None:
    big = _big_record(50 * MiB)
    items = _items(big + JSONL, "x.jsonl", max_line_bytes=1 * MiB)
    bad = [i for i in items if isinstance(i, BadItem)]
    assert [(b.reason, b.line) for b in bad] == [("line_too_long", 1)]
    assert len(bad[0].raw) <= 1024
    assert [i.value for i in items if isinstance(i, RawItem)] == RECORDS
    assert [i.line for i in items if isinstance(i, RawItem)][0] == 2


@pytest.mark.parametrize("compression", ["", "gz", "zst"])
def test_an_over_long_first_line_after_a_bom_is_quarantined_and_reading_continues(
    compression: str,
) -> None:
    """The BOM does not make a cut first line look complete: it used to be reported as the
    file's truncated last record, and every line after it was dropped."""
    data = b"\xef\xbb\xbf" + _big_record(8 * 1024) + JSONL
    items = _items(
        _encode(data, compression), f"x.jsonl{'.' * bool(compression)}{compression}", 4096
    )
    bad = [i for i in items if isinstance(i, BadItem)]
    assert [(b.reason, b.line) for b in bad] == [("line_too_long", 1)]
    assert [i.value for i in items if isinstance(i, RawItem)] == RECORDS


def test_source_files_of_every_supported_suffix_are_listed(tmp_path: Path) -> None:
    from dataset_assets.core.config import SourceFamily
    from dataset_assets.core.sources import expand_local

    for name in ["a.jsonl", "b.jsonl.gz", "c.jsonl.zst", "d.json", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    refs = expand_local(SourceFamily(name="f", paths=[str(tmp_path / "*")]))
    assert [Path(r.uri).name for r in refs] == ["a.jsonl", "b.jsonl.gz", "c.jsonl.zst", "d.json"]
