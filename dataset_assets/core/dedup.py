"""Canonical content hashing and duplicate detection."""

import hashlib
import re
from typing import Literal

import orjson

from dataset_assets.core.config import DedupOptions
from dataset_assets.core.records import Message

_WS = re.compile(r"\s+")

Verdict = Literal["unique", "exact", "near"]


def canonical_messages(messages: list[Message], options: DedupOptions) -> list[list[str]]:
    out = []
    for m in messages:
        text = m["content"]
        if options.fold_whitespace:
            text = _WS.sub(" ", text).strip()
        if options.fold_case:
            text = text.casefold()
        out.append([m["role"], text])
    return out


def content_hash(messages: list[Message], options: DedupOptions) -> str:
    """sha256 (hex) of the canonical messages: a conversation's identity."""
    return hashlib.sha256(orjson.dumps(canonical_messages(messages, options))).hexdigest()


class Deduper:
    """Online exact dedup: the first conversation seen with a given hash wins."""

    def __init__(self, options: DedupOptions) -> None:
        self.options = options
        self._seen: set[bytes] = set()

    def classify(self, digest_hex: str, messages: list[Message]) -> Verdict:
        key = bytes.fromhex(digest_hex)[:16]
        if key in self._seen:
            return "exact"
        self._seen.add(key)
        return "unique"

    def close(self) -> None:
        self._seen.clear()
