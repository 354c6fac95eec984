"""The artifacts a user reads on the top-level pipeline run: stages, metrics, card, curves, links.

Images are embedded as `data:image/png;base64,...` URIs: the Prefect UI renders a markdown
artifact on its own, with no folder to resolve a relative link against.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from densemark.card.card import inline_images


def data_uri(png: Path) -> str:
    """A PNG file as a `data:` URI."""
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def card_markdown(card_md: Path) -> str:
    """The card's README without its YAML header, its figures inlined."""
    md = card_md.read_text(encoding="utf-8").split("---\n", 2)[-1]
    return inline_images(md, card_md.parent)


def stage_rows(groups: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per stage: its flow, whether it ran or came from the cache, its wall time."""
    return [{"stage": name, "flow": flow, "state": "cached" if d["state"] == "Cached" else d["state"].lower(), "seconds": round(d["seconds"], 1)}
            for flow, stages in groups.items() for name, d in stages.items()]  # fmt: skip


def metric_rows(groups: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (stage, metric) of the stages' metrics (the numbers `dvc metrics show` lists)."""
    rows = []
    for stages in groups.values():
        for name, d in stages.items():
            for k, v in sorted(_flat(d["result"].get("metrics") or {}).items()):
                rows.append({"stage": name, "metric": k, "value": v})
    return rows


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


def publish_pipeline(
    groups: dict[str, dict[str, dict[str, Any]]], runs: dict[str, str], ui_url: str | None
) -> None:
    """The top-level run's artifacts: stage table, metrics, results table + CED curve, card,
    sample crops, links to the subflow runs."""
    rows = stage_rows(groups)
    ran = sum(r["state"] != "cached" for r in rows)
    create_table_artifact(
        rows,
        key="densemark-stages",
        description=f"{len(rows)} stages: {ran} ran, {len(rows) - ran} cached",
    )
    create_table_artifact(
        metric_rows(groups), key="densemark-metrics", description="the stages' metrics"
    )
    ev = _find(groups, "evaluate")
    if ev is not None:
        out = ev["result"]["outputs"]
        md = "# Evaluation\n\n" + Path(out["table"]).read_text(encoding="utf-8")
        if Path(out.get("ced", "")).is_file():
            md += f"\n\n## CED curve\n\n![CED]({data_uri(Path(out['ced']))})\n"
        create_markdown_artifact(
            md, key="densemark-results", description="NME table and CED curve (reports/evaluate)"
        )
    card = _find(groups, "card")
    if card is not None:
        readme = Path(card["result"]["outputs"]["card"])
        create_markdown_artifact(
            card_markdown(readme), key="densemark-card", description="the dataset card (data/card)"
        )
        samples = readme.parent / "samples.png"
        if samples.is_file():
            create_markdown_artifact(f"# Sample crops\n\n![samples]({data_uri(samples)})\n", key="densemark-samples",
                                     description="crops of the dataset with their landmarks")  # fmt: skip
    base = (ui_url or "").rstrip("/")
    links = "\n".join(f"- [{name}]({base}/runs/flow-run/{rid})" for name, rid in runs.items())
    create_markdown_artifact(
        f"# Subflow runs\n\n{links}\n",
        key="densemark-subflows",
        description="the runs this pipeline run started",
    )


def _find(groups: dict[str, dict[str, dict[str, Any]]], stage: str) -> dict[str, Any] | None:
    for stages in groups.values():
        if stage in stages:
            return stages[stage]
    return None
