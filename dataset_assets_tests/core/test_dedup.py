"""Dedup quality on generated data, and the on-disk indexes."""

from pathlib import Path

from bench.gen_corpus import generate
from dataset_assets.core.config import DedupOptions, NormalizeOptions
from dataset_assets.core.dedup import Deduper, KeyIndex, content_hash
from dataset_assets.core.normalize import normalize_messages


def test_near_dedup_recall_and_no_false_merges_on_20k_generated_conversations(tmp_path) -> None:
    options = DedupOptions()
    deduper = Deduper(options, tmp_path)
    found = missed = false_merges = exact = 0
    try:
        for record, dup_of in generate(20_000, seed=7, exact_rate=0.05, near_rate=0.10):
            messages = normalize_messages(record, NormalizeOptions())
            verdict = deduper.classify(content_hash(messages, options), messages)
            if dup_of is None:
                false_merges += verdict != "unique"
            else:
                found += verdict != "unique"
                missed += verdict == "unique"
                exact += verdict == "exact"
    finally:
        deduper.close()
    assert found + missed > 2500 and exact > 800
    assert found / (found + missed) >= 0.99, (found, missed)
    assert false_merges == 0


def test_whitespace_and_case_folding_make_exact_duplicates() -> None:
    a = [{"role": "user", "content": "Hello   World"}]
    b = [{"role": "user", "content": "hello world "}]
    assert content_hash(a, DedupOptions()) != content_hash(b, DedupOptions())
    folded = DedupOptions(fold_case=True)
    assert content_hash(a, folded) == content_hash(b, folded)


def test_first_seen_wins_and_near_duplicate_is_reported() -> None:
    options = DedupOptions()
    text = " ".join(f"w{i}" for i in range(200))
    first = [{"role": "user", "content": text}]
    second = [{"role": "user", "content": text.replace("w100", "changed")}]
    deduper = Deduper(options)
    try:
        assert deduper.classify(content_hash(first, options), first) == "unique"
        assert deduper.classify(content_hash(first, options), first) == "exact"
        assert deduper.classify(content_hash(second, options), second) == "near"
        assert deduper.last_match is not None
        assert deduper.last_match.key == bytes.fromhex(content_hash(first, options))[:16]
    finally:
        deduper.close()


def test_key_index_finds_keys_across_flushed_batches(tmp_path: Path) -> None:
    index = KeyIndex(tmp_path / "k.sqlite", cache_mib=1)
    keys = [i.to_bytes(16, "big") for i in range(20_000)]
    for k in keys:
        assert index.add_if_new(k)
    assert all(k in index for k in keys[::997])
    assert not index.add_if_new(keys[5])
    assert (30_000).to_bytes(16, "big") not in index
    index.close()
    assert not (tmp_path / "k.sqlite").exists()
