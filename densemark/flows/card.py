"""Flow ``card``: the dataset card of a build (``densemark card``), published as an artifact too."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from densemark.card.params import CardParams
from densemark.flows.common import LAYOUT, call, in_root, load, paths, stage_task


@stage_task("card", "card", "core")
def card_task(inputs: dict, outputs: dict, card: CardParams) -> dict:
    """``densemark card``: README.md + card.json + figures from the build's files."""
    from densemark.card.card import run_card

    r = run_card(card, dataset_dir=inputs["dataset"], set_path=inputs["set"], template_dir=inputs["template"], out_dir=outputs["card"])
    c = r["card"]
    return {"markdown": r["markdown"], "counts_table": c["counts_table"], "quarantine": c["quarantine"]["count"],
            "manifest_sha256": c["dataset"]["manifest_sha256"], "licence": c["licence"]["overall"]}  # fmt: skip


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
    """
    p, base = load(params_path, overrides, root)
    ins = paths({"dataset": base / (dataset or LAYOUT["dataset"]), "set": base / (landmark_set or LAYOUT["chosen"]),
                 "template": base / LAYOUT["template"]})  # fmt: skip
    outs = paths({"card": base / (out or LAYOUT["card"])})
    with in_root(base):
        res, state = call(card_task, p.flows, inputs=ins, outputs=outs, card=p.card)
    from densemark.card.card import inline_images

    # the card without its YAML header, its figures embedded (the UI has no folder to resolve links in)
    md = inline_images(res["markdown"].split("---\n", 2)[-1], outs["card"])
    create_markdown_artifact(md, key="densemark-card", description=f"dataset card of {res['manifest_sha256'][:12]}")
    create_table_artifact(res["counts_table"], key="densemark-card-counts", description="rows per subset, split and flip")
    return {**res, "state": state}
