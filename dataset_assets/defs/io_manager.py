"""The S3 IO manager: every output it handles goes through the publish protocol (DESIGN §5).

Outputs are descriptions of files (staged shards, a streamed export, the manifest), never the
bytes. After publishing, a small JSON reference (the manifest entries of what was published) is
stored at ``{prefix}/_assets/{asset}.json``; downstream assets load that reference, so the
manifest's inputs are the shard assets themselves and the lineage is real.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg
import orjson
from pydantic import TypeAdapter

from dataset_assets.core.manifest import FileEntry, Manifest, ShardEntry
from dataset_assets.core.staged import StagedFile, StreamedFile
from dataset_assets.defs.resources import DatasetConfigResource, ObjectStoreResource
from dataset_assets.pipeline.build import make_publisher, publish_journal
from dataset_assets.pipeline.compile import CompileResult, remove_work_dir
from dataset_assets.pipeline.entries import file_entry, shard_entry
from dataset_assets.pipeline.manifest import publish_manifest
from dataset_assets.pipeline.shards import ShardStream, publish_shards
from dataset_assets.storage import Publisher

_SHARDS = TypeAdapter(list[ShardEntry])


class S3PublishIOManager(dg.ConfigurableIOManager):
    """Publishes shards as they are written, the export as a stream, and the manifest last."""

    dataset: dg.ResourceDependency[DatasetConfigResource]
    s3: dg.ResourceDependency[ObjectStoreResource]

    def _ref_key(self, prefix: str, context: dg.OutputContext | dg.InputContext) -> str:
        return _asset_ref_key(prefix, context.asset_key.path)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        cfg = self.dataset.load()
        store = self.s3.store_for(cfg)
        if isinstance(obj, CompileResult):
            ref = obj.model_dump_json().encode()
            meta: dict[str, Any] = {"dagster/row_count": obj.counts.published_records}
        elif isinstance(obj, ShardStream):
            ref, meta = self._publish_shards(obj, make_publisher(cfg, store, context.run_id))
            meta["dagster/uri"] = store.uri(f"{cfg.prefix}/{obj.split}/")
        elif isinstance(obj, StagedFile | StreamedFile):
            ref, meta = self._publish_file(obj, make_publisher(cfg, store, context.run_id))
        elif isinstance(obj, Manifest):
            ref, meta = obj.to_json(), _manifest_metadata(obj)
            meta["dagster/uri"] = publish_manifest(store, obj, cfg.manifest_path)
            meta["local_copy"] = dg.MetadataValue.path(str(cfg.manifest_path))
            meta["journal"] = publish_journal(store, cfg, obj, context.run_id)
            # The build is committed: drop its working folder (spool, indexes). Builds run one at a
            # time, so the conversations reference is this build's (also after a retried run).
            conv_ref = store.get_bytes(_asset_ref_key(cfg.prefix, ["conversations"]))
            remove_work_dir(CompileResult.model_validate_json(conv_ref))
        else:
            raise TypeError(f"S3PublishIOManager cannot publish {type(obj).__name__}")
        store.put_bytes(self._ref_key(cfg.prefix, context), ref, content_type="application/json")
        context.add_output_metadata(meta)

    @staticmethod
    def _publish_shards(stream: ShardStream, publisher: Publisher) -> tuple[bytes, dict[str, Any]]:
        with publisher:
            published = publish_shards(stream, publisher)
        entries = [shard_entry(stream.split, p) for p in published]
        meta = {
            "dagster/row_count": sum(e.records for e in entries),
            "shards": len(entries),
            "bytes": sum(e.bytes for e in entries),
            "uploaded": sum(p.uploaded for p in published),
            "peak_staged_bytes": publisher.peak_staged_bytes,
            "shard_table": dg.MetadataValue.md(_shard_table(entries)),
        }
        return _SHARDS.dump_json(entries), meta

    @staticmethod
    def _publish_file(
        obj: StagedFile | StreamedFile, publisher: Publisher
    ) -> tuple[bytes, dict[str, Any]]:
        with publisher:
            if isinstance(obj, StagedFile):
                published = publisher.publish(obj)
            else:
                # The export's key is fixed (seed layout): each build replaces it.
                published = publisher.publish_stream(obj, overwrite=True)
        entry = file_entry(published)
        meta = {
            "dagster/uri": entry.uri,
            "dagster/row_count": entry.records,
            "bytes": entry.bytes,
            "sha256": entry.sha256,
            "uploaded": published.uploaded,
        }
        return entry.model_dump_json().encode(), meta

    def load_input(self, context: dg.InputContext) -> Any:
        cfg = self.dataset.load()
        store = self.s3.store_for(cfg)
        data = store.get_bytes(self._ref_key(cfg.prefix, context))
        name = context.asset_key.path[-1]
        if name == "conversations":
            return CompileResult.model_validate_json(data)
        if name.endswith("_shards"):
            return _SHARDS.validate_json(data)
        if name == "manifest":
            return Manifest.from_json(data)
        return FileEntry.model_validate(orjson.loads(data))


def _asset_ref_key(prefix: str, asset_path: Sequence[str]) -> str:
    return f"{prefix}/_assets/{'__'.join(asset_path)}.json"


def _manifest_metadata(m: Manifest) -> dict[str, Any]:
    return {
        "build_id": m.build_id,
        "dagster/row_count": m.counts.published_records,
        "shards": len(m.shards),
        "bytes": sum(s.bytes for s in m.shards),
        "per_split": dg.MetadataValue.json(m.counts.per_split),
    }


def _shard_table(entries: list[ShardEntry]) -> str:
    rows = ["| shard | records | bytes | sha256 |", "|---|---|---|---|"]
    rows += [
        f"| {e.shard_id} | {e.records} | {e.bytes} | `{e.sha256[:16]}…` |" for e in entries[:50]
    ]
    if len(entries) > 50:
        rows.append(f"| … {len(entries) - 50} more | | | |")
    return "\n".join(rows)
