"""Stage 2 of the compile (global dedup in DuckDB) at 1 M – 10 M records, without any text.

Stage 2 runs on one machine and bounds the cost of a 50–100 M conversation build, so this
measures it alone, on synthesized partition indexes (``index.parquet``, the schema and writer
options of stage 1's ``_IndexWriter``):

* ``P`` partitions × ``--per-partition`` records (50 k ≈ one ~420 MB source file);
* random 32-byte content hashes and random MinHash signatures (``num_perm`` slots of the
  ``DedupOptions()`` defaults), split code 1/2/3 at random per content hash;
* ~4 % exact copies: a record of an earlier partition copied whole (same hash, signature, split —
  as stage 1 would give for the same text);
* ~4 % near copies: an earlier record's signature with ~10 % of its slots replaced (estimated
  Jaccard ≈ 0.9), its own content hash and split;
* LSH band keys from the real ``Signer(...).band_keys`` with the ``DedupOptions()`` parameters.

Copies only copy *original* records (never a copy), so every injected copy is dropped by
exactly one rule: exact found should equal exact injected, near found should equal near
injected (a sanity check of the synthesis, not a recall measurement: see bench_dedup.py).

Per size, ``cluster`` (with the dedup sidecar and each partition's provenance written, as the
compile does) and ``find_leaks`` run in a fresh child process (threads and memory limit of
``CompileOptions()`` unless given) and report wall s, CPU s (``getrusage`` of the child: DuckDB's
threads included), peak RSS (``ru_maxrss`` and a /proc VmRSS sampler per step) and the peak size of
DuckDB's work folder (spill), sampled every 0.2 s. Partitions are generated once, deterministically
per partition, so a larger size reuses the smaller one's files.

    .venv/bin/python bench/bench_dedup_scale.py --records 1000000 4000000 [10000000]
        [--per-partition 50000] [--threads 2] [--memory-mib 512] [--keep]

Prints a Markdown table and a linear fit (s per million records) and writes
``bench/results/bench_dedup_scale-<time>.json``.
"""

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dataset_assets.core import cluster as cluster_module  # noqa: E402
from dataset_assets.core.cluster import (  # noqa: E402
    ClusterInput,
    cluster,
    find_leaks,
    write_provenance,
)
from dataset_assets.core.config import CompileOptions, DedupOptions  # noqa: E402
from dataset_assets.core.minhash import Signer  # noqa: E402
from dataset_assets.core.partition import _index_schema  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DATA_ROOT = Path("/tmp/dscale")
ROW_GROUP = 4096  # stage 1 writes one row group per batch of this many rows
EXACT_SHARE = 0.04
NEAR_SHARE = 0.04
NEAR_CHANGED = 0.10  # share of signature slots a near copy changes
INDEX_BYTES_PER_RECORD = 820  # 4 + 8 + 32 + 1 + 32 × 8 + 128 × 4, uncompressed hashes
SPILL_BYTES_PER_RECORD = 1600  # band rows (16 B × 32) sorted/joined + tables, generous
MARGIN_BYTES = 4 << 30


# -- synthesis ------------------------------------------------------------------------------


def _base(seed: int, part: int, n: int, num_perm: int) -> dict[str, np.ndarray]:
    """Partition ``part``'s records before copies are injected (deterministic), and which of its
    positions get copies (none in partition 0: copies come from earlier partitions)."""
    rng = np.random.default_rng([seed, part])
    h = np.frombuffer(rng.bytes(32 * n), dtype=np.uint8).reshape(n, 32).copy()
    sig = rng.integers(0, 1 << 32, size=(n, num_perm), dtype=np.uint32)
    split = rng.integers(1, 4, size=n, dtype=np.uint8)
    kind = np.zeros(n, dtype=np.uint8)  # 0 original, 1 exact copy, 2 near copy
    if part > 0:
        pos = rng.permutation(n)
        n_exact, n_near = round(n * EXACT_SHARE), round(n * NEAR_SHARE)
        kind[pos[:n_exact]] = 1
        kind[pos[n_exact : n_exact + n_near]] = 2
    return {"h": h, "sig": sig, "split": split, "kind": kind}


def _partition(seed: int, part: int, n: int, num_perm: int) -> dict[str, np.ndarray]:
    """Partition ``part`` with its copies: exact copies of originals of one earlier partition,
    near copies of originals of another (both chosen at random)."""
    rec = _base(seed, part, n, num_perm)
    if part == 0:
        return rec
    rng = np.random.default_rng([seed, part, 1])
    for kind in (1, 2):
        where = np.flatnonzero(rec["kind"] == kind)
        src_part = int(rng.integers(0, part))
        src = _base(seed, src_part, n, num_perm)
        originals = np.flatnonzero(src["kind"] == 0)
        pick = rng.choice(originals, size=len(where), replace=False)
        sig = src["sig"][pick].copy()
        if kind == 1:
            rec["h"][where] = src["h"][pick]
            rec["split"][where] = src["split"][pick]
        else:
            changed = max(1, round(num_perm * NEAR_CHANGED))
            slots = np.argsort(rng.random((len(where), num_perm)), axis=1)[:, :changed]
            fresh = rng.integers(0, 1 << 32, size=slots.shape, dtype=np.uint32)
            np.put_along_axis(sig, slots, fresh, axis=1)
        rec["sig"][where] = sig
    return rec


def write_partition(path: Path, rec: dict[str, np.ndarray], options: DedupOptions) -> None:
    """``index.parquet`` as stage 1 writes it (same schema, compression, dictionary, groups)."""
    schema = _index_schema(True, options.num_perm, options.bands)
    signer = Signer(options.num_perm, options.bands, options.shingle_words)
    n = len(rec["h"])
    keys = np.ascontiguousarray(signer.band_keys(rec["sig"])).view(np.int64)
    sigs = np.ascontiguousarray(rec["sig"], dtype=np.uint32)
    tmp = path.with_suffix(".tmp")
    writer = pq.ParquetWriter(
        tmp,
        schema,
        compression={f.name: "none" if f.name in ("bands", "sig") else "zstd" for f in schema},
        use_dictionary=["split"],
    )
    try:
        for lo in range(0, n, ROW_GROUP):
            hi = min(n, lo + ROW_GROUP)
            ords = np.arange(lo, hi, dtype=np.uint32)
            cols = [
                pa.array(ords, pa.uint32()),
                pa.array(ords.astype(np.int64) + 1, pa.int64()),
                pa.Array.from_buffers(
                    pa.binary(32), hi - lo, [None, pa.py_buffer(rec["h"][lo:hi].tobytes())]
                ),
                pa.array(rec["split"][lo:hi], pa.uint8()),
                pa.FixedSizeListArray.from_arrays(
                    pa.array(keys[lo:hi].reshape(-1), pa.int64()), options.bands
                ),
                pa.FixedSizeListArray.from_arrays(
                    pa.array(sigs[lo:hi].reshape(-1), pa.uint32()), options.num_perm
                ),
            ]
            writer.write_table(pa.Table.from_arrays(cols, schema=schema))
    finally:
        writer.close()
    tmp.rename(path)


def ensure_partitions(
    data: Path, parts: int, per: int, seed: int, options: DedupOptions
) -> tuple[list[Path], dict[str, int], float]:
    """The first ``parts`` partitions (generated if missing); injected copy counts; gen s."""
    data.mkdir(parents=True, exist_ok=True)
    paths, injected, start = [], {"exact": 0, "near": 0}, time.perf_counter()
    for p in range(parts):
        path = data / f"p{p:05d}" / "index.parquet"
        counts = path.with_name("counts.json")
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            rec = _partition(seed, p, per, options.num_perm)
            write_partition(path, rec, options)
            kinds = rec["kind"]
            counts.write_text(
                json.dumps({"exact": int((kinds == 1).sum()), "near": int((kinds == 2).sum())})
            )
        c = json.loads(counts.read_text())
        injected["exact"] += c["exact"]
        injected["near"] += c["near"]
        paths.append(path)
    return paths, injected, time.perf_counter() - start


# -- measurement (child process) ------------------------------------------------------------


def _dir_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):  # a spill file removed meanwhile
                total += os.stat(os.path.join(root, name)).st_size
    return total


def _vmrss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Sampler:
    """Peak VmRSS of this process and peak bytes under ``folder``, sampled in a thread."""

    def __init__(self, folder: Path, every: float = 0.2) -> None:
        self.folder, self.every = folder, every
        self.peak_rss = self.peak_dir = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.peak_rss = max(self.peak_rss, _vmrss())
            self.peak_dir = max(self.peak_dir, _dir_bytes(self.folder))
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _TracedConnection:
    """A DuckDB connection that records how long each ``execute`` took (and which failed)."""

    def __init__(self, con: Any, log: list[dict[str, Any]]) -> None:
        self._con, self._log = con, log

    def execute(self, sql: str, *args: Any) -> Any:
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"sql": " ".join(sql.split())[:110]}
        self._log.append(entry)
        try:
            return self._con.execute(sql, *args)
        finally:
            entry["s"] = round(time.perf_counter() - t0, 3)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def _trace_statements(log: list[dict[str, Any]]) -> None:
    """Time every statement ``cluster``/``find_leaks`` run (wraps the module's connection
    factory; the statements and settings are unchanged)."""
    connect = cluster_module._connect

    def traced(work: Path, threads: int, memory_mib: int) -> Any:
        return _TracedConnection(connect(work, threads, memory_mib), log)

    cluster_module._connect = traced  # type: ignore[assignment]


def _failure(exc: BaseException, t0: float, log: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
        "failed_after_s": time.perf_counter() - t0,
        "failed_statement": log[-1]["sql"] if log else None,
    }


def _measured(t0: float, cpu: float, s: "Sampler", statements: list[Any]) -> dict[str, Any]:
    """One stage's measurements, since ``t0`` (wall) and ``cpu`` (this process's CPU)."""
    return {
        "wall_s": time.perf_counter() - t0,
        "cpu_s": _cpu() - cpu,
        "peak_rss_sampled": s.peak_rss,
        "ru_maxrss_after": _maxrss(),
        "peak_spill_bytes": s.peak_dir,
        "statements": statements,
    }


def stage2(
    paths: list[Path], work: Path, threads: int, memory_mib: int, docs_view: str
) -> dict[str, Any]:
    """Run ``cluster`` then ``find_leaks`` as the compile does; measure each (a step that fails,
    e.g. out of memory, is reported with the statement it failed in)."""
    options = DedupOptions()
    inputs = [ClusterInput(p, "bench", f"file-{i:05d}.jsonl") for i, p in enumerate(paths)]
    work.mkdir(parents=True, exist_ok=True)
    sidecar, provenance = work / "dedup.jsonl.zst", work / "provenance.jsonl.zst"
    buckets = work / "buckets.parquet"
    out: dict[str, Any] = {"rss_before": _vmrss()}
    log: list[dict[str, Any]] = []
    _trace_statements(log)
    cpu, t0 = _cpu(), time.perf_counter()
    with Sampler(work / "duck") as s:
        try:
            res = cluster(
                inputs,
                options,
                work / "duck",
                threads=threads,
                memory_mib=memory_mib,
                dedup_sidecar=sidecar,
                buckets=buckets,
            )
            chunks = [work / "provenance" / f"{i:05d}.jsonl.zst" for i in range(len(inputs))]
            write_provenance(
                inputs,
                res.decisions,
                chunks,
                work / "duck-provenance",
                threads=threads,
                memory_mib=memory_mib,
            )
            with provenance.open("wb") as fh:  # concatenated, as the compile does
                for chunk in chunks:
                    fh.write(chunk.read_bytes())
        except duckdb.Error as exc:
            res, failed = None, _failure(exc, t0, log)
    out["cluster"] = _measured(t0, cpu, s, list(log))
    if res is None:
        out["cluster"].update(failed)
        return out
    out["cluster"].update(
        {
            "exact_found": res.exact_duplicates,
            "near_found": res.near_duplicates,
            "candidate_pairs": res.candidate_pairs,
            "verified_pairs": res.verified_pairs,
            "sidecar_bytes": sidecar.stat().st_size,
            "provenance_bytes": provenance.stat().st_size,
        }
    )
    first = len(log)
    cpu, t0 = _cpu(), time.perf_counter()
    with Sampler(work / "leaks") as s:
        try:
            exact, near, _ = find_leaks(
                inputs,
                res.decisions,
                options,
                work / "leaks",
                threads=threads,
                memory_mib=memory_mib,
                buckets=buckets,
            )
            leaks: dict[str, Any] = {"exact_leaks": exact, "near_leaks": near}
        except duckdb.Error as exc:
            leaks = _failure(exc, t0, log[first:])
    out["find_leaks"] = {**_measured(t0, cpu, s, log[first:]), **leaks}
    return out


# -- driver ---------------------------------------------------------------------------------


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _mib(n: float) -> str:
    return f"{n / (1 << 20):,.0f}"


def run_size(
    data: Path, records: int, per: int, seed: int, threads: int, memory_mib: int, docs_view: str
) -> dict[str, Any] | None:
    options = DedupOptions()
    parts = -(-records // per)
    have = len(list(data.glob("p*/index.parquet"))) if data.exists() else 0
    need = (max(0, parts - have) * per * INDEX_BYTES_PER_RECORD) + (
        parts * per * SPILL_BYTES_PER_RECORD
    )
    free = _free_bytes(DATA_ROOT.parent)
    if need + MARGIN_BYTES > free:
        print(
            f"skip {records:,}: needs ~{_mib(need)} MiB (+{_mib(MARGIN_BYTES)} margin), "
            f"{_mib(free)} MiB free",
            flush=True,
        )
        return None
    paths, injected, gen_s = ensure_partitions(data, parts, per, seed, options)
    index_bytes = sum(p.stat().st_size for p in paths)
    print(
        f"{parts * per:,} records in {parts} partitions ({_mib(index_bytes)} MiB index, "
        f"generated in {gen_s:.1f} s); stage 2 …",
        flush=True,
    )
    work = data.parent / f"work-{parts * per}"
    shutil.rmtree(work, ignore_errors=True)
    cmd = [
        sys.executable,
        __file__,
        "--_stage2",
        str(work),
        str(threads),
        str(memory_mib),
        docs_view,
        *map(str, paths),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    process_wall = time.perf_counter() - t0
    shutil.rmtree(work, ignore_errors=True)
    if proc.returncode:
        print(proc.stderr, file=sys.stderr)
        raise SystemExit(f"stage 2 at {records:,} records failed ({proc.returncode})")
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "records": parts * per,
        "partitions": parts,
        "index_bytes": index_bytes,
        "generate_s": gen_s,
        "injected": injected,
        "process_wall_s": process_wall,
        **m,
    }


def _ok(r: dict[str, Any]) -> bool:
    return "error" not in r["cluster"] and "error" not in r.get("find_leaks", {"error": 1})


def report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    print()
    print(
        "| records | step | wall s | CPU s | CPU/wall | peak RSS MiB (sampled / ru_maxrss) "
        "| peak spill MiB | µs/record | exact found/injected | near found/injected |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for step in ("cluster", "find_leaks"):
            if step not in r:
                continue
            s = r[step]
            if "error" in s:
                dup = f"**failed after {s['failed_after_s']:.1f} s**: {s['error'][:60]} | "
                dup += f"in `{(s['failed_statement'] or '')[:50]}`"
            elif step == "cluster":
                dup = (
                    f"{s['exact_found']:,}/{r['injected']['exact']:,} | "
                    f"{s['near_found']:,}/{r['injected']['near']:,}"
                )
            else:
                dup = f"leaks: {s['exact_leaks']} exact | {s['near_leaks']} near"
            print(
                f"| {r['records']:,} | {step} | {s['wall_s']:.1f} | {s['cpu_s']:.1f} | "
                f"{s['cpu_s'] / s['wall_s']:.2f} | {_mib(s['peak_rss_sampled'])} / "
                f"{_mib(s['ru_maxrss_after'])} | {_mib(s['peak_spill_bytes'])} | "
                f"{s['wall_s'] / r['records'] * 1e6:.1f} | {dup} |"
            )
    print()
    for r in rows:
        for step in ("cluster", "find_leaks"):
            top = sorted(r.get(step, {}).get("statements", []), key=lambda e: -e.get("s", 0))
            if not top:
                continue
            slow = "; ".join(f"{e.get('s', 0):.1f} s `{e['sql'][:60]}`" for e in top[:4])
            print(f"{r['records']:,} {step} slowest statements: {slow}")
    fit: dict[str, Any] = {}
    good = [r for r in rows if _ok(r)]
    if len(good) >= 2:
        x = np.array([r["records"] / 1e6 for r in good])
        print()
        for step in ("cluster", "find_leaks", "total"):
            y = np.array(
                [
                    r["cluster"]["wall_s"] + r["find_leaks"]["wall_s"]
                    if step == "total"
                    else r[step]["wall_s"]
                    for r in good
                ]
            )
            slope, intercept = np.polyfit(x, y, 1)
            # log-log slope: 1 = linear, > 1 = worse than linear
            exponent = float(np.polyfit(np.log(x), np.log(y), 1)[0])
            per_m = [float(v) for v in y / x]
            fit[step] = {
                "records": [r["records"] for r in good],
                "s_per_million": float(slope),
                "intercept_s": float(intercept),
                "loglog_exponent": exponent,
                "s_per_million_each_size": per_m,
            }
            print(
                f"{step}: {slope:.1f} s per million records ({intercept:+.1f} s); "
                f"per size {', '.join(f'{v:.1f}' for v in per_m)} s/M; "
                f"growth exponent {exponent:.2f} (1 = linear)"
            )
    return fit


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_stage2":
        work, threads, memory_mib, docs_view, *paths = sys.argv[2:]
        m = stage2([Path(p) for p in paths], Path(work), int(threads), int(memory_mib), docs_view)
        print(json.dumps(m))
        return
    defaults = CompileOptions()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--per-partition", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads (a 2-core box)")
    parser.add_argument("--memory-mib", type=int, default=defaults.memory_mib)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--docs-view",
        choices=["file_index"],
        default="file_index",
        help="a label only: cluster.py reads every index with one read_parquet (file_index) "
        "since commit b08ba4e; the results labelled 'union' were measured before, with one "
        "read_parquet per partition (UNION ALL), which ran out of memory at 4 M records",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data under /tmp/dscale")
    args = parser.parse_args()
    data = DATA_ROOT / f"s{args.seed}-per{args.per_partition}"
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    print(
        f"DedupOptions defaults: {DedupOptions().model_dump()}; threads {args.threads}, "
        f"memory {args.memory_mib} MiB, docs view {args.docs_view}; "
        f"{_mib(_free_bytes(DATA_ROOT))} MiB free under /tmp",
        flush=True,
    )
    rows, skipped = [], []
    try:
        for records in sorted(args.records):
            row = run_size(
                data,
                records,
                args.per_partition,
                args.seed,
                args.threads,
                args.memory_mib,
                args.docs_view,
            )
            if row is None:
                skipped.append(records)
                continue
            rows.append(row)
            for step in ("cluster", "find_leaks"):
                m = row.get(step)
                if m is not None:
                    state = f"FAILED: {m['error'][:80]}" if "error" in m else "ok"
                    print(
                        f"  {step} {m['wall_s']:.1f} s, peak spill "
                        f"{_mib(m['peak_spill_bytes'])} MiB: {state}",
                        flush=True,
                    )
    finally:
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)
    fit = report(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = RESULTS / f"bench_dedup_scale-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "settings": {
                    "per_partition": args.per_partition,
                    "threads": args.threads,
                    "memory_mib": args.memory_mib,
                    "docs_view": args.docs_view,
                    "seed": args.seed,
                    "dedup": DedupOptions().model_dump(),
                    "exact_share": EXACT_SHARE,
                    "near_share": NEAR_SHARE,
                    "near_changed_slots": NEAR_CHANGED,
                    "cpus": os.cpu_count(),
                },
                "sizes": rows,
                "skipped": skipped,
                "fit": fit,
            },
            indent=2,
        )
    )
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
