"""A normalized conversation and its canonical serialization."""

from dataclasses import dataclass
from typing import Any

import orjson

Message = dict[str, str]


@dataclass(slots=True)
class Conversation:
    """One ChatML conversation with its provenance. Identity is ``content_hash``."""

    messages: list[Message]
    family: str
    source: str
    line: int
    content_hash: str

    def to_record(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "metadata": {
                "family": self.family,
                "source": self.source,
                "line": self.line,
                "content_hash": self.content_hash,
            },
        }

    def to_json_line(self) -> bytes:
        return orjson.dumps(self.to_record(), option=orjson.OPT_APPEND_NEWLINE)
