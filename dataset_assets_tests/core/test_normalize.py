"""Every record shape and role mapping to ChatML, and every quarantine reason."""

import pytest

from dataset_assets.core import normalize
from dataset_assets.core.config import NormalizeOptions
from dataset_assets.core.errors import InvalidRecordError
from dataset_assets.core.normalize import ROLE_TABLE, normalize_messages

OPTS = NormalizeOptions()
UA = ["user", "assistant"]


def _roles(record: dict, options: NormalizeOptions = OPTS) -> list[str]:
    return [m["role"] for m in normalize_messages(record, options)]


SHAPES = {
    "chatml": (
        {
            "messages": [
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "I can't sleep."},
                {"role": "assistant", "content": "What happens at night?"},
            ]
        },
        ["system", *UA],
    ),
    "sharegpt": (
        {
            "id": "abc",
            "conversations": [
                {"from": "human", "value": "Fix my regex"},
                {"from": "gpt", "value": "Use \\d+"},
                {"from": "human", "value": "thanks"},
                {"from": "chatgpt", "value": "welcome"},
            ],
        },
        [*UA, *UA],
    ),
    "conversation_speaker_content": (
        {
            "conversation": [
                {"speaker": "user", "text": "hi"},
                {"speaker": "assistant", "text": "hello"},
            ]
        },
        UA,
    ),
    "conversation_author_message": (
        {"conversation": [{"author": "human", "message": "a"}, {"author": "bot", "message": "b"}]},
        UA,
    ),
    "conversation_without_roles_alternates": (
        {"conversation": [{"utterance": "a"}, {"utterance": "b"}, {"utterance": "c"}]},
        [*UA, "user"],
    ),
    "opaque_sender_ids": (
        {
            "turns": [
                {"sender": "u_81f2", "text": "hey"},
                {"sender": "u_81f2", "text": "are you there?"},
                {"sender": "bot_07", "text": "yes"},
                {"sender": "u_81f2", "text": "ok"},
            ]
        },
        ["user", "user", "assistant", "user"],
    ),
    "alpaca": ({"instruction": "Summarize", "input": "long text", "output": "short"}, UA),
    "alpaca_without_input": ({"instruction": "Say hi", "input": "", "output": "hi"}, UA),
    "prompt_response": ({"prompt": "p", "response": "r"}, UA),
    "prompt_completion": ({"prompt": "p", "completion": "c"}, UA),
    "question_answer": ({"question": "q?", "answer": "a."}, UA),
    "system_field": ({"system": "You coach.", "question": "q?", "answer": "a."}, ["system", *UA]),
    "dolly": (
        {"instruction": "Who?", "context": "A text.", "response": "Her.", "category": "qa"},
        UA,
    ),
    "orca_question_response": (
        {"id": "o1", "system_prompt": "You are an AI.", "question": "q?", "response": "r."},
        ["system", *UA],
    ),
    "ultrachat_data_strings": ({"id": "0", "data": ["q1", "a1", "q2", "a2"]}, [*UA, *UA]),
    "conversation_of_strings": ({"conversation": ["q1", "a1", "q2"]}, [*UA, "user"]),
    "capybara_input_output_turns": (
        {
            "source": "x",
            "conversation": [{"input": "q1", "output": "a1"}, {"input": "q2", "output": "a2"}],
        },
        [*UA, *UA],
    ),
    "content_parts": (
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": "yo"},
            ]
        },
        UA,
    ),
    "grouped_senders": (
        {
            "id": "c1",
            "messages": [
                [
                    {"text": "hi", "sender": "u1", "timestamp": 1},
                    {"text": "anyone?", "sender": "u1", "timestamp": 2},
                ],
                [{"text": "yes", "sender": "b7", "timestamp": 3}],
                [{"text": "ok", "sender": "u1", "timestamp": 4}],
            ],
        },
        [*UA, "user"],
    ),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_shape_normalizes_to_chatml(shape: str) -> None:
    record, roles = SHAPES[shape]
    assert _roles(record) == roles
    assert all(
        isinstance(m["content"], str) and m["content"] for m in normalize_messages(record, OPTS)
    )


def test_alpaca_input_is_appended_to_the_instruction() -> None:
    out = normalize_messages(SHAPES["alpaca"][0], OPTS)
    assert out[0]["content"] == "Summarize\n\nlong text" and out[1]["content"] == "short"
    dolly = normalize_messages(SHAPES["dolly"][0], OPTS)
    assert [m["content"] for m in dolly] == ["Who?\n\nA text.", "Her."]


def test_public_chat_dataset_shapes_keep_their_texts_in_order() -> None:
    """Dolly, OpenOrca, UltraChat and Capybara records were quarantined as unknown_shape."""
    cases = ("orca_question_response", "ultrachat_data_strings", "capybara_input_output_turns")
    texts = [[m["content"] for m in normalize_messages(SHAPES[c][0], OPTS)] for c in cases]
    assert texts == [["You are an AI.", "q?", "r."], ["q1", "a1", "q2", "a2"]] + [
        ["q1", "a1", "q2", "a2"]
    ]
    bad = [
        {"data": [{"text": "not strings"}]},
        {"conversation": ["a string", {"role": "user", "content": "an object"}]},
        {"conversation": [{"input": "q1", "output": "a1"}, {"input": "q2"}]},
        {"instruction": "x", "context": 5, "response": "y"},
    ]
    reasons = []
    for record in bad:
        with pytest.raises(InvalidRecordError) as exc:
            normalize_messages(record, OPTS)
        reasons.append(exc.value.reason)
    assert reasons == ["unknown_shape"] * 3 + ["non_string_content"]


# Records with keys of the newer shapes (Dolly's context/response, Orca's question/response,
# Capybara's input/output turns) that an older shape already read: read as before.
READ_BEFORE = [
    ({"instruction": "Be brief", "prompt": "Hi", "response": "Hello"}, ["Hi", "Hello"]),
    ({"instruction": "Be brief", "query": "Hi", "response": "Hello"}, ["Hi", "Hello"]),
    ({"instruction": "Summarize", "context": "ctx", "output": "out"}, ["Summarize", "out"]),
    ({"instruction": "S", "context": ["a"], "output": "o"}, ["S", "o"]),
    ({"instruction": [], "query": "hi", "response": "r"}, ["hi", "r"]),
    ({"question": "Q?", "query": "Hi", "response": "R"}, ["Hi", "R"]),
    ({"turns": [{"role": "user", "content": "hi", "input": "x", "output": "y"}]}, ["hi"]),
    ({"conversation": [{"speaker": "A", "text": "hi", "input": "i", "output": {}}]}, ["hi"]),
]


@pytest.mark.parametrize(("record", "texts"), READ_BEFORE)
def test_records_an_older_shape_reads_are_read_as_before(record: dict, texts: list[str]) -> None:
    assert [m["content"] for m in normalize_messages(record, OPTS)] == texts


@pytest.mark.parametrize(("source_role", "chatml_role"), sorted(ROLE_TABLE.items()))
def test_role_table_maps_every_source_role(source_role: str, chatml_role: str) -> None:
    record = {
        "conversations": [
            {"from": source_role.upper(), "value": "x"},
            {"from": "human", "value": "y"},
        ]
    }
    assert _roles(record)[0] == chatml_role


def test_strip_and_default_system_prompt() -> None:
    record = SHAPES["chatml"][0]
    assert _roles(record, NormalizeOptions(system_prompt="strip")) == UA
    injected = normalize_messages(
        SHAPES["prompt_response"][0], NormalizeOptions(default_system_prompt="Be brief.")
    )
    assert injected[0] == {"role": "system", "content": "Be brief."}
    kept = normalize_messages(record, NormalizeOptions(default_system_prompt="Be brief."))
    assert kept[0]["content"] == "Be kind."


REASONS = {
    "unknown_shape": {"text": "no recognizable keys"},
    "unknown_shape_not_object": ["a", "list"],
    "unknown_role": {"messages": [{"role": "narrator", "content": "x"}]},
    "empty_turn": {"conversations": [{"from": "human", "value": "  "}]},
    "non_string_content": {"messages": [{"role": "user", "content": 42}]},
    "empty_conversation": {"messages": [{"role": "system", "content": "only system"}]},
    "empty_conversation_list": {"messages": []},
}


@pytest.mark.parametrize("case", sorted(REASONS))
def test_every_quarantine_reason(case: str) -> None:
    with pytest.raises(InvalidRecordError) as exc:
        normalize_messages(REASONS[case], OPTS)
    expected = case.removesuffix("_not_object").removesuffix("_list")
    assert exc.value.reason == expected


def test_grouped_sender_chat_is_one_turn_per_group_joined_by_newlines() -> None:
    out = normalize_messages(SHAPES["grouped_senders"][0], OPTS)
    assert out == [
        {"role": "user", "content": "hi\nanyone?"},
        {"role": "assistant", "content": "yes"},
        {"role": "user", "content": "ok"},
    ]


def test_grouped_chat_first_speaker_is_user_whoever_it_is() -> None:
    record = {
        "messages": [
            [{"text": "Hello, how can I help?", "sender": "support_bot"}],
            [{"text": "my order", "sender": "c_19"}, {"text": "is late", "sender": "c_19"}],
            [{"text": "", "sender": "support_bot"}, {"text": "sorry!", "sender": "support_bot"}],
        ]
    }
    out = normalize_messages(record, OPTS)
    assert [m["role"] for m in out] == [*UA, "user"]
    assert [m["content"] for m in out] == ["Hello, how can I help?", "my order\nis late", "sorry!"]


GROUPED_REASONS = [
    ("empty_turn", {"messages": [[{"text": "a", "sender": "x"}], [{"text": " ", "sender": "y"}]]}),
    ("empty_turn", {"messages": [[{"text": "a", "sender": "x"}], []]}),
    ("non_string_content", {"messages": [[{"text": 5, "sender": "x"}]]}),
    ("unknown_shape", {"messages": [[{"body": "a", "sender": "x"}]]}),
    ("unknown_shape", {"messages": [[{"text": "a", "sender": "x"}, {"text": "b", "sender": "y"}]]}),
]


@pytest.mark.parametrize(("reason", "record"), GROUPED_REASONS)
def test_bad_grouped_chat_is_quarantined_with_a_reason(reason: str, record: dict) -> None:
    with pytest.raises(InvalidRecordError) as exc:
        normalize_messages(record, OPTS)
    assert exc.value.reason == reason


def test_invalid_text_is_a_documented_quarantine_reason() -> None:
    with pytest.raises(InvalidRecordError) as exc:
        normalize_messages({"prompt": "a\ud800", "response": "b"}, OPTS)
    assert exc.value.reason == "invalid_text"
    assert "``invalid_text``" in (normalize.__doc__ or "")
    assert "grouped" in (normalize.__doc__ or "")
