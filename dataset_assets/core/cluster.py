"""Stage 2 of the compile: deduplicate every partition's records at once, as sorts and joins in
DuckDB (out of core, all cores), never as per-record index lookups.

Documents are numbered ``doc = partition_rank << 32 | ord``: partitions are ranked in family
priority order (then source order), ``ord`` is the record's position in its partition, so the
smallest ``doc`` of a group is the winner the design asks for (highest-priority family, then
first seen).

1. **Exact**: group by content hash; every document but the group's smallest is an exact
   duplicate of it.
2. **Near** (exact survivors only): unnest the LSH band keys, group by key (a key hashes its band
   number in, so equal keys mean the same band); each bucket of two or more documents gives
   candidate edges from its smallest document to the others. A
   candidate is verified when the estimated Jaccard similarity of the two full MinHash
   signatures is ≥ ``threshold`` (numpy over batches of joined signatures).
3. **Clusters**: connected components of the verified edges (label propagation in DuckDB: each
   document takes the smallest label among its neighbours until nothing changes). The cluster's
   smallest document wins; every other member is a near duplicate. Clustering is transitive: if
   A~B and B~C, C is dropped even when A and C alone would be below the threshold (the dedup
   sidecar records C's estimated similarity to its winner, so such drops are visible).
4. **Decisions**: per partition, one byte per record: 0 = dropped, else its split code. Survivors
   keep the split their content hash gives, so near duplicates cannot straddle splits: only one
   member of a cluster survives.

The leakage check (:func:`find_leaks`) verifies the published decisions: no content hash
published in two splits (from the indexes), no pair of records published in two splits that
shares an LSH bucket and is similar enough (from the members of the shared buckets, which
:func:`cluster` writes: grouping every band key again cost the check ~85 % of its time).
"""

import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataset_assets.core.arrow import arrow_array, numpy_view
from dataset_assets.core.config import DedupOptions

_SHIFT = 32
_MAX_LABEL_ROUNDS = 64
CODE_SPLITS = {1: "train", 2: "val", 3: "test"}


@dataclass(frozen=True)
class ClusterInput:
    """One partition's index (``index.parquet``) and what the sidecars say about its records."""

    index_path: Path
    family: str
    source: str


@dataclass(frozen=True)
class KnownKeys:
    """The shared band keys of an earlier clustering (``path``, Parquet ``key``, as
    :func:`cluster` writes to ``keys_out``) of a subsequence of this clustering's inputs: the
    same partitions (same digests: same records, same bands) in the same relative order, and
    ``new``, the positions in ``inputs`` of the partitions it did not cover.

    Then every key two exact survivors share now is among those keys or the keys of the new
    partitions: two old survivors were survivors then (a group's smallest document among old
    partitions is its smallest among those partitions alone, in the same order), so a key they
    share was shared then. The dedup stage then groups only the band rows with such keys
    instead of every band row (a rebuild after one new file: ~5 % of the rows).
    """

    path: Path
    new: Sequence[int]


@dataclass
class ClusterResult:
    """Counts and per-partition decisions (arrays of split codes, 0 = dropped)."""

    decisions: list[np.ndarray]
    exact_duplicates: int = 0
    near_duplicates: int = 0
    candidate_pairs: int = 0
    verified_pairs: int = 0
    near_checked: bool = False
    from_known_keys: bool = False
    band_rows_grouped: int = 0
    leaks: list[dict[str, Any]] = field(default_factory=list)


def _connect(work: Path, threads: int, memory_mib: int) -> duckdb.DuckDBPyConnection:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    con = duckdb.connect()  # in memory; spills to temp_directory past memory_limit
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET temp_directory = '{work / 'spill'}'")
    con.execute(f"SET memory_limit = '{memory_mib}MB'")
    con.execute(f"SET threads = {max(1, threads)}")
    con.execute("SET preserve_insertion_order = false")
    return con


def _docs_view(con: duckdb.DuckDBPyConnection, inputs: Sequence[ClusterInput], near: bool) -> None:
    con.execute("CREATE TABLE parts (p BIGINT, family VARCHAR, source VARCHAR)")
    if inputs:  # (executemany refuses an empty list)
        con.executemany(
            "INSERT INTO parts VALUES (?, ?, ?)",
            [(p, inp.family, inp.source) for p, inp in enumerate(inputs)],
        )
    cols = "h, split, line" + (", bands, sig" if near else "")
    if not inputs:
        empty = "NULL::BLOB AS h, NULL::UTINYINT AS split, NULL::BIGINT AS line"
        if near:
            empty += ", NULL::BIGINT[] AS bands, NULL::UINTEGER[] AS sig"
        con.execute(f"CREATE VIEW docs AS SELECT NULL::BIGINT AS doc, {empty} WHERE false")
        return
    # One scan over every index; file_index is the file's position in the list (= the
    # partition number). A UNION ALL of one read_parquet per partition ran out of memory at
    # ~80 partitions (4 M records) with 512 MiB in the join of the dedup sidecar, measured
    # by bench/bench_dedup_scale.py; the single scan passes at 10 M records with 512 MiB.
    files = ", ".join(f"'{_sql_path(inp.index_path)}'" for inp in inputs)
    con.execute(
        f"CREATE VIEW docs AS SELECT (file_index::BIGINT << {_SHIFT}) | ord AS doc, {cols} "
        f"FROM read_parquet([{files}])"
    )


def _sql_path(path: Path) -> str:
    return _sql_str(str(path))


def _sql_str(text: str) -> str:
    """``text`` inside a single-quoted SQL string literal."""
    return text.replace("'", "''")


def cluster(
    inputs: Sequence[ClusterInput],
    options: DedupOptions,
    work: Path,
    *,
    threads: int = 2,
    memory_mib: int = 512,
    dedup_sidecar: Path | None = None,
    buckets: Path | None = None,
    known_keys: KnownKeys | None = None,
    keys_out: Path | None = None,
) -> ClusterResult:
    """Deduplicate all partitions; write the dedup sidecar (zstd JSONL) where a path is given,
    and (near dedup on) the shared LSH buckets
    :func:`find_leaks` checks (``buckets``, Parquet ``key, h``) and the shared keys a later
    clustering of more partitions may start from (``keys_out``, see :class:`KnownKeys`)."""
    if buckets is not None:
        buckets.unlink(missing_ok=True)  # never an older run's
    con = _connect(work, threads, memory_mib)
    try:
        _docs_view(con, inputs, options.near)
        con.execute("CREATE TABLE reps AS SELECT h, min(doc) AS rep FROM docs GROUP BY h")
        con.execute(
            "CREATE TABLE dropped AS SELECT d.doc, r.rep AS winner, 'exact' AS kind, "
            "1.0::DOUBLE AS similarity FROM docs d JOIN reps r USING (h) WHERE d.doc <> r.rep"
        )
        result = ClusterResult(decisions=[], near_checked=options.near)
        if options.near:
            _near(con, inputs, options, result, buckets, known_keys, keys_out)
        result.exact_duplicates = _count(con, "SELECT count(*) FROM dropped WHERE kind = 'exact'")
        result.near_duplicates = _count(con, "SELECT count(*) FROM dropped WHERE kind = 'near'")
        result.decisions = _decisions(con, inputs)
        if dedup_sidecar is not None:
            _write_sidecar(con, dedup_sidecar)
        return result
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _near(
    con: duckdb.DuckDBPyConnection,
    inputs: Sequence[ClusterInput],
    options: DedupOptions,
    result: ClusterResult,
    buckets: Path | None,
    known_keys: KnownKeys | None,
    keys_out: Path | None,
) -> None:
    # A band key hashes its band's index in (``Signer.band_keys``): the key alone names the
    # bucket, so the band number is neither stored nor grouped on.
    rows = "SELECT d.doc, unnest(d.bands) AS key FROM docs d JOIN reps r ON d.doc = r.rep"
    if known_keys is not None and _maybe_shared(con, inputs, known_keys):
        # Only rows whose key may be shared are grouped: a semi join over all band rows (one
        # pass, no grouping) keeps ~5 % of them. (Materialized first: the unnest inside the
        # semi join ran ~4x slower.)
        con.execute(f"CREATE TABLE allrows AS {rows}")
        con.execute("CREATE TABLE bandrows AS SELECT * FROM allrows SEMI JOIN maybe USING (key)")
        con.execute("DROP TABLE allrows")
        con.execute("DROP TABLE maybe")
        result.from_known_keys = True
    else:
        con.execute(f"CREATE TABLE bandrows AS {rows}")
    result.band_rows_grouped = _count(con, "SELECT count(*) FROM bandrows")
    # Most buckets hold one document: find the shared keys with a plain count (no per-bucket
    # lists, no min: 1.3 → 1.0 s over 15 M band rows), keep their members only (~5 %), then pair
    # each member with its bucket's smallest doc by a join.
    con.execute(
        "CREATE TABLE sharedkeys AS SELECT key FROM bandrows GROUP BY key HAVING count(*) > 1"
    )
    con.execute(
        "CREATE TABLE members AS SELECT x.key, x.doc FROM bandrows x "
        "SEMI JOIN sharedkeys USING (key)"
    )
    if keys_out is not None:
        keys_out.parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY sharedkeys TO '{_sql_path(keys_out)}' (FORMAT parquet)")
    con.execute("DROP TABLE bandrows")
    con.execute("DROP TABLE sharedkeys")
    con.execute("CREATE TABLE shared AS SELECT key, min(doc) AS root FROM members GROUP BY key")
    con.execute(
        "CREATE TABLE cand AS SELECT DISTINCT s.root AS a, x.doc AS b FROM members x "
        "JOIN shared s USING (key) WHERE x.doc <> s.root"
    )
    if buckets is not None:
        _write_buckets(con, buckets)
    con.execute("DROP TABLE members")
    con.execute("DROP TABLE shared")
    result.candidate_pairs = _count(con, "SELECT count(*) FROM cand")
    _candidate_signatures(con, "cand")
    pairs = (
        "SELECT c.a, c.b, sa.sig AS sa, sb.sig AS sb FROM cand c "
        "JOIN sigs sa ON sa.doc = c.a JOIN sigs sb ON sb.doc = c.b"
    )
    kept: list[pa.Table] = []
    for batch in _batches(con, pairs):
        sim = _similarity(batch.column("sa"), batch.column("sb"), options.num_perm)
        keep = sim >= options.threshold
        if keep.any():
            a, b = numpy_view(batch.column("a"))[keep], numpy_view(batch.column("b"))[keep]
            kept.append(_table(a=a, b=b, sim=sim[keep]))
    empty = _table(a=np.empty(0, np.int64), b=np.empty(0, np.int64), sim=np.empty(0, np.float64))
    verified = pa.concat_tables(kept) if kept else empty
    con.register("verified_arrow", verified)
    con.execute("CREATE TABLE verified AS SELECT a, b, sim FROM verified_arrow")
    con.unregister("verified_arrow")
    result.verified_pairs = verified.num_rows
    _components(con)
    con.execute(
        "INSERT INTO dropped SELECT l.doc, l.lab, 'near', 0.0 FROM labels l WHERE l.doc <> l.lab"
    )
    _near_similarity(con, options.num_perm)


def _maybe_shared(
    con: duckdb.DuckDBPyConnection, inputs: Sequence[ClusterInput], known: KnownKeys
) -> bool:
    """Table ``maybe(key)``: the known keys and every key of the new partitions; False (no
    table) when the known keys cannot be read as such (the caller then groups every row)."""
    new = ", ".join(f"'{_sql_path(inputs[i].index_path)}'" for i in known.new)
    new_keys = f" UNION SELECT unnest(bands) FROM read_parquet([{new}])" if new else ""
    try:
        con.execute(
            "CREATE TABLE maybe AS SELECT key::BIGINT AS key FROM "
            f"read_parquet('{_sql_path(known.path)}'){new_keys}"
        )
    except duckdb.Error:
        return False
    return True


def _write_buckets(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """The members of every shared LSH bucket as ``(key, h)``: the bucket's key and each member's
    content hash. Only buckets of two or more exact survivors can hold a near pair, and every
    record is represented by its content hash's survivor (identical text, identical bands), so
    these rows are all :func:`find_leaks` needs to find near pairs published in two splits —
    without unnesting and grouping every band of every record a second time."""
    path.parent.mkdir(parents=True, exist_ok=True)  # (cluster() removed any older file)
    con.execute(
        "COPY (SELECT x.key, r.h FROM members x JOIN reps r ON r.rep = x.doc) "
        f"TO '{_sql_path(path)}' (FORMAT parquet)"
    )


def _table(**columns: np.ndarray) -> pa.Table:
    """An Arrow table over numpy columns (1-D, fixed-size values) built from their buffers:
    not ``pa.table``/``pa.array``, whose first call in a process imports pandas (~0.25 s of
    every build)."""
    arrays = []
    for values in columns.values():
        values = np.ascontiguousarray(values)
        # fixed-width numbers in native byte order (Arrow booleans are bits, not bytes)
        if values.ndim != 1 or values.dtype.kind not in "iuf" or not values.dtype.isnative:
            raise ValueError(f"not a column of native numbers: {values.dtype}, {values.ndim}-D")
        arrays.append(arrow_array(values, pa.from_numpy_dtype(values.dtype)))
    return pa.Table.from_arrays(arrays, names=list(columns))


def _candidate_signatures(con: duckdb.DuckDBPyConnection, pairs_table: str) -> None:
    """Table ``sigs(doc, sig)``: the signatures of the documents in candidate pairs only (a
    small share of all documents), so the pair joins never hold every signature in memory."""
    con.execute(
        f"CREATE OR REPLACE TABLE need AS SELECT a AS doc FROM {pairs_table} "
        f"UNION SELECT b FROM {pairs_table}"
    )
    # No candidates (the leakage check of an honest build): no scan of every signature.
    where = (
        "WHERE d.doc IN (SELECT doc FROM need)"
        if _count(con, "SELECT count(*) FROM need")
        else "WHERE false"
    )
    con.execute(f"CREATE OR REPLACE TABLE sigs AS SELECT d.doc, d.sig FROM docs d {where}")


def _batches(con: duckdb.DuckDBPyConnection, sql: str) -> Iterator[pa.RecordBatch]:
    """A query's rows in Arrow batches, read on a cursor of its own (so the caller may write to
    the database while iterating)."""
    cursor = con.cursor()
    try:
        yield from cursor.sql(sql).to_arrow_reader(65_536)
    finally:
        cursor.close()


def _similarity(a: Any, b: Any, num_perm: int) -> np.ndarray:
    sa = numpy_view(a.flatten()).reshape(-1, num_perm) if len(a) else np.empty((0, num_perm))
    sb = numpy_view(b.flatten()).reshape(-1, num_perm) if len(b) else np.empty((0, num_perm))
    result: np.ndarray = (sa == sb).mean(axis=1)
    return result


def _components(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "CREATE TABLE edges AS SELECT a, b FROM verified UNION ALL SELECT b, a FROM verified"
    )
    con.execute("CREATE TABLE labels AS SELECT DISTINCT a AS doc, a AS lab FROM edges")
    for _ in range(_MAX_LABEL_ROUNDS):
        con.execute(
            "CREATE OR REPLACE TABLE next_labels AS SELECT l.doc, least(l.lab, min(n.lab)) AS lab "
            "FROM labels l JOIN edges e ON e.a = l.doc JOIN labels n ON n.doc = e.b "
            "GROUP BY l.doc, l.lab"
        )
        changed = _count(
            con,
            "SELECT count(*) FROM next_labels x JOIN labels l USING (doc) WHERE x.lab <> l.lab",
        )
        con.execute("DROP TABLE labels")
        con.execute("ALTER TABLE next_labels RENAME TO labels")
        if not changed:
            return
    raise RuntimeError(f"near-duplicate clustering did not converge in {_MAX_LABEL_ROUNDS} rounds")


def _near_similarity(con: duckdb.DuckDBPyConnection, num_perm: int) -> None:
    """Each near-dropped document's estimated similarity to its cluster's winner."""
    rows = (
        "SELECT x.doc, da.sig AS sa, dw.sig AS sb FROM dropped x "
        "JOIN sigs da ON da.doc = x.doc JOIN sigs dw ON dw.doc = x.winner WHERE x.kind = 'near'"
    )
    con.execute("CREATE TABLE near_sim (doc BIGINT, sim DOUBLE)")
    for batch in _batches(con, rows):
        sim = _similarity(batch.column("sa"), batch.column("sb"), num_perm)
        con.register("sbatch", _table(doc=numpy_view(batch.column("doc")), sim=sim))
        con.execute("INSERT INTO near_sim SELECT * FROM sbatch")
        con.unregister("sbatch")
    con.execute(
        "UPDATE dropped SET similarity = s.sim FROM near_sim s "
        "WHERE dropped.doc = s.doc AND dropped.kind = 'near'"
    )


def _decisions(con: duckdb.DuckDBPyConnection, inputs: Sequence[ClusterInput]) -> list[np.ndarray]:
    fetched = con.execute("SELECT doc FROM dropped ORDER BY doc").fetchnumpy()["doc"]
    dropped = np.asarray(fetched, dtype=np.int64)
    out = []
    for p, inp in enumerate(inputs):
        # ParquetFile, not pq.read_table (which imports pyarrow.dataset, and with it pandas)
        with pq.ParquetFile(inp.index_path) as index:
            chunks = index.read(columns=["split"]).column("split").chunks
        # a new, writable array (concatenate copies the read-only views)
        codes = np.concatenate([numpy_view(c) for c in chunks] or [np.zeros(0, np.uint8)])
        lo, hi = np.searchsorted(dropped, [p << _SHIFT, (p + 1) << _SHIFT])
        codes[(dropped[lo:hi] & 0xFFFFFFFF).astype(np.int64)] = 0
        out.append(codes)
    return out


def _write_sidecar(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Every dropped duplicate: where it was, where its winner is, exact or near, similarity."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    con.execute(
        "COPY (SELECT x.kind, pd.family, pd.source, dd.line, "
        "pw.family AS winner_family, pw.source AS winner_source, dw.line AS winner_line, "
        "round(x.similarity, 4) AS similarity, lower(hex(dd.h)) AS content_hash "
        "FROM dropped x JOIN docs dd ON dd.doc = x.doc JOIN docs dw ON dw.doc = x.winner "
        f"JOIN parts pd ON pd.p = x.doc >> {_SHIFT} JOIN parts pw ON pw.p = x.winner >> {_SHIFT} "
        f"ORDER BY x.doc) TO '{_sql_path(path)}' (FORMAT json, COMPRESSION zstd)"
    )


def find_leaks(
    inputs: Sequence[ClusterInput],
    decisions: Sequence[np.ndarray],
    options: DedupOptions,
    work: Path,
    *,
    threads: int = 2,
    memory_mib: int = 512,
    sample: int = 20,
    buckets: Path | None = None,
) -> tuple[int, int, list[dict[str, Any]]]:
    """Check published decisions: (exact leaks, near leaks, sample pairs).

    Exact: a content hash published in two splits. Near (when ``options.near``): a pair of
    records published in two splits that share an LSH bucket and whose signatures estimate a
    similarity ≥ the threshold. Works from the partition indexes and the decisions (exactly
    what the shard stage publishes). When every published record is its content hash's
    representative (the first of its exact group, as :func:`cluster` publishes them), the
    bucket members :func:`cluster` wrote (``buckets``) are all the buckets a near pair can
    share, and the band keys are not grouped a second time; otherwise (decisions that
    publish another member of an exact group: a bug, or tampering) the band keys of every
    published record are unnested and grouped again, as the representative's bands may not
    be the record's own (``fold_case`` folds the content hash further than MinHash's text).

    Raises:
        ValueError: near dedup on and no ``buckets`` file.
    """
    if options.near and (buckets is None or not buckets.is_file()):
        raise ValueError(f"the near leakage check needs the buckets cluster() wrote ({buckets})")
    con = _connect(work, threads, memory_mib)
    try:
        _docs_view(con, inputs, options.near)
        _published_table(con, decisions)
        exact_rows = con.execute(
            "SELECT lower(hex(d.h)), list(DISTINCT p.split) FROM pub p JOIN docs d USING (doc) "
            "GROUP BY d.h HAVING count(DISTINCT p.split) > 1"
        ).fetchall()
        pairs: list[dict[str, Any]] = [
            {"kind": "exact", "content_hash": h, "splits": sorted(CODE_SPLITS[s] for s in splits)}
            for h, splits in exact_rows[:sample]
        ]
        near = 0
        if options.near:
            assert buckets is not None
            near = _near_leaks(con, options, pairs, sample, buckets)
        return len(exact_rows), near, pairs
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)


def _published_table(con: duckdb.DuckDBPyConnection, decisions: Sequence[np.ndarray]) -> None:
    """Table ``pub(doc, split)``: every record the decisions publish."""
    con.execute("CREATE TABLE pub (doc BIGINT, split UTINYINT)")
    for p, codes in enumerate(decisions):
        ords = np.flatnonzero(codes)
        table = _table(doc=(np.int64(p) << _SHIFT) | ords.astype(np.int64), split=codes[ords])
        con.register("pbatch", table)
        con.execute("INSERT INTO pub SELECT * FROM pbatch")
        con.unregister("pbatch")


def write_provenance(
    inputs: Sequence[ClusterInput],
    decisions: Sequence[np.ndarray],
    outs: Sequence[Path | None],
    work: Path,
    *,
    threads: int = 2,
    memory_mib: int = 512,
) -> None:
    """Each partition's provenance: content hash → family, source, line, split of every record
    its decisions publish, in record order, one zstd JSONL file per partition (``outs``; None:
    not wanted, e.g. already written for the same partition and decisions). Their concatenation
    in partition order is the build's provenance sidecar: a rebuild rewrites only the
    partitions whose decisions changed (writing the JSON is most of the time: ~0.5 s per
    million records)."""
    con = _connect(work, threads, memory_mib)
    splits = " ".join(f"WHEN {code} THEN '{name}'" for code, name in CODE_SPLITS.items())
    try:
        for inp, codes, out in zip(inputs, decisions, outs, strict=True):
            if out is None:
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            out.unlink(missing_ok=True)
            ords = np.flatnonzero(codes)
            con.register("pchunk", _table(ord=ords.astype(np.int64), split=codes[ords]))
            con.execute(
                f"COPY (SELECT lower(hex(d.h)) AS h, '{_sql_str(inp.family)}' AS family, "
                f"'{_sql_str(inp.source)}' AS source, d.line, CASE x.split {splits} END AS split "
                f"FROM read_parquet('{_sql_path(inp.index_path)}') d JOIN pchunk x "
                f"ON x.ord = d.ord ORDER BY d.ord) TO '{_sql_path(out)}' "
                "(FORMAT json, COMPRESSION zstd)"
            )
            con.unregister("pchunk")
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)


def _near_leaks(
    con: duckdb.DuckDBPyConnection,
    options: DedupOptions,
    pairs: list[dict[str, Any]],
    sample: int,
    buckets: Path,
) -> int:
    others = _count(
        con,
        # Grouped by a 64-bit hash of the content hash (8-byte keys aggregate ~2x faster than
        # 32-byte blobs); two hashes colliding could only make a record look like another's
        # copy, i.e. take the slower full check, never skip it.
        "SELECT count(*) FROM pub p JOIN docs d USING (doc) "
        "JOIN (SELECT hash(h) AS hh, min(doc) AS rep FROM docs GROUP BY hh) r ON r.hh = hash(d.h) "
        "WHERE p.doc <> r.rep",
    )
    if others:  # published records that are not their exact group's representative
        con.execute(
            "CREATE TABLE bandrows AS SELECT unnest(d.bands) AS key, d.doc, p.split "
            "FROM docs d JOIN pub p USING (doc)"
        )
    else:  # every published record in the shared buckets its content hash is a member of
        con.execute(
            "CREATE TABLE bandrows AS SELECT b.key, p.doc, p.split "
            f"FROM read_parquet('{_sql_path(buckets)}') b JOIN docs d USING (h) "
            "JOIN pub p USING (doc)"
        )
    # Only buckets that hold records of two splits can hide a leak.
    # (min <> max: two splits in the bucket, without count(DISTINCT)'s per-bucket sets)
    con.execute(
        "CREATE TABLE mixed AS SELECT key FROM bandrows GROUP BY key "
        "HAVING min(split) <> max(split)"
    )
    con.execute("CREATE TABLE inmixed AS SELECT x.* FROM bandrows x JOIN mixed m USING (key)")
    con.execute("DROP TABLE bandrows")
    con.execute(
        "CREATE TABLE cand AS SELECT DISTINCT x.doc AS a, y.doc AS b FROM inmixed x "
        "JOIN inmixed y ON x.key = y.key AND x.doc < y.doc "
        "AND x.split <> y.split"
    )
    _candidate_signatures(con, "cand")
    rows = (
        "SELECT c.a, c.b, sa.sig AS sa, sb.sig AS sb FROM cand c "
        "JOIN sigs sa ON sa.doc = c.a JOIN sigs sb ON sb.doc = c.b"
    )
    found = 0
    for batch in _batches(con, rows):
        sim = _similarity(batch.column("sa"), batch.column("sb"), options.num_perm)
        hits = np.flatnonzero(sim >= options.threshold)
        found += len(hits)
        a, b = numpy_view(batch.column("a")), numpy_view(batch.column("b"))
        for i in hits[: max(0, sample - len(pairs))]:
            pairs.append(
                {"kind": "near", "a": int(a[i]), "b": int(b[i]), "similarity": float(sim[i])}
            )
    return found
