"""The naive compile, as the old script did it: the peer the build must beat.

Reads every source file into one Python list with ``json``, converts ShareGPT ``conversations``
to ChatML ``messages``, drops exact duplicates with a ``set`` of the serialized messages, assigns
train/val/test with ``random``, writes size-bounded JSONL shard files, then per shard
``upload_file`` + HEAD (size and sha256 metadata) + delete local. No near dedup, no quarantine,
no manifest beyond a small JSON object.

    python bench/peers/naive_compile.py CORPUS S3_SETTINGS_JSON BUCKET PREFIX STAGING SHARD_BYTES
"""

import hashlib
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _s3 import client, ensure_bucket, upload_verify_delete  # noqa: E402

ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
}
SPLITS = {"train": 0.90, "val": 0.05, "test": 0.05}


def to_messages(rec: dict) -> list | None:
    if isinstance(rec.get("messages"), list):
        return rec["messages"]
    if isinstance(rec.get("conversations"), list):
        return [
            {"role": ROLES.get(t.get("from"), "user"), "content": t.get("value", "")}
            for t in rec["conversations"]
        ]
    return None


def main(
    corpus: Path, settings_json: str, bucket: str, prefix: str, staging: Path, shard_bytes: int
) -> None:
    s3 = client(settings_json)
    ensure_bucket(s3, bucket)
    staging.mkdir(parents=True, exist_ok=True)
    records = []
    for path in sorted(corpus.glob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    records.append(json.loads(line))
    seen: set[str] = set()
    rng = random.Random(0)
    pending: dict[str, list[str]] = {s: [] for s in SPLITS}
    sizes = {s: 0 for s in SPLITS}
    index = {s: 0 for s in SPLITS}
    published = {"records": len(records), "unique": 0, "shards": 0, "bytes": 0}

    def flush(split: str) -> None:
        if not pending[split]:
            return
        data = "".join(pending[split]).encode()
        digest = hashlib.sha256(data).hexdigest()
        path = staging / f"{split}-{index[split]:05d}.jsonl"
        path.write_bytes(data)
        key = f"{prefix}/{split}/{split}-{index[split]:05d}-{digest[:12]}.jsonl"
        published["bytes"] += upload_verify_delete(s3, bucket, key, path, digest)
        published["shards"] += 1
        index[split] += 1
        pending[split].clear()
        sizes[split] = 0

    for rec in records:
        messages = to_messages(rec)
        if messages is None:
            continue
        serialized = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        if serialized in seen:
            continue
        seen.add(serialized)
        published["unique"] += 1
        x = rng.random()
        split = "train" if x < SPLITS["train"] else "val" if x < 1 - SPLITS["test"] else "test"
        line = json.dumps({"messages": messages}, ensure_ascii=False) + "\n"
        if sizes[split] + len(line) > shard_bytes:
            flush(split)
        pending[split].append(line)
        sizes[split] += len(line)
    for split in SPLITS:
        flush(split)
    print(json.dumps(published))


if __name__ == "__main__":
    main(
        Path(sys.argv[1]),
        sys.argv[2],
        sys.argv[3],
        sys.argv[4],
        Path(sys.argv[5]),
        int(sys.argv[6]),
    )
