"""The publisher names its evidence and refuses plaintext objects under an SSE setting.

These need the change to ``storage/publish.py`` handed to the lead (the verifier asks
``S3ObjectStore.evidence`` / ``encryption_mismatch``); until it is applied they are expected to
fail (strict xfail: applying the change turns them into failures until the marker is removed).
"""

import dataclasses
from pathlib import Path

import orjson
import pytest

from dataset_assets.core.errors import VerificationError
from dataset_assets.storage import Journal, Publisher, S3ObjectStore, S3Settings
from dataset_assets_tests.conftest import TEST_PART_SIZE
from dataset_assets_tests.security.conftest import shared_store
from dataset_assets_tests.security.servers import OpaqueEtagProxy
from dataset_assets_tests.storage.helpers import stage


def _verify_details(path: Path) -> list[str]:
    entries = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return [e["detail"] for e in entries if e["step"] == "verify" and e["outcome"] == "ok"]


def test_journal_names_the_evidence_of_each_verification(
    seaweed: S3Settings, tmp_path: Path
) -> None:
    journal_path = tmp_path / "journal.jsonl"
    with OpaqueEtagProxy(str(seaweed.endpoint_url)) as proxy:
        store, w = shared_store(seaweed, endpoint_url=proxy.endpoint_url, etag_is_md5=False)
        single = stage(store, tmp_path, f"{w}single.jsonl", 7000)
        multi = stage(store, tmp_path, f"{w}multi.jsonl", TEST_PART_SIZE * 2 + 1)
        with Publisher(store, journal=Journal(journal_path, run_id="r")) as publisher:
            publisher.publish(single)
            publisher.publish(multi)
    details = _verify_details(journal_path)
    assert len(details) == 2
    assert details[0].endswith("evidence checksum_sha256")
    assert details[1].endswith("evidence readback")


def test_a_plaintext_object_is_not_taken_as_published_when_sse_is_required(
    seaweed: S3Settings, tmp_path: Path
) -> None:
    plain, w = shared_store(seaweed)
    staged = stage(plain, tmp_path, f"{w}s.jsonl", 5000, keep_local=True)
    with Publisher(plain) as publisher:
        publisher.publish(staged)
    encrypted = S3ObjectStore(
        plain.bucket,
        dataclasses.replace(seaweed, server_side_encryption="AES256"),
        part_size=TEST_PART_SIZE,
    )
    with Publisher(encrypted) as publisher, pytest.raises(VerificationError, match="Encryption"):
        publisher.publish(staged)
    with Publisher(encrypted) as publisher:
        publisher.publish(staged, overwrite=True)
    assert encrypted.head(staged.key).server_side_encryption == "AES256"
