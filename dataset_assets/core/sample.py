"""A small synthetic sample of generated conversations, so a first run has real work to do.

Several families, two record shapes (ChatML ``messages`` and ShareGPT ``conversations``), a few
exact duplicates and a few bad lines (malformed JSON, unknown shape, empty turn).
"""

import random
from pathlib import Path

import orjson

TOPICS = [
    "sleep",
    "stress at work",
    "a difficult conversation",
    "learning Python",
    "budgeting",
    "running a first 10k",
    "moving to a new city",
    "public speaking",
    "cooking for one",
    "time management",
    "a job interview",
    "reading more books",
]
WORDS = [
    "maybe",
    "try",
    "to",
    "notice",
    "when",
    "it",
    "starts",
    "and",
    "write",
    "down",
    "what",
    "helps",
    "most",
    "days",
    "small",
    "steps",
    "matter",
    "more",
    "than",
    "perfect",
    "plans",
    "consistency",
    "beats",
    "intensity",
    "ask",
    "for",
    "support",
    "early",
]

SAMPLE_FAMILIES: list[tuple[str, str, bool]] = [
    # (family name, record shape, holdout)
    ("long_running_therapy", "chatml", False),
    ("coding_help", "sharegpt", False),
    ("daily_coaching", "chatml", True),
]


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def _conversation(rng: random.Random, index: int, family: str) -> list[dict[str, str]]:
    topic = rng.choice(TOPICS)
    turns = [{"role": "system", "content": f"You are a helpful assistant for {family}."}]
    for t in range(rng.randint(1, 3)):
        turns.append(
            {
                "role": "user",
                "content": f"#{index}.{t} Can you help me with {topic}? {_sentence(rng, 12)}",
            }
        )
        turns.append({"role": "assistant", "content": _sentence(rng, rng.randint(20, 60))})
    return turns


def _as_shape(turns: list[dict[str, str]], shape: str) -> dict[str, object]:
    if shape == "sharegpt":
        names = {"system": "system", "user": "human", "assistant": "gpt"}
        return {"conversations": [{"from": names[t["role"]], "value": t["content"]} for t in turns]}
    return {"messages": turns}


def write_sample(folder: Path, records_per_family: int = 200, seed: int = 0) -> list[Path]:
    """Write one JSONL file per sample family into ``folder``; returns the files written.

    Each file holds ``records_per_family`` good records, 2 % exact duplicates and three bad lines.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    written = []
    for family, shape, _holdout in SAMPLE_FAMILIES:
        lines: list[bytes] = []
        for i in range(records_per_family):
            lines.append(orjson.dumps(_as_shape(_conversation(rng, i, family), shape)))
        for _ in range(max(1, records_per_family // 50)):
            lines.append(lines[rng.randrange(records_per_family)])
        lines.append(b'{"messages": [{"role": "user", "content": "cut off')
        lines.append(orjson.dumps({"text": "a record with no conversation in it"}))
        lines.append(orjson.dumps({"messages": [{"role": "user", "content": "   "}]}))
        path = folder / f"{family}.jsonl"
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_bytes(b"\n".join(lines) + b"\n")
        tmp.rename(path)
        written.append(path)
    return written


def sample_config(generated_dir: str = "data/generated") -> dict[str, object]:
    """The families block matching ``write_sample``'s files."""
    return {
        "families": [
            {"name": name, "paths": [f"{generated_dir}/{name}*.jsonl"], "holdout": holdout}
            for name, _shape, holdout in SAMPLE_FAMILIES
        ]
    }
