"""Output folders that know what made them: resume only what the same settings made.

A stage that writes many files into a folder (and resumes by skipping files that exist) stamps
the folder with a fingerprint of everything its outputs depend on (params section, model
content, code version). On a rerun:

* temp files left by a killed run (``.<name>.<random>.tmp``, see :mod:`densemark.core.atomic`)
  are removed;
* the same fingerprint: existing outputs are kept and the stage resumes;
* another fingerprint: the stage's old outputs are deleted and it rebuilds (never mixes);
* outputs but no stamp (a folder made by something else): refuse, naming the folder, and touch
  nothing (files the stage does not write, e.g. a ``README.md``, are left alone in any case).

One writer at a time: :func:`locked` holds an exclusive lock (``fcntl.flock`` on
:data:`LOCK` in the folder) while a stage writes there; a second process that wants to write
the same folder is refused with a message instead of mixing its files with the first one's.
The kernel drops the lock when its process ends, however it ends, so a killed run never leaves
a stale lock behind (the empty lock file stays; it means nothing by itself). Within one process
the lock is re-entrant. :func:`prepare` takes it while it works; a stage holds it for its whole
run by wrapping the run in :func:`locked`.

A folder that DVC emptied before running a stage (it deletes a stage's outputs first) is simply
a new folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from densemark.core.atomic import write_json
from densemark.core.errors import InputError
from densemark.core.hashing import sha256_json

STAMP = ".densemark-stage.json"
LOCK = ".densemark.lock"

_HELD: dict[str, list] = {}  # real folder path -> [pid, depth, fd] of the locks this process holds


@contextmanager
def locked(folder: str | Path, stage: str) -> Iterator[Path]:
    """Hold ``folder``'s write lock (created with the folder when missing) for the ``with`` block.

    Re-entrant within a process; a forked child does not count as the holder.

    Raises:
        InputError: another process holds the lock (it is writing the folder now).
        OSError: the folder or its lock file cannot be created (read-only, no space, ...).
    """
    import fcntl

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(d)
    held = _HELD.get(key)
    if held is not None and held[0] == os.getpid():
        held[1] += 1
        try:
            yield d
        finally:
            held[1] -= 1
        return
    fd = os.open(d / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InputError(
            d,
            None,
            f"another densemark process is writing this folder now (its lock {LOCK} is held); wait for it to finish, or give the {stage} stage another folder",
        ) from None
    except BaseException:
        os.close(fd)
        raise
    _HELD[key] = [os.getpid(), 1, fd]
    try:
        yield d
    finally:
        del _HELD[key]
        os.close(fd)  # releases the lock


@contextmanager
def claimed(folder: str | Path, stage: str, owned: tuple[str, ...] = ()) -> Iterator[Path]:
    """Hold ``folder`` for a run of ``stage`` that writes into it (every stage's output folder).

    Takes the folder's lock (:func:`locked`) for the whole ``with`` block and refuses a folder
    that holds files (other than hidden ones) but no stamp, or the stamp of another stage:
    someone else's files are never replaced or deleted. A stage that writes only the files
    ``owned`` (names in the folder) into a shared folder is refused only when one of those
    exists unstamped. After the block, an unstamped folder is stamped ``{"stage": stage}`` (a
    stage that resumes writes its own fingerprint stamp through :func:`prepare` instead).

    Raises:
        InputError: a foreign folder (nothing is touched), or another process holds the lock.
    """
    with locked(folder, stage) as d:
        stamp = d / STAMP
        owner = _stamp_stage(stamp)
        foreign = sorted(
            p.name
            for p in d.iterdir()
            if not p.name.startswith(".") and (not owned or p.name in owned)
        )
        if foreign and owner != stage:
            names = ", ".join(foreign[:3]) + (
                f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            )
            whose = f"the {owner} stage's" if owner else f"no {STAMP}"
            raise InputError(
                d,
                None,
                f"holds {len(foreign)} file(s) not written by the {stage} stage ({names}; {whose}): choose an empty folder or remove them",
            )
        yield d
        if _stamp_stage(stamp) is None:
            write_json(stamp, {"stage": stage})


def _stamp_stage(stamp: Path) -> str | None:
    """The stage named by a folder stamp, or None (no stamp, or an unreadable one)."""
    try:
        data = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("stage") if isinstance(data, dict) else None


def remove_temp_files(folder: str | Path) -> int:
    """Delete atomic-write temp files (``.*.tmp``) below ``folder``; returns how many."""
    n = 0
    for p in Path(folder).rglob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n


def prepare(
    folder: str | Path, stage: str, inputs: dict, outputs: tuple[str, ...]
) -> dict[str, object]:
    """Make ``folder`` ready for a (re)run of ``stage`` whose outputs depend on ``inputs``.

    Args:
        folder: the output folder (created when missing).
        stage: the stage name, recorded in the stamp.
        inputs: JSON-serialisable description of everything the outputs depend on.
        outputs: glob patterns of the files the stage writes there (deleted on a rebuild).

    Returns:
        ``{"fingerprint": str, "temp_removed": int, "rebuilt": bool, "stale_removed": int}``.

    Raises:
        InputError: the folder holds matching files but no stamp of this stage (nothing is
            touched then), or another process is writing it (:func:`locked`).
    """
    with locked(folder, stage) as d:
        return _prepare(d, stage, inputs, outputs)


def _prepare(d: Path, stage: str, inputs: dict, outputs: tuple[str, ...]) -> dict[str, object]:
    fp = sha256_json({"stage": stage, "inputs": inputs})
    stamp = d / STAMP
    existing = sorted({p for pat in outputs for p in d.glob(pat) if p.is_file()})
    old = None
    if stamp.is_file():
        try:
            old = json.loads(stamp.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
    if not isinstance(old, dict):
        old = None
    if existing and (old is None or old.get("stage") != stage):
        names = ", ".join(p.name for p in existing[:3]) + (
            f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        )
        raise InputError(
            d,
            None,
            f"holds {len(existing)} file(s) not written by the {stage} stage ({names}; no {STAMP} of it): choose an empty folder or remove them",
        )
    info: dict[str, object] = {
        "fingerprint": fp,
        "temp_removed": remove_temp_files(d),
        "rebuilt": False,
        "stale_removed": 0,
    }
    if old is not None and old.get("fingerprint") != fp:
        for p in existing:
            p.unlink()
        info.update(rebuilt=True, stale_removed=len(existing))
    if old is None or old.get("fingerprint") != fp:
        write_json(stamp, {"stage": stage, "fingerprint": fp, "inputs": inputs})
    return info
