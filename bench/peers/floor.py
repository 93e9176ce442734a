"""The bytes-only floor: what moving the data costs with no parsing at all.

Reads the source files as bytes, cuts size-bounded shards at line boundaries, hashes them
(sha256) while writing each shard file, and publishes each one (``upload_file`` + HEAD of size
and sha256 metadata + delete local) in a background thread, at most 2 in flight (like the
build's ``max_publishes_in_flight``). No JSON, no dedup, no split.

    python bench/peers/floor.py CORPUS_DIR S3_SETTINGS_JSON BUCKET PREFIX STAGING SHARD_BYTES
"""

import hashlib
import json
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _s3 import MiB, client, ensure_bucket, upload_verify_delete  # noqa: E402

MAX_IN_FLIGHT = 2


def main(
    corpus: Path, settings_json: str, bucket: str, prefix: str, staging: Path, shard_bytes: int
) -> None:
    s3 = client(settings_json)
    ensure_bucket(s3, bucket)
    staging.mkdir(parents=True, exist_ok=True)
    pool = ThreadPoolExecutor(MAX_IN_FLIGHT)
    in_flight: list[Future[int]] = []
    totals = {"shards": 0, "bytes": 0}
    index = 0
    out = None
    h = hashlib.sha256()
    size = 0

    def close_shard() -> None:
        nonlocal out, index, h, size
        if out is None:
            return
        out.close()
        digest = h.hexdigest()
        path = staging / f"floor-{index:05d}.jsonl"
        key = f"{prefix}/shards/floor-{index:05d}-{digest[:12]}.jsonl"
        while len(in_flight) >= MAX_IN_FLIGHT:
            totals["bytes"] += in_flight.pop(0).result()
        in_flight.append(pool.submit(upload_verify_delete, s3, bucket, key, path, digest))
        totals["shards"] += 1
        index += 1
        out, h, size = None, hashlib.sha256(), 0

    carry = b""
    for path in sorted(corpus.glob("*.jsonl")):
        with path.open("rb") as fh:
            while True:
                chunk = fh.read(8 * MiB)
                if not chunk:
                    break
                chunk = carry + chunk
                cut = chunk.rfind(b"\n") + 1
                carry, chunk = chunk[cut:], chunk[:cut]
                while chunk:
                    if out is None:
                        out = (staging / f"floor-{index:05d}.jsonl").open("wb")
                    room = shard_bytes - size
                    if len(chunk) <= room:
                        piece, chunk = chunk, b""
                    else:
                        end = chunk.rfind(b"\n", 0, room) + 1
                        if end == 0 and size == 0:  # one line bigger than a shard: cut it
                            end = room
                        piece, chunk = chunk[:end], chunk[end:]
                    if piece:
                        out.write(piece)
                        h.update(piece)
                        size += len(piece)
                    if chunk:
                        close_shard()
        if carry:  # a file without a final newline: its last line ends here
            carry += b"\n"
    if carry:
        if out is None:
            out = (staging / f"floor-{index:05d}.jsonl").open("wb")
        out.write(carry)
        h.update(carry)
    close_shard()
    for f in in_flight:
        totals["bytes"] += f.result()
    pool.shutdown()
    print(json.dumps(totals))


if __name__ == "__main__":
    main(
        Path(sys.argv[1]),
        sys.argv[2],
        sys.argv[3],
        sys.argv[4],
        Path(sys.argv[5]),
        int(sys.argv[6]),
    )
