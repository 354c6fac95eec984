"""Run reports: what a stage did, how long it took, and which samples it quarantined."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from densemark import __version__
from densemark.core.atomic import jsonable, write_json


@dataclass
class RunReport:
    """Collects a stage's counts and its quarantine list (bad samples skipped, with the reason)."""

    stage: str
    params: dict = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    quarantine: list[dict[str, str]] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def quarantined(self, sample: str, error: BaseException | str) -> None:
        self.quarantine.append({"sample": str(sample), "error": str(error)})
        self.count("quarantined")

    def to_dict(self) -> dict:
        return {
            "stage": self.stage,
            "densemark": __version__,
            "params": self.params,
            "counts": dict(sorted(self.counts.items())),
            "quarantine": sorted(self.quarantine, key=lambda q: q["sample"]),
            **self.extra,
        }

    def write(self, path: str | Path) -> Path:
        """Write the report (atomically). Wall time is printed, not stored, so reports are reproducible."""
        print(
            f"{self.stage}: {dict(sorted(self.counts.items()))} in {time.time() - self.started:.1f} s"
        )
        return write_json(path, self.to_dict())


@dataclass
class StageResult:
    """What every stage function returns.

    Attributes:
        outputs: named output paths (files or folders) the stage wrote.
        report: its run report (counts, quarantine list, details; a :class:`RunReport`, or the
            plain dict a stage writes as its report file); None for a stage without one.
        metrics: the handful of numbers a user compares between runs (DVC metrics file);
            never wall times.
        value: the stage's main product in memory (a template, a landmark set, scores), for
            Python callers.
        notes: messages for the user (what the stage noticed; warnings start with ``warning:``).
    """

    outputs: dict[str, Path]
    report: RunReport | dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    value: Any = None
    notes: list[str] = field(default_factory=list)

    def report_dict(self) -> dict[str, Any]:
        """The report as a plain dict (empty without one)."""
        if isinstance(self.report, RunReport):
            return self.report.to_dict()
        return dict(self.report or {})

    def write_metrics(self, path: str | Path | None) -> None:
        """Write :attr:`metrics` as JSON (atomically) when ``path`` is given."""
        if path is not None:
            write_json(path, dict(sorted(self.metrics.items())))

    def summary(self) -> dict[str, Any]:
        """JSON-able ``{"outputs": {name: path}, "metrics": {...}, "notes": [...]}``: what a flow
        task returns and stores (the report and value stay in files and memory)."""
        doc = {
            "outputs": {k: os.fspath(v) for k, v in self.outputs.items()},
            "metrics": self.metrics,
            "notes": list(self.notes),
        }
        return json.loads(json.dumps(doc, default=jsonable))
