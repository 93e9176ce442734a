"""Helpers of the reliability tests: a child publishing process to kill, and the checks that
follow every kill (nothing lost, nothing half-published, earlier readers unaffected)."""

import dataclasses
import json
import multiprocessing
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from dataset_assets.core.layout import latest_manifest_key, manifests_prefix
from dataset_assets.core.manifest import Manifest
from dataset_assets.core.provenance import read_provenance
from dataset_assets.loader import S3DatasetLoader
from dataset_assets.pipeline.build import build_problems
from dataset_assets.storage import S3ObjectStore, S3Settings
from dataset_assets_tests.builds import object_lines

REPO = Path(__file__).resolve().parents[2]


_CTX = multiprocessing.get_context("forkserver")
# Children fork from a server that imported the package once (if this process has not started
# the forkserver yet; otherwise each child imports what the server lacks).
_CTX.set_forkserver_preload(["dataset_assets_tests.reliability.child"])


def _run_child(spec_path: str, log_path: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from dataset_assets_tests.reliability import child

    try:
        child.main(spec_path)
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()


class Child:
    """A fresh publishing process (forked from a forkserver that imported the package once, so
    it starts in milliseconds) running :mod:`child` with a JSON spec; SIGKILLed by the test."""

    def __init__(self, tmp: Path, name: str, settings: S3Settings, **spec: Any) -> None:
        self.spec_path = tmp / f"{name}.spec.json"
        self.result_path = tmp / f"{name}.result.json"
        self.marker = tmp / f"{name}.marker"
        gate = spec.get("gate")
        if gate is not None:
            gate["marker"] = str(self.marker)
        body = {"settings": dataclasses.asdict(settings), "result": str(self.result_path), **spec}
        self.spec_path.write_text(json.dumps(body, default=str))
        self.log_path = tmp / f"{name}.log"
        self.proc = _CTX.Process(target=_run_child, args=(str(self.spec_path), str(self.log_path)))
        self.proc.start()

    def wait_for(self, predicate: Any, timeout: float = 60.0) -> None:
        """Wait until ``predicate()`` (the kill point is reached); fails if the child exits."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if not self.proc.is_alive():
                raise AssertionError(
                    f"child exited ({self.proc.exitcode}) before the kill point:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"kill point not reached in {timeout}s:\n{self.output()}")
            time.sleep(0.01)

    def kill(self) -> None:
        """SIGKILL the child (it starts no process of its own: compile workers = 1)."""
        assert self.proc.pid is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(10)
        assert self.proc.exitcode == -signal.SIGKILL, self.proc.exitcode

    def finish(self, timeout: float = 120.0) -> dict[str, Any]:
        """Wait for a normal exit and return the child's result."""
        self.proc.join(timeout)
        rc = self.proc.exitcode
        assert rc == 0, f"child failed ({rc}):\n{self.output()}"
        result: dict[str, Any] = json.loads(self.result_path.read_text())
        return result

    def output(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-4000:]


def latest(store: S3ObjectStore, prefix: str) -> Manifest:
    return Manifest.from_json(store.get_bytes(latest_manifest_key(prefix)))


def all_manifests(store: S3ObjectStore, prefix: str) -> list[Manifest]:
    return [
        Manifest.from_json(store.get_bytes(o.key), o.key)
        for o in store.list(manifests_prefix(prefix))
        if o.key.endswith(".json")
    ]


def assert_no_manifest_names_a_missing_object(store: S3ObjectStore, prefix: str) -> None:
    """The pointer (every object read back and hashed) and every immutable manifest (every
    object's size, sha256 metadata and ETag): each object named is in S3 as published."""
    assert build_problems(store, latest(store, prefix), readback=True) == []
    for m in all_manifests(store, prefix):
        assert build_problems(store, m) == [], m.build_id


def input_lines(folder: Path) -> Counter[tuple[str, int]]:
    """Every non-empty input line as (file name, 1-based line number)."""
    out: Counter[tuple[str, int]] = Counter()
    for path in sorted(folder.glob("*.jsonl")):
        for n, line in enumerate(path.read_bytes().split(b"\n"), start=1):
            if line.strip():
                out[(path.name, n)] += 1
    return out


def accounted_lines(store: S3ObjectStore, manifest: Manifest) -> Counter[tuple[str, int]]:
    """Every input line the build accounts for: published (shard records), dropped as a
    duplicate (dedup sidecar) or quarantined (quarantine file), as (file name, line)."""
    out: Counter[tuple[str, int]] = Counter()
    for shard in manifest.shards:
        for raw in object_lines(store, shard):
            meta = orjson.loads(raw)["metadata"]
            out[(Path(str(meta["source"])).name, int(meta["line"]))] += 1
    if manifest.dedup is not None:
        for row in read_provenance(store.get_bytes(manifest.dedup.key)):
            out[(Path(str(row["source"])).name, int(str(row["line"])))] += 1
    if manifest.quarantine is not None:
        for raw in store.get_bytes(manifest.quarantine.key).splitlines():
            q = orjson.loads(raw)
            out[(Path(str(q["source"])).name, int(q["line"]))] += 1
    return out


def assert_no_record_lost(store: S3ObjectStore, manifest: Manifest, inputs: Path) -> None:
    """published + duplicates + quarantined == input, line by line, each exactly once."""
    want = input_lines(inputs)
    got = accounted_lines(store, manifest)
    c = manifest.counts
    dups = c.exact_duplicates + c.near_duplicates
    assert c.input_records == c.published_records + dups + c.quarantined == sum(want.values())
    missing = want - got
    extra = got - want
    assert not missing and not extra, (sorted(missing)[:5], sorted(extra)[:5])


def published_hashes(store: S3ObjectStore, manifest: Manifest) -> list[str]:
    """The content hashes a manifest's shards hold (read directly, not through the loader)."""
    return sorted(
        orjson.loads(raw)["metadata"]["content_hash"]
        for shard in manifest.shards
        for raw in object_lines(store, shard)
    )


def read_all(manifest_uri: str, settings: S3Settings) -> list[str]:
    """Every record of every split of a pinned manifest, through the training loader
    (sha256-verified), as the content hashes."""
    out = []
    for split in ("train", "val", "test"):
        loader = S3DatasetLoader(manifest_uri, settings=settings, split=split, shuffle=False)
        loader.set_epoch(0)
        out += [r["metadata"]["content_hash"] for r in loader]
    return sorted(out)
