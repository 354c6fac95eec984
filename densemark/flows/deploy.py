"""The flows by name, the `densemark-pipeline` flow over them, and `densemark serve`'s deployments.

The pipeline runs every `dvc.yaml` stage, in `dvc repro`'s order, as a task named after it:
`prepare` (model ... compare), `build` (the dataset, its chunks on Dask), `relabel` (a task of
the pipeline run itself), `card`, `train` (train, export, evaluate). :data:`GROUPS` lists them;
a test checks they are the registry's stages in its order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.deployments.runner import EntrypointType

from densemark.flows.build import build_flow
from densemark.flows.card import card_flow
from densemark.flows.common import load, run_stages
from densemark.flows.overrides import Sections
from densemark.flows.prepare import STAGE_NAMES as PREPARE
from densemark.flows.prepare import prepare_flow
from densemark.flows.report import publish_pipeline
from densemark.flows.train import STAGE_NAMES as TRAIN
from densemark.flows.train import train_flow

# (subflow or None for the pipeline run itself, its stages), in dvc.yaml's order
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("prepare", PREPARE), ("build", ("build",)), ("pipeline", ("relabel",)), ("card", ("card",)), ("train", TRAIN),
)  # fmt: skip


@flow(name="densemark-pipeline", log_prints=True)
def pipeline_flow(
    params_path: str = "params.yaml", root: str | None = None, overrides: Sections | None = None
) -> dict:
    """Every `dvc.yaml` stage, in `dvc repro`'s order, each a task named after it, with the same
    outputs (byte for byte), params and caching; stage table, metrics, card, CED curve and
    sample crops are published on this run.

    Args:
        params_path: the params file.
        root: folder the layout's paths are relative to (default: the params file's folder).
        overrides: params sections merged over the params file (only the keys given).

    Returns:
        `{"stages": {stage: state}, "manifest_sha256": the dataset's, "runs": {subflow: flow run id}}`.
    """
    from prefect.settings import PREFECT_UI_URL

    p, base = load(params_path, overrides, root)  # validates the overrides before any stage runs
    kw: dict[str, Any] = dict(params_path=params_path, root=os.fspath(base), overrides=overrides)
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    runs: dict[str, str] = {}
    sha = None
    for group, _ in GROUPS:
        if group == "pipeline":
            groups[group] = run_stages(["relabel"], p, base)
            continue
        sub = {
            "prepare": prepare_flow,
            "build": build_flow,
            "card": card_flow,
            "train": train_flow,
        }[group]
        state = sub(**kw, return_state=True)
        runs[sub.name] = str(state.state_details.flow_run_id)
        res = state.result()
        if group == "build":
            sha = res["manifest_sha256"]
            res = {"build": {"state": res["state"], "seconds": res["seconds"], "result": res}}
        elif group == "card":
            res = {"card": {"state": res["state"], "seconds": res["seconds"], "result": res}}
        groups[group] = res
    publish_pipeline(groups, runs, PREFECT_UI_URL.value())
    return {
        "stages": {name: d["state"] for g in groups.values() for name, d in g.items()},
        "manifest_sha256": sha,
        "runs": runs,
    }


FLOWS = {
    "prepare": prepare_flow,
    "build": build_flow,
    "card": card_flow,
    "train": train_flow,
    "pipeline": pipeline_flow,
}


def deployments(
    names: list[str] | None = None, params_path: str | os.PathLike = "params.yaml"
) -> list:
    """One deployment per flow (`densemark-<name>`), tagged `densemark`, defaulting to
    `params_path` (made absolute); its entrypoint is the flow's module path
    (`densemark.flows.deploy.pipeline_flow`), so a run imports it like the stage code."""
    pp = os.fspath(Path(params_path).resolve())
    out = []
    for name in names or list(FLOWS):
        f = FLOWS[name]
        out.append(f.to_deployment(name=f"densemark-{name}", parameters={"params_path": pp}, description=(f.description or "").split("\n\n")[0].replace("\n", " "),
                                   tags=["densemark", name], entrypoint_type=EntrypointType.MODULE_PATH))  # fmt: skip
    return out


def serve_flows(
    names: list[str] | None = None,
    params_path: str | os.PathLike = "params.yaml",
    limit: int | None = None,
) -> None:
    """Serve the deployments (blocks): each run started from the UI or API runs here."""
    from prefect import serve

    serve(*deployments(names, params_path), limit=limit)
