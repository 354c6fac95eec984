"""Flow `densemark-train`: train -> export -> evaluate (the `dvc.yaml` stages after the dataset)."""

from __future__ import annotations

from prefect import flow

from densemark.flows.common import load, run_stages
from densemark.flows.overrides import Sections

# the registry stages this flow runs, in dvc.yaml's order
STAGE_NAMES = ("train", "export", "evaluate")


@flow(name="densemark-train", log_prints=True)
def train_flow(
    params_path: str = "params.yaml", root: str | None = None, overrides: Sections | None = None
) -> dict:
    """Train the landmark regressor on the dataset, export it to ONNX and evaluate it.

    Args:
        params_path: the params file (sections `train`, `evaluate`).
        root: folder the layout's paths are relative to (default: the params file's folder).
        overrides: params sections merged over the params file (only the keys given).

    Returns:
        `{stage: {"state", "seconds", "result": {"outputs", "metrics", "notes"}}}`.
    """
    p, base = load(params_path, overrides, root)
    return run_stages(STAGE_NAMES, p, base)
