"""Hash while writing: the evidence the publish and compose steps check S3 against."""

import hashlib
import io
import os
import random
from pathlib import Path

from dataset_assets.core.hashing import (
    PartMD5Hasher,
    StreamHasher,
    digest_file,
    digest_stream,
    multipart_etag,
)
from dataset_assets.core.lines import group_lines
from dataset_assets.core.shards import write_shards

MiB = 1024 * 1024


def test_digest_has_whole_file_md5_sha256_and_multipart_etag() -> None:
    data = os.urandom(12 * MiB + 17)
    digest = digest_stream(io.BytesIO(data), part_size=5 * MiB)

    assert digest.md5 == hashlib.md5(data).hexdigest()
    assert digest.sha256 == hashlib.sha256(data).hexdigest()
    parts = [hashlib.md5(data[i : i + 5 * MiB]).hexdigest() for i in range(0, len(data), 5 * MiB)]
    assert digest.etag == multipart_etag(parts)
    assert digest.etag.endswith("-3")


def test_md5_does_not_depend_on_how_the_bytes_arrive() -> None:
    data = os.urandom(3 * MiB)
    hasher = StreamHasher(part_size=5 * MiB)
    for i in range(0, len(data), 1000):
        hasher.update(data[i : i + 1000])
    digest = hasher.digest()

    assert digest.md5 == hashlib.md5(data).hexdigest()
    assert digest.etag == digest.md5  # under one part: a plain PUT, ETag = MD5


def test_multipart_etag_of_one_part_is_md5_of_its_md5() -> None:
    md5 = hashlib.md5(b"x").hexdigest()
    assert multipart_etag([md5]) == hashlib.md5(bytes.fromhex(md5)).hexdigest() + "-1"


def test_shards_are_hashed_while_written_in_blocks(tmp_path: Path) -> None:
    lines = [(os.urandom(n).hex().encode() + b"\n", "fam") for n in range(100, 40_000, 997)]
    shard_size = 300_000
    staged = list(
        write_shards(
            group_lines(lines),
            split="val",
            staging_dir=tmp_path,
            shard_size=shard_size,
            part_size=128 * 1024,
            key_for=lambda sid: f"p/val/{sid}.jsonl",
        )
    )

    assert b"".join(s.path.read_bytes() for s in staged) == b"".join(line for line, _ in lines)
    assert sum(s.records for s in staged) == len(lines)
    for s in staged:
        data = s.path.read_bytes()
        assert len(data) <= shard_size
        assert s.digest == digest_file(s.path, 128 * 1024)
        assert s.digest.md5 == hashlib.md5(data).hexdigest()
        assert s.key == f"p/val/val-{staged.index(s):05d}-{s.digest.sha256[:12]}.jsonl"


def test_part_md5_hasher_predicts_the_same_etag_as_the_full_digest() -> None:
    for size in (0, 1000, 5 * MiB, 11 * MiB + 3):
        data = os.urandom(size)
        hasher = PartMD5Hasher(part_size=5 * MiB)
        for i in range(0, len(data), 777_777):
            hasher.update(data[i : i + 777_777])
        assert hasher.size == size
        assert hasher.etag == digest_stream(io.BytesIO(data), 5 * MiB).etag


def test_whole_file_md5_and_etag_hold_at_every_size_around_the_part_boundaries() -> None:
    """The whole-file MD5 reuses the first part's MD5 state: it must still be the MD5 of every
    byte for streams that end before, on and after each part boundary, however they arrive."""
    rng = random.Random(7)
    part = 5
    for size in [0, 1, 4, 5, 6, 9, 10, 11, 23, 64]:
        data = os.urandom(size)
        hasher = StreamHasher(part_size=part)
        i = 0
        while i < size:
            step = rng.randint(1, 2 * part + 1)
            hasher.update(data[i : i + step])
            i += step
        digest = hasher.digest()
        assert digest.md5 == hashlib.md5(data).hexdigest(), size
        pieces = [data[j : j + part] for j in range(0, size, part)] or [b""]
        want = (
            hashlib.md5(data).hexdigest()
            if size < part
            else multipart_etag([hashlib.md5(p).hexdigest() for p in pieces])
        )
        assert digest.etag == want, size
