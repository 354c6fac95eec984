"""Cache keys of the flow tasks: the sha256 of the input files + the parameters + the code.

A stage task's inputs (``{name: path}``, files or folders it reads; the registry says which of
its paths they are), its other parameters (params sections, output paths) and the code parts it
runs make its key (:func:`stage_key`): a rerun with the same input bytes, parameters, output
paths and stage code returns the stored result instead of running again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import densemark
from densemark.core.hashing import sha256_file, sha256_json

_PACKAGE = Path(densemark.__file__).parent
_memo: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256 of the content


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes; remembered per (path, size, mtime) within the process."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _memo:
        _memo[key] = sha256_file(p)
    return _memo[key]


def tree_sha256(path: str | os.PathLike) -> str:
    """sha256 over a file, or over every file under a folder (relative names + contents, sorted).

    Hidden names (``.*``: temp files of atomic writes, ``.dvc`` state) are left out; a missing
    path hashes to a fixed marker, so a stage whose input is absent still gets a key (and fails).
    """
    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():
        h.update(b"file\0" + file_sha256(p).encode())
    elif p.is_dir():
        for f in sorted(
            q
            for q in p.rglob("*")
            if q.is_file() and not any(s.startswith(".") for s in q.relative_to(p).parts)
        ):
            h.update(f.relative_to(p).as_posix().encode() + b"\0" + file_sha256(f).encode() + b"\n")
    else:
        h.update(b"missing")
    return h.hexdigest()


def code_sha256(parts: Iterable[str]) -> str:
    """sha256 over the ``.py`` sources of the named parts of the package (e.g. ``"faces"``)."""
    h = hashlib.sha256(densemark.__version__.encode())
    for part in sorted(parts):
        root = _PACKAGE / part
        files = (
            [root.with_suffix(".py")]
            if root.with_suffix(".py").is_file()
            else sorted(root.rglob("*.py"))
        )
        for f in files:
            h.update(f.relative_to(_PACKAGE).as_posix().encode() + b"\0" + file_sha256(f).encode())
    return h.hexdigest()


def plain(value: Any) -> Any:
    """JSON-able form of a task parameter or result (params sections, paths, numpy scalars)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value


def stage_key(name: str, parameters: dict[str, Any], code: Iterable[str] = ()) -> str:
    """The cache key of one call of a stage task.

    Args:
        name: the task name.
        parameters: the call's parameters; ``parameters["inputs"]`` maps names to input paths,
            whose contents are hashed; every other value enters as JSON (sections, output paths).
        code: package parts whose sources the stage runs (see :func:`code_sha256`).
    """
    inputs = {k: tree_sha256(v) for k, v in sorted((parameters.get("inputs") or {}).items())}
    rest = {k: plain(v) for k, v in parameters.items() if k != "inputs"}
    return sha256_json({"task": name, "inputs": inputs, "params": rest, "code": code_sha256(code)})


# ----------------------------------------------------------------------------- output stamps
# A cached result is only good while the outputs it made are still on disk as it made them
# (another run with other params may have overwritten them). After a stage task runs, the
# sha256 of its outputs is stamped under its cache key, beside Prefect's stored results; a
# flow reruns the task (refreshing the cache) when the outputs no longer match the stamp.


def _stamp_path(key: str) -> Path:
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    return Path(PREFECT_LOCAL_STORAGE_PATH.value()) / "densemark-stamps" / f"{key}.json"


def write_stamp(key: str, outputs: dict[str, Any]) -> None:
    """Record the sha256 of every output of the task run cached under ``key``."""
    from densemark.core.atomic import write_json

    write_json(_stamp_path(key), {k: tree_sha256(v) for k, v in sorted(outputs.items())})


def stamp_matches(key: str, outputs: dict[str, Any]) -> bool:
    """True when the outputs are on disk exactly as the run cached under ``key`` left them."""
    p = _stamp_path(key)
    if not p.is_file():
        return False
    try:
        stamp = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return stamp == {k: tree_sha256(v) for k, v in sorted(outputs.items())}
