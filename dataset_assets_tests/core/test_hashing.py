"""Hash while writing: the evidence the publish and compose steps check S3 against."""

import hashlib
import io
import os

from dataset_assets.core.hashing import StreamHasher, digest_stream, multipart_etag

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
