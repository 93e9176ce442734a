"""How a build's cost grows: hours vs conversations at N worker cores, from measured points.

Reads the newest ``bench/results/bench_compile-*.json`` that has a 4 GB near-on case and the
newest ``bench/results/bench_dedup_scale-*.json`` (the global dedup stage on synthesized indexes
of up to millions of records) and prints a Markdown table of the model

    T(D, N) = t_start + C_file · D / N + G(R) + E · D

for D GB of chats (R = D / 8.4 KB conversations) on N worker cores, where

* ``t_start``: the 1 MB build's wall time (process start, Dagster, the commit protocol);
* ``C_file``: client CPU seconds per GB of the per-file work (stage 1 + the shard step), i.e.
  the compile and shard steps' CPU at 4 GB minus the global stage's; it runs per source file,
  on every worker (k8s / celery executors), so it divides by N;
* ``G(R)``: the global stage (DuckDB clustering + leakage check, one machine, 2 threads),
  ``a · R^b`` fitted (log-log least squares) to ``bench_dedup_scale``'s points (≥ 3 sizes);
* ``E``: the composed export and its promotion per GB (server-side copies: the store's time);
  0 with ``compiled_export: false``.

The N = 2 column with a local S3 server is not this model: it is the measured 4 GB wall time
per GB (the server shares the 2 cores), extrapolated linearly, plus G's growth beyond 4 GB.

    .venv/bin/python bench/cost_model.py [memory_mib: 512 (default config) | 2048]
"""

import json
import math
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
KB_PER_CONVERSATION = 8.4
CONVERSATIONS_M = (1, 10, 50, 100)
WORKERS = (8, 32, 128)
MEMORY_MIB = int(sys.argv[1]) if len(sys.argv) > 1 else 512  # compile.memory_mib of the G runs


def _newest(pattern: str, accept: Any) -> tuple[Path, dict[str, Any]]:
    for path in sorted(RESULTS.glob(pattern), reverse=True):
        data = json.loads(path.read_text())
        if accept(data):
            return path, data
    sys.exit(f"no {pattern} in {RESULTS} with the cases this model needs")


def _case(data: dict[str, Any], size: str, case: str) -> dict[str, Any]:
    rows = [r for r in data["sizes"].get(size, []) if r["case"] == case and not r.get("failed")]
    if not rows:
        sys.exit(f"no {case} at {size} MB")
    return dict(rows[0])


def main() -> None:
    cpath, compile_ = _newest(
        "bench_compile-*.json",
        lambda d: (
            any(r["case"] == "near-on" for r in d["sizes"].get("4000", []))
            and bool(d.get("startup"))
        ),
    )
    dpath, dedup = _newest(
        "bench_dedup_scale-*.json",
        lambda d: (
            d.get("settings", {}).get("memory_mib") == MEMORY_MIB
            and d["settings"].get("docs_view") == "file_index"
            and d["settings"].get("threads") == 2  # the build's: one DuckDB thread per core
            and all(not r["cluster"].get("error") for r in d.get("sizes", []))
        ),
    )
    near = _case(compile_, "4000", "near-on")
    noexp = _case(compile_, "4000", "near-on-noexport")
    t_start = float(compile_["startup"][0]["wall_s"])
    gb = near["input_mb"] / 1000
    points = [
        (r["records"] / 1e6, r["cluster"]["wall_s"] + r["find_leaks"]["wall_s"])
        for r in dedup["sizes"]
    ]
    # G(R) = a * R^b, least squares in log-log through the measured points (R in millions):
    # b > 1 means the global stage grows faster than the data (DuckDB spills past memory_mib)
    logs = [(math.log(x), math.log(y)) for x, y in points]
    n = len(logs)
    mx = sum(x for x, _ in logs) / n
    my = sum(y for _, y in logs) / n
    sxx = sum((x - mx) ** 2 for x, _ in logs)
    b = sum((x - mx) * (y - my) for x, y in logs) / sxx if sxx else 1.0
    a = math.exp(my - b * mx)
    records_4gb = near["input_records"] / 1e6
    g_4gb = a * records_4gb**b
    steps = near["step_cpu"]
    c_file = (steps["compile"]["cpu_s"] - 2 * g_4gb + steps["split_shards"]["cpu_s"]) / gb
    e = (near["wall_s"] - noexp["wall_s"]) / gb
    per_gb_here = (near["wall_s"] - t_start) / gb

    def g(records_m: float) -> float:
        return float(a * records_m**b)

    print(f"measured: {cpath.name} (commit {compile_.get('commit')}), {dpath.name}")
    print(
        f"t_start {t_start:.1f} s; C_file {c_file:.1f} CPU-s/GB; G(R) = {a:.1f} s x "
        f"(R / 1 M)^{b:.2f} from {', '.join(f'{x:g} M: {y:.0f} s' for x, y in points)}; "
        f"E {e:.1f} s/GB; this box {per_gb_here:.1f} s/GB at 4 GB"
    )
    head = ["conversations", "data", "this box (2 cores + local S3)"]
    head += [f"{w} worker cores" for w in WORKERS] + ["of which G (one machine)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for m in CONVERSATIONS_M:
        d = m * 1e6 * KB_PER_CONVERSATION / 1e6  # GB
        here = t_start + per_gb_here * d + max(0.0, g(m) - g_4gb)
        cells = [f"{m} M", f"{d:,.0f} GB", f"{here / 3600:.1f} h"]
        for w in WORKERS:
            t = t_start + c_file * d / w + g(m) + e * d
            cells.append(f"{t / 3600:.2f} h ({(t - e * d) / 3600:.2f} h no export)")
        cells.append(f"{g(m) / 60:.1f} min")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
