"""``dvc.yaml`` written from the stage registry (``densemark dvc-yaml``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from densemark.pipeline.stage import Stage
from densemark.pipeline.stages import STAGES

DVC_HEADER = """\
# Generated from the stage registry (densemark/pipeline/) by `densemark dvc-yaml`: edit the
# registry, not this file (tests/test_pipeline.py checks the two agree).
# The pipeline on the embedded default. Every stage runs one `densemark <stage>` command; it
# depends on the code it runs (whole parts of the package, the registry, its CLI front end, the
# core helpers) and on the params.yaml sections it reads. Metrics files hold only the few numbers
# a user compares between runs (`dvc metrics diff`); full run reports are plain outputs.
"""


def dvc_stage(stage: Stage) -> dict[str, Any]:
    """The ``dvc.yaml`` entry of a stage, as ``yaml.safe_load`` reads it."""
    d: dict[str, Any] = {"cmd": stage.cmd(), "deps": stage.deps()}
    if stage.params:
        d["params"] = list(stage.params)
    d["outs"] = [p for s in stage.of("out") for p in s.tracked().values()]
    if stage.of("metrics"):
        d["metrics"] = [{s.path: {"cache": False}} for s in stage.of("metrics")]
    if stage.of("plot"):
        d["plots"] = [{s.path: dict(s.plot)} if s.plot else s.path for s in stage.of("plot")]
    return d


def _yaml_list(key: str, items: Iterable[Any]) -> list[str]:
    lines = [f"    {key}:"]
    for it in items:
        if isinstance(it, dict):
            ((name, props),) = it.items()
            lines.append(f"      - {name}:")
            lines += [
                f"          {k}: {str(v).lower() if isinstance(v, bool) else v}"
                for k, v in props.items()
            ]
        else:
            lines.append(f"      - {it}")
    return lines


def dvc_yaml(stages: Iterable[Stage] | None = None) -> str:
    """The text of ``dvc.yaml`` for the registry's stages (the committed file is this text)."""
    blocks = []
    for stage in STAGES.values() if stages is None else stages:
        d = dvc_stage(stage)
        lines = [f"  # {line}" for line in stage.doc.splitlines()]
        lines += [f"  {stage.name}:", f"    cmd: {d['cmd']}"]
        for key in ("deps", "params", "outs", "metrics", "plots"):
            if key in d:
                lines += _yaml_list(key, d[key])
        blocks.append("\n".join(lines) + "\n")
    return DVC_HEADER + "stages:\n" + "\n".join(blocks)
