"""Synthetic chat corpora with known duplicates, for dedup quality tests and benchmarks.

``generate(n, ...)`` yields ``(record, dup_of)`` pairs: ``record`` is a ChatML dict, ``dup_of``
is the index of the original for an injected exact or near duplicate (``None`` otherwise).
Near duplicates change ~``edit_rate`` of the words (substitute / insert / delete). Distinct
conversations are drawn independently from a Zipf-like vocabulary, so they share common words
but not long passages. ``write_jsonl(path, target_bytes)`` writes a corpus of roughly that size.

``write_chat_corpus(folder, target_bytes)`` writes a *realistic* corpus over several files, in
the shape of public chat exports: long multi-turn conversations (2-16 turns, hundreds to
thousands of words, answers longer than questions, code blocks and lists now and then), files
alternating ChatML ``messages`` (with an optional system prompt) and ShareGPT ``conversations``
(``from: human/gpt``, an ``id``), ~4 % exact and ~4 % near duplicates (a few word edits in one
or two turns), copied across files. It is fast enough for gigabytes (files in parallel, ~30 MB/s
per core): turns are assembled from a pool of pre-generated paragraphs plus a few fresh words
per paragraph, so two distinct conversations share no long passage.

    python bench/gen_corpus.py OUT.jsonl --bytes 1e9
    python bench/gen_corpus.py OUT_DIR --chat --bytes 4e9
"""

import argparse
import multiprocessing
import os
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


_WORDS = (
    "the to and of a in is it you that for i this on with be are can as not your have or if "
    "what but do will so we at an by from use how more one all there when which about would "
    "should also code function data file model value error first here need example time like "
    "just then make sure each new way return list set get some could other into than only "
    "because step they them these using want run does help case test check well any most"
)
_ENGLISH = _WORDS.split()
_CODE = [
    "```python\nimport json\n\ndef load(path):\n    with open(path) as fh:\n"
    "        return [json.loads(line) for line in fh]\n```",
    "```bash\npip install -U requests\npython -m pytest -q tests/\n```",
    "```sql\nSELECT user_id, count(*) FROM events GROUP BY user_id ORDER BY 2 DESC LIMIT 10;\n```",
    "```js\nconst res = await fetch(url, { method: 'POST', body: JSON.stringify(payload) });\n```",
]
_SYSTEM = [
    "You are a helpful assistant.",
    "You are ChatGPT, a large language model. Answer as concisely as possible.",
    "You are an expert software engineer. Explain your reasoning step by step.",
]


class ChatCorpus:
    """Long multi-turn conversations from a pool of paragraphs (see the module docstring)."""

    def __init__(self, seed: int = 0, pool: int = 20_000, pool_seed: int = 12345) -> None:
        base = CorpusGenerator(pool_seed)
        # Common English words first so the Zipf head looks like chat text.
        base.vocab = _ENGLISH + [w for w in base.vocab if w not in _ENGLISH]
        base.vocab = base.vocab[: len(base.cum)]
        self.vocab = base.vocab
        self.cum = base.cum
        self.paragraphs: list[str] = []
        for _ in range(pool):
            sentences = []
            for _ in range(base.rng.randint(2, 6)):
                words = base.text(base.rng.randint(6, 22))
                sentences.append(words[:1].upper() + words[1:] + base.rng.choice(".....?!:"))
            self.paragraphs.append(" ".join(sentences))
        self.rng = random.Random(seed)

    def _fresh(self, k: int) -> str:
        return " ".join(self.rng.choices(self.vocab, cum_weights=self.cum, k=k))

    def _turn(self, paragraphs: int) -> str:
        rng = self.rng
        parts = []
        for p in rng.sample(self.paragraphs, paragraphs):
            parts.append(f"{self._fresh(rng.randint(2, 6)).capitalize()}, {p}")
            r = rng.random()
            if r < 0.05:
                parts.append(rng.choice(_CODE))
            elif r < 0.10:
                parts.append(
                    "\n".join(f"{i}. {self._fresh(rng.randint(4, 10))}" for i in (1, 2, 3))
                )
        return "\n\n".join(parts)

    def messages(self) -> list[dict[str, str]]:
        rng = self.rng
        turns = 2 * rng.choice([1, 1, 2, 2, 3, 3, 4, 5, 6, 8])
        out = []
        if rng.random() < 0.3:
            out.append({"role": "system", "content": rng.choice(_SYSTEM)})
        for i in range(turns):
            if i % 2 == 0:
                out.append({"role": "user", "content": self._turn(rng.choice([1, 1, 1, 2]))})
            else:
                out.append({"role": "assistant", "content": self._turn(rng.randint(1, 8))})
        return out

    def original(self, seed: int, file_index: int, j: int) -> list[dict[str, str]]:
        """Original conversation ``j`` of file ``file_index``: a function of its seed only."""
        self.rng.seed(f"{seed}/{file_index}/{j}")
        return self.messages()

    def near_copy(
        self, messages: list[dict[str, str]], rng: random.Random | None = None
    ) -> list[dict[str, str]]:
        """A few word edits (~3 % of the words) in one or two turns."""
        rng = rng or self.rng
        out = [dict(m) for m in messages]
        candidates = [i for i, m in enumerate(out) if m["role"] != "system"]
        for i in rng.sample(candidates, min(len(candidates), rng.choice([1, 2]))):
            words = out[i]["content"].split(" ")
            for _ in range(max(1, len(words) // 33)):
                j = rng.randrange(len(words))
                op = rng.randrange(3)
                if op == 0:
                    words[j] = rng.choice(self.vocab)
                elif op == 1:
                    words.insert(j, rng.choice(self.vocab))
                elif len(words) > 1:
                    del words[j]
            out[i]["content"] = " ".join(words)
        return out


_SHAREGPT_FROM = {"user": "human", "assistant": "gpt", "system": "system"}


def _as_shape(messages: list[dict[str, str]], shape: str, rid: str) -> dict[str, Any]:
    if shape == "sharegpt":
        return {
            "id": rid,
            "conversations": [
                {"from": _SHAREGPT_FROM[m["role"]], "value": m["content"]} for m in messages
            ],
        }
    return {"messages": messages}


def chat_file_names(target_bytes: int, files: int | None = None) -> list[str]:
    """File names of a chat corpus: ``files`` (default: 4, or one per ~256 MB beyond 1 GB),
    alternating ChatML and ShareGPT."""
    n = files or max(4, round(target_bytes / 256e6))
    return [f"{'chatml' if i % 2 == 0 else 'sharegpt'}-{i:03d}.jsonl" for i in range(n)]


def _write_chat_file(task: tuple[Path, str, int, float, int, float, float, int]) -> dict[str, int]:
    """One file of a chat corpus (see ``write_chat_corpus``); runs in a worker process."""
    path, name, fi, target, seed, exact_rate, near_rate, per_file_originals = task
    gen = _shared_corpus()
    rng = random.Random(f"{seed}/file/{fi}")
    shape = "sharegpt" if "sharegpt" in name else "chatml"
    counts = {"records": 0, "exact": 0, "near": 0, "bytes": 0}
    dumps = orjson.dumps
    originals = 0
    with path.open("wb", buffering=1 << 22) as fh:
        buf: list[bytes] = []
        while counts["bytes"] < target:
            x = rng.random()
            if x < exact_rate + near_rate and (fi > 0 or originals > 0):
                # a copy of an original of this file or of any earlier one
                g = rng.randrange(fi + 1) if originals else rng.randrange(fi)
                j = rng.randrange(originals if g == fi else per_file_originals)
                messages = gen.original(seed, g, j)
                if x < exact_rate:
                    counts["exact"] += 1
                else:
                    messages = gen.near_copy(messages, rng)
                    counts["near"] += 1
            else:
                messages = gen.original(seed, fi, originals)
                originals += 1
            line = dumps(_as_shape(messages, shape, f"{seed}-{fi}-{counts['records']}")) + b"\n"
            buf.append(line)
            counts["bytes"] += len(line)
            counts["records"] += 1
            if len(buf) >= 256:
                fh.write(b"".join(buf))
                buf.clear()
        fh.write(b"".join(buf))
    return counts


_SHARED: list[ChatCorpus] = []


def _shared_corpus() -> ChatCorpus:
    """The paragraph pool, built once per process (inherited by forked workers)."""
    if not _SHARED:
        _SHARED.append(ChatCorpus())
    return _SHARED[0]


def write_chat_corpus(
    folder: Path,
    target_bytes: int,
    *,
    files: int | None = None,
    seed: int = 0,
    exact_rate: float = 0.04,
    near_rate: float = 0.04,
    names: list[str] | None = None,
    processes: int | None = None,
) -> dict[str, int]:
    """Write about ``target_bytes`` of realistic chats into ``folder``; returns counts
    (``records``, ``exact``, ``near``, ``bytes``). File shape follows its name (``sharegpt`` in
    the name: ShareGPT, else ChatML). Original ``j`` of file ``f`` is generated from the seed
    ``(seed, f, j)`` alone, so files are written in parallel (one process per core) and a copy
    can come from any earlier file: exact copies repeat an original, near copies edit ~3 % of
    its words in one or two turns."""
    folder.mkdir(parents=True, exist_ok=True)
    names = names or chat_file_names(target_bytes, files)
    per_file = target_bytes / len(names)
    # copies of earlier files pick among their first originals only (a safe lower bound)
    per_file_originals = max(1, int(per_file / 20_000))
    tasks = [
        (folder / name, name, fi, per_file, seed, exact_rate, near_rate, per_file_originals)
        for fi, name in enumerate(names)
    ]
    _shared_corpus()  # build the pool before forking
    workers = min(processes or os.cpu_count() or 1, len(tasks))
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = pool.map(_write_chat_file, tasks, chunksize=1)
    else:
        results = [_write_chat_file(t) for t in tasks]
    return {k: sum(r[k] for r in results) for k in ("records", "exact", "near", "bytes")}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--bytes", type=float, default=1e8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chat", action="store_true", help="realistic chat corpus into OUT dir")
    parser.add_argument("--files", type=int, default=None)
    args = parser.parse_args()
    if args.chat:
        print(write_chat_corpus(args.out, int(args.bytes), files=args.files, seed=args.seed))
    else:
        print(write_jsonl(args.out, int(args.bytes), args.seed), "records")
