"""Hostile input never crashes: every bad record becomes a quarantine entry with a reason.

Each file below is what a user could drop into a family's folder. The pass over it mirrors what
the compile does per item (parse → normalize → quarantine with a raw prefix, or hash and write
the record) and must end with every record accounted for and every output line valid JSON.
"""

import io
import json
import os
import random
from collections import Counter
from pathlib import Path

import orjson
import pytest

from dataset_assets.core.config import DedupOptions, NormalizeOptions
from dataset_assets.core.dedup import content_hash
from dataset_assets.core.errors import InvalidRecordError
from dataset_assets.core.normalize import normalize_messages
from dataset_assets.core.quarantine import RAW_PREFIX_BYTES, QuarantineWriter, raw_prefix
from dataset_assets.core.records import Conversation
from dataset_assets.core.sources import BadItem, iter_source_items

MiB = 1024 * 1024
OPTS = NormalizeOptions()


def _chat(i: int) -> dict[str, object]:
    return {
        "messages": [
            {"role": "user", "content": f"question {i}"},
            {"role": "assistant", "content": f"answer {i}"},
        ]
    }


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def _array(elements: list[str]) -> bytes:
    return ("[\n" + ",\n".join(elements) + "\n]\n").encode("utf-8", "surrogatepass")


GOOD = [json.dumps(_chat(i)) for i in range(4)]
HUGE_INT = "1" + "0" * 5000


def _pass(data: bytes, name: str, tmp_path: Path) -> tuple[list[Conversation], list[dict]]:
    """What the compile does with one file: records kept, quarantine entries as written."""
    kept: list[Conversation] = []
    qpath = tmp_path / "quarantine.jsonl"
    with QuarantineWriter(qpath) as quarantine:
        for item in iter_source_items(io.BytesIO(data), name, 64 * MiB):
            if isinstance(item, BadItem):
                quarantine.add(item.reason, "f", name, item.line, item.raw, item.detail)
                continue
            try:
                messages = normalize_messages(item.value, OPTS)
            except InvalidRecordError as exc:
                raw = raw_prefix(item.value)
                quarantine.add(exc.reason, "f", name, item.line, raw, exc.detail)
                continue
            digest = content_hash(messages, DedupOptions())
            conv = Conversation(messages, "f", name, item.line, digest)
            orjson.loads(conv.to_json_line())
            kept.append(conv)
    entries = [orjson.loads(line) for line in qpath.read_bytes().splitlines()]
    return kept, entries


HOSTILE_ARRAYS = {
    "5000-digit integer": (f'{{"messages": [], "n": {HUGE_INT}}}', "malformed_json"),
    "5000-deep nesting": (f'{{"messages": {_nested(5000)}}}', "malformed_json"),
    "lone surrogate in content": (
        '{"messages": [{"role": "user", "content": "a\\ud800b"}, '
        '{"role": "assistant", "content": "ok"}]}',
        "invalid_text",
    ),
    "64-bit overflow in an unknown shape": ('{"weird": 18446744073709551616}', "unknown_shape"),
    "300-deep unknown shape": (f'{{"weird": {_nested(300)}}}', "unknown_shape"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ARRAYS))
def test_hostile_json_array_element_is_one_quarantine_entry(case: str, tmp_path: Path) -> None:
    element, reason = HOSTILE_ARRAYS[case]
    data = _array([GOOD[0], GOOD[1], element, GOOD[2], GOOD[3]])
    kept, entries = _pass(data, "hostile.json", tmp_path)
    assert [c.line for c in kept] == [1, 2, 4, 5]
    assert [(e["reason"], e["line"]) for e in entries] == [(reason, 3)]
    assert len(entries[0]["raw_prefix"].encode()) <= RAW_PREFIX_BYTES * 3


HOSTILE_LINES = {
    "300-deep unknown shape": (f'{{"weird": {_nested(300)}}}', "unknown_shape"),
    "64-bit overflow in an unknown shape": ('{"weird": 18446744073709551616}', "unknown_shape"),
    "5000-deep nesting": (f'{{"messages": {_nested(5000)}}}', "malformed_json"),
    "lone surrogate in content": (
        '{"messages": [{"role": "user", "content": "\\udc80"}]}',
        "invalid_text",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_LINES))
def test_hostile_jsonl_line_is_one_quarantine_entry(case: str, tmp_path: Path) -> None:
    line, reason = HOSTILE_LINES[case]
    data = "\n".join([GOOD[0], line, GOOD[1]]).encode() + b"\n"
    kept, entries = _pass(data, "hostile.jsonl", tmp_path)
    assert [c.line for c in kept] == [1, 3]
    assert [(e["reason"], e["line"]) for e in entries] == [(reason, 2)]


def _deep_list(depth: int) -> list[object]:
    value: list[object] = ["x"]
    for _ in range(depth):
        value = [value]
    return value


def _deep_dict(depth: int) -> dict[str, object]:
    value: dict[str, object] = {"k": 1}
    for _ in range(depth):
        value = {"k": value}
    return value


# Values Python's json module produces (it accepts lone surrogates, any integer, NaN).
DECODED = {
    "deep list as content": {"messages": [{"role": "user", "content": _deep_list(100_000)}]},
    "deep dict as role": {"messages": [{"role": _deep_dict(100_000), "content": "x"}]},
    "deep list as speaker": {
        "turns": [{"speaker": _deep_list(100_000), "text": "a"}, {"speaker": "b", "text": "c"}]
    },
    "huge int as role": {"messages": [{"role": 10**5000, "content": "x"}]},
    "huge int record": 10**5000,
    "surrogate content": {"messages": [{"role": "user", "content": "\ud800"}]},
    "surrogate in text parts": {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "\udfff"}]}]
    },
    "surrogate system prompt": {
        "system": "\ud800",
        "messages": [{"role": "user", "content": "a"}],
    },
    "surrogate key": {"\ud800": 1},
    "surrogate alpaca input": {"instruction": "a", "input": "\ud800", "output": "b"},
    "surrogate grouped text": {"messages": [[{"text": "\ud800", "sender": "a"}]]},
    "nan content": {"messages": [{"role": "user", "content": float("nan")}]},
    "messages is a string": {"messages": "hello"},
    "messages of mixed lists": {"messages": [[{"text": "a"}], {"role": "user"}]},
    "group of scalars": {"messages": [[1, 2]]},
    "none": None,
}


@pytest.mark.parametrize("case", sorted(DECODED))
def test_normalize_rejects_any_decoded_value_with_a_reason(case: str) -> None:
    with pytest.raises(InvalidRecordError) as exc:
        normalize_messages(DECODED[case], OPTS)
    assert exc.value.reason in {
        "unknown_shape",
        "unknown_role",
        "non_string_content",
        "invalid_text",
        "empty_turn",
    }
    orjson.dumps({"detail": exc.value.detail})
    assert len(exc.value.detail) <= 300


def test_lone_surrogate_is_rejected_as_invalid_text() -> None:
    with pytest.raises(InvalidRecordError) as exc:
        normalize_messages(DECODED["surrogate content"], OPTS)
    assert exc.value.reason == "invalid_text"


RAW_VALUES = {
    **DECODED,
    "64-bit overflow": {"n": 2**64},
    "300-deep dict": _deep_dict(300),
    "long string": "x" * (10 * MiB),
    "set": {1, 2},
    "bytes": b"\xff",
    "int key": {1: "a"},
}


@pytest.mark.parametrize("case", sorted(RAW_VALUES))
def test_raw_prefix_never_raises_and_is_bounded(case: str) -> None:
    raw = raw_prefix(RAW_VALUES[case])
    assert isinstance(raw, bytes) and 0 < len(raw) <= RAW_PREFIX_BYTES


def test_raw_prefix_of_a_plain_record_is_its_json() -> None:
    record = {"weird": [1, "two", None, True, 2.5, {"a": "é"}]}
    assert raw_prefix(record) == orjson.dumps(record)


def test_raw_prefix_names_what_it_cannot_encode() -> None:
    text = raw_prefix({"n": 2**70, "s": "a\ud800"}).decode()
    assert str(2**70) in text and "\\ud800" in text


def test_quarantine_writer_accepts_surrogates_in_every_field(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    with QuarantineWriter(path) as quarantine:
        quarantine.add("unknown_shape", "f", "bad-\udcff.jsonl", 1, b"\xff", "keys ['\ud800']")
    (entry,) = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert entry["source"] == "bad-\\udcff.jsonl" and entry["reason"] == "unknown_shape"
    assert quarantine.counts == Counter({"unknown_shape": 1})


LAYOUTS = {
    "compact": json.dumps([_chat(i) for i in range(12)]).encode(),
    "pretty": json.dumps([_chat(i) for i in range(12)], indent=2).encode(),
    "jsonl": b"".join(orjson.dumps(_chat(i)) + b"\n" for i in range(12)),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_randomly_damaged_files_never_raise(layout: str, tmp_path: Path) -> None:
    rng = random.Random(layout)
    alphabet = b'{}[]",:\\\n \xff\xef0a'
    for _ in range(150):
        data = bytearray(LAYOUTS[layout])
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            roll = rng.random()
            if roll < 0.4:
                data[at] = rng.choice(alphabet)
            elif roll < 0.7:
                del data[at]
            else:
                data.insert(at, rng.choice(alphabet))
        for name in ("damaged.json", "damaged.jsonl"):
            kept, entries = _pass(bytes(data), name, tmp_path)
            assert kept or entries


def _hostile_folder(root: Path) -> list[str]:
    """A family folder of hostile files; returns the uris they should be listed under."""
    data = root / "data"
    data.mkdir()
    files = {
        "huge-int.json": _array([GOOD[0], HOSTILE_ARRAYS["5000-digit integer"][0], GOOD[1]]),
        "deep.json": _array([GOOD[0], HOSTILE_ARRAYS["5000-deep nesting"][0]]),
        "surrogate.json": _array([HOSTILE_ARRAYS["lone surrogate in content"][0], GOOD[2]]),
        "odd-shapes.jsonl": "".join(line + "\n" for line, _ in HOSTILE_LINES.values()).encode(),
        "bom.json": b"\xef\xbb\xbf" + _array(GOOD),
        "bad-byte.json": _array([GOOD[0], '{"messages": "caf\udce9"}', GOOD[1]]),
        "grouped.jsonl": orjson.dumps(
            {
                "id": 1,
                "messages": [
                    [{"text": "hi", "sender": "a", "timestamp": 1}],
                    [{"text": "yo", "sender": "b", "timestamp": 2}],
                ],
            }
        ),
    }
    for name, body in files.items():
        (data / name).write_bytes(body)
    with open(os.fsencode(data) + b"/bad-\xff.jsonl", "wb") as fh:
        fh.write(orjson.dumps(_chat(9)) + b"\n")
    return sorted(["data/bad-\\xff.jsonl", *(f"data/{name}" for name in files)])


def test_hostile_files_compile_to_records_and_quarantine_entries(tmp_path: Path) -> None:
    """Stage 1 of the compile over every hostile file: nothing raises, every record is
    published or quarantined, and no absolute path reaches the output."""
    from dataset_assets.core.config import parse_config
    from dataset_assets.core.partition import (
        QUARANTINE_NAME,
        RECORDS_NAME,
        PartitionSpec,
        process_partition,
        read_records,
    )
    from dataset_assets.pipeline.sources import list_sources, open_source

    expected = _hostile_folder(tmp_path)
    cfg = parse_config({"bucket": "bkt", "families": [{"name": "f", "paths": ["data"]}]}, tmp_path)
    refs = list_sources(cfg.families[0], None, root=tmp_path)
    assert sorted(r.uri for r in refs) == expected
    published = 0
    reasons: Counter[str] = Counter()
    for number, ref in enumerate(refs):
        out = tmp_path / "out" / str(number)
        spec = PartitionSpec(ref.family, False, ref.uri, ref.size, ref.fingerprint)
        with open_source(ref, None) as stream:
            summary = process_partition(stream, spec, cfg, out)
        assert summary.input_records == summary.candidates + sum(
            summary.quarantined_by_reason.values()
        )
        lines = list(read_records(out / RECORDS_NAME))
        entries = (out / QUARANTINE_NAME).read_bytes().splitlines()
        for raw in [*lines, *entries]:
            assert str(tmp_path).encode() not in raw
            orjson.loads(raw)
        published += len(lines)
        reasons.update(orjson.loads(e)["reason"] for e in entries)
    assert published == 12  # every good element and line, the grouped chat, bad-\xff.jsonl
    assert reasons == {
        "malformed_json": 3,
        "unknown_shape": 2,
        "invalid_text": 2,
        "invalid_utf8": 1,
    }
