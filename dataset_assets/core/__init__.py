"""Pure domain logic: records, normalization, dedup, splits, shards, manifest. No I/O clients."""
