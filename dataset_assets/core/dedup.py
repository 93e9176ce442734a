"""Canonical content hashing and duplicate detection with memory bounded independently of N.

Exact duplicates: the identity of a conversation is the sha256 of its canonical messages
(roles + contents, optional whitespace and case folding). The first 16 bytes are the key of an
external-memory set (:class:`KeyIndex`): a SQLite ``WITHOUT ROWID`` table on local disk, with new
keys buffered in a small in-memory batch.

Near duplicates: MinHash (rensa ``RMinHash``, ``num_perm`` permutations) over word
``shingle_words``-grams of the case-folded text, LSH with explicit ``bands`` × ``rows`` (rows =
num_perm / bands): two conversations are candidates when one band of their signatures is equal,
and duplicates when the estimated Jaccard similarity of the full signatures is ≥ ``threshold``.
The LSH index (:class:`NearIndex`) is also on disk (band hash → doc, doc → key + signature).

Memory bound: per index, SQLite's page cache (``index_cache_mib``, default 64 MiB) plus one
pending batch of at most ``_BATCH`` (8192) documents, ≈ 8192 × (bands × ~90 B + num_perm × 4 B
+ ~200 B) ≈ 18 MiB at 16 bands / 128 perms — i.e. ~150 MiB total at any dataset size. Disk grows
with N: ~40 B per exact key and ≈ bands × 24 B + num_perm × 4 B + 40 B (≈ 1 KB at the defaults)
per near-indexed conversation, so 100 M conversations need ~100 GB of local disk for the near
index; lower ``num_perm``/``bands`` (e.g. 64/16) halves that. Lookups that miss the page cache go
to the OS page cache / disk: throughput degrades gracefully instead of memory growing.

Winner: the compile pass reads families in priority order and files in sorted order, and the
first conversation seen wins (online dedup), so the winner is deterministic.
"""

import hashlib
import sqlite3
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson
from rensa import RMinHash

from dataset_assets.core.config import DedupOptions
from dataset_assets.core.records import Message

_BATCH = 8192
_MINHASH_SEED = 1_234_567
MAX_SHINGLED_WORDS = 20_000
"""Words of a conversation used for its MinHash (bounds CPU on pathological 50 MB records)."""

Verdict = Literal["unique", "exact", "near"]


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


def shingles(messages: list[Message], width: int) -> list[str]:
    """Word ``width``-grams of the case-folded conversation text (all turns, roles ignored)."""
    words = " ".join(m["content"] for m in messages).casefold().split()[:MAX_SHINGLED_WORDS]
    if len(words) <= width:
        return [" ".join(words)]
    return list(map(" ".join, zip(*(words[i:] for i in range(width)), strict=False)))


def minhash_signature(messages: list[Message], options: DedupOptions) -> list[int]:
    mh = RMinHash(num_perm=options.num_perm, seed=_MINHASH_SEED)
    mh.update(shingles(messages, options.shingle_words))
    return list(mh.digest())


def _connect(path: Path, cache_mib: int) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA temp_store=FILE")
    db.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")
    return db


class KeyIndex:
    """An external-memory set of 16-byte keys (SQLite on disk + a bounded in-memory batch)."""

    def __init__(self, path: Path, cache_mib: int = 32) -> None:
        self.path = path
        self._db = _connect(path, cache_mib)
        self._db.execute("CREATE TABLE keys (k BLOB PRIMARY KEY) WITHOUT ROWID")
        self._pending: set[bytes] = set()

    def __contains__(self, key: bytes) -> bool:
        if key in self._pending:
            return True
        row = self._db.execute("SELECT 1 FROM keys WHERE k = ?", (key,)).fetchone()
        return row is not None

    def add(self, key: bytes) -> None:
        self._pending.add(key)
        if len(self._pending) >= _BATCH:
            self.flush()

    def add_if_new(self, key: bytes) -> bool:
        """Add ``key``; True when it was not there before."""
        if key in self:
            return False
        self.add(key)
        return True

    def flush(self) -> None:
        if self._pending:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO keys VALUES (?)", ((k,) for k in sorted(self._pending))
            )
            self._db.execute("COMMIT")
            self._pending.clear()

    def close(self) -> None:
        self._pending.clear()
        self._db.close()
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class NearMatch:
    key: bytes
    similarity: float


class NearIndex:
    """MinHash-LSH with explicit bands, stored on disk (see the module docstring for the bound)."""

    def __init__(self, path: Path, options: DedupOptions, cache_mib: int = 64) -> None:
        self.path = path
        self.options = options
        self.rows = options.num_perm // options.bands
        self._db = _connect(path, cache_mib)
        self._db.execute(
            "CREATE TABLE bands (h INTEGER, doc INTEGER, PRIMARY KEY (h, doc)) WITHOUT ROWID"
        )
        self._db.execute("CREATE TABLE docs (doc INTEGER PRIMARY KEY, k BLOB, sig BLOB)")
        self._next = 0
        self._pending_bands: dict[int, list[int]] = {}
        self._pending_docs: dict[int, tuple[bytes, bytes]] = {}

    def band_hashes(self, sig: list[int]) -> list[int]:
        r = self.rows
        return [hash((b, *sig[b * r : (b + 1) * r])) for b in range(self.options.bands)]

    def query(self, sig: list[int], bands: list[int] | None = None) -> NearMatch | None:
        """The most similar indexed conversation at or above the threshold, if any."""
        bands = self.band_hashes(sig) if bands is None else bands
        docs: set[int] = set()
        for h in bands:
            docs.update(self._pending_bands.get(h, ()))
        marks = ",".join("?" * len(bands))
        for (doc,) in self._db.execute(f"SELECT doc FROM bands WHERE h IN ({marks})", bands):
            docs.add(doc)
        best: NearMatch | None = None
        for doc in sorted(docs):
            key, other = self._doc(doc)
            sim = _similarity(sig, other)
            if sim >= self.options.threshold and (best is None or sim > best.similarity):
                best = NearMatch(key, sim)
        return best

    def _doc(self, doc: int) -> "tuple[bytes, array[int]]":
        pending = self._pending_docs.get(doc)
        if pending is not None:
            key, blob = pending
        else:
            row = self._db.execute("SELECT k, sig FROM docs WHERE doc = ?", (doc,)).fetchone()
            key, blob = row
        return key, array("I", blob)

    def add(self, key: bytes, sig: list[int], bands: list[int] | None = None) -> None:
        doc = self._next
        self._next += 1
        for h in self.band_hashes(sig) if bands is None else bands:
            self._pending_bands.setdefault(h, []).append(doc)
        self._pending_docs[doc] = (key, array("I", sig).tobytes())
        if len(self._pending_docs) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        if not self._pending_docs:
            return
        self._db.execute("BEGIN")
        self._db.executemany(
            "INSERT OR IGNORE INTO bands VALUES (?, ?)",
            ((h, d) for h in sorted(self._pending_bands) for d in self._pending_bands[h]),
        )
        self._db.executemany(
            "INSERT INTO docs VALUES (?, ?, ?)",
            ((d, k, s) for d, (k, s) in self._pending_docs.items()),
        )
        self._db.execute("COMMIT")
        self._pending_bands.clear()
        self._pending_docs.clear()

    def close(self) -> None:
        self._pending_bands.clear()
        self._pending_docs.clear()
        self._db.close()
        self.path.unlink(missing_ok=True)


def _similarity(a: Iterable[int], b: "array[int]") -> float:
    same = sum(1 for x, y in zip(a, b, strict=False) if x == y)
    return same / len(b)


class Deduper:
    """Online exact + near dedup: the first conversation seen wins.

    ``work_dir`` holds the on-disk indexes (deleted on close). Without it (small in-process
    uses), a temporary folder is used.
    """

    def __init__(self, options: DedupOptions, work_dir: Path | None = None) -> None:
        import tempfile

        self.options = options
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if work_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="dedup-")
            work_dir = Path(self._tmp.name)
        folder = work_dir
        self._exact = KeyIndex(folder / "exact.sqlite", options.index_cache_mib)
        self._near = (
            NearIndex(folder / "near.sqlite", options, options.index_cache_mib)
            if options.near
            else None
        )
        self.last_match: NearMatch | None = None

    def classify(self, digest_hex: str, messages: list[Message]) -> Verdict:
        key = bytes.fromhex(digest_hex)[:16]
        self.last_match = None
        if not self._exact.add_if_new(key):
            return "exact"
        if self._near is None:
            return "unique"
        sig = minhash_signature(messages, self.options)
        bands = self._near.band_hashes(sig)
        match = self._near.query(sig, bands)
        if match is not None:
            self.last_match = match
            return "near"
        self._near.add(key, sig, bands)
        return "unique"

    def close(self) -> None:
        self._exact.close()
        if self._near is not None:
            self._near.close()
        if self._tmp is not None:
            self._tmp.cleanup()
