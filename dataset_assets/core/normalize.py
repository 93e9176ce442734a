"""Normalization of source record shapes to ChatML messages.

Record shapes, tried in this order (the first key found decides):

| shape     | keys                                            | roles                         |
|-----------|-------------------------------------------------|-------------------------------|
| ChatML    | ``messages: [{role, content}]``                 | strict: role table            |
| grouped   | ``messages: [[{text, sender, ...}, ...], ...]`` | one turn per group (texts     |
|           | (a list of same-speaker groups; every text      | joined with a newline); roles |
|           | key and speaker key of turn lists is allowed)   | as for turn lists: first      |
|           |                                                 | speaker ``user``, alternating |
| ShareGPT  | ``conversations: [{from, value}]``              | strict: role table            |
| turn list | ``conversation``/``dialogue``/``dialog``/       | role table when every speaker |
|           | ``turns``/``utterances``/``chat``: turns with   | is in it; else speakers are   |
|           | a speaker (``role``/``from``/``speaker``/       | opaque ids: user/assistant,   |
|           | ``author``/``sender``/``user``) and a text      | flipping on each speaker      |
|           | (``content``/``value``/``text``/``message``/    | change; no speakers at all:   |
|           | ``utterance``); or turns that are plain strings | alternating from ``user``     |
|           | ; or turns of ``input`` + ``output`` and no     | (string turns too); ``input`` |
|           | text key (Capybara)                             | user, ``output`` assistant    |
| Alpaca    | ``instruction`` [+ ``input``] + ``output``      | user (instruction + input),   |
|           |                                                 | assistant (output)            |
| pair      | ``prompt``+``response``/``completion``,         | user, assistant               |
|           | ``question``+``answer``, ``query``+``response``,|                               |
|           | ``question``+``response`` (OpenOrca)            |                               |
| Dolly     | ``instruction`` [+ ``context``] + ``response``  | as Alpaca                     |
| UltraChat | ``data``: a list of strings                     | alternating from ``user``     |

Shapes added later (string and Capybara turns, OpenOrca's pair, Dolly, UltraChat) only read
records that no earlier shape reads, so a record keeps the reading it had.

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
when a conversation has none (after stripping).

:func:`normalize_messages` accepts any parsed JSON value (any nesting depth, integers of any
size, strings with lone surrogates, as Python's ``json`` module produces them) and raises
nothing but :class:`InvalidRecordError`, whose ``reason`` is one of:

| reason                 | meaning                                                           |
|------------------------|-------------------------------------------------------------------|
| ``unknown_shape``      | not an object, or no shape above matches (also: a speaker that is |
|                        | an object or list, a group mixing two senders)                    |
| ``unknown_role``       | a ChatML/ShareGPT role not in the role table                      |
| ``empty_turn``         | a turn whose text is empty or only whitespace                     |
| ``non_string_content`` | a turn whose text is not a string (or list of text parts)         |
| ``empty_conversation`` | no turn list, or only system turns                                |
| ``invalid_text``       | text that is not valid Unicode (a lone surrogate such as          |
|                        | ``"\\ud800"``): it cannot be written as UTF-8                     |

``detail`` is short (≤ 200 characters) and always valid UTF-8.
"""

from collections.abc import Sequence
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
    ("question", "response"),  # after the pairs above: a record that has both keeps its reading
)


def map_role(role: Any) -> str | None:
    """The ChatML role for a source role name, or None when it is not in the role table."""
    if not isinstance(role, str):
        return None
    return ROLE_TABLE.get(role.strip().lower())


def _describe(value: Any) -> str:
    """A short, printable description of any value (never its full text, never a deep repr)."""
    if isinstance(value, str):
        return repr(value[:60])[:80]  # repr escapes lone surrogates
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)
    return f"a {type(value).__name__}"


def _keys(value: dict[Any, Any]) -> str:
    names = sorted(k[:40] if isinstance(k, str) else _describe(k) for k in value)
    return "keys " + repr(names[:8])[:150]


def _check_text(text: str, role: str) -> str:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidRecordError(
                "invalid_text", f"{role} text is not valid Unicode at character {exc.start}"
            ) from None
    return text


def _string(content: Any, role: str) -> str:
    if (
        isinstance(content, list)
        and content
        and all(isinstance(p, dict) and p.get("type") == "text" for p in content)
    ):
        content = "\n".join(
            p.get("text") if isinstance(p.get("text"), str) else "" for p in content
        )
    if not isinstance(content, str):
        raise InvalidRecordError("non_string_content", f"{role} content is {_describe(content)}")
    return _check_text(content, role)


def _text(content: Any, role: str) -> str:
    text = _string(content, role)
    if not text.strip():
        raise InvalidRecordError("empty_turn", f"empty {role} turn")
    return text


def _first(turn: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for key in keys:
        if key in turn:
            return key, turn[key]
    return None, None


def _objects(turns: list[Any], key: str) -> list[dict[str, Any]]:
    if not turns:
        raise InvalidRecordError("empty_conversation", f"{key} is an empty list")
    if not {dict}.issuperset(map(type, turns)) and not all(isinstance(t, dict) for t in turns):
        raise InvalidRecordError("unknown_shape", f"{key} entries must be objects")
    return turns


def _strict_turns(turns: list[dict[str, Any]], role_key: str, text_key: str) -> list[Message]:
    out: list[Message] = []
    for t in turns:
        name = t.get(role_key)
        # fast path, same result: a role spelled as in the table, a non-blank ASCII string
        role = ROLE_TABLE.get(name) if type(name) is str else None
        if role is None:
            role = map_role(name)
            if role is None:
                raise InvalidRecordError("unknown_role", f"{role_key} {_describe(name)}")
        text = t.get(text_key)
        if type(text) is str and text.isascii() and text and not text.isspace():
            out.append({"role": role, "content": text})
        else:
            out.append({"role": role, "content": _text(text, role)})
    return out


Speaker = str | int | float | None


def _speaker(turn: dict[str, Any]) -> Speaker:
    _, speaker = _first(turn, SPEAKER_KEYS)
    if speaker is None or isinstance(speaker, str | int | float):
        return speaker
    raise InvalidRecordError("unknown_shape", f"speaker is {_describe(speaker)}")


def _roles(speakers: list[Speaker]) -> list[str]:
    """Roles for a turn sequence: the role table when every speaker is in it, else opaque ids
    (``user`` first, flipping on each speaker change), alternating when no speaker is named."""
    if all(s is None for s in speakers):
        return ["user" if i % 2 == 0 else "assistant" for i in range(len(speakers))]
    mapped = [map_role(s) for s in speakers]
    if all(r is not None for r in mapped):
        return [r for r in mapped if r is not None]
    roles: list[str] = []
    current = "assistant"
    previous: object = object()
    for s, r in zip(speakers, mapped, strict=True):
        if r == "system":
            roles.append("system")
            continue
        if s != previous:
            current = "user" if current == "assistant" else "assistant"
            previous = s
        roles.append(current)
    return roles


def _speaker_turns(turns: list[dict[str, Any]]) -> list[Message]:
    speakers: list[Speaker] = []
    texts: list[Any] = []
    for t in turns:
        text_key, text = _first(t, TEXT_KEYS)
        if text_key is None:
            raise InvalidRecordError("unknown_shape", f"turn {_keys(t)}")
        speakers.append(_speaker(t))
        texts.append(text)
    return _messages(_roles(speakers), texts)


def _messages(roles: list[str], texts: Sequence[Any]) -> list[Message]:
    """One message per role and text (each text checked for its role)."""
    return [{"role": r, "content": _text(x, r)} for r, x in zip(roles, texts, strict=True)]


def _grouped_turns(groups: list[list[Any]]) -> list[Message]:
    """A list of same-speaker groups: each group is one turn, its texts joined by newlines."""
    speakers: list[Speaker] = []
    texts: list[str] = []
    for number, group in enumerate(groups, 1):
        parts: list[str] = []
        senders: set[Speaker] = set()
        for m in group:
            if not isinstance(m, dict):
                raise InvalidRecordError("unknown_shape", f"group {number} holds {_describe(m)}")
            text_key, text = _first(m, TEXT_KEYS)
            if text_key is None:
                raise InvalidRecordError("unknown_shape", f"group {number} message {_keys(m)}")
            text = _string(text, f"group {number}")
            if text.strip():
                parts.append(text)
            sender = _speaker(m)
            if sender is not None:
                senders.add(sender)
        if len(senders) > 1:
            names = sorted(_describe(s) for s in senders)[:3]
            raise InvalidRecordError(
                "unknown_shape", f"group {number} mixes senders {repr(names)[:150]}"
            )
        speakers.append(senders.pop() if senders else None)
        texts.append("\n".join(parts))
    return _messages(_roles(speakers), texts)


def _pair(user: Any, assistant: Any) -> list[Message]:
    return [
        {"role": "user", "content": _text(user, "user")},
        {"role": "assistant", "content": _text(assistant, "assistant")},
    ]


def _turns(value: dict[str, Any]) -> list[Message]:
    messages = value.get("messages")
    if isinstance(messages, list):
        if messages and all(isinstance(g, list) for g in messages):
            return _grouped_turns(messages)
        return _strict_turns(_objects(messages, "messages"), "role", "content")
    if isinstance(value.get("conversations"), list):
        return _strict_turns(_objects(value["conversations"], "conversations"), "from", "value")
    for key in TURN_LIST_KEYS:
        turns = value.get(key)
        if isinstance(turns, list):
            if turns and all(type(t) is str for t in turns):
                return _alternating(turns)
            turns = _objects(turns, key)
            if all(_is_io_pair(t) for t in turns):
                return [m for t in turns for m in _pair(t["input"], t["output"])]
            return _speaker_turns(turns)
    if "instruction" in value and "output" in value:
        return _pair(_alpaca_prompt(value, "input"), value["output"])
    for user_key, assistant_key in PAIR_KEYS:
        if user_key in value and assistant_key in value:
            return _pair(value[user_key], value[assistant_key])
    # The shapes below were added later: only records no shape above reads reach them, so a
    # record read before is read the same way.
    if "instruction" in value and "response" in value:  # Dolly
        extra = "input" if "input" in value else "context"
        return _pair(_alpaca_prompt(value, extra), value["response"])
    data = value.get("data")
    if isinstance(data, list) and data and all(type(t) is str for t in data):
        return _alternating(data)
    raise InvalidRecordError("unknown_shape", _keys(value))


def _is_io_pair(turn: dict[str, Any]) -> bool:
    """A Capybara turn: ``input`` and ``output``, and none of the text keys of a speaker turn."""
    return "input" in turn and "output" in turn and not any(k in turn for k in TEXT_KEYS)


def _alpaca_prompt(value: dict[str, Any], extra_key: str) -> str:
    """The instruction, and the ``extra_key`` text (Alpaca's input, Dolly's context) after a
    blank line when there is one."""
    instruction = _text(value["instruction"], "user")
    extra = value.get(extra_key)
    if extra is not None and not isinstance(extra, str):
        raise InvalidRecordError("non_string_content", f"alpaca {extra_key} is {_describe(extra)}")
    return f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction


def _alternating(texts: list[str]) -> list[Message]:
    """Turns given as plain strings: no speakers, so ``user`` first, then alternating."""
    return _messages(_roles([None] * len(texts)), texts)


def normalize_messages(value: Any, options: NormalizeOptions) -> list[Message]:
    """Turn one parsed record into ChatML messages.

    Args:
        value: any parsed JSON value (see the module docstring for what is accepted).
        options: system prompt handling.

    Raises:
        InvalidRecordError: the only exception, with a ``reason`` from the reasons table.
    """
    if not isinstance(value, dict):
        raise InvalidRecordError("unknown_shape", f"record is {_describe(value)}")
    turns = _turns(value)
    _, system = _first(value, ("system", "system_prompt"))
    if isinstance(system, str) and system.strip() and not any(t["role"] == "system" for t in turns):
        turns.insert(0, {"role": "system", "content": _check_text(system, "system")})
    if options.system_prompt == "strip":
        turns = [t for t in turns if t["role"] != "system"]
    if options.default_system_prompt and not any(t["role"] == "system" for t in turns):
        turns.insert(0, {"role": "system", "content": options.default_system_prompt})
    for t in turns:
        if t["role"] != "system":
            return turns
    raise InvalidRecordError("empty_conversation", "no user or assistant turn")
