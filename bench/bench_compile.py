"""End-to-end compile benchmark: the build against its peers, whole processes, one run.

Starts one SeaweedFS on free loopback ports, generates realistic chat corpora
(``bench/gen_corpus.py`` ``write_chat_corpus``: long multi-turn ChatML and ShareGPT records over
several files, ~4 % exact + ~4 % near duplicates) and measures, per size, side by side:

* ``naive``: ``bench/peers/naive_compile.py`` (the old script: json list, ``set`` dedup, random
  split, shard files, ``upload_file`` + HEAD + delete, no near dedup);
* ``floor``: ``bench/peers/floor.py`` (bytes → line-bounded shards, sha256, put + HEAD + delete);
* ``near-off`` / ``near-on``: the project's build, ``dagster job execute -m
  dataset_assets.definitions -j build_dataset`` in its own process (the job's own executor, a
  fresh ``DAGSTER_HOME`` with ``deploy/dagster.yaml``), one ``dataset.yaml`` per case (64 MiB
  shards, a bucket per case; ``dedup.near: false`` for near-off). Timed from process start to
  exit; then the manifest is read back from S3 and every file it names is HEAD-checked (size),
  or the case fails. ``-noexport`` cases: ``compiled_export: false`` (shards, sidecars and
  manifest only: near-off-noexport publishes what the floor publishes, plus the manifest);
* ``near-on-shared``: near-on with ``compile.intermediates: s3`` (stage 1's intermediates
  uploaded, as when the steps run on other machines: k8s, celery);
* ``startup``: near-on over a 1 MB corpus, the fixed cost of one build (for the cost model);
* ``incremental``: after near-on, one new source file of ~1 % of the data whose name sorts
  first is added and the same build runs again: time vs the full build, and how many of the new
  manifest's shard keys were not in the previous manifest.

Per case: input MB / wall s, peak RSS of the whole process tree (``/proc`` sampled every 0.1 s,
RSS summed over the process and its descendants; and PSS, which counts pages shared by forked
workers once), CPU time of the tree (user+sys from
``os.wait4``: the child plus every descendant it waited for) and CPU/wall. Prints a Markdown
table per size and writes the numbers to ``bench/results/bench_compile-<time>.json``.

    .venv/bin/python bench/bench_compile.py [--sizes-mb 150 4000] [--only naive floor ...]
        [--keep] [--work .local/bench-compile]

The harness only shells out and reads manifests, so it does not depend on the build's
internals. Corpora, staging folders and the S3 data are deleted at the end unless ``--keep``.
"""

import argparse
import ctypes
import dataclasses
import datetime
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402 - bench/ may use boto3 directly (a user's view of the store)
import botocore.config  # noqa: E402
import yaml  # noqa: E402

from bench.gen_corpus import write_chat_corpus  # noqa: E402
from dataset_assets.storage import SeaweedServer  # noqa: E402
from dataset_assets.storage.local_server import PORTS_PER_SERVER  # noqa: E402

MiB = 1024 * 1024
CASES = (
    "naive",
    "floor",
    "near-off",
    "near-off-noexport",
    "near-on",
    "incremental",
    "near-on-noexport",
    "incremental-noexport",
    "near-on-plain",
    "near-on-shared",
    "startup",
)
# The build cases: (near dedup, compiled export, the full build an incremental case follows,
# other config options).
BUILD_CASES: dict[str, tuple[bool, bool, str | None, dict[str, Any]]] = {
    "near-off": (False, True, None, {}),
    "near-off-noexport": (False, False, None, {}),
    "near-on": (True, True, None, {}),
    "incremental": (True, True, "near-on", {}),
    "near-on-noexport": (True, False, None, {}),
    "incremental-noexport": (True, False, "near-on-noexport", {}),
    "near-on-plain": (True, True, None, {"shard_compression": "none"}),
    # stage 1's intermediates uploaded to S3, as with steps on other machines (k8s, celery)
    "near-on-shared": (True, True, None, {"compile": {"intermediates": "s3"}}),
}
BIN = Path(sys.executable).parent
PAGE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")
ADDED_NAME = "chatml-000-added.jsonl"  # sorts before every generated file
RESULTS = ROOT / "bench" / "results"


# ---------------------------------------------------------------- measuring a process tree


@dataclasses.dataclass
class Measured:
    wall_s: float
    cpu_s: float
    peak_rss_bytes: int
    peak_pss_bytes: int
    returncode: int
    stdout: str
    machine_busy_cores: float  # every process on the machine, averaged over the wall time
    server_cpu_s: float  # the S3 server's CPU time meanwhile
    # (unix time, cumulative CPU s of the measured tree, cumulative CPU s of the S3 server),
    # sampled every 0.1 s: the CPU spent within each step's window
    timeline: list[tuple[float, float, float]] = dataclasses.field(default_factory=list)
    peak_at: float = 0.0  # unix time of the peak RSS sample


def _machine_busy_s() -> float:
    """CPU seconds spent busy by the whole machine since boot (/proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _process_cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SERVER_PID: int | None = None  # the S3 server, whose CPU is reported next to each case


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _pss(pid: int) -> int:
    """Proportional set size (shared pages split between their users), 0 if unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _own_cpu(pid: int) -> tuple[tuple[int, int], float] | None:
    """((pid, start time), user+sys seconds of the process itself) from /proc/pid/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    return (pid, int(fields[19])), (int(fields[11]) + int(fields[12])) / CLK_TCK


def _adopted(children: dict[int, list[int]]) -> list[int]:
    """Our children except the S3 server: the measured process and, since we are a child
    subreaper, every orphaned descendant of it (e.g. a forkserver whose parent exited)."""
    return [pid for pid in children.get(os.getpid(), []) if pid != SERVER_PID]


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to us instead of init (Linux), so they stay
    measured and we reap them (their CPU then shows in RUSAGE_CHILDREN)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER


def reap_adopted(timeout: float = 60.0) -> None:
    """Wait for the measured tree's leftovers; kill what outlives ``timeout``."""
    deadline = time.monotonic() + timeout
    while pids := _adopted(_children_map()):
        for pid in pids:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if not done and time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        time.sleep(0.05)


def tree_sample(cpu_seen: dict[tuple[int, int], float]) -> tuple[int, int]:
    """(RSS, PSS) bytes of the measured process tree; records each process's own CPU time in
    ``cpu_seen``. RSS counts pages shared between forked workers once per process; PSS splits
    them, so it is the tree's real footprint."""
    children = _children_map()
    rss = pss = 0
    todo = _adopted(children)
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                rss += int(fh.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass
        pss += _pss(pid)
        own = _own_cpu(pid)
        if own is not None:
            cpu_seen[own[0]] = max(cpu_seen.get(own[0], 0.0), own[1])
        todo += children.get(pid, [])
    return rss, pss


def measure(cmd: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> Measured:
    """Run ``cmd`` to completion: wall; CPU of the whole tree (RUSAGE_CHILDREN after reaping
    the process and, as child subreaper, every orphaned descendant such as a forkserver pool;
    never less than the sum of each process's own CPU sampled every 0.1 s); sampled peak tree
    RSS and PSS. The stdout pipe is read to its end, i.e. until every descendant holding it
    has exited."""
    log.parent.mkdir(parents=True, exist_ok=True)
    busy0, server0 = _machine_busy_s(), _process_cpu_s(SERVER_PID)
    reaped0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with log.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=err)
        peak = peak_pss = 0
        cpu_seen: dict[tuple[int, int], float] = {}
        timeline: list[tuple[float, float, float]] = []
        done = threading.Event()

        peak_at = 0.0

        def sample() -> None:
            nonlocal peak, peak_pss, peak_at
            while not done.is_set():
                rss, pss = tree_sample(cpu_seen)
                if rss > peak:
                    peak_at = time.time()
                peak, peak_pss = max(peak, rss), max(peak_pss, pss)
                timeline.append((time.time(), sum(cpu_seen.values()), _process_cpu_s(SERVER_PID)))
                done.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        assert proc.stdout is not None
        out = proc.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
        reap_adopted()
    reaped1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    reaped = (reaped1.ru_utime - reaped0.ru_utime) + (reaped1.ru_stime - reaped0.ru_stime)
    proc.returncode = os.waitstatus_to_exitcode(status)
    busy = (_machine_busy_s() - busy0) / wall
    server = _process_cpu_s(SERVER_PID) - server0
    # ru_maxrss (KiB) is the largest single process: a floor for the sampled tree peak
    peak = max(peak, usage.ru_maxrss * 1024)
    cpu = max(reaped, usage.ru_utime + usage.ru_stime, sum(cpu_seen.values()))
    return Measured(
        wall, cpu, peak, peak_pss, proc.returncode, out, busy, server, timeline, peak_at
    )


# ---------------------------------------------------------------- S3 server and helpers


def _free_port_base(count: int = PORTS_PER_SERVER) -> int:
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 30000 - count)
        ok = True
        for port in range(base, base + count):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free block of loopback ports")


def _client(settings: dict[str, Any]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=settings["endpoint_url"],
        region_name=settings["region"],
        aws_access_key_id=settings["access_key_id"],
        aws_secret_access_key=settings["secret_access_key"],
        config=botocore.config.Config(s3={"addressing_style": "path"}),
    )


def _drop_bucket(s3: Any, bucket: str) -> None:
    try:
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        s3.delete_bucket(Bucket=bucket)
    except s3.exceptions.ClientError:
        pass


def _manifest_files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every file entry the manifest names (shards and the optional sidecars), generically."""
    files = list(manifest.get("shards", []))
    for value in manifest.values():
        if isinstance(value, dict) and "key" in value and "bytes" in value:
            files.append(value)
    return files


def verified_manifest(s3: Any, bucket: str, prefix: str) -> dict[str, Any]:
    """The latest manifest from S3, after HEAD-checking the size of every file it names."""
    body = s3.get_object(Bucket=bucket, Key=f"{prefix}/manifest.json")["Body"].read()
    manifest: dict[str, Any] = json.loads(body)
    for entry in _manifest_files(manifest):
        head = s3.head_object(Bucket=bucket, Key=entry["key"])
        if head["ContentLength"] != entry["bytes"]:
            raise RuntimeError(
                f"s3://{bucket}/{entry['key']}: {head['ContentLength']} bytes in S3, "
                f"manifest says {entry['bytes']}"
            )
    return manifest


# ---------------------------------------------------------------- corpora and cases


def make_corpus(work: Path, mb: float) -> Path:
    folder = work / f"corpus-{mb:g}mb"
    done = folder / ".done"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        t = time.perf_counter()
        counts = write_chat_corpus(folder, int(mb * 1e6), seed=int(mb))
        print(
            f"  corpus {mb:g} MB: {counts['records']} records ({counts['exact']} exact + "
            f"{counts['near']} near copies) in {len(list(folder.glob('*.jsonl')))} files, "
            f"generated in {time.perf_counter() - t:.0f} s",
            flush=True,
        )
        done.write_text(json.dumps(counts))
    return folder


def corpus_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.jsonl"))


def write_build_config(
    case_dir: Path,
    corpus: Path,
    bucket: str,
    near: bool,
    export: bool = True,
    options: dict[str, Any] | None = None,
) -> Path:
    cfg = {
        "bucket": bucket,
        "prefix": "final_dataset",
        "families": [
            {"name": "chatml", "paths": [str(corpus / "chatml-*.jsonl")]},
            {"name": "sharegpt", "paths": [str(corpus / "sharegpt-*.jsonl")]},
        ],
        "shard_size": 64 * MiB,
        "staging_dir": str(case_dir / "staging"),
        "manifest_path": str(case_dir / "manifest.json"),
        "dedup": {"near": near},
        **({} if export else {"compiled_export": False}),
        **(options or {}),
    }
    path = case_dir / "dataset.yaml"
    case_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def build_env(case_dir: Path, config: Path, settings: dict[str, Any], repo: Path) -> dict[str, str]:
    home = case_dir / "dagster-home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(repo / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "DAGSTER_", "DATASET_ASSETS_"))
    }
    env.update(
        # the build's code comes from ``repo`` (ahead of the venv's editable install)
        PYTHONPATH=str(repo),
        DAGSTER_HOME=str(home),
        DATASET_ASSETS_ENV="local",
        DATASET_ASSETS_CONFIG=str(config),
        AWS_ENDPOINT_URL_S3=settings["endpoint_url"],
        AWS_ACCESS_KEY_ID=settings["access_key_id"],
        AWS_SECRET_ACCESS_KEY=settings["secret_access_key"],
        AWS_REGION=settings["region"],
    )
    return env


# "default": the project's own executor; "in_process" / "multiprocess": DATASET_ASSETS_EXECUTOR
# (or, for trees that do not read it, that mode of Dagster's default executor by run config)
BUILD_EXECUTOR = "default"
BUILD_CMD = [
    str(BIN / "dagster"),
    "job",
    "execute",
    "-m",
    "dataset_assets.definitions",
    "-j",
    "build_dataset",
]


def step_times(dagster_home: Path) -> dict[str, Any]:
    """Per-step wall seconds of the latest run in ``dagster_home`` (Dagster's own step stats),
    and the time outside any step (process start, planning, step process launches)."""
    from dagster import DagsterEventType, DagsterInstance

    try:
        with DagsterInstance.from_config(str(dagster_home)) as instance:
            runs = instance.get_runs(limit=1)
            if not runs:
                return {}
            stats = instance.get_run_step_stats(runs[0].run_id)
            run_stats = instance.get_run_stats(runs[0].run_id)
            kinds = {DagsterEventType.STEP_WORKER_STARTING, DagsterEventType.STEP_START}
            events = instance.all_logs(runs[0].run_id, of_type=kinds)
    except Exception as exc:  # measurement extra: never fail the benchmark on it
        return {"error": repr(exc)[:200]}
    windows = {
        st.step_key: (st.start_time, st.end_time)
        for st in stats
        if st.start_time is not None and st.end_time is not None
    }
    steps = {key: round(end - start, 2) for key, (start, end) in windows.items()}
    # step process launches: from "launching subprocess" to the step's start, summed
    starting: dict[str, float] = {}
    launch = 0.0
    for event in events:
        if event.dagster_event is None or event.step_key is None:
            continue
        if event.dagster_event.event_type == DagsterEventType.STEP_WORKER_STARTING:
            starting[event.step_key] = event.timestamp
        elif event.step_key in starting:
            launch += event.timestamp - starting.pop(event.step_key)
    out: dict[str, Any] = {
        "steps": steps,
        "step_windows": windows,
        "step_launch_s": round(launch, 2),
    }
    if run_stats.start_time and run_stats.end_time:
        out["run_s"] = round(run_stats.end_time - run_stats.start_time, 2)
    return out


def _at(timeline: list[tuple[float, float, float]], t: float, col: int) -> float:
    """The cumulative CPU in column ``col`` at time ``t`` (linear between samples)."""
    prev = timeline[0]
    for cur in timeline:
        if cur[0] >= t:
            if cur[0] == prev[0]:
                return cur[col]
            f = (t - prev[0]) / (cur[0] - prev[0])
            return prev[col] + f * (cur[col] - prev[col])
        prev = cur
    return timeline[-1][col]


def step_cpu(m: Measured, windows: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """Per step: CPU seconds of the measured tree (the run process and every worker it
    started) and of the S3 server within the step's window, and tree CPU / step wall."""
    out: dict[str, Any] = {}
    if not m.timeline:
        return out
    for key, (start, end) in windows.items():
        cpu = _at(m.timeline, end, 1) - _at(m.timeline, start, 1)
        server = _at(m.timeline, end, 2) - _at(m.timeline, start, 2)
        wall = max(end - start, 1e-9)
        out[key] = {
            "cpu_s": round(cpu, 1),
            "cpu_per_wall": round(cpu / wall, 2),
            "server_cpu_s": round(server, 1),
        }
    return out


def row(case: str, input_bytes: int, m: Measured, **extra: Any) -> dict[str, Any]:
    return {
        "case": case,
        "input_mb": input_bytes / 1e6,
        "wall_s": m.wall_s,
        "mb_per_s": input_bytes / 1e6 / m.wall_s,
        "peak_rss_mib": m.peak_rss_bytes / MiB,
        "peak_pss_mib": m.peak_pss_bytes / MiB,
        "cpu_s": m.cpu_s,
        "cpu_per_wall": m.cpu_s / m.wall_s,
        "server_cpu_s": m.server_cpu_s,
        # cores kept busy by everything else on the machine (not this case, not the S3 server):
        # above ~0.2 the numbers are disturbed by other work
        "other_busy_cores": max(0.0, m.machine_busy_cores - (m.cpu_s + m.server_cpu_s) / m.wall_s),
        **extra,
    }


def run_size(
    mb: float, work: Path, only: list[str], settings: dict[str, Any], keep: bool, repo: Path
) -> list[dict[str, Any]]:
    s3 = _client(settings)
    corpus = make_corpus(work, mb)
    (corpus / ADDED_NAME).unlink(missing_ok=True)
    size = corpus_bytes(corpus)
    tag = f"{mb:g}mb".replace(".", "-")
    settings_json = json.dumps(settings)
    rows: list[dict[str, Any]] = []
    env = dict(os.environ)

    def fail(case: str, m: Measured, log: Path) -> None:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise SystemExit(f"{case} ({mb:g} MB) failed with exit {m.returncode}; {log}:\n{tail}")

    def failure_reason(log: Path) -> str:
        """The build's own words for a failed run (a failed blocking check, or the error)."""
        text = log.read_text(errors="replace") if log.exists() else ""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        for i, line in enumerate(lines):
            if "blocking asset check failed" in line and i + 1 < len(lines):
                return f"blocked: failed check {lines[i + 1]}"
        errors = [ln for ln in lines if ln.startswith(("Error:", "dagster._core.errors"))]
        return errors[-1][:200] if errors else "failed (see log)"

    for case in ("naive", "floor"):
        if case not in only:
            continue
        bucket = f"bench-{case}-{tag}"
        staging = work / "cases" / f"{tag}-{case}"
        log = staging / "stderr.log"
        script = ROOT / "bench" / "peers" / ("naive_compile.py" if case == "naive" else "floor.py")
        cmd = [
            sys.executable,
            str(script),
            str(corpus),
            settings_json,
            bucket,
            "out",
            str(staging / "shards"),
            str(64 * MiB),
        ]
        m = measure(cmd, env=env, cwd=ROOT, log=log)
        if m.returncode:
            fail(case, m, log)
        out = json.loads(m.stdout.strip().splitlines()[-1])
        rows.append(row(case, size, m, shards=out["shards"], records=out.get("unique")))
        _report(mb, rows[-1])
        if not keep:
            _drop_bucket(s3, bucket)
            shutil.rmtree(staging, ignore_errors=True)

    fulls: dict[str, dict[str, Any]] = {}
    for case, (near, export, after, options) in BUILD_CASES.items():
        full = fulls.get(after) if after else None
        if case not in only or (after is not None and full is None):
            if after is not None and case in only:
                print(f"  {case} needs {after} in the same run: skipped", flush=True)
            continue
        base = after or case
        case_dir = work / "cases" / f"{tag}-{base}"
        bucket = f"bench-{base}-{tag}"
        input_bytes = size
        previous: dict[str, Any] | None = None
        if after is not None:
            assert full is not None
            previous = full["manifest"]
            t = time.perf_counter()
            write_chat_corpus(corpus, int(size * 0.01), names=[ADDED_NAME], seed=int(mb) + 7_777)
            first = sorted(p.name for p in corpus.glob("*.jsonl"))[0]
            assert first == ADDED_NAME, first
            added = (corpus / ADDED_NAME).stat().st_size
            input_bytes = size + added
            print(
                f"  added {ADDED_NAME} ({added / 1e6:.1f} MB, sorts first) in "
                f"{time.perf_counter() - t:.1f} s",
                flush=True,
            )
        else:
            shutil.rmtree(case_dir, ignore_errors=True)
            _drop_bucket(s3, bucket)
        config = write_build_config(case_dir, corpus, bucket, near, export, options)
        log = case_dir / f"{case}.log"
        env = build_env(case_dir, config, settings, repo)
        cmd = list(BUILD_CMD)
        reads_env = (
            "DATASET_ASSETS_EXECUTOR" in (repo / "dataset_assets" / "definitions.py").read_text()
        )
        if BUILD_EXECUTOR != "default" and reads_env:
            env["DATASET_ASSETS_EXECUTOR"] = BUILD_EXECUTOR
        elif BUILD_EXECUTOR != "default":  # older trees: a mode of Dagster's default executor
            run_config = case_dir / "run_config.yaml"
            run_config.write_text(yaml.safe_dump({"execution": {"config": {BUILD_EXECUTOR: {}}}}))
            cmd += ["-c", str(run_config)]
        m = measure(cmd, env=env, cwd=repo, log=log)
        if m.returncode:
            reason = failure_reason(log)
            RESULTS.mkdir(exist_ok=True)
            shutil.copy(log, RESULTS / f"bench_compile-{tag}-{case}.log")
            rows.append(row(case, input_bytes, m, failed=reason))
            print(f"  {mb:g} MB {case:>11}: {reason} after {m.wall_s:.1f} s", flush=True)
            if after is not None:
                (corpus / ADDED_NAME).unlink(missing_ok=True)
            continue
        manifest = verified_manifest(s3, bucket, "final_dataset")
        timing = step_times(case_dir / "dagster-home")
        windows = timing.pop("step_windows", {})
        timing["step_cpu"] = step_cpu(m, windows)
        timing["peak_rss_step"] = next(
            (k for k, (a, b) in windows.items() if a <= m.peak_at <= b), "outside any step"
        )
        counts = manifest.get("counts", {})
        shards = [s["key"] for s in manifest.get("shards", [])]
        extra: dict[str, Any] = {
            "shards": len(shards),
            "records": counts.get("published_records"),
            "input_records": counts.get("input_records"),
            "exact_duplicates": counts.get("exact_duplicates"),
            "near_duplicates": counts.get("near_duplicates"),
            **timing,
        }
        if previous is not None and full is not None:
            old = {s["key"] for s in previous.get("shards", [])}
            extra["new_shards"] = sum(1 for k in shards if k not in old)
            extra["time_vs_full"] = m.wall_s / full["wall_s"]
            extra["added_mb"] = (input_bytes - size) / 1e6
        r = row(case, input_bytes, m, **extra)
        rows.append(r)
        _report(mb, r)
        followed = any(a == case for _, _, a, _ in BUILD_CASES.values())
        if followed:
            fulls[case] = {**r, "manifest": manifest}
        if after is not None:
            (corpus / ADDED_NAME).unlink(missing_ok=True)
        if not keep and not followed and after is None:  # an incremental's bucket goes last
            _drop_bucket(s3, bucket)
            shutil.rmtree(case_dir, ignore_errors=True)
    if not keep:
        for case in fulls:
            _drop_bucket(s3, f"bench-{case}-{tag}")
        shutil.rmtree(work / "cases", ignore_errors=True)
        shutil.rmtree(corpus, ignore_errors=True)
    return rows


def _report(mb: float, r: dict[str, Any]) -> None:
    more = ""
    if "new_shards" in r:
        more = (
            f", {r['time_vs_full']:.2f}x the full build, {r['new_shards']}/{r['shards']} shards new"
        )
    if r.get("steps"):
        top = sorted(r["steps"].items(), key=lambda kv: -kv[1])[:6]
        cpu = r.get("step_cpu", {})

        def step_text(key: str, wall: float) -> str:
            c = cpu.get(key)
            if not c:
                return f"{key} {wall:.1f} s"
            return (
                f"{key} {wall:.1f} s (cpu/wall {c['cpu_per_wall']:.2f}, "
                f"S3 server {c['server_cpu_s']:.0f} s cpu)"
            )

        more += "\n      steps: " + ", ".join(step_text(k, v) for k, v in top)
        if "run_s" in r:
            more += f"; run {r['run_s']:.1f} s of {r['wall_s']:.1f} s process wall"
        more += f"; step process launches {r.get('step_launch_s', 0):.1f} s"
        if "peak_rss_step" in r:
            more += f"; peak RSS during {r['peak_rss_step']}"
    print(
        f"  {mb:g} MB {r['case']:>11}: {r['wall_s']:7.1f} s {r['mb_per_s']:6.1f} MB/s "
        f"peak RSS {r['peak_rss_mib']:5.0f} MiB (PSS {r['peak_pss_mib']:.0f}) "
        f"cpu/wall {r['cpu_per_wall']:.2f} "
        f"(S3 server {r['server_cpu_s']:.0f} s cpu, other load {r['other_busy_cores']:.2f} cores)"
        f"{more}",
        flush=True,
    )


def markdown(mb: float, rows: list[dict[str, Any]]) -> str:
    by = {r["case"]: r for r in rows}
    lines = [
        f"### {mb:g} MB",
        "",
        "| case | input MB | wall s | MB/s | peak RSS (PSS) of the tree | CPU s | CPU/wall "
        "| S3 server CPU s | other load (cores) | shards | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r.get("failed"):
            lines.append(
                f"| {r['case']} | {r['input_mb']:.0f} | ({r['wall_s']:.1f}) | – | "
                f"{r['peak_rss_mib']:.0f} ({r['peak_pss_mib']:.0f}) MiB | {r['cpu_s']:.1f} | – | "
                f"{r['server_cpu_s']:.1f} | "
                f"{r['other_busy_cores']:.2f} | – | **{r['failed']}** |"
            )
            continue
        notes = []
        if r["case"] in BUILD_CASES:
            notes.append(
                f"{r.get('input_records')} in, {r.get('records')} out, "
                f"{r.get('exact_duplicates')} exact + {r.get('near_duplicates')} near dups"
            )
        near_on = ("near-on", "near-on-noexport", "near-on-shared")
        if r["case"] in near_on and "naive" in by and not by["naive"].get("failed"):
            notes.append(f"**{r['mb_per_s'] / by['naive']['mb_per_s']:.2f}× naive**")
        if r["case"] == "near-off" and "floor" in by:
            notes.append(f"**{r['mb_per_s'] / by['floor']['mb_per_s']:.2f}× floor**")
        if r["case"] == "near-off-noexport" and "floor" in by:
            # like for like: the floor publishes shards only, no export either
            notes.append(f"**{r['mb_per_s'] / by['floor']['mb_per_s']:.2f}× floor** (no export)")
        if "new_shards" in r:
            notes.append(
                f"+{r['added_mb']:.1f} MB: **{r['time_vs_full']:.2f}× the full build**, "
                f"{r['new_shards']}/{r['shards']} shards new"
            )
        if r["case"] == "naive":
            notes.append(f"{r.get('records')} unique (exact only)")
        compile_cpu = r.get("step_cpu", {}).get("compile")
        if compile_cpu:
            notes.append(f"compile step CPU/wall {compile_cpu['cpu_per_wall']:.2f}")
        lines.append(
            f"| {r['case']} | {r['input_mb']:.0f} | {r['wall_s']:.1f} | {r['mb_per_s']:.1f} | "
            f"{r['peak_rss_mib']:.0f} ({r['peak_pss_mib']:.0f}) MiB | {r['cpu_s']:.1f} | "
            f"{r['cpu_per_wall']:.2f} | "
            f"{r['server_cpu_s']:.1f} | {r['other_busy_cores']:.2f} | "
            f"{r.get('shards', '')} | {'; '.join(notes)} |"
        )
    busiest = max((r["other_busy_cores"] for r in rows), default=0.0)
    if busiest > 0.3:
        lines.append(
            f"\nWarning: other processes kept up to {busiest:.2f} of {os.cpu_count()} cores busy "
            "during this run: wall times and MB/s are inflated; CPU seconds are not."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[150.0, 4000.0])
    parser.add_argument("--only", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--keep", action="store_true", help="keep corpora, staging and S3 data")
    parser.add_argument("--work", type=Path, default=ROOT / ".local" / "bench-compile")
    parser.add_argument(
        "--repo",
        type=Path,
        default=ROOT,
        help="source tree whose build runs (e.g. a `git archive` of another commit)",
    )
    parser.add_argument(
        "--executor",
        choices=["default", "in_process", "multiprocess"],
        default="default",
        help="where the build's steps run (default: the project's default executor)",
    )
    args = parser.parse_args()
    global BUILD_EXECUTOR
    BUILD_EXECUTOR = args.executor
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    become_subreaper()
    server = SeaweedServer(work / "seaweed", port_base=_free_port_base(), die_with_parent=True)
    server.start()
    global SERVER_PID
    SERVER_PID = int((server.data_dir / "weed.pid").read_text().strip())
    settings = dataclasses.asdict(server.settings())
    results: dict[str, Any] = {
        "executor": args.executor,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "repo": str(args.repo.resolve()),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "sizes": {},
    }
    tables = []
    try:
        if "startup" in args.only:
            # the fixed cost of one build: near-on over a 1 MB corpus
            print("== startup (a 1 MB build)", flush=True)
            rows = run_size(1.0, work, ["near-on"], settings, args.keep, args.repo.resolve())
            for r in rows:
                r["case"] = "startup"
            results["startup"] = rows
            tables.append(markdown(1.0, rows))
        for mb in args.sizes_mb:
            print(f"== {mb:g} MB", flush=True)
            rows = run_size(mb, work, args.only, settings, args.keep, args.repo.resolve())
            results["sizes"][f"{mb:g}"] = rows
            tables.append(markdown(mb, rows))
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(work / "seaweed", ignore_errors=True)
    print()
    print("\n\n".join(tables))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"bench_compile-{stamp}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nnumbers: {out}")


if __name__ == "__main__":
    main()
