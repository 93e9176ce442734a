"""Stage 1 of the compile, for one source file (a *partition*): read, normalize, quarantine,
content-hash, assign a split, and compute MinHash signatures and LSH band keys.

A partition's output is a folder of three files, all a later stage needs and nothing else:

``records.jsonl.zst``
    every normalizable record of the file, in file order, as the JSON line that a shard will
    contain (``{"messages": [...], "metadata": {family, source, line, content_hash}}``);
``index.parquet``
    one row per record of ``records.jsonl.zst`` (same order): ``ord``, ``line``, ``h`` (the
    32-byte content hash), ``split`` (1 train, 2 val, 3 test, from the content hash alone), and
    with near dedup on, ``bands`` (LSH band keys) and ``sig`` (the MinHash signature);
``quarantine.jsonl``
    the file's bad records with their reasons.

Nothing here depends on any other partition, so partitions run in parallel processes (or on
other machines) and their outputs are reused by later builds while the file and the config are
unchanged. Deduplication across records happens in stage 2 (:mod:`dataset_assets.core.cluster`).
"""

import hashlib
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from dataset_assets.core.arrow import arrow_array, numpy_view
from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.dedup import hashes_and_words
from dataset_assets.core.errors import IntegrityError, InvalidRecordError
from dataset_assets.core.lines import LineBlock, line_blocks
from dataset_assets.core.minhash import Signer
from dataset_assets.core.normalize import normalize_messages
from dataset_assets.core.quarantine import QuarantineWriter, raw_prefix
from dataset_assets.core.records import Conversation, Message
from dataset_assets.core.sources import BadItem, iter_source_items
from dataset_assets.core.split import assign_split

RECORDS_NAME = "records.jsonl.zst"
INDEX_NAME = "index.parquet"
QUARANTINE_NAME = "quarantine.jsonl"
PARTITION_FILES = (RECORDS_NAME, INDEX_NAME, QUARANTINE_NAME)
SPLIT_CODES: dict[str, int] = {"train": 1, "val": 2, "test": 3}
"""Split codes in the index and the decisions (0 = dropped)."""

_BATCH = 4096
_HASH_BATCH_CHARS = 1 << 20
"""Conversations are content-hashed in batches of about this many characters."""
_ZSTD_LEVEL = 2  # as fast as level 1 here (~236 MB/s) and 11 % smaller (3.1x vs 2.8x on chats)


@dataclass(frozen=True)
class PartitionSpec:
    """One source file of a family, as the compile reads it."""

    family: str
    holdout: bool
    uri: str
    size: int
    fingerprint: str


@dataclass
class PartitionSummary:
    """Counts of one partition (input = candidates + quarantined)."""

    input_records: int = 0
    candidates: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)


def partition_digest(spec: PartitionSpec, config_digest: str) -> str:
    """The key of a partition's outputs: the file's identity and fingerprint + the config parts
    that shape them. Same file, same config → same outputs, reusable by any later build."""
    ident = orjson.dumps(
        [spec.family, spec.holdout, spec.uri, spec.size, spec.fingerprint, config_digest]
    )
    return hashlib.sha256(ident).hexdigest()


def stage_config_digest(cfg: DatasetConfig) -> str:
    """Digest of the config options that change a partition's outputs (not shard size, bucket…)."""
    parts = {
        "normalize": cfg.normalize.model_dump(mode="json"),
        "dedup": cfg.dedup.model_dump(mode="json"),
        "seed": cfg.seed,
        "splits": cfg.splits.model_dump(mode="json"),
        "signer": Signer(cfg.dedup.num_perm, cfg.dedup.bands, cfg.dedup.shingle_words).version,
        "format": 2,  # 2: records of a file read in byte ranges are one zstd frame per range
        # bump when normalize_messages reads a record differently (2: Dolly, Orca, UltraChat
        # and Capybara shapes, which were quarantined)
        "normalizer": 2,
    }
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


def shingle_text(messages: list[Message], system: bool = False) -> str:
    """The text MinHash sees: every turn's content but the system turns' (with ``system``:
    every turn's), roles ignored (case folding is the signer's)."""
    return " ".join(m["content"] for m in messages if system or m["role"] != "system")


def _index_schema(near: bool, num_perm: int, bands: int) -> pa.Schema:
    fields = [
        pa.field("ord", pa.uint32()),
        pa.field("line", pa.int64()),
        pa.field("h", pa.binary(32)),
        pa.field("split", pa.uint8()),
    ]
    if near:
        fields += [
            pa.field("bands", pa.list_(pa.int64(), bands)),
            pa.field("sig", pa.list_(pa.uint32(), num_perm)),
        ]
    return pa.schema(fields)


def _index_parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    # Hashes do not compress and have no repeats: no dictionary, no compression for them.
    hashed = {"bands", "sig"}
    return pq.ParquetWriter(
        path,
        schema,
        compression={f.name: "none" if f.name in hashed else "zstd" for f in schema},
        use_dictionary=["split"],
    )


class _IndexWriter:
    """Buffers index rows and writes them in row groups; signatures are computed per batch."""

    def __init__(self, path: Path, cfg: DatasetConfig) -> None:
        d = cfg.dedup
        self.near = d.near
        self.system = d.near_system_turns
        self.signer = Signer(d.num_perm, d.bands, d.shingle_words) if d.near else None
        self.schema = _index_schema(d.near, d.num_perm, d.bands)
        self.writer = _index_parquet_writer(path, self.schema)
        self.ords: list[int] = []
        self.lines: list[int] = []
        self.hashes: list[bytes] = []
        self.splits: list[int] = []
        self.texts: list[str | bytes] = []
        self.sigs: list[npt.NDArray[np.uint32]] = []

    def add(self, ord_: int, line: int, digest: bytes, split: int, conv: "_Candidate") -> None:
        self.ords.append(ord_)
        self.lines.append(line)
        self.hashes.append(digest)
        self.splits.append(split)
        if self.near:
            words = conv.words
            if words is None:
                words = shingle_text(conv.conversation.messages, self.system)
            self.texts.append(words)
        if len(self.ords) >= _BATCH:
            self.flush()

    def sign(self) -> None:
        """Compute the signatures of the rows added since the last call (while their texts
        are still in the CPU caches)."""
        if self.signer is not None and self.texts:
            self.sigs.append(self.signer.signatures(self.texts))
            self.texts = []

    def flush(self) -> None:
        if not self.ords:
            return
        cols: list[pa.Array] = [
            arrow_array(np.array(self.ords, dtype=np.uint32), pa.uint32()),
            arrow_array(np.array(self.lines, dtype=np.int64), pa.int64()),
            arrow_array(b"".join(self.hashes), pa.binary(32), len(self.hashes)),
            arrow_array(np.array(self.splits, dtype=np.uint8), pa.uint8()),
        ]
        if self.signer is not None:
            self.sign()
            sigs = np.ascontiguousarray(np.concatenate(self.sigs), dtype=np.uint32)
            keys = np.ascontiguousarray(self.signer.band_keys(sigs)).view(np.int64)
            for values, type_ in ((keys, pa.int64()), (sigs, pa.uint32())):
                flat = arrow_array(values.reshape(-1), type_)
                cols.append(pa.FixedSizeListArray.from_arrays(flat, values.shape[1]))
        self.writer.write_table(pa.Table.from_arrays(cols, schema=self.schema))
        self.ords, self.lines, self.hashes, self.splits, self.sigs = [], [], [], [], []

    def close(self) -> None:
        self.flush()
        self.writer.close()


def process_partition(
    stream: BinaryIO, spec: PartitionSpec, cfg: DatasetConfig, out: Path, first_line: int = 1
) -> PartitionSummary:
    """Stage 1 for one source file: write ``out/{records, index, quarantine}`` and count.

    ``first_line``: the stream is the byte range of the file that starts at this line
    (:mod:`dataset_assets.core.ranges`); its outputs are one range's, for :func:`merge_ranges`.
    """
    out.mkdir(parents=True, exist_ok=True)
    summary = PartitionSummary()
    index = _IndexWriter(out / INDEX_NAME, cfg)
    seed, ratios, holdout = cfg.seed, cfg.splits, spec.holdout
    try:
        with (
            (out / RECORDS_NAME).open("wb") as raw,
            zstandard.ZstdCompressor(level=_ZSTD_LEVEL).stream_writer(raw) as records,
            QuarantineWriter(out / QUARANTINE_NAME) as quarantine,
        ):
            for batch in _conversations(stream, spec, cfg, quarantine, summary, first_line):
                lines = []
                for candidate in batch:
                    conv = candidate.conversation
                    split = SPLIT_CODES[assign_split(conv.content_hash, seed, ratios, holdout)]
                    digest = bytes.fromhex(conv.content_hash)
                    index.add(summary.candidates, conv.line, digest, split, candidate)
                    lines.append(conv.to_json_line())
                    summary.candidates += 1
                records.write(b"".join(lines))
                index.sign()
            summary.quarantined_by_reason = dict(quarantine.counts)
    finally:
        index.close()
    return summary


def _conversations(
    stream: BinaryIO,
    spec: PartitionSpec,
    cfg: DatasetConfig,
    quarantine: QuarantineWriter,
    summary: PartitionSummary,
    first_line: int = 1,
) -> Iterator[list["_Candidate"]]:
    """The file's conversations in file order, in batches of about ``_HASH_BATCH_CHARS``
    characters (content hashes are computed per batch); bad records go to ``quarantine``."""
    family, uri, options = spec.family, spec.uri, cfg.normalize
    pending: list[tuple[int, list[Message]]] = []
    size = 0
    for item in iter_source_items(stream, uri, options.max_line_bytes, first_line):
        summary.input_records += 1
        if isinstance(item, BadItem):
            quarantine.add(item.reason, family, uri, item.line, item.raw, item.detail)
            continue
        try:
            messages = normalize_messages(item.value, options)
        except InvalidRecordError as exc:
            raw = raw_prefix(item.value)
            quarantine.add(exc.reason, family, uri, item.line, raw, exc.detail)
            continue
        pending.append((item.line, messages))
        for m in messages:
            size += len(m["content"])
        if size >= _HASH_BATCH_CHARS:
            yield _hashed(pending, spec, cfg)
            pending, size = [], 0
    if pending:
        yield _hashed(pending, spec, cfg)


@dataclass(slots=True)
class _Candidate:
    conversation: Conversation
    words: str | bytes | None
    """When whitespace is folded, the words of :func:`shingle_text` as a folded text for MinHash
    (see :func:`~dataset_assets.core.dedup.hashes_and_words`), else None."""


def _hashed(
    pending: list[tuple[int, list[Message]]], spec: PartitionSpec, cfg: DatasetConfig
) -> list[_Candidate]:
    batch = [messages for _, messages in pending]
    digests, words = hashes_and_words(batch, cfg.dedup, words=cfg.dedup.near)
    return [
        _Candidate(
            Conversation(messages, spec.family, spec.uri, line, digest),
            words[i] if words is not None else None,
        )
        for i, ((line, messages), digest) in enumerate(zip(pending, digests, strict=True))
    ]


def merge_ranges(
    outs: Sequence[Path], summaries: Sequence[PartitionSummary], out: Path
) -> PartitionSummary:
    """Merge the outputs of a file's byte ranges (in file order, each written by
    :func:`process_partition` into its folder in ``outs``) into the partition's ``out``, as one
    reading of the whole file writes them: the records one after another (one zstd frame per
    range), the index rows renumbered (``ord`` counts on across ranges), the quarantine entries
    in order. Returns the summed counts; the range folders are removed."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / RECORDS_NAME).open("wb") as records, (out / QUARANTINE_NAME).open("wb") as bad:
        for part in outs:
            for name, dest in ((RECORDS_NAME, records), (QUARANTINE_NAME, bad)):
                with (part / name).open("rb") as src:
                    shutil.copyfileobj(src, dest, 1 << 20)
    schema = pq.ParquetFile(outs[0] / INDEX_NAME).schema_arrow
    writer = _index_parquet_writer(out / INDEX_NAME, schema)
    try:
        before = 0
        for part, summary in zip(outs, summaries, strict=True):
            if before + summary.candidates > np.iinfo(np.uint32).max:
                raise OverflowError(f"{out}: more than 2**32 - 1 records in one file")
            # a row group at a time (4096 rows, as written): memory stays that of one group.
            # ParquetFile, not read_table (whose first call imports pyarrow.dataset, ~0.2 s).
            index = pq.ParquetFile(part / INDEX_NAME)
            for group in range(index.num_row_groups):
                table = index.read_row_group(group)
                if before:
                    ords = [numpy_view(c) for c in table.column("ord").chunks]
                    renumbered = arrow_array(np.concatenate(ords) + np.uint32(before), pa.uint32())
                    table = table.set_column(schema.get_field_index("ord"), "ord", renumbered)
                writer.write_table(table)
            before += summary.candidates
    finally:
        writer.close()
    total = PartitionSummary()
    reasons: Counter[str] = Counter()
    for summary in summaries:
        total.input_records += summary.input_records
        total.candidates += summary.candidates
        reasons.update(summary.quarantined_by_reason)
    total.quarantined_by_reason = dict(reasons)
    for part in outs:
        shutil.rmtree(part, ignore_errors=True)
    return total


def read_records(path: Path) -> Iterator[bytes]:
    """The record lines of a partition's ``records.jsonl.zst``, in order.

    Raises:
        IntegrityError: as :func:`read_record_blocks`.
    """
    for block in read_record_blocks(path):
        start = 0
        for end in block.ends.tolist():
            yield bytes(block.data[start:end])
            start = end


def read_record_blocks(path: Path) -> Iterator[LineBlock]:
    """The record lines of a partition's ``records.jsonl.zst`` in blocks, in order.

    Raises:
        IntegrityError: the file is not zstd, or its last line is cut. (A stream cut at a line
            or frame boundary reads as complete here: the shard step's count of the records
            against the decisions catches it.)
    """
    with (
        path.open("rb") as raw,
        # one frame per byte range of a file read in ranges (merge_ranges)
        zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as reader,
    ):
        yield from line_blocks(_decompressed(reader, path), f"records {path}")


def _decompressed(reader: zstandard.ZstdDecompressionReader, path: Path) -> Iterator[bytes]:
    while True:
        try:
            chunk = reader.read(1 << 20)
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"records {path}", "a complete zstd stream", str(exc)) from exc
        if not chunk:
            return
        yield chunk
