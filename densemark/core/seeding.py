"""Random generators keyed by params and sample ids: never global state."""

from __future__ import annotations

import hashlib

import numpy as np


def key_of(value: str | int) -> int:
    """A stable 63-bit integer for a sample id (the same on every machine and run)."""
    if isinstance(value, int):
        return value
    return int.from_bytes(hashlib.sha256(value.encode("utf-8")).digest()[:8], "little") >> 1


def rng_for(seed: int, *keys: str | int) -> np.random.Generator:
    """``default_rng((seed, *keys))`` with string keys hashed stably.

    >>> rng_for(0, "IBUG_image_008_1_0").random() == rng_for(0, "IBUG_image_008_1_0").random()
    True
    """
    return np.random.default_rng([seed, *(key_of(k) for k in keys)])
