"""Atomic writes: write to a temp file in the target's folder, then rename over the target."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it to ``path``, on error delete it.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "out.json"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("{}")
    ...     out.exists()
    False
    >>> out.read_text(), [p.name for p in out.parent.iterdir()]
    ('{}', ['out.json'])
    >>> import shutil; shutil.rmtree(out.parent)
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temp files :func:`atomic_path` leaves in ``folder`` when its process is killed
    (``.<name>.<random>.tmp``; a finished write renames its temp file). Call it only while
    holding the folder as its one writer. Returns the removed paths."""
    gone = []
    for p in sorted(Path(folder).glob(".*.tmp")):
        if p.is_file():
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: object) -> Path:
    """Atomically write ``obj`` as indented, key-sorted JSON (byte-stable for the same object)."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=jsonable) + "\n")


def save_npy(path: str | os.PathLike, arr: np.ndarray) -> Path:
    """Atomically ``np.save`` an array (no pickles)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(arr), allow_pickle=False)
    return Path(path)


def jsonable(o: object) -> object:
    """JSON form of numpy arrays and scalars and of paths (``json.dumps(default=...)``)."""
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
