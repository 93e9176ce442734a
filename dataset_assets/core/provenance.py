"""The per-build provenance sidecar: content_hash → family, source URI, line, split.

One zstd-compressed JSONL line per published conversation (``{"h", "family", "source", "line",
"split"}``), written per partition after the dedup stage (:mod:`dataset_assets.core.cluster`,
one zstd frame or more per partition, concatenated in partition order) and published next to
the manifest under a content-addressed key. Each record also carries the same fields in its
own ``metadata``, so the manifest itself stays small at any dataset size.
"""

import orjson

from dataset_assets.core.streams import zstd_decompress


def read_provenance(data: bytes) -> list[dict[str, object]]:
    """Parse a (small) provenance sidecar fully; for tests and inspection."""
    text = zstd_decompress(data, "provenance sidecar")
    return [orjson.loads(line) for line in text.splitlines() if line]
