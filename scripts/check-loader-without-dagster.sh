#!/bin/bash
# CI check: the training-side loader works from a base install (no extras, no Dagster).
# Creates a throwaway venv, `pip install .` (base dependencies only), proves `import dagster`
# fails there, then imports dataset_assets.loader and iterates a small local-manifest dataset.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/loader-no-dagster.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PYTHON=${PYTHON:-python3}

"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q --disable-pip-version-check "$ROOT"

cd "$WORK"  # not the repo: the installed package must be what gets imported
"$WORK/venv/bin/python" - <<'PY'
import hashlib
import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("dagster") is not None:
    sys.exit("dagster is installed in the base environment: the check is meaningless")
try:
    import dagster  # noqa: F401
except ImportError:
    pass
else:
    sys.exit("import dagster unexpectedly succeeded")

import orjson

import dataset_assets.loader as loader_pkg
from dataset_assets.core.manifest import BuildCounts, Manifest, ShardEntry
from dataset_assets.loader import S3DatasetLoader

assert "site-packages" in loader_pkg.__file__, loader_pkg.__file__
assert "dagster" not in sys.modules, "importing the loader pulled in dagster"
assert "torch" not in sys.modules, "importing the loader pulled in torch"

root = Path("dataset")
shards, expected = [], set()
for index, size in enumerate([7, 5, 9]):
    lines = []
    for n in range(size):
        key = f"{index}:{n}"
        expected.add(key)
        lines.append(orjson.dumps({
            "messages": [{"role": "user", "content": f"hi {key}"},
                         {"role": "assistant", "content": "hello"}],
            "metadata": {"family": "fam", "source": "fam.jsonl", "line": key},
        }))
    data = b"\n".join(lines) + b"\n"
    sha = hashlib.sha256(data).hexdigest()
    rel = f"final_dataset/train/train-{index:05d}-{sha[:12]}.jsonl"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)
    shards.append(ShardEntry(key=rel, uri=rel, bytes=len(data), sha256=sha, records=size,
                             families={"fam": size}, split="train",
                             shard_id=f"train-{index:05d}-{sha[:12]}"))
manifest = Manifest(build_id="local0000000000", bucket="local", prefix="final_dataset",
                    config_digest="0" * 64, shards=shards,
                    counts=BuildCounts(per_family={"fam": 21}, per_split={"train": 21}))
(root / "manifest.json").write_bytes(manifest.to_json())

loader = S3DatasetLoader(root / "manifest.json", world_size=2, rank=0, seed=1)
other = loader.select(rank=1)
got = [r["metadata"]["line"] for r in loader] + [r["metadata"]["line"] for r in other]
assert len(loader) == len(other) == 11, (len(loader), len(other))
assert set(got) == expected, sorted(set(got) ^ expected)
assert "dagster" not in sys.modules
print(f"ok: dataset_assets.loader without dagster read {len(got)} records on 2 ranks")
PY
