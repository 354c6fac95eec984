"""Array checks shared by every reader: shape, dtype kind and finiteness, with the file and field named."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from densemark.core.errors import InputError


def check_array(
    value: object,
    path: str | Path | None,
    field: str,
    shape: Sequence[int | None] | None = None,
    *,
    kind: str = "fiu",
    finite: bool = True,
    squeeze: bool = False,
) -> np.ndarray:
    """Validate one array read from a file.

    Args:
        value: what the reader found (any array-like).
        path: the file it came from, named in errors.
        field: the field (key, column) it came from, named in errors.
        shape: expected shape; ``None`` entries match any length.
        kind: accepted ``dtype.kind`` letters (``f`` float, ``i``/``u`` integer, ``b`` bool).
        finite: reject NaN and infinity.
        squeeze: drop length-1 axes before checking the shape.

    Returns:
        The value as a numpy array (not copied when already one).

    Raises:
        InputError: naming ``path`` and ``field``.
    """
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is bad input
        raise InputError(path, field, f"not an array ({exc})") from exc
    if arr.dtype == object:
        raise InputError(path, field, "expected a numeric array, got an object/struct array")
    if squeeze:
        arr = arr.squeeze()
        if arr.ndim == 0 and shape is not None and len(shape) == 1:
            arr = arr.reshape(1)
    if arr.size == 0:
        raise InputError(path, field, f"is empty (shape {arr.shape})")
    if arr.dtype.kind not in kind:
        raise InputError(path, field, f"expected dtype kind in {kind!r}, got {arr.dtype}")
    if shape is not None:
        ok = arr.ndim == len(shape) and all(
            want is None or want == got for want, got in zip(shape, arr.shape, strict=True)
        )
        if not ok:
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise InputError(path, field, f"expected shape {want}, got {arr.shape}")
    if finite and arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise InputError(path, field, f"has {bad} non-finite value(s) (NaN or inf)")
    return arr


def check_indices(
    idx: np.ndarray, path: str | Path | None, field: str, n: int, *, one_based: bool = False
) -> np.ndarray:
    """Convert an index array to 0-based ``int64`` and check every entry lies in ``[0, n)``.

    Float arrays (MATLAB stores indices as doubles) must hold whole numbers.
    """
    arr = np.asarray(idx)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise InputError(path, field, "indices must be whole numbers")
    out = arr.astype(np.int64) - (1 if one_based else 0)
    if out.size and (out.min() < 0 or out.max() >= n):
        base = "1-based" if one_based else "0-based"
        raise InputError(
            path,
            field,
            f"{base} index out of range [0, {n}): min {int(out.min())}, max {int(out.max())}",
        )
    return out


def check_ids(
    ids: object,
    path: str | Path | None,
    field: str,
    n: int,
    *,
    unique: bool = True,
    allow_empty: bool = False,
) -> np.ndarray:
    """Validate a list of 0-based ids into a table of ``n`` rows (template vertices, positions).

    Args:
        ids: (K,) integer-valued array-like (whole-number floats are accepted).
        path, field: named in errors.
        n: the table size; every id must lie in ``[0, n)``.
        unique: reject repeated ids.
        allow_empty: accept K = 0.

    Returns:
        (K,) int64 ids, in the given order.

    Raises:
        InputError: not a 1-D list of whole numbers, an id out of range, or repeated ids.
    """
    arr = np.asarray(ids)
    if arr.size == 0:
        if not allow_empty:
            raise InputError(path, field, "is empty")
        return np.zeros(0, np.int64)
    if arr.ndim != 1:
        raise InputError(path, field, f"expected a flat list of ids, got shape {arr.shape}")
    if arr.dtype.kind == "b" or arr.dtype.kind not in "fiu":
        raise InputError(path, field, f"expected integer ids, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and (not np.isfinite(arr).all() or not (arr == np.round(arr)).all()):
        raise InputError(path, field, "ids must be whole numbers")
    out = arr.astype(np.int64)
    bad = out[(out < 0) | (out >= n)]
    if bad.size:
        raise InputError(
            path, field, f"{bad.size} id(s) out of range 0..{n - 1}, e.g. {bad[:5].tolist()}"
        )
    if unique:
        uniq, counts = np.unique(out, return_counts=True)
        if (counts > 1).any():
            rep = uniq[counts > 1]
            raise InputError(path, field, f"{rep.size} id(s) repeated, e.g. {rep[:5].tolist()}")
    return out
