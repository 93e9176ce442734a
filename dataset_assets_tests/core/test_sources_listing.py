"""Listing local sources: uris relative to the config folder, odd file names still read."""

import os
from pathlib import Path

import orjson
import pytest

from dataset_assets.core.config import SourceFamily, parse_config
from dataset_assets.core.sources import RawItem, SourceRef, expand_local, iter_source_items
from dataset_assets.pipeline.sources import list_sources, open_source
from dataset_assets.storage import S3ObjectStore

RECORD = orjson.dumps({"messages": [{"role": "user", "content": "hi"}]}) + b"\n"


def _read(ref: SourceRef) -> list[object]:
    with open_source(ref, None) as stream:
        items = list(iter_source_items(stream, ref.uri, 1 << 20))
    return [i.value for i in items if isinstance(i, RawItem)]


def test_local_uri_is_relative_to_the_config_folder_and_still_opens(tmp_path: Path) -> None:
    (tmp_path / "data" / "chat").mkdir(parents=True)
    (tmp_path / "data" / "chat" / "a.jsonl").write_bytes(RECORD)
    cfg = parse_config(
        {"bucket": "bkt", "families": [{"name": "f", "paths": ["data/chat"]}]}, tmp_path
    )
    (ref,) = list_sources(cfg.families[0], None, root=tmp_path)
    assert ref.uri == "data/chat/a.jsonl"
    assert ref.path == str(tmp_path / "data" / "chat" / "a.jsonl")
    assert str(tmp_path) not in ref.uri
    assert _read(ref) == [orjson.loads(RECORD)]


def test_source_outside_the_config_folder_is_relative_with_dotdot(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.jsonl").write_bytes(RECORD)
    (tmp_path / "project").mkdir()
    family = SourceFamily(name="f", paths=[str(tmp_path / "elsewhere" / "*.jsonl")])
    (ref,) = expand_local(family, root=tmp_path / "project")
    assert ref.uri == "../elsewhere/b.jsonl"
    assert _read(ref) == [orjson.loads(RECORD)]


def test_without_a_root_the_uri_is_the_absolute_path(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(RECORD)
    (ref,) = expand_local(SourceFamily(name="f", paths=[str(tmp_path / "*.jsonl")]))
    assert ref.uri == str(tmp_path / "a.jsonl") == ref.path


@pytest.mark.skipif(os.name != "posix", reason="byte file names are a POSIX thing")
def test_file_name_that_is_not_utf8_is_listed_escaped_and_read(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "good.jsonl").write_bytes(RECORD)
    try:
        with open(os.fsencode(folder) + b"/bad-\xff.jsonl", "wb") as fh:
            fh.write(RECORD * 2)
    except OSError:
        pytest.skip("this filesystem refuses non-UTF-8 names")
    refs = expand_local(SourceFamily(name="f", paths=[str(folder)]), root=tmp_path)
    assert [r.uri for r in refs] == ["data/bad-\\xff.jsonl", "data/good.jsonl"]
    for ref in refs:
        ref.uri.encode("utf-8")  # every uri is valid UTF-8: safe in records and the manifest
        orjson.dumps(ref.uri)
    assert [len(_read(r)) for r in refs] == [2, 1]


def test_s3_uris_are_unchanged_by_the_root(tmp_path: Path, seaweed_store: S3ObjectStore) -> None:
    seaweed_store.put_bytes("migrated/old/a.jsonl", RECORD)
    (tmp_path / "b.jsonl").write_bytes(RECORD)
    family = SourceFamily(
        name="f", paths=[f"s3://{seaweed_store.bucket}/migrated/", str(tmp_path / "*.jsonl")]
    )
    refs = list_sources(family, seaweed_store, root=tmp_path)
    assert [r.uri for r in refs] == ["b.jsonl", f"s3://{seaweed_store.bucket}/migrated/old/a.jsonl"]
    assert refs[1].path == ""
    for ref in refs:
        with open_source(ref, seaweed_store) as stream:
            items = list(iter_source_items(stream, ref.uri, 1 << 20))
        assert [i.value for i in items if isinstance(i, RawItem)] == [orjson.loads(RECORD)]


def test_overlapping_s3_prefixes_list_each_file_once(seaweed_store: S3ObjectStore) -> None:
    """A file two prefixes name is one input: read twice, all its records would be exact
    duplicates of themselves, and both copies would share one partition's decisions."""
    bucket = seaweed_store.bucket
    seaweed_store.put_bytes("gen/a.jsonl", RECORD)
    seaweed_store.put_bytes("gen/deep/b.jsonl", RECORD)
    family = SourceFamily(name="f", paths=[f"s3://{bucket}/gen/deep/", f"s3://{bucket}/gen/"])

    refs = list_sources(family, seaweed_store)

    assert [r.uri for r in refs] == [
        f"s3://{bucket}/gen/deep/b.jsonl",
        f"s3://{bucket}/gen/a.jsonl",
    ]
