"""Server-side encryption on every write the store makes, refused when the server ignores it,
and verification that still holds when the ETag is not an MD5.

Servers: SeaweedFS (SSE-S3 built in; SSE-KMS with its local KMS provider), Ceph RGW 16 (rejects
SSE over plain HTTP by default; with ``rgw_crypt_require_ssl=false`` it *accepts*
``x-amz-server-side-encryption: AES256`` and stores plain text: the case the store must refuse).
"""

import dataclasses
import hashlib
import io
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataset_assets.core.errors import StorageError, VerificationError
from dataset_assets.core.hashing import digest_file
from dataset_assets.storage import Publisher, S3ObjectStore, S3Settings
from dataset_assets.storage.objects import SSE_PROBE_PREFIX, EncryptionNotAppliedError
from dataset_assets_tests.conftest import TEST_PART_SIZE, make_store
from dataset_assets_tests.security.conftest import shared_store
from dataset_assets_tests.security.servers import (
    KMS_KEY_ALIAS,
    OpaqueEtagProxy,
    start_kms_seaweed,
)
from dataset_assets_tests.storage.helpers import stage

MULTIPART = TEST_PART_SIZE * 2 + 123  # three parts


@pytest.fixture(scope="module")
def kms_seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Settings]:
    server = start_kms_seaweed(tmp_path_factory.mktemp("kms-seaweed"))
    try:
        yield server.settings()
    finally:
        server.stop()


def _encrypted(settings: S3Settings, sse: str, key_id: str | None = None) -> S3ObjectStore:
    return make_store(
        dataclasses.replace(settings, server_side_encryption=sse, sse_kms_key_id=key_id)  # type: ignore[arg-type]
    )


def _write_every_way(
    store: S3ObjectStore, tmp_path: Path, w: str = "w/", copy_from: str = "upload_file_multipart"
) -> dict[str, bytes]:
    """One object per write path of the store, under the prefix ``w``; returns key -> bytes."""
    small, big = os.urandom(1000), os.urandom(MULTIPART)
    store.put_bytes(f"{w}put_bytes", small)
    path = tmp_path / "big"
    path.write_bytes(big)
    store.upload_file(path, f"{w}upload_file_multipart", digest_file(path, store.part_size))
    one = tmp_path / "one"
    one.write_bytes(small)
    store.upload_file(one, f"{w}upload_file_single", digest_file(one, store.part_size))
    store.upload_fileobj(
        io.BytesIO(big), f"{w}upload_fileobj", digest_file(path, store.upload_part_size(len(big)))
    )
    store.copy(f"{w}{copy_from}", f"{w}copy")
    written = {
        "put_bytes": small,
        "upload_file_multipart": big,
        "upload_file_single": small,
        "upload_fileobj": big,
    }
    written["copy"] = written[copy_from]
    return {f"{w}{name}": data for name, data in written.items()}


def test_sse_s3_applied_on_every_write_on_seaweedfs(seaweed: S3Settings, tmp_path: Path) -> None:
    store, w = shared_store(seaweed, server_side_encryption="AES256")
    store.ensure_bucket()  # the encryption probe
    written = _write_every_way(store, tmp_path, w)
    for key, data in written.items():
        info = store.head(key)
        assert info.server_side_encryption == "AES256", key
        assert hashlib.sha256(store.get_bytes(key)).hexdigest() == hashlib.sha256(data).hexdigest()
    # The probe of ensure_bucket left nothing behind.
    assert list(store.list(SSE_PROBE_PREFIX)) == []


def test_without_sse_setting_seaweedfs_reports_no_encryption(
    seaweed: S3Settings, tmp_path: Path
) -> None:
    """The control of the test above: the HEAD assertion can fail."""
    store, w = shared_store(seaweed)
    for key in _write_every_way(store, tmp_path, w):
        assert store.head(key).server_side_encryption is None, key


def test_sse_kms_applied_on_every_write_and_verified_by_checksum(
    kms_seaweed: S3Settings, tmp_path: Path
) -> None:
    store = _encrypted(kms_seaweed, "aws:kms", KMS_KEY_ALIAS)
    assert store.etag_is_md5 is False  # detected from aws:kms: the verifier does not trust ETags
    # SeaweedFS 4.48 cannot UploadPartCopy from an SSE-KMS source (501 NotImplemented): copies
    # over part_size (and composed exports) fail loudly there; a single CopyObject works.
    written = _write_every_way(store, tmp_path, copy_from="upload_file_single")
    with pytest.raises(StorageError, match="NotImplemented"):
        store.copy("w/upload_file_multipart", "w/copy_multipart")
    for key, data in written.items():
        info = store.head(key)
        assert info.server_side_encryption == "aws:kms", key
        assert info.sse_kms_key_id, key
        assert store.get_bytes(key) == data
    # ETags are not trusted under SSE-KMS: a single-part object is proven by the server's
    # SHA-256, a multipart one (composite checksum ``…-N``) by reading it back.
    assert store.evidence(store.head("w/upload_file_single")) == "checksum_sha256"
    assert store.evidence(store.head("w/upload_file_multipart")) == "readback"
    staged = stage(store, tmp_path / "staged", "final/shard-0.jsonl", 7000)
    with Publisher(store) as publisher:
        published = publisher.publish(staged)
    assert store.head(published.key).server_side_encryption == "aws:kms"
    assert not staged.path.exists()


def test_sse_kms_with_an_unknown_key_fails_before_any_write(kms_seaweed: S3Settings) -> None:
    settings = dataclasses.replace(
        kms_seaweed,
        server_side_encryption="aws:kms",
        sse_kms_key_id="alias/no-such-key",
        max_attempts=1,
    )
    store = S3ObjectStore(f"t-{uuid.uuid4().hex[:20]}", settings, part_size=TEST_PART_SIZE)
    with pytest.raises(StorageError, match="put"):
        store.ensure_bucket()
    assert list(S3ObjectStore(store.bucket, kms_seaweed).list("")) == []


def test_settings_from_env_read_sse_variables() -> None:
    s = S3Settings.from_env(
        {"DATASET_ASSETS_SSE": "aws:kms", "DATASET_ASSETS_SSE_KMS_KEY_ID": "alias/k"}
    )
    assert s.encryption_args == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/k"}
    assert s.etag_is_content_md5 is False
    assert S3Settings.from_env({"DATASET_ASSETS_SSE": "AES256"}).etag_is_content_md5 is True
    assert S3Settings.from_env({}).encryption_args == {}
    forced = S3Settings.from_env(
        {"DATASET_ASSETS_SSE": "AES256", "DATASET_ASSETS_ETAG_IS_MD5": "false"}
    )
    assert forced.etag_is_content_md5 is False
    with pytest.raises(ValueError, match="DATASET_ASSETS_SSE must be one of"):
        S3Settings.from_env({"DATASET_ASSETS_SSE": "aes128"})
    with pytest.raises(ValueError, match="sse_kms_key_id is only used"):
        S3Settings.from_env({"DATASET_ASSETS_SSE_KMS_KEY_ID": "alias/k"})


# -- ETags that are not MD5s (AWS SSE-KMS) ----------------------------------------------------


@pytest.mark.parametrize("size", [7000, MULTIPART], ids=["single-part", "multipart"])
def test_publish_verifies_by_checksum_when_etags_are_not_md5(
    s3_settings: S3Settings, tmp_path: Path, size: int
) -> None:
    """Behind a proxy that makes every HEAD/GET ETag opaque (as AWS does for SSE-KMS objects),
    publishing still verifies: with the server's whole-object ChecksumSHA256 (SeaweedFS,
    single part), else by reading the object back (Ceph has no checksum; a multipart
    checksum is a composite ``…-N``); forged bytes are still caught."""
    with OpaqueEtagProxy(str(s3_settings.endpoint_url)) as proxy:
        store, w = shared_store(s3_settings, endpoint_url=proxy.endpoint_url, etag_is_md5=False)
        bucket = store.bucket
        staged = stage(store, tmp_path, f"{w}s-0.jsonl", size, keep_local=True)
        with Publisher(store) as publisher:
            publisher.publish(staged)
        info = store.head(staged.key)
        assert proxy.rewritten, "the proxy rewrote no ETag: the test proves nothing"
        assert info.etag != staged.digest.etag
        whole_checksum = s3_settings.endpoint_url != "http://127.0.0.1:7480" and size < MULTIPART
        assert store.evidence(info) == ("checksum_sha256" if whole_checksum else "readback")
        # Someone replaces the bytes and keeps our metadata: the ETag cannot tell, the
        # checksum or the read-back does.
        forged = bytearray(staged.path.read_bytes())
        forged[100] ^= 0xFF
        store.client.put_object(
            Bucket=bucket,
            Key=staged.key,
            Body=bytes(forged),
            Metadata={"sha256": staged.digest.sha256, "size": str(staged.digest.size)},
        )
        with Publisher(store) as publisher, pytest.raises(VerificationError):
            publisher.verify(staged)


# -- Ceph RGW 16 ------------------------------------------------------------------------------


def _ceph_config(*args: str) -> None:
    subprocess.run(
        [
            "ceph",
            "--conf",
            "/dev/null",
            "--mon-host",
            "127.0.0.1:6789",
            "--auth-client-required",
            "none",
            "config",
            *args,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.ceph
def test_ceph_rejects_sse_over_plain_http_and_nothing_is_written(ceph: S3Settings) -> None:
    plain = make_store(ceph)
    store = S3ObjectStore(plain.bucket, dataclasses.replace(ceph, server_side_encryption="AES256"))
    with pytest.raises(StorageError, match="InvalidRequest"):
        store.ensure_bucket()
    with pytest.raises(StorageError, match="InvalidRequest"):
        store.put_bytes("final/x.json", b"{}")
    assert list(plain.list("")) == []


@pytest.mark.ceph
def test_ceph_ignoring_sse_s3_is_refused_not_silently_unencrypted(
    ceph: S3Settings, tmp_path: Path
) -> None:
    """With ``rgw_crypt_require_ssl=false`` Ceph 16 (no SSE-S3 backend) answers 200 to an
    AES256 write and stores plain text: every write path must raise."""
    _ceph_config("set", "client.rgw.a", "rgw_crypt_require_ssl", "false")
    try:
        plain = make_store(ceph)
        store = S3ObjectStore(
            plain.bucket,
            dataclasses.replace(ceph, server_side_encryption="AES256"),
            part_size=TEST_PART_SIZE,
        )
        with pytest.raises(EncryptionNotAppliedError, match="ignored or does not support"):
            store.ensure_bucket()
        assert list(plain.list("")) == []  # the probe was removed
        with pytest.raises(EncryptionNotAppliedError):
            store.put_bytes("final/x.json", b"{}")
        path = tmp_path / "f"
        path.write_bytes(os.urandom(1000))
        with pytest.raises(EncryptionNotAppliedError):
            store.upload_file(path, "final/f", digest_file(path, store.part_size))
        staged = stage(store, tmp_path / "s", "final/s.jsonl", 2000)
        with pytest.raises(EncryptionNotAppliedError), Publisher(store) as publisher:
            publisher.publish(staged)
        assert staged.path.exists()  # the local file is kept, as for any failed upload
    finally:
        _ceph_config("rm", "client.rgw.a", "rgw_crypt_require_ssl")
