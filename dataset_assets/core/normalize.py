"""Normalization of source record shapes to ChatML messages.

Record shapes, tried in this order (the first key found decides):

| shape        | keys                                          | roles                          |
|--------------|-----------------------------------------------|--------------------------------|
| ChatML       | ``messages: [{role, content}]``               | strict: role table             |
| ShareGPT     | ``conversations: [{from, value}]``            | strict: role table             |
| turn list    | ``conversation``/``dialogue``/``dialog``/     | role table when every speaker  |
|              | ``turns``/``utterances``/``chat``: turns with | is in it; else speakers are    |
|              | a speaker (``role``/``from``/``speaker``/     | opaque ids: user/assistant,    |
|              | ``author``/``sender``/``user``) and a text    | flipping on each speaker       |
|              | (``content``/``value``/``text``/``message``/  | change; no speakers at all:    |
|              | ``utterance``)                                | alternating from ``user``      |
| Alpaca       | ``instruction`` [+ ``input``] + ``output``    | user (instruction + input),    |
|              |                                               | assistant (output)             |
| pair         | ``prompt``+``response``/``completion``,       | user, assistant                |
|              | ``question``+``answer``, ``query``+``response``|                               |

A top-level string ``system`` (or ``system_prompt``) becomes the first system turn. Content may
be a string or a list of ``{"type": "text", "text": ...}`` parts (joined).

Role table (case-insensitive, surrounding spaces ignored):

| ChatML role  | source roles                                                               |
|--------------|----------------------------------------------------------------------------|
| ``system``   | system, system_prompt, developer                                           |
| ``user``     | user, human, prompter, customer, client, patient, student, person, usr    |
| ``assistant``| assistant, gpt, chatgpt, gpt-3.5, gpt-4, bing, bard, claude, gemini,       |
|              | llama, bot, ai, model, llm, agent, coach, therapist                        |

Options: ``system_prompt: strip`` removes system turns; ``default_system_prompt`` is injected
when a conversation has none (after stripping). Quarantine reasons raised as
:class:`InvalidRecordError`: ``unknown_shape``, ``unknown_role`` (ChatML/ShareGPT only),
``empty_turn``, ``non_string_content``, ``empty_conversation``.
"""

from typing import Any

from dataset_assets.core.config import NormalizeOptions
from dataset_assets.core.errors import InvalidRecordError
from dataset_assets.core.records import Message

ROLE_TABLE: dict[str, str] = {
    **dict.fromkeys(("system", "system_prompt", "developer"), "system"),
    **dict.fromkeys(
        ("user", "human", "prompter", "customer", "client", "patient", "student", "person", "usr"),
        "user",
    ),
    **dict.fromkeys(
        (
            "assistant",
            "gpt",
            "chatgpt",
            "gpt-3.5",
            "gpt-4",
            "bing",
            "bard",
            "claude",
            "gemini",
            "llama",
            "bot",
            "ai",
            "model",
            "llm",
            "agent",
            "coach",
            "therapist",
        ),
        "assistant",
    ),
}

TURN_LIST_KEYS = ("conversation", "dialogue", "dialog", "turns", "utterances", "chat")
SPEAKER_KEYS = ("role", "from", "speaker", "author", "sender", "user")
TEXT_KEYS = ("content", "value", "text", "message", "utterance")
PAIR_KEYS = (
    ("prompt", "response"),
    ("prompt", "completion"),
    ("question", "answer"),
    ("query", "response"),
)


def map_role(role: Any) -> str | None:
    """The ChatML role for a source role name, or None when it is not in the role table."""
    if not isinstance(role, str):
        return None
    return ROLE_TABLE.get(role.strip().lower())


def _text(content: Any, role: str) -> str:
    if (
        isinstance(content, list)
        and content
        and all(isinstance(p, dict) and p.get("type") == "text" for p in content)
    ):
        content = "\n".join(
            p.get("text") if isinstance(p.get("text"), str) else "" for p in content
        )
    if not isinstance(content, str):
        raise InvalidRecordError(
            "non_string_content", f"{role} content of type {type(content).__name__}"
        )
    if not content.strip():
        raise InvalidRecordError("empty_turn", f"empty {role} turn")
    return content


def _first(turn: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for key in keys:
        if key in turn:
            return key, turn[key]
    return None, None


def _objects(turns: list[Any], key: str) -> list[dict[str, Any]]:
    if not turns:
        raise InvalidRecordError("empty_conversation", f"{key} is an empty list")
    if not all(isinstance(t, dict) for t in turns):
        raise InvalidRecordError("unknown_shape", f"{key} entries must be objects")
    return turns


def _strict_turns(turns: list[dict[str, Any]], role_key: str, text_key: str) -> list[Message]:
    out: list[Message] = []
    for t in turns:
        role = map_role(t.get(role_key))
        if role is None:
            raise InvalidRecordError("unknown_role", f"{role_key} {t.get(role_key)!r}")
        out.append({"role": role, "content": _text(t.get(text_key), role)})
    return out


def _speaker_turns(turns: list[dict[str, Any]]) -> list[Message]:
    speakers: list[Any] = []
    texts: list[Any] = []
    for t in turns:
        _, speaker = _first(t, SPEAKER_KEYS)
        text_key, text = _first(t, TEXT_KEYS)
        if text_key is None:
            raise InvalidRecordError("unknown_shape", f"turn keys {sorted(t)[:8]}")
        speakers.append(speaker)
        texts.append(text)
    if all(s is None for s in speakers):
        roles = ["user" if i % 2 == 0 else "assistant" for i in range(len(turns))]
    elif all(map_role(s) is not None for s in speakers):
        roles = [r for r in (map_role(s) for s in speakers) if r is not None]
    else:
        roles = []
        current = "assistant"
        previous: Any = object()
        for s in speakers:
            if map_role(s) == "system":
                roles.append("system")
                continue
            if s != previous:
                current = "user" if current == "assistant" else "assistant"
                previous = s
            roles.append(current)
    return [{"role": r, "content": _text(x, r)} for r, x in zip(roles, texts, strict=True)]


def _pair(user: Any, assistant: Any) -> list[Message]:
    return [
        {"role": "user", "content": _text(user, "user")},
        {"role": "assistant", "content": _text(assistant, "assistant")},
    ]


def _turns(value: dict[str, Any]) -> list[Message]:
    if isinstance(value.get("messages"), list):
        return _strict_turns(_objects(value["messages"], "messages"), "role", "content")
    if isinstance(value.get("conversations"), list):
        return _strict_turns(_objects(value["conversations"], "conversations"), "from", "value")
    for key in TURN_LIST_KEYS:
        if isinstance(value.get(key), list):
            return _speaker_turns(_objects(value[key], key))
    if "instruction" in value and "output" in value:
        instruction = _text(value["instruction"], "user")
        extra = value.get("input")
        if extra is not None and not isinstance(extra, str):
            raise InvalidRecordError("non_string_content", "alpaca input is not a string")
        prompt = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
        return _pair(prompt, value["output"])
    for user_key, assistant_key in PAIR_KEYS:
        if user_key in value and assistant_key in value:
            return _pair(value[user_key], value[assistant_key])
    raise InvalidRecordError("unknown_shape", f"keys {sorted(value)[:8]}")


def normalize_messages(value: Any, options: NormalizeOptions) -> list[Message]:
    """Turn one parsed record into ChatML messages, or raise InvalidRecordError with a reason."""
    if not isinstance(value, dict):
        raise InvalidRecordError("unknown_shape", f"record is a {type(value).__name__}")
    turns = _turns(value)
    _, system = _first(value, ("system", "system_prompt"))
    if isinstance(system, str) and system.strip() and not any(t["role"] == "system" for t in turns):
        turns.insert(0, {"role": "system", "content": system})
    if options.system_prompt == "strip":
        turns = [t for t in turns if t["role"] != "system"]
    if options.default_system_prompt and not any(t["role"] == "system" for t in turns):
        turns.insert(0, {"role": "system", "content": options.default_system_prompt})
    if not any(t["role"] != "system" for t in turns):
        raise InvalidRecordError("empty_conversation", "no user or assistant turn")
    return turns
