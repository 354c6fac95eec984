"""The flows by name, the ``pipeline`` flow over them, and ``densemark serve``'s deployments."""

from __future__ import annotations

import os
from pathlib import Path

from prefect import flow

from densemark.flows.build import build_flow
from densemark.flows.card import card_flow
from densemark.flows.prepare import prepare_flow


@flow(name="pipeline", log_prints=True)
def pipeline_flow(params_path: str = "params.yaml", root: str | None = None, overrides: dict | None = None) -> dict:
    """prepare -> build -> card, as ``dvc repro`` runs them (each a subflow)."""
    kw = dict(params_path=params_path, root=root, overrides=overrides)
    prep = prepare_flow(**kw)
    built = build_flow(**kw)
    card = card_flow(**kw)
    return {"prepare": {k: v["state"] for k, v in prep.items()}, "manifest_sha256": built["manifest_sha256"], "card": card["state"]}


FLOWS = {"prepare": prepare_flow, "build": build_flow, "card": card_flow, "pipeline": pipeline_flow}


def deployments(names: list[str] | None = None, params_path: str | os.PathLike = "params.yaml") -> list:
    """One deployment ``densemark-<name>`` per flow, defaulting to ``params_path`` (made absolute)."""
    pp = os.fspath(Path(params_path).resolve())
    out = []
    for name in names or list(FLOWS):
        f = FLOWS[name]
        out.append(f.to_deployment(name=f"densemark-{name}", parameters={"params_path": pp}, description=(f.description or "").split("\n")[0],
                                   tags=["densemark"]))  # fmt: skip
    return out


def serve_flows(names: list[str] | None = None, params_path: str | os.PathLike = "params.yaml", limit: int | None = None) -> None:
    """Serve the deployments (blocks): each run started from the UI or API runs here."""
    from prefect import serve

    serve(*deployments(names, params_path), limit=limit)
