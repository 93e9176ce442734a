"""JSON-array sources lose nothing: a bad element is one entry and reading resumes after it."""

import gzip
import io
import json
import tracemalloc
from collections.abc import Iterator

import orjson
import pytest

from dataset_assets.core.sources import BadItem, RawItem, iter_source_items

MiB = 1024 * 1024
BOM = b"\xef\xbb\xbf"
RECORDS = [
    {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
    for i in range(10)
]


def _items(data: bytes, name: str = "x.json", max_bytes: int = 64 * MiB) -> list[RawItem | BadItem]:
    return list(iter_source_items(io.BytesIO(data), name, max_bytes))


def _summary(items: list[RawItem | BadItem]) -> tuple[list[int], list[tuple[str, int]]]:
    good = [i.line for i in items if isinstance(i, RawItem)]
    bad = [(i.reason, i.line) for i in items if isinstance(i, BadItem)]
    return good, bad


def _one_per_line(elements: list[bytes]) -> bytes:
    return b"[" + b",\n".join(elements) + b"]\n"


def _pretty(elements: list[bytes]) -> bytes:
    """json.dumps(indent=2) layout, with raw bytes allowed in the elements."""
    parts = []
    for raw in elements:
        try:
            parts.append(json.dumps(json.loads(raw), indent=2).replace("\n", "\n  ").encode())
        except ValueError:
            parts.append(raw)
    return b"[\n  " + b",\n  ".join(parts) + b"\n]"


ELEMENTS = [orjson.dumps(r) for r in RECORDS]


@pytest.mark.parametrize("layout", [_one_per_line, _pretty])
def test_bom_is_accepted_in_json_arrays(layout) -> None:
    items = _items(BOM + layout(ELEMENTS))
    assert [i.value for i in items if isinstance(i, RawItem)] == RECORDS
    assert _summary(items)[1] == []


@pytest.mark.parametrize("compression", ["", ".gz"])
def test_bom_is_accepted_in_jsonl(compression: str) -> None:
    data = BOM + b"".join(e + b"\n" for e in ELEMENTS)
    if compression:
        data = gzip.compress(data)
    items = _items(data, "x.jsonl" + compression)
    assert [i.value for i in items if isinstance(i, RawItem)] == RECORDS


M = b'{"messages": [{"role": "user", "content": '
BAD_ELEMENTS = {
    "invalid utf-8 byte": (M + b'"caf\xe9"}]}', "invalid_utf8"),
    "bad token": (M + b"tru}]}", "malformed_json"),
    "missing closing brace": (M + b'"a"}]', "malformed_json"),
    "extra closing bracket": (M + b'"a"}]]}', "malformed_json"),
    "unterminated string": (M + b'"a}]}', "malformed_json"),
    "lone surrogate escape": (M + b'"\\ud800"}]}', "invalid_text"),
}


@pytest.mark.parametrize("layout", [_one_per_line, _pretty])
@pytest.mark.parametrize("case", sorted(BAD_ELEMENTS))
def test_one_bad_element_is_one_entry_and_every_other_element_is_read(case, layout) -> None:
    bad, reason = BAD_ELEMENTS[case]
    elements = [*ELEMENTS[:3], bad, *ELEMENTS[3:]]
    items = _items(layout(elements))
    good, bads = _summary(items)
    assert bads == [(reason, 4)]
    assert good == [1, 2, 3, *range(5, 12)]
    assert [i.value for i in items if isinstance(i, RawItem)] == RECORDS


def test_every_bad_element_is_its_own_entry() -> None:
    bad = [b'{"a": \xff}', b'{"b": }', b'{"c": [1, 2}']
    elements = [ELEMENTS[0], bad[0], ELEMENTS[1], bad[1], ELEMENTS[2], bad[2], ELEMENTS[3]]
    good, bads = _summary(_items(_one_per_line(elements)))
    assert good == [1, 3, 5, 7]
    assert bads == [("invalid_utf8", 2), ("malformed_json", 4), ("malformed_json", 6)]


def test_bad_element_detail_names_its_line_in_the_file() -> None:
    items = _items(_pretty([ELEMENTS[0], b'{"a": nope}', ELEMENTS[1]]))
    (bad,) = [i for i in items if isinstance(i, BadItem)]
    first_lines = json.dumps(RECORDS[0], indent=2).count("\n") + 1
    assert f"line {first_lines + 2}" in bad.detail


def test_element_over_the_limit_is_skipped_and_reading_continues() -> None:
    big = orjson.dumps({"messages": [{"role": "user", "content": "w " * MiB}]})
    items = _items(_one_per_line([ELEMENTS[0], big, ELEMENTS[1], ELEMENTS[2]]), max_bytes=64 * 1024)
    good, bads = _summary(items)
    assert bads == [("line_too_long", 2)] and good == [1, 3, 4]
    assert len([i for i in items if isinstance(i, BadItem)][0].raw) <= 1024


def test_missing_comma_between_elements_loses_nothing() -> None:
    data = b"[" + ELEMENTS[0] + b"\n" + ELEMENTS[1] + b",\n" + ELEMENTS[2] + b"]"
    assert _summary(_items(data)) == ([1, 2, 3], [])


def test_trailing_comma_is_accepted() -> None:
    assert _summary(_items(b"[" + ELEMENTS[0] + b",]")) == ([1], [])


def test_concatenated_arrays_are_all_read() -> None:
    data = _one_per_line(ELEMENTS[:2]) + _one_per_line(ELEMENTS[2:4])
    assert _summary(_items(data)) == ([1, 2, 3, 4], [])


def test_garbage_after_the_array_is_reported() -> None:
    good, bads = _summary(_items(_one_per_line(ELEMENTS[:2]) + b"oops"))
    assert good == [1, 2] and bads == [("malformed_json", 3)]


def test_empty_array_and_empty_file_yield_nothing() -> None:
    assert _items(b"[]") == [] and _items(b"") == [] and _items(BOM + b"  \n") == []


def test_scalar_and_string_elements_are_items() -> None:
    items = _items(b'[1, "a,]b", null, [2, "]"], {"k": "}"}]')
    assert [i.value for i in items if isinstance(i, RawItem)] == [
        1,
        "a,]b",
        None,
        [2, "]"],
        {"k": "}"},
    ]


def test_escaped_quotes_do_not_end_strings() -> None:
    value = {"messages": [{"role": "user", "content": 'say "hi", then \\"]'}]}
    assert [i.value for i in _items(b"[" + orjson.dumps(value) + b"]")] == [value]


class _Generated(io.RawIOBase):
    """A large JSON array produced on the fly: never in memory as a whole."""

    def __init__(self, count: int) -> None:
        self._parts: Iterator[bytes] = self._gen(count)
        self._buf = b""

    @staticmethod
    def _gen(count: int) -> Iterator[bytes]:
        yield b"[\n"
        for i in range(count):
            sep = b",\n" if i else b""
            text = "x" * 4000 + str(i)
            yield sep + orjson.dumps({"messages": [{"role": "user", "content": text}]})
        yield b"\n]\n"

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        while not self._buf:
            self._buf = next(self._parts, b"")
            if not self._buf:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def test_large_array_is_streamed_in_bounded_memory() -> None:
    count = 5_000  # ~20 MB of JSON, 20 times the record limit
    tracemalloc.start()
    try:
        stream = io.BufferedReader(_Generated(count), buffer_size=MiB)
        n = 0
        for item in iter_source_items(stream, "big.json", 1 * MiB):
            assert isinstance(item, RawItem)
            n += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == count
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"


def test_nested_object_that_looks_like_the_next_element_is_not_an_element_end() -> None:
    values = [{"id": 0}, {"id": 1}, {"id": 2, "sub": [{"q": 1}, {"id": 9}]}, {"id": 3}] * 3
    for data in (json.dumps(values).encode(), _one_per_line([orjson.dumps(v) for v in values])):
        assert [i.value for i in _items(data)] == values


def test_element_with_a_string_over_the_limit_is_skipped_in_bounded_memory() -> None:
    big = orjson.dumps({"messages": [{"role": "user", "content": "w" * (24 * MiB)}]})
    data = _one_per_line([ELEMENTS[0], big, ELEMENTS[1]])
    stream = io.BufferedReader(io.BytesIO(data), buffer_size=MiB)
    tracemalloc.start()
    try:
        items = list(iter_source_items(stream, "x.json", 1 * MiB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _summary(items) == ([1, 3], [("line_too_long", 2)])
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"


def test_element_with_a_long_string_under_the_limit_is_read() -> None:
    text = "w" * (12 * MiB)
    big = orjson.dumps({"messages": [{"role": "user", "content": text}]})
    items = _items(_one_per_line([ELEMENTS[0], big, ELEMENTS[1]]))
    assert [i.line for i in items if isinstance(i, RawItem)] == [1, 2, 3]
    assert items[1].value["messages"][0]["content"] == text
