"""Leakage between splits: exact or near duplicates of val/test (and holdout) conversations in
train, found independently of the dedup that ran during the compile pass.

The val/test conversations are indexed first (exact keys + MinHash-LSH, the same on-disk
indexes as dedup, so memory stays bounded), then every train conversation is queried. Near
detection always runs here, even when ``dedup.near`` is off for the build.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from dataset_assets.core.config import DedupOptions
from dataset_assets.core.dedup import KeyIndex, NearIndex, minhash_signature

SAMPLE_PAIRS = 20


@dataclass
class LeakReport:
    """Counts and a bounded sample of ``(train, other)`` pairs that leak."""

    indexed: int = 0
    checked: int = 0
    exact: int = 0
    near: int = 0
    pairs: list[dict[str, object]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.exact == 0 and self.near == 0


Record = tuple[str, str, list[dict[str, str]]]
"""``(split, content_hash, messages)``"""


def parse_records(lines: Iterable[tuple[bytes, str]], split: str) -> Iterator[Record]:
    for line, _family in lines:
        rec = orjson.loads(line)
        yield split, rec["metadata"]["content_hash"], rec["messages"]


def find_leaks(
    protected: Iterable[Record],
    train: Iterable[Record],
    options: DedupOptions,
    work_dir: Path,
    sample: int = SAMPLE_PAIRS,
) -> LeakReport:
    """Index ``protected`` (val/test), then report every train record that duplicates one."""
    report = LeakReport()
    near_opts = options.model_copy(update={"near": True})
    exact = KeyIndex(work_dir / "leak-exact.sqlite", options.index_cache_mib)
    near = NearIndex(work_dir / "leak-near.sqlite", near_opts, options.index_cache_mib)
    try:
        for split, digest, messages in protected:
            key = bytes.fromhex(digest)[:16]
            exact.add(key)
            near.add(key + split.encode(), minhash_signature(messages, near_opts))
            report.indexed += 1
        exact.flush()
        near.flush()
        for _, digest, messages in train:
            report.checked += 1
            key = bytes.fromhex(digest)[:16]
            is_exact = key in exact
            match = near.query(minhash_signature(messages, near_opts))
            if not is_exact and match is None:
                continue
            kind = "exact" if is_exact else "near"
            report.exact += is_exact
            report.near += not is_exact
            other_split = match.key[16:].decode() if match else "?"
            other = match.key[:16].hex() if match else key.hex()
            _sample(
                report, sample, digest, other_split, other, match.similarity if match else 1.0, kind
            )
    finally:
        exact.close()
        near.close()
    return report


def _sample(
    report: LeakReport, limit: int, train: str, split: str, other: str, sim: float, kind: str
) -> None:
    if len(report.pairs) < limit:
        report.pairs.append(
            {
                "kind": kind,
                "train_hash": train,
                "other_split": split,
                "other_hash_prefix": other,
                "similarity": round(sim, 3),
            }
        )
