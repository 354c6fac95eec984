"""Flow ``card``: the dataset card of a build (``densemark card``), published as an artifact too."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from densemark.flows.common import call, in_root, load, stage_call


@flow(name="card", log_prints=True)
def card_flow(
    params_path: str = "params.yaml",
    root: str | None = None,
    overrides: dict | None = None,
    dataset: str | None = None,
    landmark_set: str | None = None,
    out: str | None = None,
) -> dict:
    """Write the dataset card (default: of ``data/dataset`` into ``data/card``).

    Args:
        params_path: the params file (section ``card``).
        root: folder the layout's paths are relative to (default: the params file's folder).
        overrides: ``{section: {key: value}}`` merged over the params file.
        dataset, landmark_set, out: the build folder, its landmark-set file, the card folder.

    Returns:
        The card stage's summary (``outputs``, ``metrics``, ``notes``) and its ``state``.
    """
    p, base = load(params_path, overrides, root)
    kw = stage_call("card", p, base, dataset=dataset, set=landmark_set, out=out)
    with in_root(base):
        res, state = call("card", p.flows, **kw)
    from densemark.card.card import inline_images

    card = json.loads(Path(res["outputs"]["json"]).read_text(encoding="utf-8"))
    card_md = Path(res["outputs"]["card"])
    # the card without its YAML header, its figures embedded (the UI has no folder to resolve links in)
    md = inline_images(card_md.read_text(encoding="utf-8").split("---\n", 2)[-1], card_md.parent)
    create_markdown_artifact(md, key="densemark-card", description=f"dataset card of {card['dataset']['manifest_sha256'][:12]}")
    create_table_artifact(card["counts_table"], key="densemark-card-counts", description="rows per subset, split and flip")
    return {**res, "state": state}
