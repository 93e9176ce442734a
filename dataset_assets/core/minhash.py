"""MinHash signatures and LSH band keys for a batch of conversations, vectorized with numpy.

What is hashed: the lowercased conversation text (every turn's content joined with a space,
roles ignored), split into words as :meth:`str.split` does (every Unicode whitespace character
separates words), except that in the scripts written without spaces between words (Chinese,
Japanese, Thai, Lao, Khmer, Myanmar: :data:`CHAR_WORD_RANGES`) every character is a word of its
own; capped at the first :data:`MAX_SHINGLED_WORDS` words. The shingles are the word
``w``-grams (character ``w``-grams in those scripts), and a text of at most ``w`` words is one
shingle of all its words (an empty text is one empty shingle). Split at whitespace only, a
Chinese paragraph is one "word": one changed character made the whole paragraph's shingles
differ, and a Chinese conversation with 1 % of its characters edited had an estimated
similarity of 0 to the original (0.95 with character words).

Lowercasing is per character: ASCII as usual, other characters by
their Unicode lowercase mapping (Arrow's ``utf8_lower``). That is ``str.casefold`` except for
the few characters whose full case folding differs from their lowercase (``ß`` stays ``ß``,
``ﬁ`` stays ``ﬁ``, final ``ς`` stays ``ς``), and ~8x faster than ``str.casefold`` on non-ASCII
text.

How, with no Python loop per word or shingle (numpy over a batch's UTF-8 bytes):

1. The batch's lowercased texts are joined into one byte buffer. Whitespace positions are found
   in one vectorized scan (ASCII whitespace directly; in batches that contain non-ASCII text
   only, the few multi-byte Unicode spaces are rewritten to ``b" "`` first, and words also
   end before and after every character of :data:`CHAR_WORD_RANGES`).
2. Each word is hashed from its bytes, 8 at a time (a multiply / xor-shift chain over 64-bit
   lanes); words longer than 128 bytes (rare) are hashed with BLAKE2b.
3. Each shingle hash is ``fmix64(K[len] + Σ word_hash[j] · C[j])`` (MurmurHash3's finalizer):
   order-sensitive, and equal for equal word sequences in any text. ``K`` depends on ``seed``.
4. The signature is a **bucketed MinHash** (Dahlgaard, Knudsen & Thorup, *Fast Similarity
   Sketching*, 2017; the scheme of rensa's R-MinHash): the high bits of a shingle hash pick one
   of ``num_perm`` bins, its low 32 bits are the value, and each bin keeps its minimum (one
   ``np.minimum.at`` scatter per batch). Texts left with empty bins (fewer shingles than a few
   times ``num_perm``) get up to 3 more rounds: their shingles are re-hashed (multiply-shift)
   into bins, and a round's values rank after every earlier round's, so a bin holds the
   minimum of the first round that reached it. A bin still empty after that (a few bins of
   texts under ~300 shingles at 128 bins) copies the first non-empty bin of a fixed
   pseudo-random probe sequence (optimal densification, Shrivastava 2017). Each slot of two
   signatures is equal with probability ≈ the Jaccard similarity of the shingle sets, with the
   accuracy of ``num_perm`` independent permutations (``bench/bench_signatures.py``: the same
   error as rensa's R-MinHash on the same shingles, over 6 seeds), at the cost of 1-4 hashes
   per shingle instead of ``num_perm``.

Band keys: band ``b`` of a signature (rows ``b*r .. b*r + r - 1``, ``r = num_perm / bands``) is
hashed with its index to one 64-bit key (equal rows give equal keys; different rows collide with
probability ~2^-64).

Everything is integer arithmetic on explicit little-endian 64-bit lanes with fixed constants:
signatures are identical across processes, runs and machines (no ``hash()`` randomization) for
the same Unicode lowercase tables (pyarrow's utf8proc). :attr:`Signer.version` names the
algorithm and parameters, for keys of stored signatures.
"""

import hashlib
import itertools
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

MAX_SHINGLED_WORDS: Final = 20_000
"""Words of a conversation used for its MinHash (bounds CPU on pathological 50 MB records)."""

DEFAULT_SEED: Final = 1_234_567
ALGORITHM: Final = "fss-v2"  # v2: characters of CHAR_WORD_RANGES are words
"""Bump when any output of :class:`Signer` changes for the same inputs."""

U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]

_M = np.uint64
_MASK64 = (1 << 64) - 1
_LONG_WORD = 128
"""Words longer than this many bytes are hashed with BLAKE2b instead of the 8-byte lanes."""
_BATCH_CHARS = 1 << 18
"""Texts are processed in groups of about this many characters: small enough for the
temporary arrays to stay in cache and in the allocator's heap (2-3x faster than 4 MB groups)."""
_ROUNDS = 4
"""Hashing rounds of the shingles of texts that still have empty bins (see the module doc)."""
_PROBES = 256
"""Vectorized densification probes; bins still empty after them take the next non-empty bin."""
# str.split() whitespace (= str.isspace()) outside ASCII, as UTF-8; the test checks the list.
_UNICODE_SPACES: Final = (
    "\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_SPACE_CODES2 = np.array(
    [int.from_bytes(c.encode(), "big") for c in _UNICODE_SPACES if len(c.encode()) == 2],
    dtype=np.uint32,
)
_SPACE_CODES3 = np.array(
    [int.from_bytes(c.encode(), "big") for c in _UNICODE_SPACES if len(c.encode()) == 3],
    dtype=np.uint32,
)
CHAR_WORD_RANGES: Final = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK and Kangxi radicals
    (0x3001, 0x303F),  # CJK symbols and punctuation (U+3000, a space, is whitespace)
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3100, 0x312F),  # Bopomofo
    (0x3190, 0x31FF),  # Kanbun, Bopomofo extended, CJK strokes, Katakana extensions
    (0x3400, 0x4DBF),  # CJK unified ideographs extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFE30, 0xFE4F),  # CJK compatibility forms
    (0xFF00, 0xFFEF),  # halfwidth and fullwidth forms (fullwidth punctuation)
    (0x20000, 0x3FFFF),  # CJK extensions B and later, compatibility supplement
)
"""Code points of the scripts written without spaces between words: each is a word of its own
(Korean, written with spaces, is not here)."""
_CHAR_WORD_CLASS = "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in CHAR_WORD_RANGES)
_WORD = re.compile(f"[{_CHAR_WORD_CLASS}]|[^\\s{_CHAR_WORD_CLASS}]+")
"""One word of the shingle definition (for cutting huge texts before numpy sees them)."""
_CHAR_WORD_BMP = np.zeros(0x10000, dtype=bool)
for _lo, _hi in CHAR_WORD_RANGES:
    _CHAR_WORD_BMP[_lo : min(_hi, 0xFFFF) + 1] = True
_EMPTY: Final = 0xFFFFFFFF
_EMPTY64: Final = np.uint64(_MASK64)
_LITTLE: Final = sys.byteorder == "little"
_K_WORD = _M(0x9E3779B97F4A7C15)
_K_LEN = _M(0xC2B2AE3D27D4EB4F)
_BYTE_MASKS = np.array([(1 << (8 * i)) - 1 for i in range(8)] + [_MASK64], dtype=np.uint64)


def _constants(seed: int, tag: int, n: int, odd: bool = False) -> U64:
    """``n`` pseudo-random 64-bit constants: SplitMix64 of ``seed * P + tag * 0x10001 + i``."""
    start = (seed * 0x100000001B3 + tag * 0x10001 + 0x9E3779B97F4A7C15) & _MASK64
    x = np.arange(n, dtype=np.uint64)
    x += _M(start)
    x ^= x >> _M(30)
    x *= _M(0xBF58476D1CE4E5B9)
    x ^= x >> _M(27)
    x *= _M(0x94D049BB133111EB)
    x ^= x >> _M(31)
    if odd:
        x |= _M(1)
    return x


def _fmix64(h: U64) -> U64:
    """MurmurHash3's 64-bit finalizer, in place (a bijection with full avalanche)."""
    h ^= h >> _M(33)
    h *= _M(0xFF51AFD7ED558CCD)
    h ^= h >> _M(33)
    h *= _M(0xC4CEB9FE1A85EC53)
    h ^= h >> _M(33)
    return h


def _batches(texts: Sequence[str | bytes]) -> Iterator[tuple[int, int]]:
    """Consecutive ranges of ``texts`` of about ``_BATCH_CHARS`` characters (at least one)."""
    ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
    start = 0
    while start < len(texts):
        before = int(ends[start - 1]) if start else 0
        end = int(np.searchsorted(ends, before + _BATCH_CHARS, side="right"))
        end = max(end, start + 1)
        yield start, end
        start = end


def conversation_text(contents: Sequence[str]) -> str:
    """The text a conversation's MinHash sees: its turns' contents joined with a space."""
    return " ".join(contents)


class Signer:
    """MinHash signatures (``num_perm`` uint32 slots) and LSH band keys for batches of texts."""

    def __init__(
        self,
        num_perm: int = 128,
        bands: int = 32,
        shingle_words: int = 3,
        seed: int = DEFAULT_SEED,
        max_words: int = MAX_SHINGLED_WORDS,
    ) -> None:
        if num_perm < 1 or bands < 1 or num_perm % bands:
            raise ValueError(
                f"num_perm ({num_perm}) must be a positive multiple of bands ({bands})"
            )
        if shingle_words < 1 or max_words < 1:
            raise ValueError("shingle_words and max_words must be positive")
        self.num_perm = num_perm
        self.bands = bands
        self.rows = num_perm // bands
        self.shingle_words = shingle_words
        self.seed = seed
        self.max_words = max_words
        self.version = (
            f"{ALGORITHM}:perm={num_perm}:bands={bands}:w={shingle_words}:seed={seed}"
            f":cap={max_words}"
        )
        w = shingle_words
        # shingle hash = fmix64(arity[len] + sum(word_hash[j] * coef[j]))
        self._coef = _constants(seed, 1, w, odd=True)
        self._arity = _constants(seed, 2, w + 1)
        self._band_seed = _constants(seed, 3, bands)
        self._band_coef = _constants(seed, 4, self.rows, odd=True)
        # probe sequence of densification: attempt t of empty bin i reads bin _donors[t, i]
        probe = _constants(seed, 5, _PROBES * num_perm).reshape(_PROBES, num_perm)
        self._donors = ((probe >> _M(32)) * _M(num_perm) >> _M(32)).astype(np.intp)
        self._round_seed = _constants(seed, 6, _ROUNDS, odd=True)

    # -- signatures -------------------------------------------------------------------------

    def signatures(self, texts: Sequence[str | bytes]) -> U32:
        """MinHash signatures of ``texts``: shape ``(len(texts), num_perm)``, uint32.

        A ``bytes`` text is ASCII text already lowercased (``text.encode().lower()``): the
        same signature as that text, without the copies.
        """
        out = np.empty((len(texts), self.num_perm), dtype=np.uint32)
        for start, end in _batches(texts):
            out[start:end] = self._sign_batch(texts[start:end])
        return out

    def shingle_hashes(self, texts: Sequence[str | bytes]) -> tuple[U64, npt.NDArray[np.int64]]:
        """Every shingle hash of ``texts`` (repeats included) and the index of its text.

        Grouped by text, in text order within a text. For tests and for other sketches:
        :meth:`signatures` uses the same hashes.
        """
        hashes: list[U64] = []
        docs: list[npt.NDArray[np.int64]] = []
        for start, end in _batches(texts):
            h, d, _, _ = self._shingles(texts[start:end])
            order = np.argsort(d, kind="stable")
            order = order[d[order] < end - start]
            hashes.append(h[order])
            docs.append(d[order] + start)
        if not hashes:
            return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
        return np.concatenate(hashes), np.concatenate(docs)

    def _bins(self, hashes: U64) -> npt.NDArray[np.int64]:
        k = self.num_perm
        if k & (k - 1) == 0:
            if k == 1:
                return np.zeros(len(hashes), dtype=np.int64)
            return (hashes >> _M(64 - (k.bit_length() - 1))).view(np.int64)
        return (((hashes >> _M(32)) * _M(k)) >> _M(32)).view(np.int64)

    def _sign_batch(self, texts: Sequence[str | bytes]) -> U32:
        n, k = len(texts), self.num_perm
        hashes, docs, offset, number = self._shingles(texts)
        # round 0: each shingle falls in one bin, whose value is the minimum low 32 bits
        values = np.full((n + 1) * k, _EMPTY, dtype=np.uint32)
        low = hashes.view(np.uint32)[0 if _LITTLE else 1 :: 2]  # low 32 bits, no copy
        slot = docs * k
        slot += self._bins(hashes)
        np.minimum.at(values, slot, low)
        sigs = values[: n * k].reshape(n, k)
        open_rows = np.flatnonzero((sigs == _EMPTY).any(axis=1))
        if len(open_rows):
            sigs[open_rows] = self._more_rounds(
                hashes, offset[open_rows], number[open_rows], sigs[open_rows]
            )
        return self._densify(sigs)

    def _more_rounds(self, hashes: U64, offset: I64, number: I64, sigs: U32) -> U32:
        """Rounds 1, 2, ... for the texts that have empty bins (``sigs``; their shingles are
        ``hashes[offset:offset + number]``): the shingles are hashed again into bins, with
        values ``r * 2^32 + 32 bits`` in round ``r``, so a bin keeps the minimum of the first
        round that reached it (fast similarity sketching)."""
        k, m = self.num_perm, len(sigs)
        values = sigs.astype(np.uint64)
        values[sigs == _EMPTY] = _EMPTY64
        # the shingles of those texts, and the row of each
        ends = np.cumsum(number)
        pick = np.repeat(offset - ends + number, number) + np.arange(int(ends[-1]))
        h, row = hashes[pick], np.repeat(np.arange(m, dtype=np.int64), number)
        flat = values.reshape(-1)
        for r in range(1, _ROUNDS):
            # round r: multiply-shift by an odd constant; bin from the top bits, value from the
            # high 32 bits (which depend on all 64 bits of the shingle hash)
            again = h * self._round_seed[r]
            value = again.view(np.uint32)[1 if _LITTLE else 0 :: 2].astype(np.uint64)
            value |= _M(r << 32)
            slot = row * k
            slot += self._bins(again)
            np.minimum.at(flat, slot, value)
            still = (values == _EMPTY64).any(axis=1)
            if not still.any():
                break
            keep = still[row]
            h, row = h[keep], row[keep]
        out = values.astype(np.uint32)
        out[values == _EMPTY64] = _EMPTY
        return out

    def _densify(self, values: U32) -> U32:
        """Fill each bin still empty after the rounds (texts of a few shingles only) from the
        first non-empty bin of its probe sequence."""
        empty = values == _EMPTY
        rows = np.flatnonzero(empty.any(axis=1))
        if not len(rows):
            return values
        vals, full = values[rows], ~empty[rows]
        result = vals.copy()
        need = ~full
        live = np.arange(len(rows))
        for t in range(_PROBES):
            donor = self._donors[t]
            take = need[live] & full[live][:, donor]
            sub = result[live]
            np.copyto(sub, vals[live][:, donor], where=take)
            result[live] = sub
            need[live] &= ~take
            if t % 4 == 3:
                live = live[need[live].any(axis=1)]
                if not len(live):
                    break
        for i in np.flatnonzero(need.any(axis=1)):
            # after _PROBES probes (only documents with very few shingles): the next non-empty
            # bin to the right, circularly, a deterministic function of the same bins
            nonempty = np.flatnonzero(full[i])
            for j in np.flatnonzero(need[i]):
                pos = np.searchsorted(nonempty, j) % len(nonempty)
                result[i, j] = vals[i, nonempty[pos]]
        values[rows] = result
        return values

    def _shingles(self, texts: Sequence[str | bytes]) -> tuple[U64, I64, I64, I64]:
        """Shingle hashes of a batch, the index of the text of each (``len(texts)`` for a word
        window that is not a shingle of one text), and per text the offset and the number of
        its shingles in the hashes."""
        n, w, cap = len(texts), self.shingle_words, self.max_words
        encoded: list[bytes | memoryview] = []
        unicode: list[str] = []
        where: list[int] = []
        for text in texts:
            if isinstance(text, bytes):
                if len(text) <= 40 * cap:
                    encoded.append(text)  # ASCII, lowercased
                    continue
                text = text.decode("ascii")
            if len(text) > 40 * cap:  # surely over the cap: cut it here, not in numpy
                text = " ".join(m.group() for m in itertools.islice(_WORD.finditer(text), cap))
            if text.isascii():
                encoded.append(text.encode().lower())
            else:
                where.append(len(encoded))
                encoded.append(b"")
                unicode.append(text)
        if unicode:
            for i, folded in zip(where, _lowercase(unicode), strict=True):
                encoded[i] = folded
        # b" " before, between and after the texts: every word is bounded by whitespace
        buf = b" ".join([b"", *encoded, b" " * 8])
        text_start = np.empty(n, dtype=np.int64)
        if n:
            lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
            text_start[0] = 1
            np.cumsum(lengths[:-1] + 1, out=text_start[1:])
            text_start[1:] += 1
        arr = np.frombuffer(buf, dtype=np.uint8)
        cuts = None
        if not buf.isascii():
            arr = blank_unicode_spaces(arr)
            buf = arr.tobytes()
            cuts = char_word_cuts(arr)
        word_start, word_length = _words(arr) if cuts is None else _words_cut(arr, cuts)
        word_hash = _hash_words(buf, word_start, word_length)

        # words of each text (in order), capped
        first = np.searchsorted(word_start, text_start)
        counts = np.diff(first, append=len(word_start))
        if n and counts.max() > cap:
            doc_of_word = np.repeat(np.arange(n, dtype=np.int64), counts)
            keep = (np.arange(len(word_start)) - first[doc_of_word]) < cap
            word_hash = word_hash[keep]
            counts = np.minimum(counts, cap)
            first = np.concatenate(([0], np.cumsum(counts)[:-1]))

        nw = len(word_hash)
        nwin = max(nw - w + 1, 0)
        hashes = np.empty(nwin, dtype=np.uint64)
        docs = np.repeat(np.arange(n, dtype=np.int64), counts)[:nwin]
        if nwin:
            # all windows of w consecutive words; those across two texts go to no text
            np.multiply(word_hash[:nwin], self._coef[0], out=hashes)
            for j in range(1, w):
                hashes += word_hash[j : nwin + j] * self._coef[j]
            hashes += self._arity[w]
            _fmix64(hashes)
            across = (first[1:, None] - np.arange(1, w)[None, :]).ravel()
            docs[across[(across >= 0) & (across < nwin)]] = n
        is_short = counts < w
        number = np.where(is_short, 1, counts - (w - 1))
        offset = np.where(is_short, nwin + np.cumsum(is_short) - 1, first)
        short = np.flatnonzero(is_short)
        if not len(short):
            return hashes, docs, offset, number
        # a text of fewer than w words is one shingle of all its words (maybe none)
        c = counts[short]
        acc = self._arity[c].copy()
        for j in range(w - 1):
            has = c > j
            acc[has] += word_hash[first[short[has]] + j] * self._coef[j]
        _fmix64(acc)
        return np.concatenate((hashes, acc)), np.concatenate((docs, short)), offset, number

    # -- band keys --------------------------------------------------------------------------

    def band_keys(self, sigs: npt.NDArray[np.integer]) -> U64:
        """LSH band keys: shape ``(n, bands)``, uint64 (``.view(np.int64)`` for SQL engines).

        Key ``b`` is a 64-bit hash of ``(b, sigs[:, b*r:(b+1)*r])``.
        """
        sigs = np.asarray(sigs)
        if sigs.ndim != 2 or sigs.shape[1] != self.num_perm:
            raise ValueError(f"signatures must have shape (n, {self.num_perm}), not {sigs.shape}")
        # via uint32: an int32 or int64 copy of the same signatures gives the same keys
        cube = sigs.astype(np.uint32).astype(np.uint64).reshape(len(sigs), self.bands, self.rows)
        acc = np.broadcast_to(self._band_seed, (len(sigs), self.bands)).copy()
        for j in range(self.rows):
            acc ^= cube[:, :, j] * self._band_coef[j]
            _fmix64(acc)
        return acc


def jaccard_estimate(
    a: npt.NDArray[np.integer], b: npt.NDArray[np.integer]
) -> npt.NDArray[np.float64]:
    """Estimated Jaccard similarity: the fraction of equal slots, over the last axis.

    ``a`` and ``b`` are signatures of one document each (→ a 0-d array) or of pairs, row by row
    (shape ``(n, num_perm)`` → shape ``(n,)``).
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"signature shapes differ: {a.shape} vs {b.shape}")
    return np.asarray(np.mean(a == b, axis=-1), dtype=np.float64)


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # lone surrogates: replaced, deterministic
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace").encode()


def _lowercase(texts: list[str]) -> list[memoryview]:
    """UTF-8 of ``texts`` with every character mapped to its Unicode lowercase (Arrow's
    ``utf8_lower``: per character, ~8x faster than ``str.casefold`` on non-ASCII text)."""
    encoded = [_utf8(text) for text in texts]
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(texts)), out=offsets[1:])
    # from buffers, not pa.array (its first call in a process imports pandas: ~0.2 s)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    lower = pc.utf8_lower(pa.Array.from_buffers(pa.large_string(), len(texts), buffers))
    _, offsets_buf, data_buf = lower.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[lower.offset :][: len(texts) + 1]
    data = memoryview(data_buf if data_buf is not None else b"")
    return [data[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)]


def blank_unicode_spaces(arr: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """``arr`` with every multi-byte UTF-8 whitespace character rewritten as ASCII spaces."""
    lead = np.flatnonzero((arr - np.uint8(0xC2)) <= np.uint8(0xE3 - 0xC2))
    lead = lead[lead < len(arr) - 2]
    if not len(lead):
        return arr
    out = arr.copy()
    b0 = arr[lead].astype(np.uint32)
    code2 = (b0 << 8) | arr[lead + 1]
    code3 = (code2 << 8) | arr[lead + 2]
    two = lead[np.isin(code2, _SPACE_CODES2)]
    three = lead[np.isin(code3, _SPACE_CODES3)]
    for offset in range(2):
        out[two + offset] = 0x20
    for offset in range(3):
        out[three + offset] = 0x20
    return out


def ascii_whitespace(arr: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Which bytes are ASCII whitespace as :meth:`str.isspace` sees it: ``\\t \\n \\v \\f \\r``
    (9-13), ``\\x1c``-``\\x1f`` (28-31) and the space; not the other control characters."""
    space: npt.NDArray[np.bool_] = arr == np.uint8(32)
    space |= (arr - np.uint8(9)) < np.uint8(5)
    space |= (arr - np.uint8(28)) < np.uint8(4)
    return space


def char_word_cuts(arr: npt.NDArray[np.uint8]) -> npt.NDArray[np.intp] | None:
    """Word boundaries inside ``arr`` (UTF-8) that are not whitespace: the first byte of every
    character of :data:`CHAR_WORD_RANGES` and the byte after it, sorted; None if there are
    none."""
    # leads of 3- and 4-byte characters that can be in the ranges: E0..E9 (U+0000..U+9FFF),
    # EF (U+F000..U+FFFF), F0 (U+10000..U+3FFFF); not Hangul (EA..ED), emoji (F0 9F) pass here
    maybe = (arr - np.uint8(0xE0)) <= np.uint8(9)
    maybe |= arr == np.uint8(0xEF)
    maybe |= arr == np.uint8(0xF0)
    lead = np.flatnonzero(maybe)
    lead = lead[lead < len(arr) - 3]
    if not len(lead):
        return None
    # E5..E9 lead U+5000..U+9FFF, all CJK ideographs (most characters of Chinese text): no
    # decoding; the other leads are decoded from their 4 bytes in one gather (unaligned
    # little-endian lanes over the buffer) and looked up
    b0 = arr[lead]
    sure = (b0 - np.uint8(0xE5)) <= np.uint8(4)
    other = np.flatnonzero(~sure)
    lanes = np.ndarray((len(arr) - 3,), dtype="<u4", buffer=arr, strides=(arr.strides[0],))
    x = lanes[lead[other]]
    code = (x & np.uint32(0x0F)) << np.uint32(12)
    code |= (x >> np.uint32(2)) & np.uint32(0x0FC0)
    code |= (x >> np.uint32(16)) & np.uint32(0x3F)
    # 3 bytes: U+0800..U+FFFF by table; 4 bytes: U+20000..U+3FFFF is F0 A0..BF xx xx
    four = (x & np.uint32(0xFF)) == np.uint32(0xF0)
    ok = np.where(four, (x & np.uint32(0xE0FF)) == np.uint32(0xA0F0), _CHAR_WORD_BMP[code])
    chosen = sure
    chosen[other] = ok
    begin = lead[chosen]
    if not len(begin):
        return None
    cuts = np.empty(2 * len(begin), dtype=np.intp)
    cuts[0::2] = begin  # characters do not overlap: begin, end, begin, end... is sorted
    width = np.full(len(lead), 3, dtype=np.intp)
    width[other[four]] = 4
    cuts[1::2] = begin + width[chosen]
    return cuts


def _words_cut(
    arr: npt.NDArray[np.uint8], cuts: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """:func:`_words` with more boundaries (``cuts``): a word ends at whitespace or at a cut,
    and starts after whitespace or at a cut (dense masks: for text where words are short)."""
    ws = ascii_whitespace(arr)
    cut = np.zeros(len(arr) + 1, dtype=bool)
    cut[cuts] = True
    word = ~ws
    # byte i starts a word: a word byte after whitespace or at a cut (arr[0] is a space)
    begins = word[1:] & (ws[:-1] | cut[1:-1])
    # a word ends before byte i: a word byte before whitespace or a cut
    ends = word[:-1] & (ws[1:] | cut[1:-1])
    start = np.flatnonzero(begins)
    start += 1
    length = np.flatnonzero(ends)
    length += 1
    length -= start
    return start, length


def _words(arr: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Start and length in bytes of the words of ``arr`` (ASCII whitespace separates)."""
    pos = np.flatnonzero(arr <= 32)
    # the control characters that are not whitespace are rare: dropped from the separators
    space = ascii_whitespace(arr[pos])
    if not space.all():
        pos = pos[space]
    gap = np.diff(pos)
    real = gap > 1
    runs = np.flatnonzero(~real)
    cut = len(real) - len(runs)
    if not len(runs) or runs[0] == cut:  # whitespace runs only at the end (folded text)
        start, length = pos[:cut], gap[:cut]
    else:
        start, length = pos[:-1][real], gap[real]
    start += 1
    length -= 1
    return start, length


def _hash_words(buf: bytes, start: npt.NDArray[np.intp], length: npt.NDArray[np.intp]) -> U64:
    """A 64-bit hash of each word ``buf[start:start + length]`` (``buf`` ends with >= 8 bytes
    of padding)."""
    lanes = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))
    acc = lanes[start]
    acc &= _BYTE_MASKS.take(length, mode="clip")  # the word's first (up to) 8 bytes
    acc ^= length.view(np.uint64) * _K_LEN
    acc *= _K_WORD
    acc ^= acc >> _M(32)
    longer = np.flatnonzero(length > 8)
    offset = 8
    while len(longer) and offset < _LONG_WORD:
        rest = length[longer] - offset
        lane = lanes[start[longer] + offset] & _BYTE_MASKS.take(rest, mode="clip")
        sub = (acc[longer] ^ lane) * _K_WORD
        sub ^= sub >> _M(29)
        acc[longer] = sub
        offset += 8
        longer = longer[rest > 8]
    for i in longer:  # longer than _LONG_WORD bytes
        word = buf[start[i] : start[i] + length[i]]
        acc[i] = int.from_bytes(hashlib.blake2b(word, digest_size=8).digest(), "little")
    return acc
