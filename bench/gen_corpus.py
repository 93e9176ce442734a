"""Synthetic chat corpora with known duplicates, for dedup quality tests and benchmarks.

``generate(n, ...)`` yields ``(record, dup_of)`` pairs: ``record`` is a ChatML dict, ``dup_of``
is the index of the original for an injected exact or near duplicate (``None`` otherwise).
Near duplicates change ~``edit_rate`` of the words (substitute / insert / delete). Distinct
conversations are drawn independently from a Zipf-like vocabulary, so they share common words
but not long passages. ``write_jsonl(path, target_bytes)`` writes a corpus of roughly that size.

    python bench/gen_corpus.py OUT.jsonl --bytes 1e9
"""

import argparse
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "da", "gri", "ul", "zen", "or"]


def _vocabulary(size: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))))
    return sorted(words)


class CorpusGenerator:
    def __init__(self, seed: int = 0, vocab: int = 20_000) -> None:
        self.rng = random.Random(seed)
        self.vocab = _vocabulary(vocab, self.rng)
        # Zipf-ish weights: common words are common, the tail is long
        self.cum = []
        total = 0.0
        for rank in range(1, vocab + 1):
            total += 1.0 / rank**1.05
            self.cum.append(total)

    def text(self, n_words: int) -> str:
        return " ".join(self.rng.choices(self.vocab, cum_weights=self.cum, k=n_words))

    def conversation(self) -> dict[str, Any]:
        turns = self.rng.choice([2, 2, 4, 4, 6])
        messages = [
            {
                "role": "user" if i % 2 == 0 else "assistant",
                "content": self.text(
                    self.rng.randint(15, 60) if i % 2 == 0 else self.rng.randint(40, 160)
                ),
            }
            for i in range(turns)
        ]
        return {"messages": messages}

    def near_copy(self, record: dict[str, Any], edit_rate: float) -> dict[str, Any]:
        messages = []
        for m in record["messages"]:
            words = m["content"].split()
            out: list[str] = []
            for w in words:
                if self.rng.random() >= edit_rate:
                    out.append(w)
                    continue
                op = self.rng.randrange(3)
                if op == 0:
                    out.append(self.rng.choice(self.vocab))
                elif op == 1:
                    out += [w, self.rng.choice(self.vocab)]
            messages.append({"role": m["role"], "content": " ".join(out or words)})
        return {"messages": messages}


def generate(
    n: int,
    *,
    seed: int = 0,
    exact_rate: float = 0.05,
    near_rate: float = 0.10,
    edit_rate: float = 0.03,
) -> Iterator[tuple[dict[str, Any], int | None]]:
    """``n`` records; a fraction are exact or near (``edit_rate`` word edits) copies."""
    gen = CorpusGenerator(seed)
    originals: list[int] = []
    recent: list[dict[str, Any]] = []
    for i in range(n):
        x = gen.rng.random()
        if originals and x < exact_rate:
            j = gen.rng.randrange(len(recent))
            yield recent[j], originals[j]
        elif originals and x < exact_rate + near_rate:
            j = gen.rng.randrange(len(recent))
            yield gen.near_copy(recent[j], edit_rate), originals[j]
        else:
            rec = gen.conversation()
            # keep a bounded window of originals to copy from (bounded memory for big corpora)
            if len(recent) < 2000:
                recent.append(rec)
                originals.append(i)
            else:
                k = gen.rng.randrange(2000)
                recent[k], originals[k] = rec, i
            yield rec, None


def write_jsonl(path: Path, target_bytes: int, seed: int = 0) -> int:
    """Write a generated corpus of about ``target_bytes``; returns the record count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = count = 0
    with path.open("wb", buffering=1 << 20) as fh:
        for record, _ in generate(2**62, seed=seed):
            line = orjson.dumps(record) + b"\n"
            fh.write(line)
            written += len(line)
            count += 1
            if written >= target_bytes:
                break
    return count


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--bytes", type=float, default=1e8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_jsonl(args.out, int(args.bytes), args.seed), "records")
