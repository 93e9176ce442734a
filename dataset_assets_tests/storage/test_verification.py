"""Verification catches bad uploads on every server; the local file always survives a failure."""

import dataclasses
import hashlib
import os
from pathlib import Path

import pytest

from dataset_assets.core.errors import UploadFailedError, VerificationError
from dataset_assets.core.hashing import Digest
from dataset_assets.storage import Journal, Publisher, S3ObjectStore, S3Settings
from dataset_assets_tests.faults import FaultProxy, proxied
from dataset_assets_tests.servers import start_seaweed
from dataset_assets_tests.storage.helpers import stage

MiB = 1024 * 1024


def is_ceph(settings: S3Settings) -> bool:
    return (settings.endpoint_url or "").endswith(":7480")


def overwrite_keeping_metadata(store: S3ObjectStore, key: str, data: bytes, sha256: str) -> None:
    """Silently replace the bytes of ``key`` while keeping the sha256 metadata we wrote: what
    bit rot or a buggy proxy looks like to a verifier that trusts metadata."""
    store.client.put_object(
        Bucket=store.bucket, Key=key, Body=data, Metadata={"sha256": sha256, "size": str(len(data))}
    )


class AlteringStore(S3ObjectStore):
    """A real store whose uploads are altered in S3 right after they land."""

    def upload_file(self, path: Path, key: str, digest: Digest, metadata: object = None) -> None:
        super().upload_file(path, key, digest)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        overwrite_keeping_metadata(self, key, bytes(data), digest.sha256)


@pytest.mark.parametrize("size", [1 * MiB, 11 * MiB], ids=["single-part", "multipart"])
def test_local_shard_kept_when_object_altered_after_upload(
    store: S3ObjectStore, tmp_path: Path, size: int
) -> None:
    altering = AlteringStore(store.bucket, store.settings, part_size=store.part_size)
    journal = Journal(tmp_path / "journal.jsonl", run_id="r1")
    staged = stage(store, tmp_path / "stage", "shards/a.jsonl", size)

    with pytest.raises(VerificationError) as err:
        Publisher(altering, journal=journal).publish(staged)

    assert staged.path.exists()
    message = str(err.value)
    assert "shards/a.jsonl" in message
    assert err.value.field == "etag"
    assert err.value.expected == staged.digest.etag in message
    assert err.value.actual == store.head(staged.key).etag in message
    steps = [(e["step"], e["outcome"]) for e in journal.entries()]
    assert steps == [("stage", "ok"), ("upload", "ok"), ("verify", "failed")]
    assert journal.entries()[-1]["run_id"] == "r1"


def test_verify_of_a_published_object_detects_later_corruption(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    staged = stage(store, tmp_path, "shards/b.jsonl", MiB, keep_local=True)
    publisher = Publisher(store)
    publisher.publish(staged)
    assert publisher.verify(staged).etag == staged.digest.etag

    overwrite_keeping_metadata(store, staged.key, os.urandom(MiB), staged.digest.sha256)

    with pytest.raises(VerificationError, match="shards/b.jsonl"):
        publisher.verify(staged)


def test_existing_key_with_different_bytes_is_never_overwritten(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    store.put_bytes("shards/c.jsonl", b"other bytes")
    staged = stage(store, tmp_path, "shards/c.jsonl", 1000)

    with pytest.raises(VerificationError) as err:
        Publisher(store).publish(staged)

    assert err.value.key == "shards/c.jsonl"
    assert store.get_bytes("shards/c.jsonl") == b"other bytes"
    assert staged.path.exists()
    published = Publisher(store).publish(staged, overwrite=True)
    assert published.uploaded and store.head(staged.key).sha256 == staged.digest.sha256


@pytest.mark.parametrize("size", [1 * MiB, 11 * MiB], ids=["single-part", "multipart"])
def test_bytes_corrupted_on_the_way_in_fail_the_upload_and_keep_local(
    store: S3ObjectStore, s3_settings: S3Settings, tmp_path: Path, size: int
) -> None:
    """Both servers refuse a body flipped in transit, for different reasons:

    - SeaweedFS checks the x-amz-checksum-sha256 (and Content-MD5): ``BadDigest``.
    - Ceph RGW 16 ignores checksum headers, but over plain http botocore signs the payload
      (x-amz-content-sha256 is part of SigV4) and RGW checks that: ``XAmzContentSHA256Mismatch``.

    So on Ceph corrupted bytes only land when they are altered *after* the signed request
    (see ``test_local_shard_kept_when_object_altered_after_upload``), and the ETag comparison
    catches that.
    """
    journal = Journal(tmp_path / "journal.jsonl")
    staged = stage(store, tmp_path / "stage", "shards/d.jsonl", size)
    with FaultProxy(store.settings.endpoint_url or "") as proxy:
        proxy.corrupt_request_body(times=None)
        with pytest.raises(UploadFailedError) as err:
            Publisher(proxied(proxy, store), journal=journal).publish(staged)
        assert proxy.fired["corrupt_request_body"] >= 1
    assert staged.path.exists()
    assert err.value.key == "shards/d.jsonl"
    expected_code = "XAmzContentSHA256Mismatch" if is_ceph(s3_settings) else "BadDigest"
    assert expected_code in str(err.value)
    assert not store.exists(staged.key)
    assert journal.entries()[-1]["step"] == "upload"
    assert journal.entries()[-1]["outcome"] == "failed"


def test_connection_resets_fail_the_upload_and_keep_local(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    staged = stage(store, tmp_path, "shards/e.jsonl", 100_000)
    with FaultProxy(store.settings.endpoint_url or "") as proxy:
        flaky = proxied(proxy, store, max_attempts=2)
        proxy.reset(times=None)
        with pytest.raises(UploadFailedError, match="shards/e.jsonl"):
            Publisher(flaky).publish(staged)
        assert proxy.fired["reset"] >= 2
    assert staged.path.exists()


def test_transient_500s_are_retried_and_the_publish_succeeds(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    staged = stage(store, tmp_path, "shards/f.jsonl", 100_000)
    with FaultProxy(store.settings.endpoint_url or "") as proxy:
        proxy.http_500(times=2)
        published = Publisher(proxied(proxy, store)).publish(staged)
        assert proxy.fired["http_500"] == 2
    assert published.uploaded and not staged.path.exists()


def test_upload_to_a_stopped_server_fails_and_keeps_local(tmp_path: Path) -> None:
    server = start_seaweed(tmp_path / "weed")
    try:
        settings = dataclasses.replace(server.settings(), max_attempts=2, connect_timeout=2)
        store = S3ObjectStore("throwaway", settings, part_size=5 * MiB)
        store.ensure_bucket()
        journal = Journal(tmp_path / "journal.jsonl")
        publisher = Publisher(store, journal=journal)
        first = stage(store, tmp_path / "stage", "shards/1.jsonl", 50_000)
        second = stage(store, tmp_path / "stage", "shards/2.jsonl", 50_000)
        assert publisher.publish(first).uploaded
        server.stop()
        with pytest.raises(UploadFailedError) as err:
            publisher.publish(second)
    finally:
        server.stop()
    assert err.value.key == "shards/2.jsonl"
    assert not first.path.exists()
    assert second.path.exists()
    failed = [e for e in journal.entries() if e["outcome"] == "failed"]
    assert [(e["key"], e["step"]) for e in failed] == [("shards/2.jsonl", "upload")]


@pytest.mark.parametrize("size", [1 * MiB, 11 * MiB], ids=["single-part", "multipart"])
def test_readback_verification_passes_for_good_uploads(
    store: S3ObjectStore, tmp_path: Path, size: int
) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    staged = stage(store, tmp_path / "stage", "shards/g.jsonl", size)
    published = Publisher(store, verify="readback", journal=journal).publish(staged)
    assert published.uploaded and not staged.path.exists()
    assert "readback" in [e for e in journal.entries() if e["step"] == "verify"][0]["detail"]


def test_readback_verification_catches_bytes_corrupted_on_the_way_out(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    staged = stage(store, tmp_path, "shards/h.jsonl", MiB)
    with FaultProxy(store.settings.endpoint_url or "") as proxy:
        via = proxied(proxy, store, max_attempts=1)
        proxy.corrupt_response_body(times=None)
        with pytest.raises(VerificationError, match="shards/h.jsonl"):
            Publisher(via, verify="readback").publish(staged)
        assert proxy.fired["corrupt_response_body"] >= 1
    assert staged.path.exists()
    # the object itself is fine: a head-mode verify through a clean path passes
    assert Publisher(store).verify(staged).sha256 == staged.digest.sha256


def test_readback_catches_altered_bytes_with_matching_metadata(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    staged = stage(store, tmp_path, "shards/i.jsonl", MiB, keep_local=True)
    Publisher(store).publish(staged)
    overwrite_keeping_metadata(store, staged.key, os.urandom(MiB), staged.digest.sha256)
    with pytest.raises(VerificationError) as err:
        Publisher(store, verify="readback").verify(staged)
    fields = str(err.value)
    assert "shards/i.jsonl" in fields
    assert hashlib.sha256(staged.path.read_bytes()).hexdigest() == staged.digest.sha256
