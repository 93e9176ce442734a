"""Deterministic split assignment from the content hash: stable across rebuilds."""

import hashlib

from dataset_assets.core.config import SplitRatios


def split_fraction(content_hash: str, seed: int) -> float:
    """A uniform number in [0, 1) that depends only on the conversation and the seed."""
    h = hashlib.sha256(f"{seed}:{content_hash}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def assign_split(content_hash: str, seed: int, ratios: SplitRatios, holdout: bool) -> str:
    """train/val/test by ratio; holdout families always go to test."""
    if holdout:
        return "test"
    x = split_fraction(content_hash, seed)
    if x < ratios.train:
        return "train"
    if x < ratios.train + ratios.val:
        return "val"
    return "test"
