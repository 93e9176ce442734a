"""The shard stage moves records in blocks (a buffer and its line ends): the shards, the splits
and the integrity checks must be exactly those of moving them one record at a time."""

import random
from pathlib import Path

import numpy as np
import pytest
import zstandard

from dataset_assets.core.errors import IntegrityError
from dataset_assets.core.lines import LineBlock, line_blocks
from dataset_assets.core.shards import write_shards
from dataset_assets.pipeline.shards import lines_by_split


def _lines(rng: random.Random, count: int) -> list[bytes]:
    return [
        b'{"i": %d, "t": "%s"}\n' % (i, rng.randbytes(rng.randint(0, 900)).hex().encode())
        for i in range(count)
    ]


def _random_blocks(rng: random.Random, lines: list[bytes]) -> list[LineBlock]:
    blocks, i = [], 0
    while i < len(lines):
        n = rng.randint(1, 40)
        blocks.append(LineBlock.of_lines(lines[i : i + n]))
        i += n
    return blocks


def _expected_shards(lines: list[bytes], shard_size: int) -> list[list[bytes]]:
    """One record at a time: a record starts a new shard when the shard has records and the
    record would take it past shard_size."""
    shards: list[list[bytes]] = [[]]
    size = 0
    for line in lines:
        if shards[-1] and size + len(line) > shard_size:
            shards.append([])
            size = 0
        shards[-1].append(line)
        size += len(line)
    return shards


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_shards_of_blocks_are_the_shards_of_the_records_one_by_one(
    tmp_path: Path, compression: str | None
) -> None:
    rng = random.Random(5)
    lines = _lines(rng, 600)
    lines.insert(300, b'{"huge": "%s"}\n' % (b"x" * 9_000))  # larger than a shard: alone
    shard_size = 6_000
    families = ["a", "b", "a"]
    blocks = [(b, families[i % 3]) for i, b in enumerate(_random_blocks(rng, lines))]

    staged = list(
        write_shards(
            iter(blocks),
            split="train",
            staging_dir=tmp_path,
            shard_size=shard_size,
            part_size=64 * 1024,
            key_for=lambda sid: f"p/train/{sid}",
            compression=compression,
        )
    )

    expected = _expected_shards(lines, shard_size)
    assert [s.records for s in staged] == [len(e) for e in expected]
    for shard, want in zip(staged, expected, strict=True):
        data = shard.path.read_bytes()
        if compression == "zstd":
            data = zstandard.ZstdDecompressor().stream_reader(data).read()
        assert data == b"".join(want)
    assert sum(sum(s.families.values()) for s in staged) == len(lines)
    assert set().union(*(s.families for s in staged)) == {"a", "b"}


def test_line_blocks_join_lines_across_chunks_and_refuse_a_cut_last_line() -> None:
    lines = _lines(random.Random(1), 50)
    data = b"".join(lines)
    chunks = [data[i : i + 333] for i in range(0, len(data), 333)]

    blocks = list(line_blocks(chunks, "test stream"))
    got = [bytes(b.data[b.start(i) : int(b.ends[i])]) for b in blocks for i in range(len(b))]
    assert got == lines

    with pytest.raises(IntegrityError, match="cut line"):
        list(line_blocks([data, b'{"cut": '], "test stream"))


def _records_file(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(zstandard.ZstdCompressor().compress(b"".join(lines)))
    return path


def test_each_split_gets_exactly_its_records_in_order(tmp_path: Path) -> None:
    rng = random.Random(9)
    lines = _lines(rng, 3_000)  # more than one 1 MiB decompressed chunk
    codes = np.array([rng.choice([0, 1, 1, 1, 2, 3]) for _ in lines], np.uint8)
    records = _records_file(tmp_path / "records.jsonl.zst", lines)

    got = {}
    for split, blocks in lines_by_split(
        records, codes, ["train", "val", "test"], "fam", tmp_path / "spill"
    ):
        got[split] = b"".join(bytes(block.data) for block, family in blocks if family == "fam")

    for code, split in ((1, "train"), (2, "val"), (3, "test")):
        assert got[split] == b"".join(
            line for line, c in zip(lines, codes, strict=True) if c == code
        )


@pytest.mark.parametrize("records_vs_decisions", [-1, +1])
def test_records_and_decisions_of_another_length_are_an_integrity_error(
    tmp_path: Path, records_vs_decisions: int
) -> None:
    lines = _lines(random.Random(2), 100)
    records = _records_file(tmp_path / "records.jsonl.zst", lines)
    codes = np.ones(len(lines) - records_vs_decisions, np.uint8)

    with pytest.raises(IntegrityError, match="records"):
        for _split, blocks in lines_by_split(records, codes, ["train"], "f", tmp_path / "s"):
            list(blocks)
