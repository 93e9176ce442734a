"""Loader benchmark: S3DatasetLoader vs plain boto3 iter_lines vs HF datasets streaming.

Starts its own SeaweedFS (``weed mini`` on free loopback ports, data in a temp dir), publishes
one dataset (default 150k chat records, ~1 KB each, 16 MiB shards: shards + immutable manifest +
latest pointer) and reads the train split back, side by side in one run:

* ``S3DatasetLoader`` — sha256 verified per shard, read-ahead on; unshuffled and shuffled;
* plain ``get_object()['Body'].iter_lines()`` + ``orjson.loads``, shard after shard (the floor);
* Hugging Face ``datasets`` streaming the same JSONL shards from local files (its s3fs path
  needs a newer s3fs than this machine has).

Every reader must return the same number of records. Prints records/s (best of ``--repeat``)
and the ratios. Targets (issue #4): loader ≥ 0.8× plain, ≥ 2× HF streaming.

    .venv/bin/python bench/bench_loader.py [--records 150000] [--repeat 3]
"""

import argparse
import hashlib
import random
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:  # running from a checkout without an installed package
    sys.path.insert(0, _REPO)

import boto3  # noqa: E402 - bench/ is the one place outside storage/ allowed to use boto3
import botocore.config  # noqa: E402
import orjson  # noqa: E402

from dataset_assets.core.layout import (  # noqa: E402
    build_manifest_key,
    latest_manifest_key,
    shard_id,
    shard_key,
)
from dataset_assets.core.manifest import BuildCounts, Manifest, ShardEntry  # noqa: E402
from dataset_assets.loader import S3DatasetLoader  # noqa: E402
from dataset_assets.storage import S3ObjectStore, S3Settings, SeaweedServer  # noqa: E402

PREFIX = "final_dataset"
SHARD_BYTES = 16 * 1024 * 1024
FAMILIES = ("long_running_therapy", "coding_help", "travel", "cooking", "math_tutor")
_TEXT = (
    "the of and to in is you that it he was for on are as with his they at be this have from "
    "or one had by word but not what all were we when your can said there use an each which she "
    "do how their if will up other about out many then them these so some her would make like"
)
WORDS = tuple(_TEXT.split(" "))


def free_port_block(count: int = 12) -> int:
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(21000, 29000)
        ok = True
        for port in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free block of loopback ports")


def conversation(rng: random.Random, n: int) -> bytes:
    family = FAMILIES[n % len(FAMILIES)]
    messages = [{"role": "system", "content": "You are a helpful assistant."}]
    for _turn in range(rng.randint(1, 3)):
        messages.append(
            {"role": "user", "content": " ".join(rng.choices(WORDS, k=rng.randint(20, 60)))}
        )
        messages.append(
            {"role": "assistant", "content": " ".join(rng.choices(WORDS, k=rng.randint(30, 90)))}
        )
    record = {
        "messages": messages,
        "metadata": {"family": family, "source": f"{family}.jsonl", "line": n},
    }
    return orjson.dumps(record)


def publish(store: S3ObjectStore, records: int, workdir: Path) -> tuple[str, list[Path], list[str]]:
    """Write shards locally, upload them and the manifests; returns (uri, files, keys)."""
    rng = random.Random(0)
    shards: list[ShardEntry] = []
    files: list[Path] = []
    per_family: dict[str, int] = {}
    buf: list[bytes] = []
    size = 0
    fams: dict[str, int] = {}

    def flush() -> None:
        nonlocal buf, size, fams
        data = b"".join(buf)
        sha = hashlib.sha256(data).hexdigest()
        sid = shard_id("train", len(shards), sha)
        key = shard_key(PREFIX, "train", sid)
        path = workdir / f"{sid}.jsonl"
        path.write_bytes(data)
        files.append(path)
        store.put_bytes(key, data)
        shards.append(
            ShardEntry(
                key=key,
                uri=store.uri(key),
                bytes=len(data),
                sha256=sha,
                records=len(buf),
                families=dict(fams),
                split="train",
                shard_id=sid,
            )
        )
        buf, size, fams = [], 0, {}

    for n in range(records):
        line = conversation(rng, n) + b"\n"
        if size + len(line) > SHARD_BYTES and buf:
            flush()
        buf.append(line)
        size += len(line)
        fam = FAMILIES[n % len(FAMILIES)]
        fams[fam] = fams.get(fam, 0) + 1
        per_family[fam] = per_family.get(fam, 0) + 1
    flush()
    manifest = Manifest(
        build_id=hashlib.sha256(str(records).encode()).hexdigest()[:16],
        bucket=store.bucket,
        prefix=PREFIX,
        config_digest="0" * 64,
        shards=shards,
        counts=BuildCounts(
            published_records=records, per_split={"train": records}, per_family=per_family
        ),
    )
    store.put_bytes(build_manifest_key(PREFIX, manifest.build_id), manifest.to_json())
    store.put_bytes(latest_manifest_key(PREFIX), manifest.to_json())
    return store.uri(latest_manifest_key(PREFIX)), files, [s.key for s in shards]


def read_loader(uri: str, settings: S3Settings, shuffle: bool) -> int:
    loader = S3DatasetLoader(uri, settings=settings, shuffle=shuffle)
    n = 0
    for _ in loader:
        n += 1
    return n


def read_plain(settings: S3Settings, bucket: str, keys: list[str]) -> int:
    client = boto3.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        config=botocore.config.Config(s3={"addressing_style": "path"}),
    )
    n = 0
    for key in keys:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        for line in body.iter_lines():
            orjson.loads(line)
            n += 1
    return n


def read_hf(files: list[Path], shuffle: bool) -> int:
    from datasets import load_dataset

    ds = load_dataset("json", data_files=[str(f) for f in files], split="train", streaming=True)
    if shuffle:
        ds = ds.shuffle(seed=0, buffer_size=10_000)
    n = 0
    for _ in ds:
        n += 1
    return n


def timed(fn: Callable[[], int], repeat: int) -> tuple[int, list[float]]:
    counts, times = set(), []
    for _ in range(repeat):
        t0 = time.perf_counter()
        counts.add(fn())
        times.append(time.perf_counter() - t0)
    if len(counts) != 1:
        raise RuntimeError(f"record counts differ between repeats: {counts}")
    return counts.pop(), times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=150_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        root = Path(tmp)
        server = SeaweedServer(root / "weed", port_base=free_port_block())
        (root / "weed").mkdir()
        (root / "shards").mkdir()
        server.start()
        try:
            settings = server.settings()
            store = S3ObjectStore("bench-loader", settings)
            store.ensure_bucket()
            t0 = time.perf_counter()
            uri, files, keys = publish(store, args.records, root / "shards")
            total_mb = sum(f.stat().st_size for f in files) / 1e6
            print(
                f"published {args.records:,} records, {len(keys)} shards, {total_mb:.0f} MB "
                f"in {time.perf_counter() - t0:.1f} s to {settings.endpoint_url}"
            )
            readers: list[tuple[str, Callable[[], int]]] = [
                ("S3DatasetLoader (sha256, no shuffle)", lambda: read_loader(uri, settings, False)),
                ("S3DatasetLoader (sha256, shuffle 10k)", lambda: read_loader(uri, settings, True)),
                (
                    "plain get_object().iter_lines()+orjson",
                    lambda: read_plain(settings, store.bucket, keys),
                ),
                ("HF datasets streaming (local JSONL)", lambda: read_hf(files, False)),
                ("HF streaming, shuffle 10k (local JSONL)", lambda: read_hf(files, True)),
            ]
            results: dict[str, float] = {}
            for name, fn in readers:
                n, times = timed(fn, args.repeat)
                if n != args.records:
                    raise RuntimeError(f"{name} read {n} records, expected {args.records}")
                best = n / min(times)
                results[name] = best
                worst = n / max(times)
                print(
                    f"{name:42s} {best:>10,.0f} rec/s  "
                    f"(range {worst:,.0f}–{best:,.0f}, {args.repeat} runs)"
                )
        finally:
            server.stop()
    plain = results["plain get_object().iter_lines()+orjson"]
    hf = results["HF datasets streaming (local JSONL)"]
    for name in list(results)[:2]:
        print(
            f"{name}: {results[name] / plain:.2f}× plain (target ≥ 0.8), "
            f"{results[name] / hf:.2f}× HF streaming (target ≥ 2)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
