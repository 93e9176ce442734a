"""The shared LSH band keys of this machine's last clustering, kept in the local cache so that
the next build's dedup stage groups only the band rows whose key can be shared.

A rebuild after one new file otherwise groups every band row of every exact survivor again
(~16 per conversation: at 4 GB, 15.5 M rows, ~1 s of the ~10 s rebuild). With the last
clustering's shared keys, the keys two survivors can share now are those keys plus the new
partitions' keys (:class:`~dataset_assets.core.cluster.KnownKeys` says why): a semi join over
the band rows, then a group over the ~5 % that pass it. The decisions are the same.

Kept under ``{cache}/clustering/{cluster digest}/``: ``keys.parquet`` (one ``key`` column) and
``partitions.json`` (the partition digests it covered, in partition order). Only the newest
clustering is kept. Used only when its partitions are a subsequence of the new build's (no file
changed or removed) and the new partitions are a small part of the build; anything unreadable
is ignored (the dedup stage then groups every row). Nothing here is uploaded: it is a cache of
this machine's work, like the partitions beside it.
"""

import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from dataset_assets.core.cluster import KnownKeys

FOLDER = "clustering"
KEYS_NAME = "keys.parquet"
PARTITIONS_NAME = "partitions.json"
NEW_SHARE_MAX = 0.25
"""Use kept keys only when the new partitions' indexes are at most this share of all indexes:
past it, the kept and new keys are a large part of all keys and grouping every row costs
about as much as the semi join."""

log = logging.getLogger(__name__)


def find_known_keys(
    cache: Path | None, digests: Sequence[str], index_sizes: Sequence[int]
) -> KnownKeys | None:
    """The kept keys this clustering of ``digests`` (partition order) may start from, or None."""
    if cache is None or not digests:
        return None
    best: KnownKeys | None = None
    for state in sorted((cache / FOLDER).glob(f"*/{PARTITIONS_NAME}")):
        keys = state.parent / KEYS_NAME
        new = _new_positions(_read_digests(state), digests)
        if new is None or not keys.is_file():
            continue
        if best is None or len(new) < len(best.new):
            best = KnownKeys(keys, new)
    if best is None:
        return None
    new_bytes = sum(index_sizes[i] for i in best.new)
    if new_bytes > NEW_SHARE_MAX * sum(index_sizes):
        return None
    return best


def keep_keys(cache: Path | None, cluster_digest: str, digests: Sequence[str], keys: Path) -> None:
    """Keep ``keys`` (written by the clustering of ``digests``) as this machine's newest kept
    keys, replacing older ones. Written whole: a folder renamed into place."""
    if cache is None or not keys.is_file():
        return
    folder = cache / FOLDER
    final = folder / cluster_digest
    tmp = folder / f".{cluster_digest}.{os.getpid()}.tmp"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.move(keys, tmp / KEYS_NAME)
        (tmp / PARTITIONS_NAME).write_bytes(orjson.dumps(list(digests)))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except OSError as exc:  # a full disk, another build replacing it: only a cache
        log.warning("compile: the shared keys were not kept for the next build (%s)", exc)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    for other in folder.iterdir():
        if other.name != cluster_digest and not _in_progress(other):
            shutil.rmtree(other, ignore_errors=True)


def _in_progress(path: Path) -> bool:
    """Another build's keys being written (a crashed build's are removed after an hour)."""
    try:
        return path.name.endswith(".tmp") and time.time() - path.stat().st_mtime < 3600
    except OSError:
        return False


def _read_digests(path: Path) -> list[str] | None:
    try:
        body = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(body, list) or not all(isinstance(d, str) for d in body):
        return None
    return body


def _new_positions(covered: list[str] | None, digests: Sequence[str]) -> list[int] | None:
    """Positions in ``digests`` of the partitions ``covered`` lacks, if ``covered`` is a
    subsequence of ``digests`` (every covered partition still there, in the same order)."""
    if covered is None:
        return None
    matched = 0
    new = []
    for position, digest in enumerate(digests):
        if matched < len(covered) and covered[matched] == digest:
            matched += 1
        else:
            new.append(position)
    return new if matched == len(covered) else None
