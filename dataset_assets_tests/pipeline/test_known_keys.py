"""Which kept shared keys a rebuild's dedup stage may start from (the local cache's state)."""

from pathlib import Path

from dataset_assets.pipeline.known_keys import FOLDER, find_known_keys, keep_keys


def _keep(cache: Path, name: str, digests: list[str]) -> None:
    keys = cache / f"{name}.parquet"
    keys.write_bytes(b"keys of " + name.encode())
    keep_keys(cache, name, digests, keys)


def test_kept_keys_are_used_only_when_every_old_partition_is_still_there_in_order(
    tmp_path: Path,
) -> None:
    _keep(tmp_path, "c1", ["a", "b", "c"])
    sizes = [10, 10, 10, 10]
    # a new partition anywhere: its position is new
    found = find_known_keys(tmp_path, ["n", "a", "b", "c"], sizes)
    assert found is not None and list(found.new) == [0]
    assert found.path.read_bytes() == b"keys of c1"
    found = find_known_keys(tmp_path, ["a", "b", "n", "c"], sizes)
    assert found is not None and list(found.new) == [2]
    # a removed or changed file (its digest is gone), or the old order changed: not used
    assert find_known_keys(tmp_path, ["a", "c", "n"], sizes[:3]) is None
    assert find_known_keys(tmp_path, ["a", "c", "b", "n"], sizes) is None
    # new partitions past a quarter of the index bytes: every row is counted instead
    assert find_known_keys(tmp_path, ["a", "b", "c", "n"], [10, 10, 10, 11]) is None
    assert find_known_keys(tmp_path, ["a", "b", "c", "n"], [10, 10, 10, 10]) is not None
    # no cache: nothing
    assert find_known_keys(None, ["a", "b", "c"], sizes[:3]) is None


def test_only_the_newest_kept_keys_stay_and_unreadable_state_is_ignored(tmp_path: Path) -> None:
    _keep(tmp_path, "c1", ["a", "b"])
    _keep(tmp_path, "c2", ["a", "b", "n"])
    assert sorted(p.name for p in (tmp_path / FOLDER).iterdir()) == ["c2"]
    assert find_known_keys(tmp_path, ["a", "b"], [1, 1]) is None  # c1 is gone
    found = find_known_keys(tmp_path, ["a", "b", "n", "m"], [10, 10, 10, 1])
    assert found is not None and list(found.new) == [3]

    (tmp_path / FOLDER / "c2" / "partitions.json").write_bytes(b'["a", "b", ')  # cut
    assert find_known_keys(tmp_path, ["a", "b", "n", "m"], [10, 10, 10, 1]) is None
    (tmp_path / FOLDER / "c2" / "partitions.json").write_bytes(b'{"a": 1}')
    assert find_known_keys(tmp_path, ["a", "b", "n", "m"], [10, 10, 10, 1]) is None
