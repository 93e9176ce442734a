"""Storage contract: the same behaviour on every real S3 server (SeaweedFS and Ceph RGW)."""

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dataset_assets.core.errors import ObjectNotFoundError, PreconditionFailedError
from dataset_assets.storage import Publisher, S3ObjectStore, S3Settings
from dataset_assets.storage.objects import sha256_b64
from dataset_assets_tests.storage.helpers import stage

MiB = 1024 * 1024


def test_put_get_head_list_delete(store: S3ObjectStore) -> None:
    info = store.put_bytes("dir/a.json", b'{"a": 1}', content_type="application/json")
    store.put_bytes("dir/b.bin", b"bbbb")
    store.put_bytes("other/c.bin", b"c")

    assert store.get_bytes("dir/a.json") == b'{"a": 1}'
    head = store.head("dir/a.json")
    assert head.size == 8
    assert head.etag == info.etag == hashlib.md5(b'{"a": 1}').hexdigest()
    assert head.sha256 == hashlib.sha256(b'{"a": 1}').hexdigest()
    assert head.metadata["size"] == "8"
    assert head.last_modified is not None
    listed = {o.key: o for o in store.list("dir/")}
    assert sorted(listed) == ["dir/a.json", "dir/b.bin"]
    assert listed["dir/b.bin"].size == 4
    assert listed["dir/b.bin"].sha256 is None
    assert store.exists("dir/b.bin")

    store.delete("dir/b.bin")
    assert not store.exists("dir/b.bin")
    assert [o.key for o in store.list("dir/")] == ["dir/a.json"]
    assert store.uri("dir/a.json") == f"s3://{store.bucket}/dir/a.json"


def test_list_paginates_past_one_page(store: S3ObjectStore) -> None:
    keys = [f"many/{i:04d}" for i in range(25)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: store.put_bytes(k, b"x"), keys))
    assert [o.key for o in store.list("many/", page_size=10)] == keys
    assert [o.key for o in store.list("many/001")] == keys[10:20]


def test_server_checksum_is_returned_where_supported(
    store: S3ObjectStore, s3_settings: S3Settings
) -> None:
    store.put_bytes("k", b"payload")
    returned = store.head("k").checksum_sha256
    if "7480" in (s3_settings.endpoint_url or ""):
        # Ceph RGW 16 ignores x-amz-checksum-* entirely: nothing stored, nothing returned.
        assert returned is None
    else:
        assert returned == sha256_b64(hashlib.sha256(b"payload").hexdigest())


def test_iter_bytes_streams_a_range_and_resumes(store: S3ObjectStore) -> None:
    data = os.urandom(3 * MiB + 17)
    store.put_bytes("r", data)
    assert b"".join(store.iter_bytes("r")) == data
    assert b"".join(store.iter_bytes("r", 10, 20)) == data[10:20]
    assert b"".join(store.iter_bytes("r", MiB, chunk_size=64 * 1024)) == data[MiB:]
    assert b"".join(store.iter_bytes("r", 5, 5)) == b""
    chunks = store.iter_bytes("r", 0, 2 * MiB, chunk_size=MiB)
    first = next(chunks)
    chunks.close()
    rest = b"".join(store.iter_bytes("r", len(first)))
    assert first + rest == data


def test_missing_key_raises_object_not_found(store: S3ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFoundError) as err:
        store.head("nope")
    assert err.value.key == "nope"
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes("nope")
    with pytest.raises(ObjectNotFoundError):
        b"".join(store.iter_bytes("nope", 3))
    with pytest.raises(ObjectNotFoundError):
        store.download_file("nope", tmp_path / "x")
    assert list(tmp_path.iterdir()) == []
    assert not store.exists("nope")


def test_if_none_match_second_put_is_rejected(store: S3ObjectStore) -> None:
    store.put_bytes("once", b"first", if_none_match=True)
    with pytest.raises(PreconditionFailedError) as err:
        store.put_bytes("once", b"second", if_none_match=True)
    assert err.value.key == "once"
    assert store.get_bytes("once") == b"first"


def test_if_match_replaces_only_the_expected_version(store: S3ObjectStore) -> None:
    v1 = store.put_bytes("latest", b"v1")
    with pytest.raises(PreconditionFailedError):
        store.put_bytes("latest", b"v2-wrong", if_match=hashlib.md5(b"other").hexdigest())
    assert store.get_bytes("latest") == b"v1"
    v2 = store.put_bytes("latest", b"v2", if_match=v1.etag)
    assert store.get_bytes("latest") == b"v2"
    with pytest.raises(PreconditionFailedError):
        store.put_bytes("latest", b"v3", if_match=v1.etag)  # stale pointer
    assert store.head("latest").etag == v2.etag


@pytest.mark.parametrize(
    "size",
    [0, 1 * MiB, 5 * MiB, 12 * MiB + 3],
    ids=["empty", "single-part", "exactly-one-part", "multipart-3"],
)
def test_upload_publish_verify_and_download(
    store: S3ObjectStore, tmp_path: Path, size: int
) -> None:
    staged = stage(store, tmp_path / "stage", f"shards/s-{size}.jsonl", size)
    original = staged.path.read_bytes()

    published = Publisher(store).publish(staged)

    assert published.uploaded
    assert not staged.path.exists()
    info = store.head(staged.key)
    assert (info.size, info.sha256) == (size, staged.digest.sha256)
    if size >= store.part_size:
        # Both servers produce AWS-style multipart ETags: md5(concat(part md5s))-N.
        assert info.etag.endswith(f"-{-(-size // store.part_size)}")
    else:
        assert info.etag == hashlib.md5(original).hexdigest()
    assert published.etag == info.etag
    store.download_file(staged.key, tmp_path / "back" / "file")
    assert (tmp_path / "back" / "file").read_bytes() == original
    assert [p.name for p in (tmp_path / "back").iterdir()] == ["file"]


def test_read_returns_the_bytes_and_etag_of_one_version(store: S3ObjectStore) -> None:
    v1 = store.put_bytes("p.json", b'{"v": 1}')
    data, info = store.read("p.json")
    assert (data, info.etag) == (b'{"v": 1}', v1.etag)
    assert info.last_modified is not None
    with pytest.raises(ObjectNotFoundError):
        store.read("absent.json")


def test_incomplete_multipart_uploads_are_listed_and_aborted(store: S3ObjectStore) -> None:
    started = store.client.create_multipart_upload(Bucket=store.bucket, Key="mp/left.bin")
    store.client.upload_part(
        Bucket=store.bucket,
        Key="mp/left.bin",
        UploadId=started["UploadId"],
        PartNumber=1,
        Body=b"x" * 1024,
    )
    uploads = list(store.list_multipart_uploads("mp/"))
    assert [(u.key, u.upload_id) for u in uploads] == [("mp/left.bin", started["UploadId"])]
    assert uploads[0].initiated is not None
    assert list(store.list_multipart_uploads("other/")) == []

    store.abort_multipart_upload("mp/left.bin", started["UploadId"])
    assert list(store.list_multipart_uploads("mp/")) == []
    store.abort_multipart_upload("mp/left.bin", started["UploadId"])  # already gone: fine
    assert not store.exists("mp/left.bin")


@pytest.mark.parametrize("size", [3 * MiB, 12 * MiB + 3], ids=["single-copy", "multipart-copy"])
def test_copy_is_server_side_and_keeps_sha256_metadata(
    store: S3ObjectStore, tmp_path: Path, size: int
) -> None:
    staged = stage(store, tmp_path / "stage", f"src/{size}.bin", size)
    original = staged.path.read_bytes()
    Publisher(store).publish(staged)
    source = store.head(staged.key)

    copied = store.copy(staged.key, "dst/fixed.bin", source_etag=source.etag)

    assert (copied.size, copied.sha256) == (size, hashlib.sha256(original).hexdigest())
    assert b"".join(store.iter_bytes("dst/fixed.bin")) == original
    if size > store.part_size:
        assert copied.etag.endswith(f"-{-(-size // store.part_size)}")  # UploadPartCopy used


def test_copy_refuses_a_source_that_changed(store: S3ObjectStore) -> None:
    old = store.put_bytes("src/a", b"old")
    store.put_bytes("src/a", b"new")
    with pytest.raises(PreconditionFailedError):
        store.copy("src/a", "dst/a", source_etag=old.etag)
    assert not store.exists("dst/a")
