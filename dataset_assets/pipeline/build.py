"""One owner per build: :class:`Build` holds a run's config, store and work areas and runs its
steps — compile, shards, export, commit — for both the Dagster assets and the plain
:func:`build_dataset` path (CLI, tests, benchmarks).

Every step starts from typed references published by the step before (S3 keys, never local
paths), so the steps can run in different processes or on different machines; stage 1's
intermediates are read from this machine's cache when they are there, else from S3
(``compile.intermediates``).
"""

import errno
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dataset_assets.core.card import render_hf_readme
from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.errors import QualityGateError, StagingSpaceError
from dataset_assets.core.layout import (
    SPLITS,
    build_sidecar_key,
    cache_shards_key,
    readme_key,
    run_journal_key,
    run_prefix,
)
from dataset_assets.core.manifest import FileEntry, Manifest, ShardEntry, with_build_id
from dataset_assets.pipeline.commit import (
    PointerState,
    commit_manifest,
    probe_conditional_writes,
    read_pointer,
)
from dataset_assets.pipeline.compile import (
    PROVENANCE_FOLDER,
    CompileResult,
    compile_conversations,
    provenance_chunk_name,
    quarantine_ratio,
    shares_intermediates,
    work_area,
    worker_count,
)
from dataset_assets.pipeline.export import compose_build_export, export_problems, promote_export
from dataset_assets.pipeline.lease import BuildLease
from dataset_assets.pipeline.maintenance import verify_build
from dataset_assets.pipeline.manifest import assemble_manifest
from dataset_assets.pipeline.shards import ShardStats, publish_all_shards, shard_set_digest
from dataset_assets.storage import Journal, S3ObjectStore


def run_folder(cfg: DatasetConfig, run_id: str) -> Path:
    """A run's private local folder (work areas and step journals); removed at commit."""
    return cfg.staging_dir / "runs" / (run_id or "no-run-id")


LEASE_TTL_S = 300.0
"""A killed build blocks others at most this long (then the next build takes the lease over)."""


class Build:
    """The steps of one build run. Cheap to create: each step (or process) makes its own."""

    def __init__(
        self,
        cfg: DatasetConfig,
        store: S3ObjectStore,
        run_id: str,
        *,
        owner: str = "",
        hand_on: bool = False,
        one_machine: bool = True,
    ) -> None:
        """Args:
        cfg: the dataset config.
        store: the dataset bucket.
        run_id: this run (names its work folders, references and journals).
        owner: the build lease's owner: the root run id, so a re-execution continues the run.
        hand_on: keep the lease between steps (until its expiry) for the run's next step,
            when the run goes on to the commit; otherwise each step releases it.
        one_machine: every step of the run runs on this machine (decides where the compile
            keeps its intermediates under ``compile.intermediates: auto``).
        """
        self.cfg = cfg
        self.store = store
        self.run_id = run_id or uuid.uuid4().hex
        self.owner = owner or self.run_id
        self.hand_on = hand_on
        self.share = shares_intermediates(cfg, one_machine)

    def step(self, *, last: bool = False) -> BuildLease:
        """The prefix's build lease for one step: one build at a time, whatever starts it (UI,
        sensor, CLI). A failure or the last step releases it."""
        hold = self.hand_on and not last
        return BuildLease(
            self.store, self.cfg.prefix, self.owner, LEASE_TTL_S, hold_after_exit=hold
        )

    def _remove_stale_run_folders(self) -> None:
        """Work folders of other runs of this staging dir are dead: this build holds the lease."""
        runs = self.cfg.staging_dir / "runs"
        for folder in runs.iterdir() if runs.exists() else []:
            if folder.name != self.run_id:
                shutil.rmtree(folder, ignore_errors=True)

    def journal(self, step: str) -> Journal:
        """The step's local publish journal (uploaded when the step ends)."""
        return Journal(run_folder(self.cfg, self.run_id) / f"journal-{step}.jsonl", self.run_id)

    def _upload_journal(self, journal: Journal, step: str) -> None:
        if journal.path.exists():
            key = run_journal_key(self.cfg.prefix, self.run_id, step)
            self.store.put_bytes(
                key, journal.path.read_bytes(), content_type="application/x-ndjson"
            )
            journal.path.unlink()

    def compile(self) -> CompileResult:
        """Partitions (parallel, reused when unchanged) → dedup clusters → decisions, sidecars
        and the leakage report. Records the latest pointer this build starts from."""
        self.store.ensure_bucket()
        probe_conditional_writes(self.store, self.cfg.prefix)
        with self.step():
            self._remove_stale_run_folders()
            started = read_pointer(self.store, self.cfg.prefix)
            area = work_area(self.cfg, self.run_id, "compile")
            journal = self.journal("compile")
            need = "the compressed records of the largest source files plus their indexes"
            with staging_space(self.cfg.staging_dir, need):
                result = compile_conversations(
                    self.cfg,
                    self.store,
                    run_id=self.run_id,
                    area=area,
                    journal=journal,
                    share=self.share,
                )
            self._upload_journal(journal, "compile")
        return result.model_copy(
            update={"started_from_etag": started.etag, "started_from_build": started.build_id}
        )

    def shards(self, result: CompileResult) -> tuple[dict[str, list[ShardEntry]], ShardStats]:
        """Every split's shards, published (or reused) partition by partition."""
        area = work_area(self.cfg, self.run_id, "shards")
        journal = self.journal("shards")
        with self.step():
            k, workers = self.cfg.max_publishes_in_flight, worker_count(self.cfg)
            need = f"{(k + 1) * self.cfg.shard_size * workers:,} bytes ((K+1) shards per worker)"
            try:
                with staging_space(self.cfg.staging_dir, need):
                    return publish_all_shards(self.cfg, self.store, result, area, journal)
            finally:
                self._upload_journal(journal, "shards")

    def export(self, shards: dict[str, list[ShardEntry]]) -> FileEntry | None:
        """The build's immutable export, composed in S3 from its verified shards; None when
        the config turns the compiled export off."""
        if not self.cfg.compiled_export:
            return None
        ordered = [entry for split in SPLITS for entry in shards.get(split, [])]
        with self.step():
            return compose_build_export(self.cfg, self.store, ordered)

    def commit(
        self, result: CompileResult, shards: list[ShardEntry], export: FileEntry | None
    ) -> Manifest:
        """Assemble and commit the manifest (only if the latest pointer has not moved since the
        compile), then point the fixed export name at this build's export; gather the journal."""
        manifest = assemble_manifest(
            self.cfg, result, shards, export, result.quarantine, result.provenance
        )
        manifest = with_build_id(
            manifest.model_copy(
                update={"dedup": result.dedup, "cache_keys": self.cache_keys(result)}
            )
        )
        started = PointerState(etag=result.started_from_etag, build_id=result.started_from_build)
        with self.step(last=True) as lease:
            lease.ensure_held()
            commit_manifest(self.store, manifest, self.cfg.manifest_path, started)
            promote_export(self.store, manifest)
            self.publish_card(manifest)
            self.publish_journal(manifest)
        shutil.rmtree(run_folder(self.cfg, self.run_id), ignore_errors=True)
        prune_local_cache(self.cfg, result)
        return manifest

    def cache_keys(self, result: CompileResult) -> list[str]:
        shard_sets = [
            cache_shards_key(self.cfg.prefix, shard_set_digest(self.cfg, part, split))
            for part in result.partitions
            for split in part.split_records
        ]
        return result.cache_keys(self.cfg.prefix, shard_sets)

    def publish_card(self, manifest: Manifest) -> str:
        """The committed build's dataset card, as a Hugging Face style ``README.md`` next to the
        manifest (replaced by each commit, like the latest pointer)."""
        card = self.cfg.card
        text = render_hf_readme(
            manifest,
            self.cfg,
            license=card.license,
            description=card.description,
            pretty_name=card.pretty_name,
            endpoint_url=self.store.settings.endpoint_url,
        )
        key = readme_key(self.cfg.prefix)
        self.store.put_bytes(key, text.encode(), content_type="text/markdown; charset=utf-8")
        return self.store.uri(key)

    def publish_journal(self, manifest: Manifest) -> str:
        """Gather the run's step journals next to its manifest (kept out of the deterministic
        manifest): ``builds/{build_id}/journal-{run}.jsonl``."""
        folder = run_prefix(self.cfg.prefix, self.run_id) + "journal-"
        parts = sorted(self.store.list(folder), key=lambda o: o.key)
        data = b"".join(self.store.get_bytes(o.key) for o in parts)
        key = build_sidecar_key(manifest.prefix, manifest.build_id, f"journal-{self.run_id}.jsonl")
        self.store.put_bytes(key, data, content_type="application/x-ndjson")
        return self.store.uri(key)


@contextmanager
def staging_space(folder: Path, needed: str) -> Iterator[None]:
    """Turn a full staging disk (ENOSPC) into a typed error naming the folder and the bytes."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        usage = shutil.disk_usage(folder if folder.exists() else folder.parent)
        raise StagingSpaceError(
            f"staging disk full at {folder}: {usage.free:,} bytes free of {usage.total:,} bytes; "
            f"this step needs about {needed}"
        ) from exc


def build_problems(
    store: S3ObjectStore, manifest: Manifest, *, readback: bool = False
) -> list[str]:
    """Every object a manifest names, checked in S3 (the export by its own rules: a composed
    export has no whole-file sha256); empty means the build is intact."""
    return verify_build(store, manifest, readback=readback, with_export=False) + export_problems(
        store, manifest, readback=readback
    )


def prune_local_cache(cfg: DatasetConfig, result: CompileResult) -> None:
    """Keep only the partitions the committed build used in this machine's local cache, and
    their provenance files under the build's decisions."""
    area = work_area(cfg, result.run_id, "compile")
    if area.cache is None:
        return
    parts = result.partitions
    _keep_only(area.cache / "partitions", {p.digest for p in parts})
    _keep_only(
        area.cache / PROVENANCE_FOLDER,
        {provenance_chunk_name(p.digest, p.decisions_sha256) for p in parts},
    )


def _keep_only(folder: Path, names: set[str]) -> None:
    """Remove every file and folder in ``folder`` not named in ``names``."""
    for path in folder.iterdir() if folder.exists() else []:
        if path.name in names:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def build_dataset(cfg: DatasetConfig, store: S3ObjectStore, *, run_id: str = "") -> Manifest:
    """The whole build in one call, without Dagster."""
    build = Build(cfg, store, run_id, hand_on=True)
    result = build.compile()
    check_quality_gates(cfg, result)
    shards, _ = build.shards(result)
    export = build.export(shards)
    return build.commit(result, [e for s in SPLITS for e in shards[s]], export)


def check_quality_gates(cfg: DatasetConfig, result: CompileResult) -> None:
    """The blocking gates of the Dagster checks, for the plain path: raise before publishing."""
    leak = result.leakage
    if not leak.passed:
        raise QualityGateError(
            f"split leakage: {leak.exact} exact and {leak.near} near duplicate pairs published in "
            f"two splits, e.g. {leak.pairs[:3]}"
        )
    ratio = quarantine_ratio(result)
    if ratio > cfg.quarantine_max_ratio:
        raise QualityGateError(
            f"quarantined {result.counts.quarantined} of {result.counts.input_records} records "
            f"({ratio:.2%}), above quarantine_max_ratio {cfg.quarantine_max_ratio:.2%}"
        )
