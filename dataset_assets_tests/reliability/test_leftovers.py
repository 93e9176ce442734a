"""Leftovers of killed processes are cleaned at the next start: the loader cache's ``.part``."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dataset_assets.loader.cache import ShardCache

_WRITER = """
import hashlib, sys
from pathlib import Path
from dataset_assets.loader.cache import ShardCache
cache = ShardCache(Path(sys.argv[1]), 10**12)
data = b"x" * (64 * 1024 * 1024)
i = 0
while True:  # writes .{sha}.jsonl.{pid}.part, renames it; killed at some point
    i += 1
    cache.put(hashlib.sha256(str(i).encode()).hexdigest(), data)
    (Path(sys.argv[1]) / (hashlib.sha256(str(i).encode()).hexdigest() + ".jsonl")).unlink()
"""


def _kill_a_writer_mid_write(folder: Path) -> list[Path]:
    """SIGKILL a real cache writer while its temporary file exists; returns that file."""
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(folder)])
        deadline = time.monotonic() + 30
        try:
            while not list(folder.glob(".*.part")):
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.001)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        left = list(folder.glob(f".*.{proc.pid}.part"))
        if left:
            return left
    raise AssertionError("never caught the writer mid-write")


def test_a_killed_writers_part_file_is_removed_when_the_cache_opens(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    killed = _kill_a_writer_mid_write(folder)
    live = folder / f".{'ab' * 32}.jsonl.{os.getpid()}.part"  # a writer still at work
    live.write_bytes(b"partial")
    cache = ShardCache(folder, 10**9)
    assert cache.removed_parts == killed
    assert not any(p.exists() for p in killed)
    assert live.exists()
    # a live pid's file left for over an hour (pid reused, or a writer on another host) goes too
    assert cache.remove_stale_parts(now=time.time() + 3601) == [live]
