"""A publishing process for the crash tests, run as ``python -m
dataset_assets_tests.reliability.child SPEC.json`` and SIGKILLed by the test.

SPEC (JSON): ``action`` (``build``, ``gc`` or ``migrate``), ``config`` (dataset.yaml path),
``settings`` (S3Settings fields), ``run_id``, ``owner``, optional ``gate`` and ``result``.

``gate`` = ``{"step", "outcome", "key_contains", "marker"}``: when the publish journal records
that step for a matching key, the process writes ``marker`` and waits there to be killed. The
gate is a :class:`Journal` handed to the code through its public parameters (``Build.journal``,
``migrate_file(publisher=...)``): nothing private is patched; the protocol runs unchanged up to
the moment the line is in the journal.
"""

import json
import sys
import time
from pathlib import Path
from typing import Any

from dataset_assets.core.config import load_config
from dataset_assets.core.migration import discover
from dataset_assets.pipeline.build import Build, build_dataset, check_quality_gates
from dataset_assets.pipeline.commit import probe_conditional_writes
from dataset_assets.pipeline.lease import BuildLease
from dataset_assets.pipeline.maintenance import collect_garbage, plan_gc
from dataset_assets.pipeline.migrate import migrate_file
from dataset_assets.storage import Journal, Publisher, S3ObjectStore, S3Settings


class GateJournal(Journal):
    """A journal that stops the process right after writing the gated line."""

    def __init__(self, path: Path, run_id: str, gate: dict[str, Any] | None) -> None:
        super().__init__(path, run_id)
        self.gate = gate

    def record(self, **kw: Any) -> dict[str, Any]:
        entry = super().record(**kw)
        g = self.gate
        if (
            g is not None
            and entry["step"] == g["step"]
            and entry["outcome"] == g["outcome"]
            and g["key_contains"] in entry["key"]
        ):
            # written whole under a temporary name, then renamed: the parent kills this
            # process as soon as the marker exists, and must never read it half written
            marker = Path(g["marker"])
            partial = marker.with_name(marker.name + ".partial")
            partial.write_text(json.dumps(entry))
            partial.replace(marker)
            while True:  # wait for SIGKILL
                time.sleep(1)
        return entry


class GatedBuild(Build):
    gate: dict[str, Any] | None = None

    def journal(self, step: str) -> Journal:
        plain = super().journal(step)
        return GateJournal(plain.path, plain.run_id, self.gate)


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    cfg = load_config(Path(spec["config"]))
    store = S3ObjectStore(cfg.bucket, S3Settings(**spec["settings"]), part_size=cfg.part_size)
    gate = spec.get("gate")
    out: dict[str, Any] = {}
    if spec["action"] == "build":
        if gate is None:
            out["build_id"] = _plain_build(cfg, store, spec)
        else:
            build = GatedBuild(cfg, store, spec["run_id"], owner=spec["owner"], hand_on=True)
            build.gate = gate
            result = build.compile()
            check_quality_gates(cfg, result)
            shards, _ = build.shards(result)
            export = build.export(shards)
            ordered = [e for s in ("train", "val", "test") for e in shards[s]]
            out["build_id"] = build.commit(result, ordered, export).build_id
    elif spec["action"] == "gc":
        probe_conditional_writes(store, cfg.prefix)
        with BuildLease(store, cfg.prefix, spec["owner"], ttl_s=120):
            plan = plan_gc(store, cfg.prefix, keep=1, grace=_zero(), min_age=_zero(), now=None)
            res = collect_garbage(store, plan, batch_size=2)
        out = {"deleted": len(res.deleted), "planned": len(plan.delete_keys)}
    elif spec["action"] == "migrate":
        ledger = cfg.migration.ledger_path
        journal = GateJournal(
            ledger.with_name(ledger.stem + "-journal.jsonl"), spec["run_id"], gate
        )
        with Publisher(store, max_in_flight=1, journal=journal) as pub:
            for cand in discover(cfg).candidates:
                o = migrate_file(cfg, store, cand.relative_path, publisher=pub)
                out[o.relative_path] = o.status
    else:
        raise SystemExit(f"unknown action {spec['action']}")
    if spec.get("result"):
        Path(spec["result"]).write_text(json.dumps(out))


def _plain_build(cfg: Any, store: S3ObjectStore, spec: dict[str, Any]) -> str:
    if spec.get("owner"):
        build = Build(cfg, store, spec["run_id"], owner=spec["owner"], hand_on=True)
        result = build.compile()
        check_quality_gates(cfg, result)
        shards, _ = build.shards(result)
        export = build.export(shards)
        ordered = [e for s in ("train", "val", "test") for e in shards[s]]
        return build.commit(result, ordered, export).build_id
    return build_dataset(cfg, store, run_id=spec["run_id"]).build_id


def _zero() -> Any:
    from datetime import timedelta

    return timedelta(0)


if __name__ == "__main__":
    main(sys.argv[1])
