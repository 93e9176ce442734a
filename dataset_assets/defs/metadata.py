"""Dagster metadata built from typed values: what the UI shows and plots for each build.

Pure functions (no I/O): the IO manager calls them after publishing.

- :func:`manifest_metadata`: numeric entries the UI plots across builds (``records/{split}``,
  ``family/{name}``, ``quarantine/{reason}``, ``duplicates/exact|near``), the dataset card as
  Markdown, and links to the manifest, the export and the dataset folder.
- :func:`shard_metadata`: one split's shards: ``dagster/row_count``, the shard table (full
  sha256) as a table with a schema, ``dagster/uri`` naming exactly this build's shards, links.
- :func:`record_column_schema`: ``dagster/column_schema`` of a published record.

Links: every S3 location is given twice, the ``s3://`` URI (text) and a clickable http(s) URL
(:class:`ObjectLinks`): ``{endpoint}/{bucket}/{key}`` on a custom endpoint (the embedded
SeaweedFS, MinIO, Ceph: path-style), ``{scheme}://{bucket}.{host}/{key}`` for virtual-hosted
endpoints, the AWS console on AWS.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import dagster as dg

from dataset_assets.core.card import render_card
from dataset_assets.core.config import DatasetConfig
from dataset_assets.core.layout import SPLITS, build_manifest_key, latest_manifest_key, s3_uri
from dataset_assets.core.manifest import Manifest, ShardEntry
from dataset_assets.storage import S3Settings

AWS_CONSOLE = "https://s3.console.aws.amazon.com/s3"
MAX_LINKED_SHARDS = 50  # shard links listed in Markdown; the table always holds every shard

SHARD_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("shard_id", "string", "{split}-{index:05d}-{sha256[:12]}"),
        dg.TableColumn("records", "int", "conversations in the shard"),
        dg.TableColumn("bytes", "int", "object size"),
        dg.TableColumn("sha256", "string", "sha256 of the object's bytes (verified in S3)"),
        dg.TableColumn("uri", "string", "s3:// URI of the object"),
        dg.TableColumn("families", "string", "records per source family"),
    ]
)

RECORD_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn(
            "messages",
            "list<struct<role: string, content: string>>",
            "the conversation in ChatML order; role is system, user or assistant",
        ),
        dg.TableColumn("metadata.family", "string", "source family (config name)"),
        dg.TableColumn("metadata.source", "string", "source file or s3:// URI it was read from"),
        dg.TableColumn("metadata.line", "int", "line (or array index) in the source, from 1"),
        dg.TableColumn(
            "metadata.content_hash",
            "string",
            "sha256 of the canonical messages: the conversation's identity (dedup, split)",
        ),
    ]
)


@dataclass(frozen=True)
class ObjectLinks:
    """S3 URIs and clickable http(s) links for the objects of one bucket.

    Attributes:
        bucket: the bucket.
        endpoint_url: the S3 endpoint (None: AWS, links go to the S3 console).
        region: the region (AWS console links carry it).
        addressing_style: ``path`` (``{endpoint}/{bucket}/{key}``) or ``virtual``
            (``{bucket}.{host}``); as in :class:`S3Settings`.
    """

    bucket: str
    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: str = "path"

    @classmethod
    def for_settings(cls, bucket: str, settings: S3Settings) -> "ObjectLinks":
        return cls(
            bucket=bucket,
            endpoint_url=settings.endpoint_url,
            region=settings.region,
            addressing_style=settings.effective_addressing_style,
        )

    def uri(self, key: str) -> str:
        """``s3://bucket/key``."""
        return s3_uri(self.bucket, key)

    def url(self, key: str) -> str:
        """A clickable http(s) URL of an object (or of a folder when ``key`` ends with ``/``)."""
        if self.endpoint_url is None:
            return self._console(key)
        base = self.endpoint_url.rstrip("/")
        if self.addressing_style == "virtual":
            parts = urlsplit(base)
            return f"{parts.scheme}://{self.bucket}.{parts.netloc}/{quote(key)}"
        return f"{base}/{quote(self.bucket)}/{quote(key)}"

    def _console(self, key: str) -> str:
        query = {"region": self.region or "us-east-1", "bucketType": "general", "prefix": key}
        if key.endswith("/") or not key:
            query["showversions"] = "false"
            return f"{AWS_CONSOLE}/buckets/{quote(self.bucket)}?{urlencode(query)}"
        return f"{AWS_CONSOLE}/object/{quote(self.bucket)}?{urlencode(query)}"


def _counts_metadata(manifest: Manifest) -> dict[str, Any]:
    c = manifest.counts
    meta: dict[str, Any] = {f"records/{s}": manifest.split_records(s) for s in SPLITS}
    meta["records/input"] = c.input_records
    meta["records/published"] = c.published_records
    meta |= {f"family/{name}": n for name, n in sorted(c.per_family.items())}
    meta["duplicates/exact"] = c.exact_duplicates
    meta["duplicates/near"] = c.near_duplicates
    meta["quarantine/total"] = c.quarantined
    meta |= {f"quarantine/{reason}": n for reason, n in sorted(c.quarantined_by_reason.items())}
    return meta


def manifest_metadata(manifest: Manifest, cfg: DatasetConfig, links: ObjectLinks) -> dict[str, Any]:
    """Materialization metadata of the ``manifest`` asset.

    Numeric entries (plotted by the UI across builds): ``records/train``, ``records/val``,
    ``records/test``, ``records/input``, ``records/published``, ``family/{name}``,
    ``duplicates/exact``, ``duplicates/near``, ``quarantine/total``, ``quarantine/{reason}``,
    ``shards``, ``bytes``. Also ``dagster/row_count``, ``dagster/uri`` (the immutable manifest),
    ``build_id``, ``config_digest``, the dataset ``card`` (Markdown) and links.
    """
    pinned = build_manifest_key(manifest.prefix, manifest.build_id)
    latest = latest_manifest_key(manifest.prefix)
    meta: dict[str, Any] = {
        "dagster/row_count": manifest.counts.published_records,
        "dagster/uri": links.uri(pinned),
        "build_id": manifest.build_id,
        "config_digest": manifest.config_digest,
        "shards": len(manifest.shards),
        "bytes": sum(s.bytes for s in manifest.shards),
        **_counts_metadata(manifest),
        "card": dg.MetadataValue.md(render_card(manifest, cfg, endpoint_url=links.endpoint_url)),
        "manifest_link": dg.MetadataValue.url(links.url(pinned)),
        "latest_pointer": links.uri(latest),
        "latest_pointer_link": dg.MetadataValue.url(links.url(latest)),
        "dataset_folder": links.uri(f"{manifest.prefix}/"),
        "dataset_folder_link": dg.MetadataValue.url(links.url(f"{manifest.prefix}/")),
    }
    if manifest.export is not None:
        meta["export"] = manifest.export.uri
        meta["export_link"] = dg.MetadataValue.url(links.url(manifest.export.key))
    return meta


def shard_table(entries: Sequence[ShardEntry]) -> dg.TableMetadataValue:
    """Every shard of a split with its full sha256, as a table with a schema."""
    records = [
        dg.TableRecord(
            {
                "shard_id": e.shard_id,
                "records": e.records,
                "bytes": e.bytes,
                "sha256": e.sha256 or "",
                "uri": e.uri,
                "families": ", ".join(f"{f}: {n}" for f, n in sorted(e.families.items())),
            }
        )
        for e in entries
    ]
    return dg.MetadataValue.table(records, schema=SHARD_TABLE_SCHEMA)


def shard_metadata(split: str, entries: Sequence[ShardEntry], links: ObjectLinks) -> dict[str, Any]:
    """Materialization metadata of one split's shard asset.

    ``dagster/uri`` lists this build's shard URIs (one per line), never the split's folder,
    which also holds the shards of other builds.
    """
    listed = entries[:MAX_LINKED_SHARDS]
    link_lines = [f"- [{e.shard_id}]({links.url(e.key)}) `{e.uri}`" for e in listed]
    if len(entries) > len(listed):
        link_lines.append(f"- … {len(entries) - len(listed)} more in the shard table")
    return {
        "dagster/row_count": sum(e.records for e in entries),
        "dagster/uri": "\n".join(e.uri for e in entries),
        "split": split,
        "shards": len(entries),
        "bytes": sum(e.bytes for e in entries),
        "shard_table": shard_table(entries),
        "shard_links": dg.MetadataValue.md("\n".join(link_lines) or "no shards"),
    }


def record_column_schema() -> dict[str, Any]:
    """``dagster/column_schema`` of a published record (for shard and export assets)."""
    return {"dagster/column_schema": RECORD_SCHEMA}
