"""MinHash signatures and band keys (dataset_assets.core.minhash), against a plain-Python
reference of the shingle definition: words = str.split() of the lowercased text, where every
character of a script written without spaces (CHAR_WORD_RANGES) is a word of its own, capped at
MAX_SHINGLED_WORDS, word w-grams, a text of at most w words is one shingle."""

import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from bench.gen_corpus import generate
from dataset_assets.core.minhash import (
    CHAR_WORD_RANGES,
    MAX_SHINGLED_WORDS,
    Signer,
    conversation_text,
    jaccard_estimate,
)

ROOT = Path(__file__).resolve().parents[2]
SPACES = [chr(c) for c in range(0x110000) if chr(c).isspace()]


def lowercase(text: str) -> str:
    """The signer's case folding: per character, Unicode lowercase (Arrow's utf8_lower)."""
    return str(pc.utf8_lower(pa.array([text])).to_pylist()[0])


CHAR_WORD = re.compile("([" + "".join(f"{chr(a)}-{chr(b)}" for a, b in CHAR_WORD_RANGES) + "])")


def ref_words(text: str) -> list[str]:
    return CHAR_WORD.sub(r" \1 ", lowercase(text)).split()


def ref_shingles(text: str, w: int = 3, cap: int = MAX_SHINGLED_WORDS) -> set[str]:
    words = ref_words(text)[:cap]
    if len(words) <= w:
        return {" ".join(words)}
    return {" ".join(words[i : i + w]) for i in range(len(words) - w + 1)}


def true_jaccard(a: str, b: str) -> float:
    sa, sb = ref_shingles(a), ref_shingles(b)
    return len(sa & sb) / len(sa | sb)


def hash_sets(signer: Signer, texts: list[str]) -> list[set[int]]:
    hashes, docs = signer.shingle_hashes(texts)
    return [set(hashes[docs == i].tolist()) for i in range(len(texts))]


def messy_text(rng: random.Random, n_words: int) -> str:
    """Words from a small vocabulary (so texts share shingles) with mixed case, accents, every
    kind of whitespace run, control characters inside words, and a few long words."""
    vocab = [
        "the",
        "Cat",
        "SAT",
        "on",
        "mat",
        "Straße",
        "ǅemal",
        "naïve",
        "日本語",
        "ひらがなカタカナ",
        "ภาษาไทย",
        "한국어",
        "中文，标点！",
        "ｆｕｌｌ",
        "𠀀𠀁",
        "mixed日本word",
        "emoji😀x",
        "x\x07y",
        "ﬁne",
    ]
    vocab += ["a" * 9, "b" * 17, "c" * 200, "Ünïcödé" * 3]
    out = []
    for _ in range(n_words):
        out.append(rng.choice(vocab))
        out.append("".join(rng.choice(SPACES) for _ in range(rng.choice([1, 1, 1, 2, 3]))))
    return rng.choice(["", " ", "\u3000"]) + "".join(out)


def edit_words(rng: random.Random, text: str, rate: float) -> str:
    words = text.split()
    out: list[str] = []
    for word in words:
        if rng.random() >= rate:
            out.append(word)
        elif rng.random() < 0.5:
            out.append(f"edit{rng.randrange(10**6)}")
    return " ".join(out)


def test_shingles_are_exactly_the_reference_shingles():
    """Same shingle sets as str.split(): every Unicode space separates, control characters
    other than whitespace do not, case folding applies, long words are whole words."""
    rng = random.Random(5)
    texts = [messy_text(rng, rng.choice([0, 1, 2, 3, 4, 40, 400])) for _ in range(60)]
    texts += ["", " \t\n ", "Hello", "hello  WORLD", "a b c", "x a b c", "a\x1cb\x1fc\x85d"]
    signer = Signer(128, 32, 3)
    sets = hash_sets(signer, texts)
    refs = [ref_shingles(t) for t in texts]
    for i in range(len(texts)):
        assert len(sets[i]) == len(refs[i]), repr(texts[i][:80])
        for j in range(i):
            assert len(sets[i] & sets[j]) == len(refs[i] & refs[j]), (i, j)


def test_every_unicode_space_splits_words():
    signer = Signer()
    base = signer.signatures(["alpha beta gamma delta"])[0]
    for space in SPACES:
        text = f"alpha{space}beta{space * 2}gamma {space}delta{space}"
        assert np.array_equal(signer.signatures([text])[0], base), hex(ord(space))


def test_identical_texts_identical_signatures_in_any_batch():
    """A text's signature does not depend on its batch, its position, or the batch size."""
    rng = random.Random(1)
    texts = [messy_text(rng, rng.randint(0, 300)) for _ in range(40)]
    big = " ".join(f"w{i}" for i in range(60_000))  # > one internal batch on its own
    texts.insert(7, big)
    signer = Signer()
    together = signer.signatures(texts)
    alone = np.stack([signer.signatures([t])[0] for t in texts])
    reversed_ = signer.signatures(texts[::-1])[::-1]
    assert np.array_equal(together, alone)
    assert np.array_equal(together, reversed_)
    assert together.shape == (len(texts), 128) and together.dtype == np.uint32
    # case and whitespace do not matter; words do
    a, b, c = signer.signatures(["Hello  World, how are you", "hello world,\nhow ARE you", "x"])
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bytes_texts_are_lowercased_ascii_with_the_same_signatures():
    """A bytes text (ASCII, already lowercased) signs like its str, also past the cut."""
    rng = random.Random(3)
    texts = [
        messy_text(rng, rng.randint(0, 300)).encode("ascii", "ignore").decode() for _ in range(40)
    ]
    texts += [
        "",
        "Hello  World\x1c\x1fx",
        " ".join(f"{'Z' * 40}{i}" for i in range(MAX_SHINGLED_WORDS + 10)),
    ]
    signer = Signer()
    mixed = [t.encode().lower() if i % 2 else t for i, t in enumerate(texts)]
    assert np.array_equal(signer.signatures(mixed), signer.signatures(texts))


def test_case_does_not_matter_in_any_script():
    signer = Signer()
    a, b, c = signer.signatures(
        [
            "ÄÖÜ Éclair СЛОВО ΩΜΈΓΑ naïve Ǆemal HELLO",
            "äöü éclair слово ωμέγα NAÏVE ǆemal hello",
            "äöü éclair слово ωμέγα naive ǆemal hello",
        ]
    )
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)  # accents are kept


def test_deterministic_across_processes():
    texts = ["The quick brown fox jumps over the lazy dog", "", "naïve ǅemal Straße " * 50]
    signer = Signer(64, 16, 3, seed=42)
    here = signer.signatures(texts)
    code = (
        "import sys, numpy as np\n"
        "from dataset_assets.core.minhash import Signer\n"
        f"s = Signer(64, 16, 3, seed=42)\n"
        f"sys.stdout.write(s.signatures({texts!r}).tobytes().hex())\n"
    )
    for hashseed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, check=True
        ).stdout
        assert np.array_equal(
            np.frombuffer(bytes.fromhex(out.decode()), dtype=np.uint32).reshape(here.shape), here
        )
    # the seed changes the signatures
    assert not np.array_equal(Signer(64, 16, 3, seed=43).signatures(texts), here)


@pytest.mark.parametrize("num_perm,bands", [(128, 32), (96, 24)])
def test_estimate_close_to_true_jaccard_after_small_edits(num_perm, bands):
    """3 % word edits: the estimate is within a few binomial standard deviations of the true
    Jaccard similarity of the shingle sets, and unbiased on average."""
    gen = random.Random(7)
    vocab = [f"w{i}" for i in range(3000)]
    originals = [" ".join(gen.choices(vocab, k=gen.randint(80, 1500))) for _ in range(120)]
    edited = [edit_words(gen, t, 0.03) for t in originals]
    signer = Signer(num_perm, bands, 3)
    est = jaccard_estimate(signer.signatures(originals), signer.signatures(edited))
    truth = np.array([true_jaccard(a, b) for a, b in zip(originals, edited, strict=True)])
    sd = np.sqrt(truth * (1 - truth) / num_perm)
    assert truth.min() > 0.7  # the edits leave near duplicates
    assert np.all(np.abs(est - truth) <= 4.5 * sd + 1.5 / num_perm)
    assert abs(float(np.mean(est - truth))) <= 3 * float(np.sqrt(np.mean(sd**2) / len(sd)))


def test_estimate_of_unrelated_and_half_overlapping_texts():
    signer = Signer()
    rng = random.Random(3)
    a = " ".join(f"a{rng.randrange(10**9)}" for _ in range(400))
    b = " ".join(f"b{rng.randrange(10**9)}" for _ in range(400))
    half = " ".join(a.split()[:200] + b.split()[:200])
    sa, sb, sh = signer.signatures([a, b, half])
    assert float(jaccard_estimate(sa, sb)) <= 0.03
    tol = 4.5 * math.sqrt(0.25 * 0.75 / 128)
    assert abs(float(jaccard_estimate(sa, sh)) - true_jaccard(a, half)) <= tol


def test_short_and_empty_texts():
    """Up to w words: one shingle of all the words; no words: one empty shingle."""
    signer = Signer()
    sigs = signer.signatures(["", "   \n", "Hi", "hi", "a b", "a b c", "x a b c", "b a", "a"])
    empty, blank, hi, hi2, ab, abc, xabc, ba, a = sigs
    assert np.array_equal(empty, blank)
    assert np.array_equal(hi, hi2)
    for x, y in [(empty, hi), (ab, abc), (ab, ba), (a, ab), (empty, a)]:
        assert float(jaccard_estimate(x, y)) <= 0.05
    # "a b c" (exactly w words) is one of the two shingles of "x a b c"
    assert abs(float(jaccard_estimate(abc, xabc)) - 0.5) <= 4.5 * math.sqrt(0.25 / 128)
    assert not np.array_equal(abc, xabc)


def test_only_the_first_20000_words_count():
    signer = Signer()
    words = [f"w{i}" for i in range(MAX_SHINGLED_WORDS + 5000)]
    capped = " ".join(words[:MAX_SHINGLED_WORDS])
    longer = " ".join(words)
    changed_tail = " ".join(words[: MAX_SHINGLED_WORDS + 1] + ["other"] * 4999)
    changed_inside = " ".join(
        words[: MAX_SHINGLED_WORDS - 1] + ["other"] + words[MAX_SHINGLED_WORDS:]
    )
    # > 800k characters: cut before numpy sees it, with the same result
    huge = " ".join(f"{'z' * 40}{i}" for i in range(MAX_SHINGLED_WORDS + 10))
    huge_capped = " ".join(huge.split()[:MAX_SHINGLED_WORDS])
    sigs = signer.signatures([capped, longer, changed_tail, changed_inside, huge, huge_capped])
    assert np.array_equal(sigs[0], sigs[1])
    assert np.array_equal(sigs[0], sigs[2])
    assert np.array_equal(sigs[4], sigs[5])
    sets = hash_sets(signer, [capped, longer, changed_tail, changed_inside, huge])
    assert sets[0] == sets[1] == sets[2]
    assert len(sets[0] - sets[3]) == 1  # the last word counted is in the last shingle
    assert [len(x) for x in sets] == [MAX_SHINGLED_WORDS - 2] * 5


def cjk_text(rng: random.Random, sentences: int) -> str:
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    return "".join(
        "".join(rng.choice(chars) for _ in range(rng.randint(8, 30))) + rng.choice("，。！？")
        for _ in range(sentences)
    )


def test_scripts_without_spaces_are_shingled_by_character():
    """A Chinese, Japanese or Thai conversation with a few characters changed is a near
    duplicate (split at whitespace only, its paragraphs were single words: estimate 0)."""
    rng = random.Random(11)
    signer = Signer()
    kana = [chr(c) for c in range(0x3041, 0x3097)] + [chr(c) for c in range(0x30A1, 0x30FB)]
    thai = [chr(c) for c in range(0x0E01, 0x0E2F)]
    for make in (
        lambda: cjk_text(rng, 30),
        lambda: "".join(rng.choice(kana) for _ in range(600)) + "。" + cjk_text(rng, 10),
        lambda: "".join(rng.choice(thai) for _ in range(900)),
    ):
        original, unrelated = make(), make()
        chars = list(original)
        for i in rng.sample(range(len(chars)), len(chars) // 100):  # 1 % of the characters
            chars[i] = "语"
        edited = "".join(chars)
        a, b, c = signer.signatures([original, edited, unrelated])
        assert float(jaccard_estimate(a, b)) >= 0.8
        assert abs(float(jaccard_estimate(a, b)) - true_jaccard(original, edited)) <= 0.15
        assert float(jaccard_estimate(a, c)) <= 0.1
    # Korean is written with spaces: its words stay whole
    assert ref_words("한국어 문장입니다") == ["한국어", "문장입니다"]
    assert len(hash_sets(signer, ["한국어 문장입니다 정말"])[0]) == 1
    assert len(hash_sets(signer, ["中文文本"])[0]) == 2  # 4 character words, 2 shingles


def test_a_huge_text_without_spaces_is_capped_at_20000_characters():
    rng = random.Random(3)
    huge = cjk_text(rng, 60_000)  # ~1.2 M characters, no whitespace
    signer = Signer()
    texts = [huge, huge[:MAX_SHINGLED_WORDS], huge[: MAX_SHINGLED_WORDS - 1]]
    sigs = signer.signatures(texts)
    assert np.array_equal(sigs[0], sigs[1])
    sets = hash_sets(signer, texts)
    assert sets[0] == sets[1]
    assert len(sets[0] - sets[2]) == 1 and len(sets[0]) == MAX_SHINGLED_WORDS - 2


def test_band_keys_equal_iff_band_rows_equal():
    signer = Signer(128, 32, 3)
    rng = np.random.default_rng(0)
    sigs = rng.integers(0, 2**32, (400, 128), dtype=np.uint64).astype(np.uint32)
    # pairs sharing some bands exactly, and bands differing in a single slot
    for i in range(0, 400, 2):
        share = rng.random(32) < 0.5
        for b in np.flatnonzero(share):
            sigs[i + 1, b * 4 : b * 4 + 4] = sigs[i, b * 4 : b * 4 + 4]
        for b in np.flatnonzero(~share)[:4]:
            sigs[i + 1, b * 4 : b * 4 + 4] = sigs[i, b * 4 : b * 4 + 4]
            sigs[i + 1, b * 4 + rng.integers(4)] ^= np.uint32(1 << int(rng.integers(32)))
    keys = signer.band_keys(sigs)
    assert keys.shape == (400, 32) and keys.dtype == np.uint64
    # signatures read back as int32 (a SQL INTEGER) or int64 give the same keys
    assert np.array_equal(signer.band_keys(sigs.view(np.int32)), keys)
    assert np.array_equal(signer.band_keys(sigs.astype(np.int64)), keys)
    assert keys.view(np.int64).shape == (400, 32)
    rows = sigs.reshape(400, 32, 4)
    same_rows = (rows[0::2] == rows[1::2]).all(axis=2)
    assert same_rows.any() and (~same_rows).any()
    assert np.array_equal(keys[0::2] == keys[1::2], same_rows)
    # the band index is part of the key: equal rows in two bands give two keys
    twin = sigs[:1].copy()
    twin[0, 4:8] = twin[0, 0:4]
    k = signer.band_keys(twin)[0]
    assert k[0] != k[1]
    # all keys distinct across random signatures (no 64-bit collisions expected)
    assert len(np.unique(keys[0::2])) == keys[0::2].size


def test_near_duplicates_found_and_distinct_kept():
    """Band candidates + estimate >= 0.7 find the injected near copies (3 % word edits) of the
    dedup benchmark's generator (every one whose true similarity is >= 0.8) and merge no
    distinct conversations."""
    data = list(generate(1500, seed=11, edit_rate=0.03))
    texts = [conversation_text([m["content"] for m in r["messages"]]) for r, _ in data]
    signer = Signer(128, 32, 3)
    sigs = signer.signatures(texts)
    keys = signer.band_keys(sigs)
    near = [i for i, (_, d) in enumerate(data) if d is not None and texts[i] != texts[d]]
    missed_above_08 = found = 0
    for i in near:
        d = data[i][1]
        assert d is not None
        if (keys[i] == keys[d]).any() and float(jaccard_estimate(sigs[i], sigs[d])) >= 0.7:
            found += 1
        elif true_jaccard(texts[i], texts[d]) >= 0.8:
            missed_above_08 += 1
    # misses are pairs whose true similarity is near the threshold (estimate noise)
    assert len(near) > 100 and found / len(near) >= 0.97 and missed_above_08 == 0
    distinct = [i for i, (_, d) in enumerate(data) if d is None]
    by_key: dict[tuple[int, int], list[int]] = {}
    for i in distinct:
        for b in range(32):
            by_key.setdefault((b, int(keys[i, b])), []).append(i)
    for members in by_key.values():
        for j in members[1:]:
            assert float(jaccard_estimate(sigs[members[0]], sigs[j])) < 0.7


def test_config_checks_and_empty_batch():
    with pytest.raises(ValueError):
        Signer(100, 32, 3)
    with pytest.raises(ValueError):
        Signer(128, 32, 0)
    s = Signer(96, 24, 2)
    assert s.signatures([]).shape == (0, 96)
    assert s.band_keys(s.signatures(["a b c d"])).shape == (1, 24)
    assert "perm=96" in s.version and "w=2" in s.version
    with pytest.raises(ValueError):
        s.band_keys(np.zeros((2, 128), dtype=np.uint32))
