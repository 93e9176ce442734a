"""Dedup quality and speed on generated conversations with injected exact and near duplicates.

    python bench/bench_dedup.py [--n 20000] [--edit-rate 0.03]

Prints recall (duplicates found / injected), precision (true duplicates / flagged), false
merges of distinct conversations, and docs/s for exact-only and exact+near (on-disk indexes),
for the default options and a few band/threshold settings side by side.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gen_corpus import generate  # noqa: E402
from dataset_assets.core.config import DedupOptions, NormalizeOptions  # noqa: E402
from dataset_assets.core.dedup import Deduper, content_hash  # noqa: E402
from dataset_assets.core.normalize import normalize_messages  # noqa: E402


def run(data: list, options: DedupOptions) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        deduper = Deduper(options, Path(tmp))
        tp = fn = fp = 0
        start = time.perf_counter()
        for record, dup_of in data:
            messages = normalize_messages(record, NormalizeOptions())
            flagged = deduper.classify(content_hash(messages, options), messages) != "unique"
            if dup_of is None:
                fp += flagged
            else:
                tp += flagged
                fn += not flagged
        elapsed = time.perf_counter() - start
        deduper.close()
    return {
        "recall": tp / max(1, tp + fn),
        "precision": tp / max(1, tp + fp),
        "false_merges": fp,
        "docs_per_s": len(data) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--edit-rate", type=float, default=0.03)
    args = parser.parse_args()
    data = list(generate(args.n, seed=11, edit_rate=args.edit_rate))
    dups = sum(d is not None for _, d in data)
    print(
        f"{len(data)} conversations, {dups} injected duplicates (exact 5 %, near 10 % at "
        f"{args.edit_rate:.0%} word edits)"
    )
    settings = [
        ("exact only", DedupOptions(near=False)),
        ("default: 32 bands x 4, thr 0.7", DedupOptions()),
        ("16 bands x 8, thr 0.8", DedupOptions(bands=16, threshold=0.8)),
        ("16 bands x 8, thr 0.7", DedupOptions(bands=16, threshold=0.7)),
        ("32 bands x 4, thr 0.6", DedupOptions(threshold=0.6)),
    ]
    print(f"{'setting':34} {'recall':>7} {'precision':>9} {'false':>6} {'docs/s':>8}")
    for name, options in settings:
        r = run(data, options)
        print(
            f"{name:34} {r['recall']:7.4f} {r['precision']:9.4f} {r['false_merges']:6d} "
            f"{r['docs_per_s']:8.0f}"
        )


if __name__ == "__main__":
    main()
