"""Ordered commits of the latest pointer and the conditional-write probe, on real servers."""

import hashlib
from pathlib import Path
from typing import Any

import pytest

from dataset_assets.core.errors import ConcurrentPublishError, ManifestError
from dataset_assets.core.layout import build_manifest_key, latest_manifest_key, shard_key
from dataset_assets.core.manifest import BuildCounts, Manifest, ShardEntry, with_build_id
from dataset_assets.pipeline.commit import (
    ConditionalWritesUnsupportedError,
    PointerState,
    commit_manifest,
    probe_conditional_writes,
    read_pointer,
)
from dataset_assets.storage import S3ObjectStore

PREFIX = "final_dataset"


def publish_shards(store: S3ObjectStore, prefix: str, lines: list[bytes]) -> Manifest:
    """Upload one train shard per line (content-addressed, not re-uploaded when identical) and
    return the manifest naming them, as a build does before its commit."""
    shards = []
    for i, line in enumerate(lines):
        sha = hashlib.sha256(line).hexdigest()
        sid = f"train-{i:05d}-{sha[:12]}"
        key = shard_key(prefix, "train", sid)
        if not store.exists(key):
            store.put_bytes(key, line)
        shards.append(
            ShardEntry(
                key=key,
                uri=store.uri(key),
                bytes=len(line),
                sha256=sha,
                records=1,
                split="train",
                shard_id=sid,
            )
        )
    counts = BuildCounts(
        input_records=len(lines), published_records=len(lines), per_split={"train": len(lines)}
    )
    manifest = Manifest(
        build_id="",
        bucket=store.bucket,
        prefix=prefix,
        config_digest="test",
        shards=shards,
        counts=counts,
    )
    return with_build_id(manifest)


def pointer_id(store: S3ObjectStore, prefix: str = PREFIX) -> str:
    return Manifest.from_json(store.get_bytes(latest_manifest_key(prefix))).build_id


def test_first_commit_creates_the_pointer_and_the_local_copy(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    start = read_pointer(store, PREFIX)
    assert start == PointerState(etag=None, build_id=None)
    manifest = publish_shards(store, PREFIX, [b'{"a": 1}\n'])

    uri = commit_manifest(store, manifest, tmp_path / "manifest.json", start)

    assert uri == store.uri(build_manifest_key(PREFIX, manifest.build_id))
    assert pointer_id(store) == manifest.build_id
    assert (tmp_path / "manifest.json").read_bytes() == manifest.to_json()
    after = read_pointer(store, PREFIX)
    assert after.build_id == manifest.build_id and after.etag is not None


def test_a_build_that_started_before_the_latest_commit_is_refused(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    base = publish_shards(store, PREFIX, [b'{"base": 1}\n'])
    commit_manifest(store, base, tmp_path / "base.json", read_pointer(store, PREFIX))
    slow_start = read_pointer(store, PREFIX)  # the slow build starts from "base"
    fast_start = read_pointer(store, PREFIX)  # so does the fast one
    slow = publish_shards(store, PREFIX, [b'{"old data": 1}\n'])
    fast = publish_shards(store, PREFIX, [b'{"new data": 1}\n'])
    commit_manifest(store, fast, tmp_path / "fast.json", fast_start)

    local = tmp_path / "slow.json"
    with pytest.raises(ConcurrentPublishError, match="concurrent publish") as err:
        commit_manifest(store, slow, local, slow_start)

    assert fast.build_id in str(err.value) and base.build_id in str(err.value)
    assert pointer_id(store) == fast.build_id  # the build that finished last did not win
    assert not local.exists()
    # the refused build's objects exist but nothing points at them
    assert store.exists(slow.shards[0].key)
    assert slow.shards[0].key not in store.get_bytes(latest_manifest_key(PREFIX)).decode()


def test_a_refused_first_commit_when_another_build_created_the_pointer(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    start_a = read_pointer(store, PREFIX)
    start_b = read_pointer(store, PREFIX)
    a = publish_shards(store, PREFIX, [b'{"a": 1}\n'])
    b = publish_shards(store, PREFIX, [b'{"b": 1}\n'])
    commit_manifest(store, a, tmp_path / "a.json", start_a)
    with pytest.raises(ConcurrentPublishError, match="concurrent publish.*from absent"):
        commit_manifest(store, b, tmp_path / "b.json", start_b)
    assert pointer_id(store) == a.build_id


def test_the_same_build_committed_twice_concurrently_is_a_success(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    start_1 = read_pointer(store, PREFIX)
    start_2 = read_pointer(store, PREFIX)
    lines = [b'{"same": 1}\n', b'{"same": 2}\n']
    first = publish_shards(store, PREFIX, lines)
    second = publish_shards(store, PREFIX, lines)
    assert first.build_id == second.build_id
    commit_manifest(store, first, tmp_path / "1.json", start_1)
    commit_manifest(store, second, tmp_path / "2.json", start_2)  # no error: same content
    assert (tmp_path / "2.json").read_bytes() == first.to_json()
    assert pointer_id(store) == first.build_id


def test_rebuild_on_top_of_its_own_start_pointer_commits(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    for i in range(3):
        start = read_pointer(store, PREFIX)
        manifest = publish_shards(store, PREFIX, [f'{{"v": {i}}}\n'.encode()])
        commit_manifest(store, manifest, tmp_path / "m.json", start)
        assert pointer_id(store) == manifest.build_id


def test_commit_refuses_a_manifest_naming_a_deleted_object(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    start = read_pointer(store, PREFIX)
    manifest = publish_shards(store, PREFIX, [b'{"x": 1}\n', b'{"x": 2}\n'])
    store.delete(manifest.shards[1].key)
    with pytest.raises(ManifestError, match="not committed.*missing") as err:
        commit_manifest(store, manifest, tmp_path / "m.json", start)
    assert manifest.shards[1].uri in str(err.value)
    assert read_pointer(store, PREFIX).etag is None
    assert not (tmp_path / "m.json").exists()


def test_probe_passes_on_a_server_that_honours_conditions(store: S3ObjectStore) -> None:
    probe_conditional_writes(store, PREFIX)
    assert [o.key for o in store.list(PREFIX + "/")] == []  # the probe cleans up


class IgnoresConditionsStore(S3ObjectStore):
    """A real server reached as if it ignored If-Match / If-None-Match: the conditions are
    dropped before the request is sent, so every conditional PUT overwrites."""

    def put_bytes(self, key: str, data: bytes, **kwargs: Any) -> Any:
        kwargs.pop("if_none_match", None)
        kwargs.pop("if_match", None)
        return super().put_bytes(key, data, **kwargs)


def test_probe_refuses_a_server_that_ignores_conditions(store: S3ObjectStore) -> None:
    fake = IgnoresConditionsStore(store.bucket, store.settings, part_size=store.part_size)
    with pytest.raises(ConditionalWritesUnsupportedError) as err:
        probe_conditional_writes(fake, PREFIX)
    message = str(err.value)
    assert "this server ignores conditional writes; refusing to publish" in message
    assert str(store.settings.endpoint_url) in message
    assert "If-None-Match" in message and "If-Match with a wrong ETag" in message
    assert [o.key for o in store.list(PREFIX + "/")] == []


def test_pointer_state_survives_the_trip_between_build_steps(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    assert PointerState.from_json(read_pointer(store, PREFIX).to_json()).absent
    manifest = publish_shards(store, PREFIX, [b'{"a": 1}\n'])
    commit_manifest(store, manifest, tmp_path / "m.json", read_pointer(store, PREFIX))
    state = read_pointer(store, PREFIX)
    assert PointerState.from_json(state.to_json()) == state
