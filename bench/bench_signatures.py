"""MinHash signature candidates side by side: speed on one core, and dedup quality.

    python bench/bench_signatures.py [--mb 50] [--slow-mb 4] [--n 20000] [--skip-quality]

Speed: every candidate signs the same conversation texts (turns joined with a space, as the
compile does) of ~``--mb`` MB of realistic generated chats (``bench.gen_corpus.ChatCorpus``),
pinned to one CPU with ``RAYON_NUM_THREADS=1`` (rensa's batch APIs would otherwise use every
core). MB/s is UTF-8 text bytes per second of process CPU time (``cpu``) and of wall time
(``wall``; lower when other processes share the core). Candidates slower than ~30 MB/s run on
the first ``--slow-mb`` MB only.

Quality: the corpus of ``bench/bench_dedup.py`` (``--n`` conversations, 5 % exact and 10 % near
copies at 3 % word edits, seed 11), deduplicated online as the compile did (exact key first;
then a near duplicate when an earlier kept conversation shares a band key and the signature
estimate is ≥ the threshold): recall, precision and false merges per setting, for the chosen
signer and for rensa R-MinHash on the same shingles; plus the estimation error against the true
Jaccard similarity of the injected near pairs.

Datasketch is measured when importable (it is not a dependency: ``pip install datasketch``).
Also tried, not kept: numba kernels computing the very same signatures (word scan + hashing at
~330 MB/s alone, but no faster end to end than numpy here, for a 50 MB dependency and a JIT
compile per process).
"""

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # before rensa is imported

import argparse  # noqa: E402
import hashlib  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from rensa import RMinHash  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import gen_corpus  # noqa: E402
from dataset_assets.core.minhash import (  # noqa: E402
    MAX_SHINGLED_WORDS,
    Signer,
    conversation_text,
    jaccard_estimate,
)

SEED = 1_234_567
NUM_PERM = 128
W = 3


def shingle_strings(text: str, width: int = W) -> list[str]:
    """The shingles of the previous implementation: Python strings of ``width`` words."""
    words = text.casefold().split()[:MAX_SHINGLED_WORDS]
    if len(words) <= width:
        return [" ".join(words)]
    return list(map(" ".join, zip(*(words[i:] for i in range(width)), strict=False)))


# -- candidates: texts -> (n, NUM_PERM) signatures ---------------------------------------------


def rensa_per_doc(texts: Sequence[str]) -> np.ndarray:
    """The previous path: shingle strings, one RMinHash per conversation, update + digest."""
    out = []
    for t in texts:
        mh = RMinHash(num_perm=NUM_PERM, seed=SEED)
        mh.update(shingle_strings(t))
        out.append(mh.digest())
    return np.array(out, dtype=np.uint32)


def rensa_matrix_strings(texts: Sequence[str]) -> np.ndarray:
    """Shingle strings, rensa's batch API (one Rust call), rows to numpy."""
    m = RMinHash.digest_matrix_from_token_sets([shingle_strings(t) for t in texts], NUM_PERM, SEED)
    return np.array(m.to_rows(), dtype=np.uint32)


def rensa_matrix_words(texts: Sequence[str]) -> np.ndarray:
    """Words (not shingles) as str tokens through rensa's batch API: a lower bound for any
    string-token path (it is *not* the shingle set; speed reference only)."""
    m = RMinHash.digest_matrix_from_token_sets(
        [t.casefold().split()[:MAX_SHINGLED_WORDS] for t in texts], NUM_PERM, SEED
    )
    return np.array(m.to_rows(), dtype=np.uint32)


_SIGNER = Signer(NUM_PERM, 32, W, SEED)


def rensa_flat_hashes(texts: Sequence[str]) -> np.ndarray:
    """numpy shingle hashes (as the chosen signer) + rensa R-MinHash from one flat u64 buffer."""
    hashes, docs = _SIGNER.shingle_hashes(texts)
    offsets = np.zeros(len(texts) + 1, dtype=np.uint64)
    np.cumsum(np.bincount(docs, minlength=len(texts)), out=offsets[1:])
    m = RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets, NUM_PERM, SEED)
    return np.array(m.to_rows(), dtype=np.uint32)


def rensa_flat_hashes_rho(texts: Sequence[str]) -> np.ndarray:
    """As above with rensa's "rho" sketch (samples token positions: not full-set MinHash)."""
    hashes, docs = _SIGNER.shingle_hashes(texts)
    offsets = np.zeros(len(texts) + 1, dtype=np.uint64)
    np.cumsum(np.bincount(docs, minlength=len(texts)), out=offsets[1:])
    m = RMinHash.digest_matrix_from_flat_token_hashes_rho(hashes, offsets, NUM_PERM, SEED)
    return np.array(m.to_rows(), dtype=np.uint32)


_rng = np.random.default_rng(SEED)
_A = _rng.integers(1, 1 << 32, NUM_PERM, dtype=np.uint64) | np.uint64(1)
_B = _rng.integers(0, 1 << 32, NUM_PERM, dtype=np.uint64)


def numpy_kperm(texts: Sequence[str]) -> np.ndarray:
    """numpy shingle hashes + 128 universal permutations ((a*x + b) >> 32) as one (N, 128)
    numpy op per group of ~50 conversations, min per conversation (``np.minimum.reduceat``)."""
    out = np.empty((len(texts), NUM_PERM), dtype=np.uint32)
    for g in range(0, len(texts), 50):
        group = texts[g : g + 50]
        hashes, docs = _SIGNER.shingle_hashes(group)
        counts = np.bincount(docs, minlength=len(group))
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        x = (hashes >> np.uint64(32))[:, None]
        mat = ((x * _A[None, :] + _B[None, :]) >> np.uint64(32)).astype(np.uint32)
        out[g : g + 50] = np.minimum.reduceat(mat, starts, axis=0)
    return out


def datasketch_bulk(texts: Sequence[str]) -> np.ndarray:
    from datasketch import MinHash  # type: ignore[import-not-found]

    mhs = MinHash.bulk([[s.encode() for s in shingle_strings(t)] for t in texts], num_perm=NUM_PERM)
    return np.array([m.hashvalues for m in mhs], dtype=np.uint64)


def chosen(texts: Sequence[str]) -> np.ndarray:
    """core.minhash.Signer: numpy shingle hashes + bucketed MinHash (fast similarity sketching)."""
    return _SIGNER.signatures(texts)


def chosen_with_bands(texts: Sequence[str]) -> np.ndarray:
    sigs = _SIGNER.signatures(texts)
    _SIGNER.band_keys(sigs)
    return sigs


# -- speed -------------------------------------------------------------------------------------


def chat_texts(target_mb: float, seed: int = 3) -> list[str]:
    """Conversation texts of realistic generated chats (falls back to the simple generator)."""
    texts: list[str] = []
    size = 0
    if hasattr(gen_corpus, "ChatCorpus"):
        gen = gen_corpus.ChatCorpus(seed)
        while size < target_mb * 1e6:
            t = conversation_text([m["content"] for m in gen.messages()])
            texts.append(t)
            size += len(t.encode())
        return texts
    for record, _ in gen_corpus.generate(2**62, seed=seed):
        t = conversation_text([m["content"] for m in record["messages"]])
        texts.append(t)
        size += len(t.encode())
        if size >= target_mb * 1e6:
            break
    return texts


_NON_ASCII = ["café", "naïve", "“quoted”", "it’s", "🙂", "日本語", "Привет", "—", "Straße", "ñandú"]


def with_non_ascii(texts: list[str], share: float, seed: int = 5) -> list[str]:
    """``share`` of the texts get ~2 % of their words replaced by non-ASCII words (curly
    quotes, accents, emoji, CJK, Cyrillic), as in real chat exports."""
    rng = random.Random(seed)
    out = []
    for t in texts:
        if rng.random() < share:
            words = t.split(" ")
            for _ in range(max(1, len(words) // 50)):
                words[rng.randrange(len(words))] = rng.choice(_NON_ASCII)
            t = " ".join(words)
        out.append(t)
    return out


def timed(fn: Callable[[Sequence[str]], Any], texts: Sequence[str]) -> tuple[float, float]:
    best_cpu = best_wall = float("inf")
    for _ in range(2):
        w0, c0 = time.perf_counter(), time.process_time()
        fn(texts)
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best_cpu, best_wall


def speed(args: argparse.Namespace) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    texts = chat_texts(args.mb)
    slow_texts: list[str] = []
    size = 0
    for t in texts:
        if size >= args.slow_mb * 1e6:
            break
        slow_texts.append(t)
        size += len(t.encode())
    candidates: list[tuple[str, Callable[[Sequence[str]], Any], bool]] = [
        ("rensa RMinHash.update per doc, shingle str (previous)", rensa_per_doc, True),
        ("rensa digest_matrix_from_token_sets, shingle str", rensa_matrix_strings, True),
        ("rensa digest_matrix_from_token_sets, words (not shingles)", rensa_matrix_words, True),
        ("numpy shingle hashes + 128 (a*x+b) perms, min", numpy_kperm, True),
        ("numpy shingle hashes + rensa flat_token_hashes", rensa_flat_hashes, False),
        ("numpy shingle hashes + rensa flat_token_hashes_rho", rensa_flat_hashes_rho, False),
        ("numpy shingle hashes only (Signer.shingle_hashes)", _SIGNER.shingle_hashes, False),
        ("CHOSEN numpy shingles + bucketed MinHash (Signer)", chosen, False),
        ("CHOSEN + band_keys", chosen_with_bands, False),
    ]
    try:
        import datasketch  # type: ignore[import-not-found]  # noqa: F401

        candidates.insert(
            2, ("datasketch MinHash.bulk, shingle bytes (sha1)", datasketch_bulk, True)
        )
    except ImportError:
        print("(datasketch not installed: skipped)")
    mb_all = sum(len(t.encode()) for t in texts) / 1e6
    mb_slow = sum(len(t.encode()) for t in slow_texts) / 1e6
    print(
        f"speed: {len(texts)} conversations, {mb_all:.1f} MB of text "
        f"({mb_all * 1e6 / len(texts):.0f} B each); slow candidates on {mb_slow:.1f} MB; "
        f"one CPU, RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}"
    )
    print(f"{'candidate':58} {'cpu MB/s':>9} {'wall MB/s':>9} {'docs/s':>8}")
    rate: dict[Callable[[Sequence[str]], Any], float] = {}
    for name, fn, slow in candidates:
        sample = slow_texts if slow else texts
        mb = mb_slow if slow else mb_all
        cpu, wall = timed(fn, sample)
        rate[fn] = mb / cpu
        print(f"{name:58} {mb / cpu:9.1f} {mb / wall:9.1f} {len(sample) / cpu:8.0f}", flush=True)
    print(f"CHOSEN / previous (cpu): {rate[chosen] / rate[rensa_per_doc]:.2f}x")
    share = args.non_ascii
    mixed_slow = with_non_ascii(slow_texts, share)
    mixed = with_non_ascii(texts, share)
    for name, fn, sample in [
        (f"previous, {share:.0%} of texts non-ASCII", rensa_per_doc, mixed_slow),
        (f"CHOSEN Signer, {share:.0%} of texts non-ASCII", chosen, mixed),
    ]:
        mb = sum(len(t.encode()) for t in sample) / 1e6
        cpu, wall = timed(fn, sample)
        print(f"{name:58} {mb / cpu:9.1f} {mb / wall:9.1f} {len(sample) / cpu:8.0f}", flush=True)


# -- quality -----------------------------------------------------------------------------------


def band_keys_of(sigs: np.ndarray, bands: int) -> np.ndarray:
    return Signer(sigs.shape[1], bands, W, SEED).band_keys(sigs.astype(np.uint32))


def online_dedup(
    texts: Sequence[str], dup_of: Sequence[int | None], sigs: np.ndarray, bands: int, thr: float
) -> dict[str, float]:
    """The compile's previous rule: exact key first, then the first kept near match wins."""
    keys = band_keys_of(sigs, bands)
    index: dict[tuple[int, int], list[int]] = {}
    exact: set[bytes] = set()
    tp = fn = fp = 0
    for i, text in enumerate(texts):
        digest = hashlib.sha256(" ".join(text.split()).encode()).digest()
        flagged = digest in exact
        if not flagged:
            exact.add(digest)
            cands = {j for b in range(bands) for j in index.get((b, int(keys[i, b])), ())}
            if cands:
                c = np.fromiter(sorted(cands), dtype=np.int64)
                est = jaccard_estimate(np.broadcast_to(sigs[i], (len(c), sigs.shape[1])), sigs[c])
                flagged = bool((est >= thr).any())
            if not flagged:
                for b in range(bands):
                    index.setdefault((b, int(keys[i, b])), []).append(i)
        if dup_of[i] is None:
            fp += flagged
        else:
            tp += flagged
            fn += not flagged
    return {"recall": tp / max(1, tp + fn), "precision": tp / max(1, tp + fp), "false": fp}


def quality(args: argparse.Namespace) -> None:
    data = list(gen_corpus.generate(args.n, seed=11, edit_rate=0.03))
    texts = [conversation_text([m["content"] for m in r["messages"]]) for r, _ in data]
    dup_of = [d for _, d in data]
    print(
        f"\nquality: {len(texts)} conversations (bench_dedup corpus: 5 % exact, 10 % near at 3 % "
        "word edits, seed 11), online dedup, exact key first"
    )
    sketches = {
        "CHOSEN Signer (bucketed MinHash)": chosen(texts),
        "rensa R-MinHash (same shingle hashes)": rensa_flat_hashes(texts),
    }
    mb = sum(len(t.encode()) for t in texts) / 1e6
    for name, fn in [("previous", rensa_per_doc), ("CHOSEN Signer", chosen)]:
        cpu, _ = timed(fn, texts)
        print(
            f"signing this corpus ({mb / len(texts) * 1e6:.0f} B per text), {name}: "
            f"{mb / cpu:.1f} MB/s cpu, {len(texts) / cpu:.0f} docs/s"
        )
    settings = [(32, 0.7), (16, 0.8), (16, 0.7), (32, 0.6)]
    print(f"{'sketch':40} {'setting':18} {'recall':>7} {'precision':>9} {'false':>6}")
    for name, sigs in sketches.items():
        for bands, thr in settings:
            r = online_dedup(texts, dup_of, sigs, bands, thr)
            setting = f"{bands}x{NUM_PERM // bands}, thr {thr}"
            print(
                f"{name:40} {setting:18} {r['recall']:7.4f} {r['precision']:9.4f} {r['false']:6d}"
            )
    # estimation error on the injected near pairs (true Jaccard from the shingle strings)
    pairs = [(i, d) for i, d in enumerate(dup_of) if d is not None and texts[i] != texts[d]]
    truth = np.array(
        [
            len((a := set(shingle_strings(texts[i]))) & (b := set(shingle_strings(texts[d]))))
            / len(a | b)
            for i, d in pairs
        ]
    )
    ii = np.array([p[0] for p in pairs])
    dd = np.array([p[1] for p in pairs])
    print(
        f"\nestimate - true Jaccard on {len(pairs)} near pairs (true J mean {truth.mean():.3f}, "
        f"min {truth.min():.3f}; binomial sd at J=0.8: {np.sqrt(0.16 / NUM_PERM):.4f})"
    )
    print(f"{'sketch':40} {'bias':>8} {'rmse':>7} {'max|err|':>9} {'est<0.7':>8}")
    for name, sigs in sketches.items():
        est = jaccard_estimate(sigs[ii], sigs[dd])
        err = est - truth
        print(
            f"{name:40} {err.mean():8.4f} {np.sqrt((err**2).mean()):7.4f} "
            f"{np.abs(err).max():9.4f} {int((est < 0.7).sum()):8d}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=50)
    parser.add_argument("--slow-mb", type=float, default=4)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--non-ascii", type=float, default=0.3, help="share of non-ASCII texts")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    if not args.skip_speed:
        speed(args)
    if not args.skip_quality:
        quality(args)


if __name__ == "__main__":
    main()
