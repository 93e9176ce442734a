"""The dataset card and the Hugging Face README rendered from a hand-made manifest."""

from pathlib import Path

import pytest
import yaml

from dataset_assets.core.card import human_bytes, render_card, render_hf_readme
from dataset_assets.core.config import DatasetConfig, parse_config
from dataset_assets.core.manifest import BuildCounts, FileEntry, Manifest, ShardEntry
from dataset_assets.loader import S3DatasetLoader
from dataset_assets.storage import S3ObjectStore
from dataset_assets_tests.loader.datasets import ident, make_dataset, publish_s3

SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_C = "c" * 64


def shard(split: str, index: int, records: int, size: int, sha: str) -> ShardEntry:
    sid = f"{split}-{index:05d}-{sha[:12]}"
    key = f"final_dataset/{split}/{sid}.jsonl"
    return ShardEntry(
        key=key,
        uri=f"s3://bkt/{key}",
        bytes=size,
        sha256=sha,
        records=records,
        families={"chat": records},
        split=split,  # type: ignore[arg-type]
        shard_id=sid,
    )


def sample_config() -> DatasetConfig:
    """Two families, one of them holdout (also used by the metadata tests)."""
    data = {
        "bucket": "bkt",
        "families": [
            {"name": "chat", "paths": ["data/chat*.jsonl"]},
            {"name": "eval_only", "paths": ["data/eval*.jsonl"], "holdout": True},
        ],
        "quarantine_max_ratio": 0.1,
    }
    return parse_config(data, Path("/project"))


def sample_manifest() -> Manifest:
    """Four shards over three splits, an export, duplicates and quarantined records."""
    shards = [
        shard("train", 0, 700, 3 * 1024 * 1024, SHA_A),
        shard("train", 1, 200, 1024 * 1024, SHA_B),
        shard("val", 0, 50, 2048, SHA_C),
        shard("test", 0, 60, 4096, "d" * 64),
    ]
    export = FileEntry(
        key="final_dataset/compiled/final_training_dataset.jsonl",
        uri="s3://bkt/final_dataset/compiled/final_training_dataset.jsonl",
        bytes=4 * 1024 * 1024,
        sha256="e" * 64,
        records=1010,
    )
    return Manifest(
        build_id="0123456789abcdef",
        bucket="bkt",
        prefix="final_dataset",
        config_digest="f" * 64,
        shards=shards,
        export=export,
        counts=BuildCounts(
            input_records=1100,
            published_records=1010,
            exact_duplicates=40,
            near_duplicates=20,
            quarantined=30,
            quarantined_by_reason={"malformed_json": 25, "unknown_shape": 5},
            per_split={"train": 900, "val": 50, "test": 60},
            per_family={"chat": 990, "eval_only": 20},
            per_split_family={
                "train": {"chat": 900},
                "val": {"chat": 50},
                "test": {"chat": 40, "eval_only": 20},
            },
        ),
    )


@pytest.fixture
def cfg() -> DatasetConfig:
    return sample_config()


@pytest.fixture
def manifest() -> Manifest:
    return sample_manifest()


def test_card_has_the_splits_table_with_records_shards_and_bytes(
    manifest: Manifest, cfg: DatasetConfig
) -> None:
    card = render_card(manifest, cfg)
    assert "| split | records | shards | bytes |" in card
    assert "| train | 900 | 2 | 4.0 MiB |" in card
    assert "| val | 50 | 1 | 2.0 KiB |" in card
    assert "| test | 60 | 1 | 4.0 KiB |" in card
    assert "| **total** | 1010 | 4 |" in card


def test_card_names_build_config_families_and_holdout(
    manifest: Manifest, cfg: DatasetConfig
) -> None:
    card = render_card(manifest, cfg)
    assert "0123456789abcdef" in card
    assert "f" * 64 in card
    assert "| `eval_only` | yes | 0 | 0 | 20 | 20 |" in card
    assert "| `chat` | no | 900 | 50 | 40 | 990 |" in card


def test_card_summarises_dedup_and_quarantine_by_reason(
    manifest: Manifest, cfg: DatasetConfig
) -> None:
    card = render_card(manifest, cfg)
    assert "| exact duplicates | 40 | 3.64 % |" in card
    assert "| near duplicates | 20 | 1.82 % |" in card
    assert "| quarantined | 30 | 2.73 % |" in card
    assert "| `malformed_json` | 25 |" in card
    assert "32 bands × 4 rows" in card
    assert "10.00% of the input" in card


def test_card_snippet_loads_the_pinned_build_and_never_holds_credentials(
    manifest: Manifest, cfg: DatasetConfig
) -> None:
    card = render_card(manifest, cfg, endpoint_url="http://127.0.0.1:8333")
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert '"s3://bkt/final_dataset/manifests/0123456789abcdef.json"' in snippet
    assert 'S3Settings(endpoint_url="http://127.0.0.1:8333")' in snippet
    compile(snippet.replace("    ...", "    pass"), "<card>", "exec")  # valid Python
    assert "access_key_id=" not in snippet and "secret_access_key=" not in snippet


def test_card_files_table_shows_sha256_or_how_a_composed_export_was_verified(
    manifest: Manifest, cfg: DatasetConfig
) -> None:
    assert f"| `{'e' * 64}` |" in render_card(manifest, cfg)
    assert manifest.export is not None
    composed = manifest.export.model_copy(
        update={"sha256": None, "etag": "0" * 32 + "-2", "parts": ["a", "b"]}
    )
    card = render_card(manifest.model_copy(update={"export": composed}), cfg)
    assert "composed from 2 verified parts, ETag `" + "0" * 32 + "-2`" in card
    assert "None" not in card


def test_card_is_deterministic(manifest: Manifest, cfg: DatasetConfig) -> None:
    assert render_card(manifest, cfg) == render_card(manifest.model_copy(), cfg)


def test_hf_readme_front_matter_lists_every_shard_per_split(
    manifest: Manifest, cfg: DatasetConfig
) -> None:
    readme = render_hf_readme(
        manifest, cfg, license="cc-by-4.0", description="Therapy chats.", pretty_name="Chats"
    )
    assert readme.startswith("---\n")
    front_text, body = readme[4:].split("\n---\n", 1)
    front = yaml.safe_load(front_text)
    assert front["license"] == "cc-by-4.0"
    assert front["pretty_name"] == "Chats"
    assert front["size_categories"] == ["1K<n<10K"]
    (config,) = front["configs"]
    assert config["config_name"] == "default"
    files = {entry["split"]: entry["path"] for entry in config["data_files"]}
    assert files == {
        "train": [s.key.removeprefix("final_dataset/") for s in manifest.split_shards("train")],
        "validation": [f"val/val-00000-{SHA_C[:12]}.jsonl"],
        "test": [s.key.removeprefix("final_dataset/") for s in manifest.split_shards("test")],
    }
    assert "# Chats\n\nTherapy chats." in body
    assert "| train | 900 | 2 | 4.0 MiB |" in body


def test_hf_readme_defaults_when_no_card_config(manifest: Manifest, cfg: DatasetConfig) -> None:
    front = yaml.safe_load(render_hf_readme(manifest, cfg).split("\n---\n", 1)[0][4:])
    assert front["license"] == "other"
    assert front["pretty_name"] == "final_dataset"


def test_hf_readme_omits_empty_splits(manifest: Manifest, cfg: DatasetConfig) -> None:
    only_train = manifest.model_copy(update={"shards": manifest.split_shards("train")})
    front = yaml.safe_load(render_hf_readme(only_train, cfg).split("\n---\n", 1)[0][4:])
    assert [e["split"] for e in front["configs"][0]["data_files"]] == ["train"]


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 1024**3, "5.0 GiB")],
)
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


def test_card_snippet_streams_the_build_from_a_real_s3_server(
    seaweed_store: S3ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The card's snippet, run as a user would paste it (keys in the AWS_* environment)."""
    ds = make_dataset(seaweed_store.bucket, {"train": [30, 12], "val": [4], "test": [5]})
    publish_s3(ds, seaweed_store)
    settings = seaweed_store.settings
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", settings.access_key_id or "")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", settings.secret_access_key or "")
    monkeypatch.setenv("AWS_DEFAULT_REGION", settings.region or "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    cfg = parse_config(
        {"bucket": seaweed_store.bucket, "families": [{"name": "alpha", "paths": ["x"]}]},
        Path("/p"),
    )
    card = render_card(ds.manifest, cfg, endpoint_url=settings.endpoint_url)
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(compile(snippet, "<card snippet>", "exec"), namespace)
    loader = namespace["loader"]
    assert isinstance(loader, S3DatasetLoader)
    assert loader.build_id == ds.manifest.build_id
    assert sorted(ident(r) for r in loader) == sorted(ident(r) for r in ds.records["train"])
