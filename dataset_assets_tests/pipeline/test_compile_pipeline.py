"""The whole build (plain path) against SeaweedFS: split stability, quarantine, provenance,
incremental rebuilds that reuse intermediates and shards, the dedup sidecar."""

import gzip
import logging
import os
import re
import uuid
from pathlib import Path

import orjson
import pytest
import zstandard

from bench.gen_corpus import generate
from dataset_assets.core.config import DatasetConfig, parse_config
from dataset_assets.core.errors import QualityGateError
from dataset_assets.core.manifest import Manifest
from dataset_assets.core.provenance import read_provenance
from dataset_assets.pipeline.build import Build, build_dataset
from dataset_assets.storage import S3ObjectStore, S3Settings
from dataset_assets_tests.builds import object_lines


def _config(tmp: Path, **overrides: object) -> DatasetConfig:
    data = {
        "bucket": f"cp-{uuid.uuid4().hex[:12]}",
        "families": [
            {"name": "main", "paths": ["data/main/*"]},
            {"name": "held", "paths": ["data/held/*"], "holdout": True},
        ],
        "splits": {"train": 0.8, "val": 0.1, "test": 0.1},
        "shard_size": 64 * 1024,
        "part_size": 5 * 1024 * 1024,
        "staging_dir": ".local/staging",
        "manifest_path": ".local/manifest.json",
        # explicit: worker processes even for this small input (the real builds' code path)
        "compile": {"workers": 2},
        **overrides,
    }
    return parse_config(data, tmp)


def _store(cfg: DatasetConfig, settings: S3Settings) -> S3ObjectStore:
    store = S3ObjectStore(cfg.bucket, settings, part_size=cfg.part_size)
    store.ensure_bucket()
    return store


def _write(path: Path, records: list[dict], *, gz: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    path.write_bytes(gzip.compress(data) if gz else data)


def _published(store: S3ObjectStore, manifest: Manifest) -> dict[str, str]:
    """content_hash → split of every record in the build's shards (read back from S3)."""
    out = {}
    for shard in manifest.shards:
        for line in object_lines(store, shard):
            out[orjson.loads(line)["metadata"]["content_hash"]] = shard.split
    return out


def test_adding_a_file_moves_no_conversation_and_reuses_every_other_shard(
    tmp_path: Path, seaweed: S3Settings
) -> None:
    records = [r for r, _ in generate(3300, seed=3, exact_rate=0.0, near_rate=0.0)]
    _write(tmp_path / "data/main/m.jsonl", records[:2000])
    _write(tmp_path / "data/held/h.jsonl", records[2000:3000])
    cfg = _config(tmp_path)
    store = _store(cfg, seaweed)
    first = build_dataset(cfg, store)
    before = _published(store, first)
    assert len(before) == 3000

    # the new file sorts first among the family's files: placement must not matter
    _write(tmp_path / "data/main/a-new.jsonl.gz", records[3000:3300], gz=True)
    build = Build(cfg, store, "second")
    result = build.compile()
    shards, stats = build.shards(result)
    second = build.commit(
        result, [e for s in ("train", "val", "test") for e in shards[s]], build.export(shards)
    )
    after = _published(store, second)
    assert len(after) == 3300
    assert [h for h, split in before.items() if after[h] != split] == []
    old_keys = {s.key for s in first.shards}
    new_keys = [s.key for s in second.shards if s.key not in old_keys]
    assert stats.reused == len(first.shards) and stats.written == len(new_keys)
    assert all(s.key in {x.key for x in second.shards} for s in first.shards)
    assert set(second.counts.per_split_family["test"]) == {"main", "held"}
    assert "held" not in second.counts.per_split_family.get("train", {})


def test_every_bad_input_lands_in_quarantine_with_its_reason(
    tmp_path: Path, seaweed: S3Settings
) -> None:
    good = {
        "messages": [{"role": "user", "content": "fine"}, {"role": "assistant", "content": "ok"}]
    }
    lines = [
        orjson.dumps(good),
        b"{broken",
        b"\xff\xfe not utf8",
        orjson.dumps({"foo": "bar"}),
        orjson.dumps({"messages": [{"role": "narrator", "content": "x"}]}),
        orjson.dumps({"messages": [{"role": "user", "content": ""}]}),
        orjson.dumps({"messages": [{"role": "user", "content": 3}]}),
        orjson.dumps({"messages": [{"role": "system", "content": "only"}]}),
        orjson.dumps({"prompt": "x" * 5000, "response": "long"}),
    ]
    folder = tmp_path / "data/main"
    folder.mkdir(parents=True)
    (folder / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n" + b'{"messages": [{"ro')
    (folder / "cut.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress(orjson.dumps(good) + b"\n")[:-6]
    )
    (folder / "notarray.json").write_bytes(b'"a string, not an array"')
    cfg = _config(tmp_path, normalize={"max_line_bytes": 4096})
    store = _store(cfg, seaweed)
    result = Build(cfg, store, "q").compile()
    assert result.counts.quarantined_by_reason == {
        "malformed_json": 1,
        "invalid_utf8": 1,
        "unknown_shape": 1,
        "unknown_role": 1,
        "empty_turn": 1,
        "non_string_content": 1,
        "empty_conversation": 1,
        "line_too_long": 1,
        "truncated_record": 2,
        "not_a_json_array": 1,
    }
    entries = [orjson.loads(x) for x in store.get_bytes(result.quarantine.key).splitlines()]
    assert len(entries) == 11
    assert all(e["source"] and e["line"] >= 1 and e["reason"] for e in entries)
    by_reason = {e["reason"]: e for e in entries}
    assert by_reason["line_too_long"]["line"] == 9
    assert by_reason["malformed_json"]["raw_prefix"] == "{broken"
    with pytest.raises(QualityGateError, match="quarantine_max_ratio"):
        build_dataset(cfg, store)


def test_provenance_and_dedup_sidecars_account_for_every_record(
    tmp_path: Path, seaweed: S3Settings
) -> None:
    records = [r for r, _ in generate(600, seed=5)]
    _write(tmp_path / "data/main/a.jsonl", records)
    cfg = _config(tmp_path)
    store = _store(cfg, seaweed)
    manifest = build_dataset(cfg, store)
    assert manifest.provenance is not None and manifest.dedup is not None
    rows = read_provenance(store.get_bytes(manifest.provenance.key))
    assert len(rows) == manifest.counts.published_records
    assert {r["h"] for r in rows} == set(_published(store, manifest))
    dropped = read_provenance(store.get_bytes(manifest.dedup.key))
    c = manifest.counts
    assert c.near_duplicates > 0 and c.exact_duplicates > 0
    assert len(dropped) == c.exact_duplicates + c.near_duplicates
    assert {d["kind"] for d in dropped} == {"exact", "near"}
    assert all(d["winner_line"] < d["line"] and d["similarity"] >= 0.7 for d in dropped)
    assert c.input_records == c.published_records + len(dropped) + c.quarantined


def test_export_off_publishes_no_export_and_removes_the_stale_fixed_export(
    tmp_path: Path, seaweed: S3Settings
) -> None:
    """``compiled_export: false``: nothing is composed, the manifest names no export, and the
    fixed export key (a copy of the previous build's export) is gone once the build commits,
    while the previous build's immutable export stays for readers pinned on it."""
    from dataset_assets.core.layout import export_key
    from dataset_assets.loader import S3DatasetLoader

    records = [r for r, _ in generate(600, seed=5, exact_rate=0.0, near_rate=0.0)]
    _write(tmp_path / "data/main/m.jsonl", records[:500])
    _write(tmp_path / "data/held/h.jsonl", records[500:])
    with_export = _config(tmp_path)
    store = _store(with_export, seaweed)
    first = build_dataset(with_export, store)
    assert first.export is not None
    fixed = export_key(with_export.prefix, ".jsonl.zst")  # shards are zstd by default
    assert store.exists(fixed)

    _write(tmp_path / "data/main/n.jsonl", records[:10] + [{"text": "only new"}])
    no_export = _config(tmp_path, bucket=with_export.bucket, compiled_export=False)
    second = build_dataset(no_export, store)
    assert second.export is None
    assert not store.exists(fixed), "the fixed key must not keep an older build's export"
    assert store.exists(first.export.key), "the pinned build's immutable export stays"
    assert second.build_id != first.build_id
    latest = store.uri(f"{no_export.prefix}/manifest.json")
    loaded = list(S3DatasetLoader(latest, settings=seaweed, split="train", shuffle=False))
    assert len(loaded) == second.counts.per_split["train"] > 0


def test_shards_and_export_are_zstd_jsonl_and_switching_compression_leaves_no_stale_export(
    tmp_path: Path, seaweed: S3Settings
) -> None:
    """Default: every shard is one zstd frame of JSONL (``.jsonl.zst``) whose sha256 is of the
    stored bytes; the composed export decompresses to every shard's lines in manifest order.
    Switching to ``shard_compression: none`` publishes plain ``.jsonl`` and removes the fixed
    ``.jsonl.zst`` export (it would hold the older build's data)."""
    import hashlib

    from dataset_assets.core.layout import export_key
    from dataset_assets.loader import S3DatasetLoader

    records = [r for r, _ in generate(900, seed=7, exact_rate=0.0, near_rate=0.0)]
    _write(tmp_path / "data/main/m.jsonl", records[:800])
    _write(tmp_path / "data/held/h.jsonl", records[800:])
    zstd_cfg = _config(tmp_path)
    store = _store(zstd_cfg, seaweed)
    first = build_dataset(zstd_cfg, store)
    assert first.export is not None and first.export.compression == "zstd"
    lines: list[bytes] = []
    for shard in first.shards:
        body = store.get_bytes(shard.key)
        assert shard.key.endswith(".jsonl.zst") and shard.compression == "zstd"
        assert body[:4] == b"\x28\xb5\x2f\xfd"  # the zstd frame magic
        assert hashlib.sha256(body).hexdigest() == shard.sha256 and len(body) == shard.bytes
        shard_lines = object_lines(store, shard)
        assert len(shard_lines) == shard.records
        lines += shard_lines
    assert sum(len(x) + 1 for x in lines) > 2 * sum(s.bytes for s in first.shards)
    assert object_lines(store, first.export) == lines
    fixed_zst = export_key(zstd_cfg.prefix, ".jsonl.zst")
    assert store.get_bytes(fixed_zst) == store.get_bytes(first.export.key)
    for key in (first.export.key, fixed_zst):  # what a download tool sees
        head = store.client.head_object(Bucket=store.bucket, Key=key)
        assert head["ContentType"] == "application/zstd"
    uri = store.uri(f"{zstd_cfg.prefix}/manifest.json")
    for split in ("train", "val", "test"):
        loader = S3DatasetLoader(uri, settings=seaweed, split=split, shuffle=False)
        published = [x for s in first.split_shards(split) for x in object_lines(store, s)]
        assert [orjson.dumps(r) for r in loader] == published

    plain_cfg = _config(tmp_path, bucket=zstd_cfg.bucket, shard_compression="none")
    second = build_dataset(plain_cfg, store)
    assert second.export is not None and second.export.compression is None
    assert all(s.key.endswith(".jsonl") and s.compression is None for s in second.shards)
    assert not store.exists(fixed_zst), "the .jsonl.zst fixed key held the older build"
    plain = store.get_bytes(export_key(plain_cfg.prefix)).splitlines()
    assert sorted(plain) == sorted(lines)  # same records, same decisions


def test_a_config_choosing_plain_shards_keeps_the_digest_it_had_before_the_option() -> None:
    """``shard_compression: none`` is the format of every build before the option existed: its
    config digest (part of every build id) is the one those builds recorded (pinned: computed
    with the config module of commit 7c31362), so an unchanged rebuild publishes nothing new.
    The zstd default is another format, hence another digest."""
    base = {"bucket": "bkt", "families": [{"name": "a", "paths": ["data/*.jsonl"]}]}
    before = "ccf290d299ef102674df8a53498e3c34267c346d21da5657fbdd6944cb67b85b"
    plain = parse_config({**base, "shard_compression": "none"}, Path("/tmp/x"))
    assert plain.digest() == before
    assert parse_config(base, Path("/tmp/x")).digest() != before
    # dedup.near_system_turns (added later) at its default leaves the digest as it was
    explicit = {**base, "shard_compression": "none", "dedup": {"near_system_turns": False}}
    assert parse_config(explicit, Path("/tmp/x")).digest() == before
    with_system = {**base, "shard_compression": "none", "dedup": {"near_system_turns": True}}
    assert parse_config(with_system, Path("/tmp/x")).digest() != before


def _worker_servers() -> list[int]:
    """pids of this process's children that are multiprocessing forkservers (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if parent == os.getpid() and b"multiprocessing.forkserver" in cmdline:
            found.append(int(stat.parent.name))
    return found


def test_the_idle_worker_server_is_stopped_before_a_large_dedup_stage(
    tmp_path: Path, seaweed: S3Settings
) -> None:
    """Stage 1's forkserver (~110 MiB with the package imported) would sit idle beside DuckDB
    at the build's memory peak: the compile stops it when the indexes reach an eighth of
    DuckDB's budget (here 64 MiB: 8 MiB of indexes), and the shard step starts a new one.
    A small stage keeps it (restarting it costs more than its memory matters there)."""
    records = [r for r, _ in generate(12_000, seed=9, exact_rate=0.0, near_rate=0.0)]
    _write(tmp_path / "data/main/a.jsonl", records[:5000])
    _write(tmp_path / "data/main/b.jsonl", records[5000:10_000])
    _write(tmp_path / "data/held/h.jsonl", records[10_000:])
    cfg = _config(tmp_path, compile={"workers": 2, "memory_mib": 64})
    store = _store(cfg, seaweed)
    build = Build(cfg, store, "workers")

    result = build.compile()  # stage 1 of three files in two worker processes

    assert _worker_servers() == []
    shards, stats = build.shards(result)  # workers again, from a new server
    assert stats.written == sum(len(s) for s in shards.values()) > 1
    assert sum(s.records for split in shards.values() for s in split) == (
        result.counts.published_records
    )
    assert _worker_servers() != []  # the shard step's server, idle again
    small = _config(tmp_path)  # the same three files, a new bucket, DuckDB's 512 MiB
    Build(small, _store(small, seaweed), "small").compile()
    assert _worker_servers() != []


def test_a_rebuild_of_unchanged_sources_reuses_the_clustering_unless_its_decisions_changed(
    tmp_path: Path, seaweed: S3Settings
) -> None:
    """Same partitions, same options (another shard size): the dedup stage and leakage check
    are not run again; a decisions object that no longer matches its sha256 is recomputed."""
    records = [r for r, _ in generate(900, seed=11)]
    _write(tmp_path / "data/main/a.jsonl", records[:500])
    _write(tmp_path / "data/held/h.jsonl", records[500:])
    cfg = _config(tmp_path)
    store = _store(cfg, seaweed)
    first = build_dataset(cfg, store)

    smaller = cfg.model_copy(update={"shard_size": 32 * 1024})
    again = Build(smaller, store, "again").compile()

    assert again.clustering_reused
    assert again.counts == first.counts
    assert (again.provenance.key, again.dedup.key) == (first.provenance.key, first.dedup.key)
    second = build_dataset(smaller, store)
    assert second.counts == first.counts and len(second.shards) > len(first.shards)
    assert _published(store, second) == _published(store, first)

    # a decisions object changed in S3: not reused, the dedup stage runs and rewrites it
    part = again.partitions[0]
    key = again.decisions_key(cfg.prefix, part)
    original = store.get_bytes(key)
    store.put_bytes(key, bytes(len(original)))  # every record "dropped"
    recomputed = Build(smaller, store, "recomputed").compile()
    assert not recomputed.clustering_reused
    assert recomputed.partitions == again.partitions
    assert store.get_bytes(key) == original


def test_a_big_file_read_in_byte_ranges_publishes_what_one_reading_does(
    tmp_path: Path, seaweed: S3Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Stage 1 reads a big local JSONL file in byte ranges on both workers; the build
    publishes the same shards and sidecars, byte for byte, as a build reading it whole."""
    records = [r for r, _ in generate(1400, seed=11)]
    manifests = []
    for name, compile_options in (("ranges", {"workers": 2, "range_mib": 1}), ("whole", {})):
        root = tmp_path / name
        _write(root / "data/main/big.jsonl", records[:1200])  # ~9.6 MB: ~10 ranges of 1 MiB
        (root / "data/main/big.jsonl").open("ab").write(b'{"broken\n')
        _write(root / "data/held/h.jsonl", records[1200:])
        cfg = _config(root, compile={"workers": 1, **compile_options})
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="dataset_assets"):
            manifests.append(build_dataset(cfg, _store(cfg, seaweed)))
        cut = [m for m in caplog.messages if m.startswith("compile: stage 1 reads")]
        if name == "ranges":
            assert cut and re.fullmatch(r".* 1 of 2 files in \d+ byte ranges of ~1 MiB", cut[0])
        else:
            assert not cut
    ranges, whole = manifests
    assert [(s.split, s.sha256, s.records) for s in ranges.shards] == [
        (s.split, s.sha256, s.records) for s in whole.shards
    ]
    for sidecar in ("quarantine", "provenance", "dedup"):
        assert getattr(ranges, sidecar).sha256 == getattr(whole, sidecar).sha256, sidecar
    assert ranges.counts == whole.counts
    assert ranges.counts.quarantined == 1 and ranges.counts.near_duplicates > 0


def test_a_rebuild_after_a_new_file_groups_from_the_kept_keys_and_publishes_what_a_fresh_build_does(
    tmp_path: Path, seaweed: S3Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The dedup stage of a rebuild after a new file starts from the shared keys this machine
    kept; its build is the same as one from an empty cache. A removed file: every row is
    grouped again (the kept keys may miss keys now shared)."""
    caplog.set_level(logging.INFO, logger="dataset_assets")
    records = [r for r, _ in generate(2400, seed=21, exact_rate=0.05, near_rate=0.10)]
    _write(tmp_path / "data/main/m.jsonl", records[:1200])
    _write(tmp_path / "data/main/n.jsonl", records[1200:2000])
    _write(tmp_path / "data/held/h.jsonl", records[2000:])
    cfg = _config(tmp_path)
    store = _store(cfg, seaweed)
    build_dataset(cfg, store)
    grouped = "grouped only the keys the last clustering shared"
    assert grouped not in caplog.text

    # copies (exact and one word edited) of old records, in a file that outranks them
    copies = []
    for r in records[:2000:20]:
        words = r["messages"][-1]["content"].split()
        words[len(words) // 2] = "EDITED"
        copies += [
            r,
            {"messages": [*r["messages"][:-1], {**r["messages"][-1], "content": " ".join(words)}]},
        ]
    _write(tmp_path / "data/main/a-new.jsonl", copies)
    chunks = cfg.staging_dir / "cache" / "provenance"
    before = {p.name: p.stat().st_mtime_ns for p in chunks.iterdir()}
    assert len(before) == 3
    caplog.clear()
    rebuilt = build_dataset(cfg, store)
    after = {p.name: p.stat().st_mtime_ns for p in chunks.iterdir()}
    # only the new partition's provenance and that of partitions whose decisions changed
    # (their records lost to the new file's copies) are written; old files are not rewritten
    assert len(after) == 4 and all(after.get(n) in (t, None) for n, t in before.items())
    assert any(after.get(n) == t for n, t in before.items())  # h.jsonl's: nothing changed
    assert "keys of 1 new of 4 partitions" in caplog.text

    fresh_cfg = _config(
        tmp_path, staging_dir=".local/fresh", compile={"workers": 2, "local_cache": False}
    )
    fresh_store = _store(fresh_cfg, seaweed)
    fresh = build_dataset(fresh_cfg, fresh_store)
    assert rebuilt.counts == fresh.counts and rebuilt.counts.near_duplicates > 100
    assert _published(store, rebuilt) == _published(fresh_store, fresh)
    provenance = read_provenance(store.get_bytes(rebuilt.provenance.key))
    assert provenance == read_provenance(fresh_store.get_bytes(fresh.provenance.key))
    assert len(provenance) == rebuilt.counts.published_records
    assert {r["source"].rsplit("/", 1)[-1] for r in provenance} == {
        "a-new.jsonl",
        "m.jsonl",
        "n.jsonl",
        "h.jsonl",
    }

    (tmp_path / "data/main/n.jsonl").unlink()
    for chunk in chunks.iterdir():  # cut to nothing (a crash before the disk kept them)
        chunk.write_bytes(b"")
    caplog.clear()
    fewer = build_dataset(cfg, store)
    assert grouped not in caplog.text
    fresh_store2 = _store(_config(tmp_path), seaweed)
    fresh2 = build_dataset(
        fresh_cfg.model_copy(update={"bucket": fresh_store2.bucket}), fresh_store2
    )
    assert _published(store, fewer) == _published(fresh_store2, fresh2)
    # empty cached provenance files were written again, not published as they were
    assert read_provenance(store.get_bytes(fewer.provenance.key)) == read_provenance(
        fresh_store2.get_bytes(fresh2.provenance.key)
    )
