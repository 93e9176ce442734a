"""docs/iam-policy.json lists exactly the S3 actions the project needs: every S3 request of a
real build (twice), verify, gc (with an abandoned multipart upload), a training read with
S3DatasetLoader and a migration is recorded and mapped to its IAM action.

Two recorders: a botocore ``before-call`` hook on the build store's client (what the build's
own code asks for) and a recording proxy in front of SeaweedFS that sees every request of every
client of the process (worker stores, the loader's readers). The proxy's view is the one
checked; the hook's operations must be among it (the proxy's request→operation mapping is
right for everything the hook saw).
"""

import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dataset_assets.core.config import load_config
from dataset_assets.loader import S3DatasetLoader
from dataset_assets.pipeline import build_dataset
from dataset_assets.pipeline.maintenance import collect_garbage, plan_gc, verify_build
from dataset_assets.pipeline.migrate import migrate_all
from dataset_assets.storage import S3ObjectStore, S3Settings
from dataset_assets_tests.builds import config_and_store, write_build_config
from dataset_assets_tests.security.servers import RelayProxy

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "docs" / "iam-policy.json"

# S3 API operation -> the IAM action that authorizes it (AWS "Actions defined by Amazon S3").
ACTION_OF = {
    "HeadBucket": "s3:ListBucket",
    "CreateBucket": "s3:CreateBucket",
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "HeadObject": "s3:GetObject",
    "GetObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CopyObject": "s3:PutObject",  # and s3:GetObject on the source, same bucket
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "UploadPartCopy": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListParts": "s3:ListMultipartUploadParts",
    "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject",
}


def policy_s3_actions() -> set[str]:
    policy = json.loads(POLICY.read_text())
    actions: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        found = statement["Action"]
        actions.update([found] if isinstance(found, str) else found)
    assert not any("*" in a for a in actions), "wildcards are not least privilege"
    return {a for a in actions if a.startswith("s3:")}


def _hook(store: S3ObjectStore, seen: set[str]) -> None:
    def record(model: Any, **_: Any) -> None:
        seen.add(model.name)

    store.client.meta.events.register("before-call.s3", record)


def _change_a_source(root: Path) -> None:
    source = sorted((root / "data" / "generated").glob("*.jsonl"))[0]
    line = {
        "messages": [
            {"role": "user", "content": f"new {uuid.uuid4().hex}"},
            {"role": "assistant", "content": "an answer long enough to keep"},
        ]
    }
    with source.open("a") as f:
        f.write(json.dumps(line) + "\n")


def test_every_s3_call_of_build_load_migrate_gc_is_inside_the_policy(
    seaweed: S3Settings, tmp_path: Path
) -> None:
    bucket = f"iam-{uuid.uuid4().hex[:12]}"
    config = write_build_config(
        tmp_path,
        bucket,
        records_per_family=40,
        quarantine_max_ratio=0.5,
        compile={"workers": 1},
        migration={"stable_seconds": 0},
    )
    migrated = tmp_path / "data" / "old" / "chats.jsonl"
    migrated.parent.mkdir(parents=True)
    migrated.write_bytes(b'{"messages": [{"role": "user", "content": "old"}]}\n')
    old = time.time() - 3600
    os.utime(migrated, (old, old))
    direct = S3ObjectStore(bucket, seaweed)  # the test's own setup calls, not recorded
    hooked: set[str] = set()
    with RelayProxy(str(seaweed.endpoint_url)) as proxy:
        settings = S3Settings(
            endpoint_url=proxy.endpoint_url,
            region=seaweed.region,
            access_key_id=seaweed.access_key_id,
            secret_access_key=seaweed.secret_access_key,
            addressing_style="path",
        )
        cfg, store = config_and_store(config, settings)  # creates the bucket
        _hook(store, hooked)
        build_dataset(cfg, store)
        time.sleep(1.1)  # LastModified has 1 s resolution: keep the builds ordered
        _change_a_source(tmp_path)
        cfg = load_config(config)
        latest = build_dataset(cfg, store)

        key = f"{cfg.prefix}/train/train-99999-abandoned.jsonl"
        direct.client.create_multipart_upload(Bucket=bucket, Key=key)
        plan = plan_gc(
            store,
            cfg.prefix,
            1,
            grace=timedelta(0),
            min_age=timedelta(0),
            now=datetime.now(UTC) + timedelta(seconds=5),
        )
        assert plan.delete_keys and plan.abort_uploads, "gc had nothing to do: test proves little"
        collect_garbage(store, plan)
        assert verify_build(store, latest, readback=True) == []

        loader = S3DatasetLoader(
            f"s3://{bucket}/{cfg.prefix}/manifest.json", settings=settings, split="train"
        )
        loader.set_epoch(0)
        assert sum(1 for _ in loader) > 0

        report = migrate_all(cfg, lambda: store)
        assert report.ok and [o.relative_path for o in report.outcomes] == ["old/chats.jsonl"]

        seen = proxy.operations()
    print("S3 operations seen:", sorted(seen), "hooked:", sorted(hooked))
    unknown = sorted(op for op in seen if op not in ACTION_OF)
    assert not unknown, f"S3 operations without an IAM mapping in this test: {unknown}"
    assert hooked <= seen, f"the proxy missed operations the client hook saw: {hooked - seen}"
    used = {ACTION_OF[op] for op in seen}
    allowed = policy_s3_actions()
    assert used <= allowed, f"calls outside docs/iam-policy.json: {sorted(used - allowed)}"
    assert allowed == used, f"policy grants unused actions: {sorted(allowed - used)}"
