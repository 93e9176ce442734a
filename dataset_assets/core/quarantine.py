"""Quarantine: every record that cannot be used, with its reason, source and line.

Whatever a source holds, writing its quarantine entry must not fail: :func:`raw_prefix` turns
any parsed value into at most :data:`RAW_PREFIX_BYTES` bytes (JSON when it can be, a readable
stand-in for what JSON cannot carry), and :class:`QuarantineWriter` escapes text that is not
valid Unicode (lone surrogates) instead of raising.
"""

import itertools
from collections import Counter
from pathlib import Path
from types import TracebackType

import orjson

RAW_PREFIX_BYTES = 512
_INT64 = (-(1 << 63), (1 << 64) - 1)


def safe_text(text: str) -> str:
    """``text`` unchanged if it is valid Unicode, else with lone surrogates as ``\\udXXX``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _leaf(value: object, budget: int) -> bytes:
    if isinstance(value, str):
        return orjson.dumps(safe_text(value[:budget]))
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return orjson.dumps(value)
    if isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            return orjson.dumps(value)
        if value.bit_length() <= 4 * RAW_PREFIX_BYTES:  # far below Python's str() digit limit
            return str(value).encode()
        return orjson.dumps(f"<integer of {value.bit_length()} bits>")
    return orjson.dumps(f"<{type(value).__name__}>")


def raw_prefix(value: object) -> bytes:
    """The first ``RAW_PREFIX_BYTES`` of ``value`` as JSON, for a quarantine entry. Never raises.

    Walks the value iteratively and stops once the budget is spent, so a huge record costs no
    more than its prefix and any nesting depth is fine. What JSON cannot hold is written as a
    readable stand-in: integers beyond 64 bits as their digits (or ``"<integer of N bits>"``),
    lone surrogates escaped as ``\\ud800``, other types as ``"<typename>"``.
    """
    out = bytearray()
    # a stack of pending work: values to write and literal bytes (separators, closers)
    stack: list[tuple[bool, object]] = [(False, value)]
    while stack and len(out) < RAW_PREFIX_BYTES:
        literal, item = stack.pop()
        if literal:
            out += item  # type: ignore[arg-type]
        elif isinstance(item, dict):
            out += b"{"
            stack.append((True, b"}"))
            pairs = list(itertools.islice(item.items(), RAW_PREFIX_BYTES))
            for i, (key, val) in reversed(list(enumerate(pairs))):
                stack.append((False, val))
                name = key if isinstance(key, str) else repr(key)[:64]
                stack.append((True, (b"," if i else b"") + orjson.dumps(safe_text(name)) + b":"))
        elif isinstance(item, list | tuple):
            out += b"["
            stack.append((True, b"]"))
            for i, val in reversed(list(enumerate(item[:RAW_PREFIX_BYTES]))):
                stack.append((False, val))
                if i:
                    stack.append((True, b","))
        else:
            out += _leaf(item, RAW_PREFIX_BYTES)
    return bytes(out[:RAW_PREFIX_BYTES])


class QuarantineWriter:
    """Appends quarantine entries as JSONL and counts them by reason."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = path.open("wb")
        self.counts: Counter[str] = Counter()

    def add(
        self, reason: str, family: str, source: str, line: int, raw: bytes, detail: str = ""
    ) -> None:
        self.counts[reason] += 1
        entry = {
            "reason": reason,
            "detail": safe_text(detail),
            "family": family,
            "source": safe_text(source),
            "line": line,
            "raw_prefix": raw[:RAW_PREFIX_BYTES].decode("utf-8", errors="replace"),
        }
        self._fh.write(orjson.dumps(entry) + b"\n")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "QuarantineWriter":
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
