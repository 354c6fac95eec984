"""Errors that name the file and the field at fault."""

from __future__ import annotations

from pathlib import Path


class DensemarkError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class InputError(DensemarkError, ValueError):
    """Bad input: names the file and the field.

    >>> str(InputError("a.mat", "Shape_Para", "expected shape (199, 1), got (3,)"))
    'a.mat: field Shape_Para: expected shape (199, 1), got (3,)'
    """

    def __init__(self, path: str | Path | None, field: str | None, message: str):
        self.path = None if path is None else str(path)
        self.field = field
        self.message = message
        where = []
        if self.path is not None:
            where.append(self.path)
        if field is not None:
            where.append(f"field {field}")
        super().__init__(": ".join([*where, message]))


class ConfigError(DensemarkError, ValueError):
    """A bad configuration value; the message names the key."""


def distinct_prefixes(a: str, b: str, n: int = 12) -> tuple[str, str]:
    """Short forms of two hashes for a mismatch message, long enough to tell them apart.

    Each keeps at least ``n`` characters and one past their first difference (``...`` marks
    a cut), so two different hashes never print alike.

    >>> distinct_prefixes("abcdef0123456789", "abcdef0123456700", 4)
    ('abcdef012345678...', 'abcdef012345670...')
    """
    a, b = str(a), str(b)
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    m = max(n, i + 1)
    return tuple(s if len(s) <= m else s[:m] + "..." for s in (a, b))  # type: ignore[return-value]
