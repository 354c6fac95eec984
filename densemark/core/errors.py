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
