"""A conversation's identity: the sha256 of its canonical messages (roles + contents, with the
configured whitespace and case folding). Exact duplicates share it; near duplicates are found
from MinHash signatures (:mod:`dataset_assets.core.minhash`) by the clustering stage
(:mod:`dataset_assets.core.cluster`).

:func:`content_hashes` computes the same hashes for a batch of conversations, folding the
whitespace of all their texts at once with numpy (:func:`fold_whitespace`) instead of one
``str.split`` per text (~3x faster on chat text).
"""

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
import orjson

from dataset_assets.core.config import DedupOptions
from dataset_assets.core.minhash import ascii_whitespace, blank_unicode_spaces
from dataset_assets.core.records import Message

_FOLD_GROUP_CHARS = 1 << 18
"""Texts are folded in groups of about this many characters (temporaries stay in cache)."""
_FOLD_ARRAYS_MAX_CHARS = 1 << 22
"""Larger groups (one huge conversation) are folded with ``str.split``: the same result, with
memory bounded by the text rather than by its number of whitespace characters."""


def canonical_messages(messages: list[Message], options: DedupOptions) -> list[list[str]]:
    out = []
    for m in messages:
        text = m["content"]
        if options.fold_whitespace:
            text = " ".join(text.split())  # same as re.sub(r"\s+", " ").strip(), 4x faster
        if options.fold_case:
            text = text.casefold()
        out.append([m["role"], text])
    return out


def content_hash(messages: list[Message], options: DedupOptions) -> str:
    """sha256 (hex) of the canonical messages: a conversation's identity."""
    return hashlib.sha256(orjson.dumps(canonical_messages(messages, options))).hexdigest()


def content_hashes(batch: Sequence[list[Message]], options: DedupOptions) -> list[str]:
    """:func:`content_hash` of each conversation of ``batch`` (the same values)."""
    return hashes_and_words(batch, options)[0]


def hashes_and_words(
    batch: Sequence[list[Message]], options: DedupOptions, words: bool = True
) -> tuple[list[str], list[str | bytes] | None]:
    """:func:`content_hash` of each conversation of ``batch`` and, with ``words`` and when
    whitespace is folded, each conversation's words (those of its contents joined by spaces,
    without the system turns unless ``options.near_system_turns``: what MinHash sees) as a
    folded text: ASCII text already lowercased as bytes (its turns separated by ``\\n``), other
    text as a str (not case folded); else None."""
    if not options.fold_whitespace:
        return [content_hash(messages, options) for messages in batch], None
    sha256, dumps = hashlib.sha256, orjson.dumps
    all_turns = options.near_system_turns
    hashes: list[str] = []
    joined: list[str | bytes] = []
    for group in _groups(batch):
        folded, ascii_, cuts = _fold_group([m["content"] for messages in group for m in messages])
        canon = [text.casefold() for text in folded] if options.fold_case else folded
        lower = ascii_.lower() if words and ascii_ is not None else None
        at = 0
        for messages in group:
            end = at + len(messages)
            pairs = zip(messages, canon[at:end], strict=True)
            hashes.append(sha256(dumps([[m["role"], text] for m, text in pairs])).hexdigest())
            if words:
                turns = [
                    i for i, m in enumerate(messages, at) if all_turns or m["role"] != "system"
                ]
                if lower is None:
                    joined.append(" ".join(folded[i] for i in turns))
                elif len(turns) == end - at:  # every turn, contiguous: one slice
                    joined.append(lower[cuts[at] + 1 : cuts[end]])
                else:
                    joined.append(b"\n".join(lower[cuts[i] + 1 : cuts[i + 1]] for i in turns))
            at = end
    return hashes, joined if words else None


def _groups(batch: Sequence[list[Message]]) -> Iterator[Sequence[list[Message]]]:
    """Consecutive conversations of about ``_FOLD_GROUP_CHARS`` characters (at least one)."""
    start, size = 0, 0
    for end, messages in enumerate(batch, 1):
        for m in messages:
            size += len(m["content"])
        if size >= _FOLD_GROUP_CHARS:
            yield batch[start:end]
            start, size = end, 0
    if start < len(batch):
        yield batch[start:]


def fold_whitespace(texts: Sequence[str]) -> list[str]:
    """``" ".join(text.split())`` of each text (every ``str.isspace`` run becomes one space,
    none at either end), vectorized over groups of texts. Texts must be encodable as UTF-8."""
    out: list[str] = []
    start, size = 0, 0
    for end, text in enumerate(texts, 1):
        size += len(text)
        if size >= _FOLD_GROUP_CHARS:
            out += _fold_group(texts[start:end])[0]
            start, size = end, 0
    if start < len(texts):
        out += _fold_group(texts[start:])[0]
    return out


def _fold_group(texts: Sequence[str]) -> tuple[list[str], bytes | None, list[int]]:
    """The texts are joined with ``\\n`` separators (also before the first and after the
    last); every whitespace byte that follows a whitespace byte is dropped, and so is the first
    byte of each run that holds a separator, except the separators; the other first bytes
    become spaces. What is left holds ``\\n`` only as separators.

    Returns the folded texts and, when they are all ASCII, what is left (bytes) and the
    positions of its separators (text ``i`` is ``left[cuts[i] + 1 : cuts[i + 1]]``)."""
    joined = "\n".join(["", *texts, ""])
    if len(joined) > _FOLD_ARRAYS_MAX_CHARS:  # a huge record: no arrays of 8 bytes per space
        return [" ".join(text.split()) for text in texts], None, []
    ascii_ = joined.isascii()
    if ascii_:  # characters are bytes
        buf = joined.encode("ascii")
        arr = np.frombuffer(buf, dtype=np.uint8)
        lengths = map(len, texts)
    else:
        encoded = [text.encode() for text in texts]
        buf = b"\n".join([b"", *encoded, b""])
        # multi-byte spaces: all their bytes are b" "
        arr = blank_unicode_spaces(np.frombuffer(buf, dtype=np.uint8))
        lengths = map(len, encoded)
    sep = np.empty(len(texts) + 1, dtype=np.int64)
    sep[0] = 0
    np.cumsum(np.fromiter(lengths, dtype=np.int64, count=len(texts)) + 1, out=sep[1:])
    # whitespace bytes (ascii_whitespace): among those <= 32, all but the other controls
    ws = arr <= 32
    control = np.flatnonzero(arr < 32)
    low = arr[control]
    is_ws = ascii_whitespace(low)
    if not is_ws.all():
        ws[control[~is_ws]] = False
        control = control[is_ws]
    drop = np.flatnonzero(ws[1:] & ws[:-1])
    drop += 1
    ends = sep[1:]
    trailing = ends[ws[ends - 1]]
    if len(trailing):
        # a run that reaches a separator from the left: its first byte is dropped too (the
        # run's other bytes are a chain of consecutive positions in ``drop``)
        chain = np.empty(len(drop), dtype=bool)
        chain[0] = True
        np.not_equal(np.diff(drop), 1, out=chain[1:])
        chain_start = np.maximum.accumulate(np.where(chain, np.arange(len(drop)), 0))
        first = drop[chain_start[np.searchsorted(drop, trailing)]] - 1
        drop = np.concatenate((drop, first))
    # dropped bytes become 0xFF (never in UTF-8) and are deleted from the bytes in one pass
    res = arr.copy()
    res[control] = 32
    res[drop] = 0xFF
    res[sep] = 10
    folded = res.tobytes().replace(b"\xff", b"")
    if not ascii_:
        return folded.decode().split("\n")[1:-1], None, []
    # ASCII: characters are bytes; cut at the separators' new positions
    dropped = drop  # sorted, and no separator follows whitespace
    if len(trailing):
        dropped = drop[res[drop] == 0xFF]  # not the separators
        dropped.sort()
        dropped = dropped[np.diff(dropped, prepend=-1) != 0]  # each once
    cuts = (sep - np.searchsorted(dropped, sep)).tolist()
    text = folded.decode("ascii")
    return [text[a + 1 : b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)], folded, cuts
