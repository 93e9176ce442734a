"""Content hashes: the batch path (a vectorized whitespace fold) gives every conversation the
same identity as the one-conversation definition, whatever the text holds."""

import random

import pytest

from dataset_assets.core.config import DedupOptions
from dataset_assets.core.dedup import (
    content_hash,
    content_hashes,
    fold_whitespace,
    hashes_and_words,
)
from dataset_assets.core.minhash import Signer, conversation_text
from dataset_assets.core.partition import shingle_text
from dataset_assets.core.records import Message

# every str.isspace character, control characters that are not whitespace, multi-byte UTF-8
# (some sharing lead bytes with the Unicode spaces), and plain words
PIECES = [
    *(chr(c) for c in range(0x110000) if chr(c).isspace()),
    "\x00",
    "\x01",
    "\x08",
    "\x0e",
    "\x1b",
    "\x7f",
    "\u200b",
    "\u0101",
    "\u1681",
    "\u3001",
    "Straße",
    "日本",
    "😀",
    "a",
    "Word",
    "  ",
]


def _texts(rng: random.Random, pieces: list[str], n: int) -> list[str]:
    return [
        "".join(rng.choice(pieces) for _ in range(rng.choice([0, 1, 2, 3, 8, 50, 3000])))
        for _ in range(n)
    ]


@pytest.mark.parametrize("ascii_only", [False, True])
def test_fold_whitespace_is_split_and_join_of_every_text(ascii_only: bool) -> None:
    rng = random.Random(5)
    pieces = [p for p in PIECES if p.isascii()] if ascii_only else PIECES
    texts = _texts(rng, pieces, 2000)  # several fold groups, texts of every kind
    texts += ["", " ", "\n\n", " a ", "a\u3000\u3000b\x1f", "x" * 300_000 + " \n y "]
    texts += [" a \n\n" * 1_100_000, "b"]  # over 4M characters: folded without arrays

    assert fold_whitespace(texts) == [" ".join(t.split()) for t in texts]
    assert fold_whitespace([]) == []


@pytest.mark.parametrize("system", [False, True])
@pytest.mark.parametrize("fold_case", [False, True])
@pytest.mark.parametrize("fold_whitespace_", [False, True])
def test_batch_hashes_equal_one_by_one_hashes(
    fold_case: bool, fold_whitespace_: bool, system: bool
) -> None:
    rng = random.Random(11)
    options = DedupOptions(
        fold_case=fold_case, fold_whitespace=fold_whitespace_, near_system_turns=system
    )
    texts = _texts(rng, PIECES, 3000)
    batch: list[list[Message]] = []
    while texts:
        n = rng.randint(1, 6)
        roles = ["system", "user", "assistant"]
        batch.append([{"role": rng.choice(roles), "content": t} for t in texts[:n]])
        texts = texts[n:]

    hashes, words = hashes_and_words(batch, options)
    assert hashes == [content_hash(m, options) for m in batch]
    assert content_hashes(batch, options) == hashes
    assert len(set(hashes)) > len(batch) // 2
    # the folded words MinHash gets instead of the raw text: the same signatures (system turns
    # only with near_system_turns; the content hashes always include them)
    raw = [shingle_text(messages, system) for messages in batch]
    assert any(m["role"] == "system" for messages in batch for m in messages)
    if fold_whitespace_:
        assert words is not None
        signer = Signer(64, 16, 2)
        assert (signer.signatures(words) == signer.signatures(raw)).all()
    else:
        assert words is None


def test_words_of_ascii_and_unicode_batches_sign_like_the_raw_text() -> None:
    ascii_batch: list[list[Message]] = [
        [
            {"role": "user", "content": f"  Hello\n\n WORLD {i}\t"},
            {"role": "assistant", "content": "ok"},
        ]
        for i in range(3)
    ]
    unicode_batch: list[list[Message]] = [
        [{"role": "user", "content": "Stra\u00dfe\u3000ist  LANG"}]
    ]
    signer = Signer()
    huge: list[list[Message]] = [[{"role": "user", "content": "W  x\n" * 1_100_000}]]
    for batch in (ascii_batch, unicode_batch, ascii_batch + unicode_batch, huge + ascii_batch):
        _, words = hashes_and_words(batch, DedupOptions())
        raw = [conversation_text([m["content"] for m in messages]) for messages in batch]
        assert words is not None
        assert (signer.signatures(words) == signer.signatures(raw)).all()
    _, words = hashes_and_words(ascii_batch, DedupOptions())
    assert words == [b"hello world %d\nok" % i for i in range(3)]
    assert hashes_and_words(ascii_batch, DedupOptions(), words=False)[1] is None


def test_content_hash_definition_is_unchanged() -> None:
    """Pinned values: stored partitions and published records are keyed by these hashes."""
    messages: list[Message] = [
        {"role": "system", "content": " Be\u3000brief.\n"},
        {"role": "user", "content": "Hello\t\tWORLD  \n\n Straße"},
        {"role": "assistant", "content": "Hi\x1c there\x85!"},
    ]
    folded = "51f0aaf881402f4105db8e9210041aa8ca727b338d3aff65d287f0eee0d78994"
    cased = "1c21af4c3847d8307c2937590a5994301850a78dfd488217b6bc90c0cc7e6ad7"

    assert content_hashes([messages], DedupOptions()) == [folded]
    assert content_hashes([messages], DedupOptions(fold_case=True)) == [cased]
    # same words, other whitespace: same identity
    spaced = [{**m, "content": " ".join(m["content"].split())} for m in messages]
    assert content_hashes([spaced], DedupOptions()) == [folded]
