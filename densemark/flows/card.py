"""Flow `densemark-card`: the dataset card of a build (`densemark card`), published as an artifact too."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from densemark.flows.common import load, run_stages
from densemark.flows.overrides import Sections
from densemark.flows.report import card_markdown


@flow(name="densemark-card", log_prints=True)
def card_flow(
    params_path: str = "params.yaml",
    root: str | None = None,
    overrides: Sections | None = None,
    dataset: str | None = None,
    landmark_set: str | None = None,
    out: str | None = None,
) -> dict:
    """Write the dataset card (default: of `data/dataset` into `data/card`).

    Args:
        params_path: the params file (section `card`).
        root: folder the layout's paths are relative to (default: the params file's folder).
        overrides: params sections merged over the params file (only the keys given).
        dataset: the build folder (default `data/dataset`).
        landmark_set: the build's landmark-set file (default `landmarks/embedded-520.json`).
        out: the card folder (default `data/card`).

    Returns:
        The card stage's summary (`outputs`, `metrics`, `notes`), its `state` and `seconds`.
    """
    p, base = load(params_path, overrides, root)
    done = run_stages(
        ["card"], p, base, {"card": {"dataset": dataset, "set": landmark_set, "out": out}}
    )["card"]
    res = done["result"]
    card = json.loads(Path(res["outputs"]["json"]).read_text(encoding="utf-8"))
    create_markdown_artifact(card_markdown(Path(res["outputs"]["card"])), key="densemark-card",
                             description=f"dataset card of {card['dataset']['manifest_sha256'][:12]}")  # fmt: skip
    create_table_artifact(
        card["counts_table"],
        key="densemark-card-counts",
        description="rows per subset, split and flip",
    )
    return {**res, "state": done["state"], "seconds": done["seconds"]}
