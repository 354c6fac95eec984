"""Content identities: the SHA-256 of a file's bytes and of a JSON-able object.

Every fingerprint, cache key and stamp in the package is one of these two, so two parts that
describe the same inputs get the same hex string.
"""

from __future__ import annotations

import hashlib
import json
import os


def canonical_json(obj: object) -> bytes:
    """``obj`` as canonical JSON: keys sorted, no whitespace, ASCII; values JSON cannot hold
    (paths, numpy scalars) by their ``str``."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode("ascii")


def sha256_json(obj: object) -> str:
    """SHA-256 (hex) of :func:`canonical_json` of ``obj``.

    >>> sha256_json({"b": 1, "a": [1, 2]}) == sha256_json({"a": [1, 2], "b": 1})
    True
    >>> sha256_json({"a": 1})[:12]
    '015abd7f5cc5'
    """
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
