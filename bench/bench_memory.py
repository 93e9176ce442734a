"""Peak memory and throughput of the end-to-end compile at two corpus sizes, against a local
SeaweedFS started here, next to a naive in-memory compile (list + json module + set).

    python bench/bench_memory.py [--sizes-gb 1 4] [--work .local/bench-memory] [--port-base 18400]

Each run is a separate child process; its peak RSS comes from ``os.wait4`` (ru_maxrss). Prints,
per size: peak RSS, MB/s and records/s of ``build_dataset`` (sources → normalize → exact + near
dedup → split → shards published and verified in S3 → export → manifest) and of the naive
baseline (load all lines with ``json``, dedup exact hashes in a ``set``, split, write local
JSONL per split; no near dedup, no upload), then the ratio of the peaks between the largest and
the smallest size (target ≤ 1.3 for the streaming build, peak ≤ 1.5 GiB).
"""

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
GiB = 1024**3


def _corpus(work: Path, gb: float) -> Path:
    from bench.gen_corpus import write_jsonl

    folder = work / f"corpus-{gb:g}gb"
    done = folder / ".done"
    if not done.exists():
        per_file = min(256 * 1024**2, int(gb * GiB))
        files = max(1, round(gb * GiB / per_file))
        for i in range(files):
            write_jsonl(folder / f"part-{i:03d}.jsonl", per_file, seed=1000 + i)
        done.write_text("ok")
    return folder


def child_build(corpus: Path, settings_json: str, bucket: str, staging: Path) -> None:
    from dataset_assets.core.config import parse_config
    from dataset_assets.pipeline import build_dataset
    from dataset_assets.storage import S3ObjectStore, S3Settings

    cfg = parse_config(
        {
            "bucket": bucket,
            "families": [{"name": "gen", "paths": [str(corpus / "*.jsonl")]}],
            "shard_size": 256 * 1024**2,
            "staging_dir": str(staging),
            "manifest_path": str(staging / "manifest.json"),
        },
        staging,
    )
    settings = S3Settings(**json.loads(settings_json))
    store = S3ObjectStore(cfg.bucket, settings, part_size=cfg.part_size)
    manifest = build_dataset(cfg, store)
    print(json.dumps({"records": manifest.counts.input_records}))


def child_naive(corpus: Path, out: Path) -> None:
    records = []
    for path in sorted(corpus.glob("*.jsonl")):
        with path.open() as fh:
            records += [json.loads(line) for line in fh]
    seen: set[str] = set()
    out.mkdir(parents=True, exist_ok=True)
    files = {s: (out / f"{s}.jsonl").open("w") for s in ("train", "val", "test")}
    for rec in records:
        h = hashlib.sha256(json.dumps(rec["messages"], sort_keys=True).encode()).hexdigest()
        if h in seen:
            continue
        seen.add(h)
        x = int(h[:8], 16) / 2**32
        split = "train" if x < 0.9 else "val" if x < 0.95 else "test"
        files[split].write(json.dumps(rec) + "\n")
    for fh in files.values():
        fh.close()
    print(json.dumps({"records": len(records)}))


def _measure(args: list[str]) -> tuple[float, int, int]:
    """(seconds, peak RSS bytes, records) of one child run."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"child {args[0]} failed with {proc.returncode}")
    records = json.loads(out.decode().strip().splitlines()[-1])["records"]
    return elapsed, usage.ru_maxrss * 1024, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes-gb", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--work", type=Path, default=ROOT / ".local" / "bench-memory")
    parser.add_argument("--port-base", type=int, default=18400)
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    from dataset_assets.storage import SeaweedServer

    work = args.work.resolve()
    server = SeaweedServer(work / "seaweed", port_base=args.port_base)
    server.start()
    settings_json = json.dumps(dataclasses.asdict(server.settings()))
    peaks: dict[float, int] = {}
    try:
        print(
            f"{'size':>6} {'path':>8} {'MB':>7} {'records':>9} {'s':>7} {'MB/s':>6} "
            f"{'rec/s':>7} {'peak RSS':>9}"
        )
        for gb in args.sizes_gb:
            corpus = _corpus(work, gb)
            mb = sum(p.stat().st_size for p in corpus.glob("*.jsonl")) / 1e6
            runs = [
                (
                    "build",
                    [
                        "build",
                        str(corpus),
                        settings_json,
                        f"bench-{uuid.uuid4().hex[:10]}",
                        str(work / f"staging-{gb:g}"),
                    ],
                )
            ]
            if not args.skip_naive:
                runs.append(("naive", ["naive", str(corpus), str(work / f"naive-{gb:g}")]))
            for name, child_args in runs:
                secs, peak, records = _measure(child_args)
                if name == "build":
                    peaks[gb] = peak
                print(
                    f"{gb:5g}G {name:>8} {mb:7.0f} {records:9d} {secs:7.1f} {mb / secs:6.1f} "
                    f"{records / secs:7.0f} {peak / 2**20:7.0f}MiB",
                    flush=True,
                )
        if len(peaks) > 1:
            lo, hi = min(peaks), max(peaks)
            print(
                f"build peak RSS ratio {hi:g} GB / {lo:g} GB: {peaks[hi] / peaks[lo]:.2f} "
                f"(target <= 1.3); max peak {max(peaks.values()) / GiB:.2f} GiB (target <= 1.5)"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "build":
        child_build(Path(sys.argv[2]), sys.argv[3], sys.argv[4], Path(sys.argv[5]))
    elif len(sys.argv) > 1 and sys.argv[1] == "naive":
        child_naive(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
