"""Normalization of source record shapes to ChatML messages."""

from typing import Any

from dataset_assets.core.config import NormalizeOptions
from dataset_assets.core.errors import InvalidRecordError
from dataset_assets.core.records import Message

ROLE_TABLE: dict[str, str] = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
}


def _turn(role: Any, content: Any) -> Message:
    if not isinstance(role, str) or role.lower() not in ROLE_TABLE:
        raise InvalidRecordError("unknown_role", f"role {role!r}")
    if not isinstance(content, str):
        raise InvalidRecordError("non_string_content", f"content of type {type(content).__name__}")
    if not content.strip():
        raise InvalidRecordError("empty_turn", f"empty {role} turn")
    return {"role": ROLE_TABLE[role.lower()], "content": content}


def normalize_messages(value: Any, options: NormalizeOptions) -> list[Message]:
    """Turn one parsed record into ChatML messages, or raise InvalidRecordError with a reason."""
    if not isinstance(value, dict):
        raise InvalidRecordError("unknown_shape", f"record is a {type(value).__name__}")
    if isinstance(value.get("messages"), list):
        turns = [
            _turn(t.get("role"), t.get("content")) for t in value["messages"] if isinstance(t, dict)
        ]
        if len(turns) != len(value["messages"]):
            raise InvalidRecordError("unknown_shape", "messages entries must be objects")
    elif isinstance(value.get("conversations"), list):
        turns = [
            _turn(t.get("from"), t.get("value"))
            for t in value["conversations"]
            if isinstance(t, dict)
        ]
        if len(turns) != len(value["conversations"]):
            raise InvalidRecordError("unknown_shape", "conversations entries must be objects")
    else:
        raise InvalidRecordError("unknown_shape", f"keys {sorted(value)[:8]}")
    if options.system_prompt == "strip":
        turns = [t for t in turns if t["role"] != "system"]
    if options.default_system_prompt and not any(t["role"] == "system" for t in turns):
        turns.insert(0, {"role": "system", "content": options.default_system_prompt})
    if not any(t["role"] != "system" for t in turns):
        raise InvalidRecordError("empty_conversation", "no user or assistant turn")
    return turns
