"""The compile pass: sources → normalized, deduplicated, split conversations in a local spool."""

import itertools
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from pydantic import BaseModel

from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.dedup import Deduper, content_hash
from dataset_assets.core.errors import InvalidRecordError
from dataset_assets.core.leakage import LeakReport, find_leaks, parse_records
from dataset_assets.core.manifest import BuildCounts, InputFingerprint
from dataset_assets.core.normalize import normalize_messages
from dataset_assets.core.provenance import PROVENANCE_NAME, ProvenanceWriter
from dataset_assets.core.quarantine import RAW_PREFIX_BYTES, QuarantineWriter
from dataset_assets.core.records import Conversation
from dataset_assets.core.sources import BadItem, iter_source_items
from dataset_assets.core.split import assign_split
from dataset_assets.core.spool import SpoolWriter, iter_spool_records, spool_path
from dataset_assets.pipeline.sources import list_sources, open_source
from dataset_assets.storage import S3ObjectStore


class CompileResult(BaseModel):
    """What the compile pass produced: a local spool per split plus counts and inputs."""

    spool_dir: str
    quarantine_path: str
    provenance_path: str = ""
    config_digest: str
    counts: BuildCounts
    inputs: list[InputFingerprint]

    @property
    def spool(self) -> Path:
        return Path(self.spool_dir)

    @property
    def provenance(self) -> Path:
        return Path(self.provenance_path)

    @property
    def work_dir(self) -> Path:
        """This build's private working folder (spool, indexes, staged shards)."""
        return self.spool.parent

    def records(self, split: str) -> Iterator[tuple[bytes, str]]:
        """The split's ``(record_line, family)`` pairs; raises IntegrityError if any is missing."""
        return iter_spool_records(
            spool_path(self.spool, split), self.counts.per_split.get(split, 0)
        )


def remove_work_dir(result: CompileResult) -> None:
    """Delete a build's working folder once its manifest is published."""
    shutil.rmtree(result.work_dir, ignore_errors=True)


@contextmanager
def _closing(deduper: Deduper) -> Iterator[Deduper]:
    try:
        yield deduper
    finally:
        deduper.close()


def run_dir(cfg: DatasetConfig, run_id: str) -> Path:
    """A build's private working folder: concurrent builds never share files."""
    return cfg.staging_dir / "runs" / (run_id or "no-run-id")


def compile_conversations(
    cfg: DatasetConfig, store: S3ObjectStore | None, *, run_id: str = ""
) -> CompileResult:
    """One streaming pass over every source, in family priority order (first seen wins dedup)."""
    work = run_dir(cfg, run_id)
    spool_tmp = work / "spool.tmp"
    shutil.rmtree(spool_tmp, ignore_errors=True)
    quarantine_path = work / "quarantine.jsonl"
    provenance_path = work / PROVENANCE_NAME
    index_dir = work / "index"
    shutil.rmtree(index_dir, ignore_errors=True)
    deduper = Deduper(cfg.dedup, index_dir)
    inputs: list[InputFingerprint] = []
    counts: Counter[str] = Counter()
    per_split: Counter[str] = Counter()
    per_family: Counter[str] = Counter()
    per_split_family: defaultdict[str, Counter[str]] = defaultdict(Counter)
    with (
        _closing(deduper),
        SpoolWriter(spool_tmp) as spool,
        QuarantineWriter(quarantine_path) as quarantine,
        ProvenanceWriter(provenance_path) as provenance,
    ):
        for family in cfg.families:
            for ref in list_sources(family, store):
                inputs.append(
                    InputFingerprint(
                        uri=ref.uri, family=family.name, bytes=ref.size, fingerprint=ref.fingerprint
                    )
                )
                with open_source(ref, store) as stream:
                    items = iter_source_items(stream, ref.uri, cfg.normalize.max_line_bytes)
                    for item in items:
                        counts["input"] += 1
                        if isinstance(item, BadItem):
                            quarantine.add(item.reason, family.name, ref.uri, item.line, item.raw)
                            continue
                        try:
                            messages = normalize_messages(item.value, cfg.normalize)
                        except InvalidRecordError as exc:
                            raw = orjson.dumps(item.value)[:RAW_PREFIX_BYTES]
                            quarantine.add(
                                exc.reason, family.name, ref.uri, item.line, raw, exc.detail
                            )
                            continue
                        digest = content_hash(messages, cfg.dedup)
                        verdict = deduper.classify(digest, messages)
                        if verdict != "unique":
                            counts[verdict] += 1
                            continue
                        split = assign_split(digest, cfg.seed, cfg.splits, family.holdout)
                        conv = Conversation(messages, family.name, ref.uri, item.line, digest)
                        spool.write(split, family.name, conv.to_json_line())
                        provenance.add(digest, family.name, ref.uri, item.line, split)
                        per_split[split] += 1
                        per_family[family.name] += 1
                        per_split_family[split][family.name] += 1
        quarantined = dict(quarantine.counts)
    spool_dir = work / "spool"
    shutil.rmtree(spool_dir, ignore_errors=True)
    spool_tmp.rename(spool_dir)
    build_counts = BuildCounts(
        input_records=counts["input"],
        published_records=sum(per_split.values()),
        exact_duplicates=counts["exact"],
        near_duplicates=counts["near"],
        quarantined=sum(quarantined.values()),
        quarantined_by_reason=quarantined,
        per_split=dict(per_split),
        per_family=dict(per_family),
        per_split_family={s: dict(c) for s, c in per_split_family.items()},
    )
    return CompileResult(
        spool_dir=str(spool_dir),
        quarantine_path=str(quarantine_path),
        provenance_path=str(provenance_path),
        config_digest=cfg.digest(),
        counts=build_counts,
        inputs=inputs,
    )


def check_leakage(cfg: DatasetConfig, result: CompileResult) -> LeakReport:
    """Re-read the spool: val/test conversations indexed, every train conversation queried."""
    protected = itertools.chain.from_iterable(
        parse_records(result.records(s), s) for s in ("val", "test")
    )
    train = parse_records(result.records("train"), "train")
    work = result.work_dir / "leakage"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        return find_leaks(protected, train, cfg.dedup, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def quarantine_ratio(result: CompileResult) -> float:
    c = result.counts
    return c.quarantined / c.input_records if c.input_records else 0.0
