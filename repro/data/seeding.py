"""Seeded random streams: ``derive_seed`` mixes integers (a run's seed, a stream tag, an epoch, a step ...) into
one seed, ``seeded_generator`` makes a torch generator from them, and the ``TAG_*`` constants keep the streams of
different purposes apart (held-out split and subsets: ``repro.data.splits``; epoch order and augmentation:
``repro.data.loader``; shard order, shuffle buffer, per-sample augmentation and held-out shards:
``repro.data.streaming``). Different tuples give unrelated streams, so a new purpose takes a new tag."""
from __future__ import annotations

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """Mix integers into one 63-bit seed; different tuples give unrelated streams."""
    if any(p < 0 for p in parts):
        raise ValueError(f"seeds must be non-negative, got {parts}")
    a, b = np.random.SeedSequence(list(parts)).generate_state(2, dtype=np.uint32)
    return (int(a) << 31) ^ int(b)


def seeded_generator(*parts: int) -> torch.Generator:
    """A CPU torch generator seeded with ``derive_seed(*parts)``, e.g. ``seeded_generator(seed, TAG_EPOCH, epoch)``."""
    return torch.Generator().manual_seed(derive_seed(*parts))


# Tags that keep the random streams of different purposes apart (epoch order and augmentation: repro.data.loader).
TAG_HELDOUT, TAG_SUBSET, TAG_EPOCH, TAG_AUG = 1, 2, 3, 4
# Random streams of repro.data.streaming's own.
TAG_SHARD_ORDER, TAG_BUFFER, TAG_SAMPLE_AUG, TAG_HELDOUT_SHARDS = 31, 32, 33, 34
