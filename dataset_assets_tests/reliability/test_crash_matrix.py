"""SIGKILL of the publishing process at each step of a build, then a rerun in a fresh process.

Each test builds A, changes every source (so build B publishes new shards), starts B in a child
process and SIGKILLs it at one point: held by the fault proxy at a request (mid-upload, the
manifest PUT, the pointer PUT before or after the server applied it) or stopped right after
its publish journal recorded a step (staged, uploaded, verified). Then: another owner is refused
while the killed build's lease is live; the same owner's rerun in a fresh process completes;
every input line is published, a duplicate or quarantined (nothing lost); no manifest names a
missing or different object; the killed run's work folder is gone; a reader pinned on A reads
exactly what it read before.
"""

import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from dataset_assets.core.layout import build_manifest_key, latest_manifest_key, manifests_prefix
from dataset_assets.core.sample import write_sample
from dataset_assets.pipeline.build import Build, build_dataset
from dataset_assets.pipeline.lease import BuildInProgressError
from dataset_assets.storage import S3Settings
from dataset_assets_tests.builds import config_and_store, write_build_config
from dataset_assets_tests.faults import FaultProxy
from dataset_assets_tests.reliability.harness import (
    Child,
    assert_no_manifest_names_a_missing_object,
    assert_no_record_lost,
    latest,
    published_hashes,
    read_all,
)

# kill point -> how the child is stopped there
POINTS: dict[str, dict[str, Any]] = {
    "staged": {"gate": ("stage", "ok", "/train/")},
    "mid_upload": {"hold": ("PUT", "/train/", False)},
    "uploaded_not_verified": {"gate": ("upload", "ok", "/train/")},
    "verified_not_deleted": {"gate": ("verify", "ok", "/train/")},
    "shards_done_manifest_not_written": {"hold": ("PUT", "/manifests/", False)},
    "pointer_swap_not_applied": {"hold": ("PUT", "/manifest.json", False)},
    "pointer_swap_applied_not_acknowledged": {"hold": ("PUT", "/manifest.json", True)},
}
OWNER = "owner-of-b"


def _shard_staged_locally(staging: Path, key: str) -> bool:
    return any(p.name == key.rsplit("/", 1)[1] for p in staging.rglob("*.jsonl*"))


@dataclasses.dataclass
class Chain:
    """One prefix built again and again: each kill point's build B runs on top of the build
    the previous point's rerun committed (A), with every source changed in between."""

    tmp: Path
    config: Path
    cfg: Any
    store: Any
    settings: S3Settings
    a_id: str = ""
    a_records: list[str] = dataclasses.field(default_factory=list)
    step: int = 0

    @property
    def a_uri(self) -> str:
        return str(self.store.uri(build_manifest_key(self.cfg.prefix, self.a_id)))


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, seaweed: S3Settings) -> Chain:
    tmp = tmp_path_factory.mktemp("crash")
    config = write_build_config(
        tmp, f"crash-{uuid.uuid4().hex[:10]}", records_per_family=150, compile={"workers": 1}
    )
    cfg, store = config_and_store(config, seaweed)
    a = build_dataset(cfg, store, run_id="build-a")
    c = Chain(tmp, config, cfg, store, seaweed, a_id=a.build_id)
    c.a_records = read_all(c.a_uri, seaweed)
    assert len(c.a_records) == a.counts.published_records
    return c


@pytest.mark.parametrize("point", list(POINTS))
def test_sigkill_at_a_publish_step_then_the_rerun_publishes_everything(
    point: str, chain: Chain
) -> None:
    cfg, store, seaweed, tmp = chain.cfg, chain.store, chain.settings, chain.tmp
    chain.step += 1
    n = chain.step
    assert latest(store, cfg.prefix).build_id == chain.a_id, "the previous point's rerun failed"
    write_sample(tmp / "data" / "generated", records_per_family=150, seed=n)
    owner = f"owner-of-b{n}"

    how = POINTS[point]
    killed_run = cfg.staging_dir / "runs" / f"run-killed-{n}"
    with FaultProxy(upstream=str(seaweed.endpoint_url)) as proxy:
        settings = dataclasses.replace(seaweed, endpoint_url=proxy.endpoint_url)
        gate = None
        hold = None
        if "gate" in how:
            step, outcome, key_part = how["gate"]
            gate = {"step": step, "outcome": outcome, "key_contains": key_part}
        else:
            method, path_part, after = how["hold"]
            hold = proxy.hold(method, path_part, after_forward=after)
        child = Child(
            tmp,
            f"killed-{n}",
            settings,
            action="build",
            config=str(chain.config),
            run_id=killed_run.name,
            owner=owner,
            gate=gate,
        )
        if hold is not None:
            child.wait_for(hold.reached.is_set)
        else:
            child.wait_for(child.marker.exists)
        child.kill()
        at_kill = _state_at_kill(store, cfg.prefix)

    # The state the kill left is the one named by the point.
    if gate is not None:
        key = json.loads(child.marker.read_text())["key"]
        assert _shard_staged_locally(killed_run, key), "the staged shard is still local"
        assert store.exists(key) == (point != "staged")
    elif point == "mid_upload":
        assert hold is not None and hold.path is not None
        key = hold.path.split("?")[0].split(f"/{cfg.bucket}/", 1)[1]
        assert not store.exists(key)
        assert _shard_staged_locally(killed_run, key)
    elif point == "pointer_swap_applied_not_acknowledged":
        assert at_kill["pointer"] != chain.a_id  # the server applied the swap
    else:
        assert at_kill["pointer"] == chain.a_id
    if point in ("staged", "mid_upload", "uploaded_not_verified", "verified_not_deleted"):
        assert chain.a_id in at_kill["manifests"] and len(at_kill["manifests"]) == n

    # While the killed build's lease is live, another build is refused, naming the holder.
    with pytest.raises(BuildInProgressError, match=owner):
        Build(cfg, store, "intruder").compile()

    # The same owner's rerun, in a fresh process, completes.
    rerun = Child(
        tmp,
        f"rerun-{n}",
        seaweed,
        action="build",
        config=str(chain.config),
        run_id=f"run-{n}",
        owner=owner,
    )
    b_id = rerun.finish()["build_id"]
    b = latest(store, cfg.prefix)
    assert b.build_id == b_id != chain.a_id
    if point == "pointer_swap_applied_not_acknowledged":
        assert b_id == at_kill["pointer"]  # same inputs, same build: identical manifest
    assert_no_manifest_names_a_missing_object(store, cfg.prefix)
    assert_no_record_lost(store, b, tmp / "data" / "generated")
    assert not killed_run.exists()
    runs = cfg.staging_dir / "runs"
    assert not runs.exists() or not any(runs.iterdir())
    assert read_all(chain.a_uri, seaweed) == chain.a_records
    chain.a_id = b.build_id
    chain.a_records = published_hashes(store, b)
    assert len(chain.a_records) == b.counts.published_records


def _state_at_kill(store: Any, prefix: str) -> dict[str, Any]:
    pointer = json.loads(store.get_bytes(latest_manifest_key(prefix)))["build_id"]
    manifests = {
        o.key.rsplit("/", 1)[1].removesuffix(".json") for o in store.list(manifests_prefix(prefix))
    }
    return {"pointer": pointer, "manifests": manifests}
