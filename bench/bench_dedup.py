"""Dedup quality and speed on generated conversations with injected exact and near duplicates.

    python bench/bench_dedup.py [--n 20000]

Runs the build's own stages — stage 1 (``process_partition``: normalize, content hash, MinHash,
LSH band keys) and stage 2 (``cluster``: DuckDB exact groups, band buckets, verified pairs,
connected components) — and prints recall (injected duplicates dropped / injected), precision
(true duplicates / dropped), false merges (originals dropped) and docs/s, for the default options
and a few band/threshold settings side by side. ``--script han`` runs the same on Chinese
conversations (no spaces between words; near copies have ``--edit-rate`` of their characters
replaced).
"""

import argparse
import io
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gen_corpus import generate  # noqa: E402
from dataset_assets.core.cluster import ClusterInput, cluster  # noqa: E402
from dataset_assets.core.config import DatasetConfig, parse_config  # noqa: E402
from dataset_assets.core.partition import INDEX_NAME, PartitionSpec, process_partition  # noqa: E402


def run(data: bytes, originals: np.ndarray, cfg: DatasetConfig) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        spec = PartitionSpec("bench", False, "bench.jsonl", len(data), "-")
        process_partition(io.BytesIO(data), spec, cfg, Path(tmp) / "p")
        stage1 = time.perf_counter() - start
        result = cluster(
            [ClusterInput(Path(tmp) / "p" / INDEX_NAME, "bench", "bench.jsonl")],
            cfg.dedup,
            Path(tmp) / "duck",
        )
        elapsed = time.perf_counter() - start
    dropped = result.decisions[0] == 0
    tp = int((dropped & ~originals).sum())
    fp = int((dropped & originals).sum())
    fn = int((~dropped & ~originals).sum())
    n = len(originals)
    return {
        "recall": tp / max(1, tp + fn),
        "precision": tp / max(1, tp + fp),
        "false_merges": fp,
        "docs_per_s": n / elapsed,
        "stage1_docs_per_s": n / stage1,
    }


def generate_han(
    n: int, *, seed: int, exact_rate: float = 0.05, near_rate: float = 0.10, edit_rate: float = 0.03
) -> Iterator[tuple[dict[str, object], int | None]]:
    """Chinese conversations: sentences of 1-3 character words drawn Zipf-like from 3,000
    characters (so unrelated texts share common character n-grams, as real text does); a
    fraction are exact copies or near copies with ``edit_rate`` of their characters replaced."""
    rng = random.Random(seed)
    chars = [chr(0x4E00 + i) for i in range(3000)]
    weights = [1 / (rank + 1) for rank in range(len(chars))]

    def text(sentences: int) -> str:
        out = []
        for _ in range(sentences):
            words = rng.randint(4, 15)
            sizes = [rng.choice((1, 2, 2, 3)) for _ in range(words)]
            out.append("".join(rng.choices(chars, weights, k=sum(sizes))) + rng.choice("，。！？"))
        return "".join(out)

    originals: list[tuple[dict[str, object], int]] = []
    for i in range(n):
        x = rng.random()
        if originals and x < exact_rate:
            rec, of = rng.choice(originals)
            yield rec, of
        elif originals and x < exact_rate + near_rate:
            rec, of = rng.choice(originals)
            messages = [dict(m) for m in rec["messages"]]  # type: ignore[attr-defined]
            body = list(messages[-1]["content"])
            for j in rng.sample(range(len(body)), max(1, int(len(body) * edit_rate))):
                body[j] = rng.choice(chars)
            messages[-1]["content"] = "".join(body)
            yield {"messages": messages}, of
        else:
            rec = {
                "messages": [
                    {"role": "user", "content": text(rng.randint(1, 4))},
                    {"role": "assistant", "content": text(rng.randint(10, 60))},
                ]
            }
            if len(originals) < 2000:
                originals.append((rec, i))
            else:
                originals[rng.randrange(2000)] = (rec, i)
            yield rec, None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--script", choices=("latin", "han"), default="latin")
    parser.add_argument("--edit-rate", type=float, default=0.03)
    args = parser.parse_args()
    if args.script == "han":
        pairs = list(generate_han(args.n, seed=args.seed, edit_rate=args.edit_rate))
    else:
        pairs = list(generate(args.n, seed=args.seed, edit_rate=args.edit_rate))
    data = b"".join(orjson.dumps(r) + b"\n" for r, _ in pairs)
    originals = np.array([dup is None for _, dup in pairs])
    print(f"{args.n} conversations ({args.script}), {int((~originals).sum())} injected duplicates")
    settings = [
        ("exact only", {"near": False}),
        ("default: 32 bands x 4 rows, threshold 0.7", {}),
        ("16 bands x 8 rows, threshold 0.8", {"bands": 16, "threshold": 0.8}),
        ("16 bands x 8 rows, threshold 0.7", {"bands": 16}),
    ]
    print("| setting | recall | precision | false merges | docs/s (stage 1 + 2) | stage 1 docs/s |")
    print("|---|---|---|---|---|---|")
    for name, dedup in settings:
        cfg = parse_config(
            {"bucket": "bench", "families": [{"name": "bench", "paths": ["x"]}], "dedup": dedup},
            Path("."),
        )
        r = run(data, originals, cfg)
        print(
            f"| {name} | {r['recall']:.4f} | {r['precision']:.4f} | {r['false_merges']} | "
            f"{r['docs_per_s']:,.0f} | {r['stage1_docs_per_s']:,.0f} |"
        )


if __name__ == "__main__":
    main()
