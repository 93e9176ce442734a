"""Stage 1 (partitions) and stage 2 (dedup clusters) on local files, without S3."""

import functools
import io
import random
from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest
import zstandard

from bench.gen_corpus import generate
from dataset_assets.core.cluster import (
    ClusterInput,
    ClusterResult,
    KnownKeys,
    cluster,
    find_leaks,
)
from dataset_assets.core.config import DatasetConfig, parse_config
from dataset_assets.core.partition import INDEX_NAME, PartitionSpec, process_partition


def _config(tmp: Path, **overrides: object) -> DatasetConfig:
    data = {
        "bucket": "local-only",
        "families": [{"name": "a", "paths": ["a/*"]}, {"name": "b", "paths": ["b/*"]}],
        **overrides,
    }
    return parse_config(data, tmp)


def _partition(
    tmp: Path,
    cfg: DatasetConfig,
    name: str,
    records: list[dict],
    family: str = "a",
    holdout: bool = False,
) -> ClusterInput:
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    out = tmp / "parts" / name
    spec = PartitionSpec(family, holdout, f"{name}.jsonl", len(data), "fp")
    process_partition(io.BytesIO(data), spec, cfg, out)
    return ClusterInput(out / INDEX_NAME, family, spec.uri)


def _msgs(text: str) -> dict:
    return {
        "messages": [
            {"role": "user", "content": "question"},
            {"role": "assistant", "content": text},
        ]
    }


def test_near_dedup_recall_and_no_false_merges_on_20k_generated_conversations(
    tmp_path: Path,
) -> None:
    cfg = _config(tmp_path)
    pairs = list(generate(20_000, seed=7, exact_rate=0.05, near_rate=0.10))
    inp = _partition(tmp_path, cfg, "all", [r for r, _ in pairs])
    result = cluster([inp], cfg.dedup, tmp_path / "duck")
    kept = result.decisions[0] != 0
    originals = np.array([dup is None for _, dup in pairs])
    found = int((~kept & ~originals).sum())
    dups = int((~originals).sum())
    assert dups > 2500 and result.exact_duplicates > 800
    assert found / dups >= 0.99, (found, dups)
    assert int((~kept & originals).sum()) == 0  # no original was merged away


def test_near_duplicates_never_straddle_splits_and_the_first_seen_wins(tmp_path: Path) -> None:
    cfg = _config(tmp_path, splits={"train": 0.34, "val": 0.33, "test": 0.33})
    base = [r for r, dup in generate(400, seed=11, exact_rate=0.0, near_rate=0.0)]
    records = []
    for r in base:
        words = r["messages"][-1]["content"].split()
        words[len(words) // 2] = "CHANGED"
        records += [r, _msgs_like(r, " ".join(words))]
    inp = _partition(tmp_path, cfg, "pairs", records)
    result = cluster([inp], cfg.dedup, tmp_path / "duck")
    codes = result.decisions[0]
    # Every pair (one word changed in a long answer) is one cluster: only the first seen is
    # published, so the two can never be in different splits.
    assert result.near_duplicates == len(base)
    assert all(codes[0::2] != 0) and all(codes[1::2] == 0)


def test_chinese_and_japanese_near_duplicates_are_found_without_false_merges(
    tmp_path: Path,
) -> None:
    """Conversations in scripts written without spaces, each with a near copy (2 % of its
    characters changed): every pair is one cluster, no two different conversations merge."""
    rng = random.Random(17)
    han = [chr(c) for c in range(0x4E00, 0x4E00 + 2500)]
    kana = [chr(c) for c in range(0x3041, 0x3097)]
    cfg = _config(tmp_path)
    records = []
    for i in range(300):
        alphabet = han if i % 2 else han[:300] + kana
        text = "。".join(
            "".join(rng.choice(alphabet) for _ in range(rng.randint(10, 40)))
            for _ in range(rng.randint(10, 30))
        )
        chars = list(text)
        for j in rng.sample(range(len(chars)), max(1, len(chars) // 50)):
            chars[j] = rng.choice(alphabet)
        records += [_msgs(text), _msgs("".join(chars))]
    result = cluster([_partition(tmp_path, cfg, "cjk", records)], cfg.dedup, tmp_path / "duck")
    codes = result.decisions[0]
    assert result.exact_duplicates == 0
    assert all(codes[0::2] != 0), "an original was merged into another conversation"
    assert all(codes[1::2] == 0) and result.near_duplicates == 300


@pytest.mark.parametrize("system_turns", [False, True])
def test_a_long_system_prompt_shared_by_distinct_conversations_merges_nothing(
    tmp_path: Path, system_turns: bool
) -> None:
    """Generated data: one 1,000-word system prompt before every ~200-word dialogue. Near
    duplicates are found on the dialogues, so none of 300 distinct conversations is dropped
    (with the system turns counted, as ``near_system_turns: true`` does, nearly all were)."""
    base = [r for r, _ in generate(400, seed=23, exact_rate=0.0, near_rate=0.0)]
    prompt = " ".join(" ".join(m["content"] for m in r["messages"]) for r in base[300:]).split()
    system = {"role": "system", "content": " ".join(prompt[:1000])}
    records = []
    for r in base[:300]:
        words = " ".join(m["content"] for m in r["messages"]).split()
        records.append(
            {
                "messages": [
                    system,
                    {"role": "user", "content": " ".join(words[:60])},
                    {"role": "assistant", "content": " ".join(words[60:200])},
                ]
            }
        )
    cfg = _config(tmp_path, dedup={"near_system_turns": system_turns})
    result = cluster([_partition(tmp_path, cfg, "gen", records)], cfg.dedup, tmp_path / "duck")
    dropped = int((result.decisions[0] == 0).sum())
    if system_turns:
        assert dropped > 250
    else:
        assert dropped == 0 and result.exact_duplicates == 0


def test_the_same_dialogue_under_another_system_prompt_is_a_near_duplicate(
    tmp_path: Path,
) -> None:
    """The flip side, by definition: not an exact duplicate (the content hash includes the
    system turn), but a near one (the dialogue is the same)."""
    cfg = _config(tmp_path)
    base = [r for r, _ in generate(50, seed=29, exact_rate=0.0, near_rate=0.0)]
    records = []
    for r in base:
        dialogue = [m for m in r["messages"] if m["role"] != "system"]
        records.append({"messages": [{"role": "system", "content": "Be brief."}, *dialogue]})
        records.append({"messages": [{"role": "system", "content": "Be verbose."}, *dialogue]})
    result = cluster([_partition(tmp_path, cfg, "sys", records)], cfg.dedup, tmp_path / "duck")
    assert result.exact_duplicates == 0 and result.near_duplicates == len(base)


def _msgs_like(record: dict, last: str) -> dict:
    messages = [dict(m) for m in record["messages"]]
    messages[-1]["content"] = last
    return {"messages": messages}


def test_highest_priority_family_wins_and_the_sidecar_names_both_sides(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    same = _msgs("the very same answer text " * 20)
    first = _partition(tmp_path, cfg, "a1", [_msgs("only in a " * 30), same], family="a")
    second = _partition(tmp_path, cfg, "b1", [same, _msgs("only in b " * 30)], family="b")
    sidecar = tmp_path / "dedup.jsonl.zst"
    result = cluster([first, second], cfg.dedup, tmp_path / "duck", dedup_sidecar=sidecar)
    assert list(result.decisions[0] != 0) == [True, True]
    assert list(result.decisions[1] != 0) == [False, True]
    rows = [
        orjson.loads(x)
        for x in zstandard.decompress(sidecar.read_bytes(), max_output_size=1 << 20).splitlines()
    ]
    assert rows == [
        {
            "kind": "exact",
            "family": "b",
            "source": "b1.jsonl",
            "line": 1,
            "winner_family": "a",
            "winner_source": "a1.jsonl",
            "winner_line": 2,
            "similarity": 1.0,
            "content_hash": rows[0]["content_hash"],
        }
    ]


@pytest.mark.parametrize("near", [True, False])
def test_leakage_check_fails_when_published_splits_are_tampered_with(
    tmp_path: Path, near: bool
) -> None:
    cfg = _config(tmp_path, dedup={"near": near})
    text = "a long answer about databases and indexes that is repeated " * 10
    edited = text.replace("indexes", "indices", 1)
    inp = _partition(tmp_path, cfg, "p", [_msgs(text), _msgs(text), _msgs(edited)])
    buckets = tmp_path / "buckets.parquet"
    result = cluster([inp], cfg.dedup, tmp_path / "duck", buckets=buckets)
    leaks = functools.partial(find_leaks, [inp], options=cfg.dedup, buckets=buckets)
    assert leaks(result.decisions, work=tmp_path / "l")[:2] == (0, 0)
    tampered = result.decisions[0].copy()
    winner = tampered[0]
    other = 2 if winner == 1 else 1
    tampered[1] = other  # the exact copy published in another split
    exact, near_leaks, pairs = leaks([tampered], work=tmp_path / "l")
    assert exact == 1 and pairs[0]["kind"] == "exact"
    if near:
        tampered = result.decisions[0].copy()
        tampered[2] = other  # the near copy published in another split
        exact, near_leaks, _ = leaks([tampered], work=tmp_path / "l")
        assert (exact, near_leaks) == (0, 1)


def test_near_leakage_check_needs_the_clusters_buckets(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    inp = _partition(tmp_path, cfg, "p", [_msgs("one answer " * 20), _msgs("another " * 20)])
    result = cluster([inp], cfg.dedup, tmp_path / "duck")  # no buckets written
    with pytest.raises(ValueError, match="buckets"):
        find_leaks([inp], result.decisions, cfg.dedup, tmp_path / "l")


@pytest.mark.parametrize("near", [True, False])
def test_no_partitions_give_no_decisions_and_no_leaks(tmp_path: Path, near: bool) -> None:
    cfg = _config(tmp_path, dedup={"near": near})
    buckets = tmp_path / "buckets.parquet"
    result = cluster([], cfg.dedup, tmp_path / "duck", buckets=buckets)
    assert (result.decisions, result.exact_duplicates, result.near_duplicates) == ([], 0, 0)
    leaks = find_leaks([], [], cfg.dedup, tmp_path / "l", buckets=buckets)
    assert leaks == (0, 0, [])


@pytest.mark.parametrize("fold_case", [False, True])
def test_leakage_check_sees_a_published_exact_copy_by_its_own_bands(
    tmp_path: Path, fold_case: bool
) -> None:
    """Decisions that publish an exact group's other member (not the one cluster keeps) are
    checked with that record's own band keys: with ``fold_case`` its text (what MinHash
    sees) can differ from the kept record's although their content hashes are equal."""
    cfg = _config(tmp_path, dedup={"fold_case": fold_case})
    first = " ".join(f"straße{i}" for i in range(300))
    # STRASSE…: the same casefolded content hash, but no word in common once lowercased
    copy = first.upper() if fold_case else first
    edited = copy.replace("150", "x", 1)
    inp = _partition(tmp_path, cfg, "p", [_msgs(first), _msgs(copy), _msgs(edited)])
    buckets = tmp_path / "buckets.parquet"
    result = cluster([inp], cfg.dedup, tmp_path / "duck", buckets=buckets)
    assert result.decisions[0][1] == 0  # the copy is an exact duplicate of the first record
    tampered = result.decisions[0].copy()
    tampered[:] = [0, 1, 2]  # the copy published in train, its near duplicate in val
    exact, near, pairs = find_leaks([inp], [tampered], cfg.dedup, tmp_path / "l", buckets=buckets)
    assert (exact, near) == (0, 1)
    assert pairs[0]["kind"] == "near" and pairs[0]["similarity"] >= cfg.dedup.threshold


def _same_clustering(a: ClusterResult, b: ClusterResult) -> bool:
    counts = (a.exact_duplicates, a.near_duplicates, a.candidate_pairs, a.verified_pairs)
    same_counts = counts == (
        b.exact_duplicates,
        b.near_duplicates,
        b.candidate_pairs,
        b.verified_pairs,
    )
    same = [np.array_equal(x, y) for x, y in zip(a.decisions, b.decisions, strict=True)]
    return same_counts and all(same)


def test_a_rebuild_from_the_last_clusterings_shared_keys_decides_exactly_as_a_full_one(
    tmp_path: Path,
) -> None:
    """A new file inserted first (it outranks every old record) holding exact and near copies
    of old records: old winners lose to it, old clusters grow. Starting from the earlier
    clustering's shared keys, only ~its share of band rows is grouped, with the same
    decisions, counts and buckets as grouping every row."""
    cfg = _config(tmp_path, splits={"train": 0.34, "val": 0.33, "test": 0.33})
    records = [r for r, _ in generate(3_000, seed=5, exact_rate=0.05, near_rate=0.10)]
    old = [_partition(tmp_path, cfg, f"old{i}", records[i::3]) for i in range(3)]
    rng = random.Random(3)
    copies = []
    for r in rng.sample(records, 150):
        words = r["messages"][-1]["content"].split()
        words[len(words) // 3] = "EDITED"
        copies += [r, _msgs_like(r, " ".join(words))]
    copies += [r for r, _ in generate(300, seed=99)]
    new = _partition(tmp_path, cfg, "new", copies)
    keys = tmp_path / "keys.parquet"
    before = cluster(old, cfg.dedup, tmp_path / "duck", keys_out=keys)
    assert before.near_duplicates > 100 and keys.is_file()

    inputs = [new, *old]
    full = cluster(inputs, cfg.dedup, tmp_path / "duck", buckets=tmp_path / "b-full.parquet")
    kept_keys = tmp_path / "keys2.parquet"
    rebuilt = cluster(
        inputs,
        cfg.dedup,
        tmp_path / "duck",
        buckets=tmp_path / "b-known.parquet",
        known_keys=KnownKeys(keys, [0]),
        keys_out=kept_keys,
    )
    assert rebuilt.from_known_keys and not full.from_known_keys
    # only the rows whose key may be shared were grouped (the new file's, ~a fifth, and the
    # old shared keys' members): a small part of all
    assert 0 < rebuilt.band_rows_grouped < full.band_rows_grouped / 3
    assert full.exact_duplicates >= 150 and full.near_duplicates > before.near_duplicates + 100
    assert _same_clustering(full, rebuilt)
    buckets = [
        sorted(pq.read_table(tmp_path / f"b-{n}.parquet").to_pylist(), key=str)
        for n in ("full", "known")
    ]
    assert buckets[0] == buckets[1] and buckets[0]

    # The keys it kept chain: one more new file, the same decisions as a full clustering.
    more = _partition(tmp_path, cfg, "more", [r for r, _ in generate(200, seed=42)] + copies[:40])
    inputs.append(more)
    again = cluster(inputs, cfg.dedup, tmp_path / "duck", known_keys=KnownKeys(kept_keys, [4]))
    assert again.from_known_keys
    assert _same_clustering(cluster(inputs, cfg.dedup, tmp_path / "duck"), again)


def test_unreadable_known_keys_fall_back_to_grouping_every_row(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    records = [r for r, _ in generate(400, seed=8, exact_rate=0.05, near_rate=0.10)]
    inputs = [_partition(tmp_path, cfg, "p", records), _partition(tmp_path, cfg, "q", records)]
    broken = tmp_path / "keys.parquet"
    broken.write_bytes(b"PAR1 not parquet")
    result = cluster(inputs, cfg.dedup, tmp_path / "duck", known_keys=KnownKeys(broken, [1]))
    assert not result.from_known_keys
    assert _same_clustering(result, cluster(inputs, cfg.dedup, tmp_path / "duck"))
    assert result.exact_duplicates >= 400
