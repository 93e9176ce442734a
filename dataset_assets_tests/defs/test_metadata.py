"""Metadata built for the UI: plottable numbers, the card, links, the shard table, the schema."""

from typing import Any

import dagster as dg

from dataset_assets.defs.metadata import (
    ObjectLinks,
    manifest_metadata,
    record_column_schema,
    shard_metadata,
)
from dataset_assets.storage import S3Settings
from dataset_assets_tests.core.test_card import SHA_A, sample_config, sample_manifest

SEAWEED = ObjectLinks("bkt", endpoint_url="http://127.0.0.1:8333", region="us-east-1")


def materialized(meta: dict[str, Any]) -> dict[str, Any]:
    """The metadata as Dagster stores it after a real materialization."""

    @dg.asset(name="probe")
    def probe(context: dg.AssetExecutionContext) -> None:
        context.add_output_metadata(meta)

    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([probe], instance=instance).success
    event = instance.get_latest_materialization_event(dg.AssetKey("probe"))
    assert event is not None and event.asset_materialization is not None
    return dict(event.asset_materialization.metadata)


def test_manifest_counts_are_numeric_entries_the_ui_plots() -> None:
    meta = materialized(manifest_metadata(sample_manifest(), sample_config(), SEAWEED))
    expected = {
        "records/train": 900,
        "records/val": 50,
        "records/test": 60,
        "records/input": 1100,
        "family/chat": 990,
        "family/eval_only": 20,
        "duplicates/exact": 40,
        "duplicates/near": 20,
        "quarantine/malformed_json": 25,
        "quarantine/unknown_shape": 5,
        "quarantine/total": 30,
        "dagster/row_count": 1010,
    }
    for key, value in expected.items():
        assert isinstance(meta[key], dg.IntMetadataValue), key
        assert meta[key].value == value, key


def test_manifest_card_is_markdown_with_the_splits_table() -> None:
    meta = materialized(manifest_metadata(sample_manifest(), sample_config(), SEAWEED))
    card = meta["card"]
    assert isinstance(card, dg.MarkdownMetadataValue)
    assert "| split | records | shards | bytes |" in card.value
    assert "| train | 900 | 2 | 4.0 MiB |" in card.value


def test_manifest_links_are_urls_beside_the_s3_uris() -> None:
    meta = materialized(manifest_metadata(sample_manifest(), sample_config(), SEAWEED))
    assert meta["dagster/uri"].value == "s3://bkt/final_dataset/manifests/0123456789abcdef.json"
    link = meta["manifest_link"]
    assert isinstance(link, dg.UrlMetadataValue)
    assert link.value == "http://127.0.0.1:8333/bkt/final_dataset/manifests/0123456789abcdef.json"
    assert meta["export_link"].value == (
        "http://127.0.0.1:8333/bkt/final_dataset/compiled/final_training_dataset.jsonl"
    )
    assert meta["latest_pointer"].value == "s3://bkt/final_dataset/manifest.json"


def test_links_on_aws_go_to_the_console_and_virtual_hosts_carry_the_bucket() -> None:
    aws = ObjectLinks.for_settings("bkt", S3Settings(region="eu-west-3"))
    assert aws.url("final_dataset/manifest.json") == (
        "https://s3.console.aws.amazon.com/s3/object/bkt?region=eu-west-3&bucketType=general"
        "&prefix=final_dataset%2Fmanifest.json"
    )
    assert aws.url("final_dataset/").startswith("https://s3.console.aws.amazon.com/s3/buckets/bkt?")
    virtual = ObjectLinks.for_settings(
        "bkt", S3Settings(endpoint_url="https://s3.example.com", addressing_style="virtual")
    )
    assert virtual.url("a b/c.jsonl") == "https://bkt.s3.example.com/a%20b/c.jsonl"
    path = ObjectLinks.for_settings("bkt", S3Settings(endpoint_url="http://10.0.0.1:9000/"))
    assert path.url("k") == "http://10.0.0.1:9000/bkt/k"


def test_shard_metadata_has_row_count_full_sha256_table_and_this_builds_uris() -> None:
    shards = sample_manifest().split_shards("train")
    meta = materialized(shard_metadata("train", shards, SEAWEED))
    assert meta["dagster/row_count"].value == 900
    uris = meta["dagster/uri"].value.splitlines()
    assert uris == [s.uri for s in shards]
    assert "s3://bkt/final_dataset/train/" not in uris  # never the whole split folder
    table = meta["shard_table"]
    assert isinstance(table, dg.TableMetadataValue)
    assert table.schema is not None
    assert [c.name for c in table.schema.columns][:4] == ["shard_id", "records", "bytes", "sha256"]
    assert [r.data["sha256"] for r in table.records] == [SHA_A, "b" * 64]
    assert table.records[0].data["records"] == 700
    assert f"(http://127.0.0.1:8333/bkt/{shards[0].key})" in meta["shard_links"].value


def test_record_column_schema_names_messages_and_metadata_fields() -> None:
    meta = materialized(record_column_schema())
    schema = meta["dagster/column_schema"]
    assert isinstance(schema, dg.TableSchemaMetadataValue)
    names = [c.name for c in schema.schema.columns]
    assert names == [
        "messages",
        "metadata.family",
        "metadata.source",
        "metadata.line",
        "metadata.content_hash",
    ]
