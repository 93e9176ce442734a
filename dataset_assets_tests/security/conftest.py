"""One bucket per S3 server for the security tests that do not need their own (each new bucket
is a new SeaweedFS collection with its own volumes; a session that creates too many runs out of
writable volumes and answers 500)."""

import dataclasses
import uuid
from typing import Any

from dataset_assets.storage import S3ObjectStore, S3Settings
from dataset_assets_tests.conftest import TEST_PART_SIZE

_BUCKETS: dict[str, str] = {}


def shared_store(settings: S3Settings, **changes: Any) -> tuple[S3ObjectStore, str]:
    """A store on this server's shared test bucket (settings changed by ``changes``) and a
    fresh key prefix for the calling test."""
    endpoint = str(settings.endpoint_url)
    if endpoint not in _BUCKETS:
        bucket = f"sec-{uuid.uuid4().hex[:16]}"
        S3ObjectStore(bucket, settings).ensure_bucket()
        _BUCKETS[endpoint] = bucket
    store = S3ObjectStore(
        _BUCKETS[endpoint], dataclasses.replace(settings, **changes), part_size=TEST_PART_SIZE
    )
    return store, f"t-{uuid.uuid4().hex[:12]}/"
