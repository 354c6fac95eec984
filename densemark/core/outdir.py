"""Output folders that know what made them: resume only what the same settings made.

A stage that writes many files into a folder (and resumes by skipping files that exist) stamps
the folder with a fingerprint of everything its outputs depend on (params section, model
content, code version). On a rerun:

* temp files left by a killed run (``.<name>.<random>.tmp``, see :mod:`densemark.core.atomic`)
  are removed;
* the same fingerprint: existing outputs are kept and the stage resumes;
* another fingerprint: the stage's old outputs are deleted and it rebuilds (never mixes);
* outputs but no stamp (a folder made by something else): refuse, naming the folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from densemark.core.atomic import write_json
from densemark.core.errors import InputError
from densemark.core.hashing import sha256_json

STAMP = ".densemark-stage.json"


def remove_temp_files(folder: str | Path) -> int:
    """Delete atomic-write temp files (``.*.tmp``) below ``folder``; returns how many."""
    n = 0
    for p in Path(folder).rglob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n


def prepare(folder: str | Path, stage: str, inputs: dict, outputs: tuple[str, ...]) -> dict[str, object]:
    """Make ``folder`` ready for a (re)run of ``stage`` whose outputs depend on ``inputs``.

    Args:
        folder: the output folder (created when missing).
        stage: the stage name, recorded in the stamp.
        inputs: JSON-serialisable description of everything the outputs depend on.
        outputs: glob patterns of the files the stage writes there (deleted on a rebuild).

    Returns:
        ``{"fingerprint": str, "temp_removed": int, "rebuilt": bool, "stale_removed": int}``.

    Raises:
        InputError: the folder holds matching files but no stamp of this stage.
    """
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    fp = sha256_json({"stage": stage, "inputs": inputs})
    info: dict[str, object] = {"fingerprint": fp, "temp_removed": remove_temp_files(d), "rebuilt": False, "stale_removed": 0}
    stamp = d / STAMP
    existing = [p for pat in outputs for p in d.glob(pat) if p.is_file()]
    old = None
    if stamp.is_file():
        try:
            old = json.loads(stamp.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
    if existing and (old is None or old.get("stage") != stage):
        raise InputError(d, None, f"holds {len(existing)} file(s) not written by the {stage} stage (no {STAMP}); choose an empty folder or remove them")
    if old is not None and old.get("fingerprint") != fp:
        for p in existing:
            p.unlink()
        info.update(rebuilt=True, stale_removed=len(existing))
    if old is None or old.get("fingerprint") != fp:
        write_json(stamp, {"stage": stage, "fingerprint": fp, "inputs": inputs})
    return info
