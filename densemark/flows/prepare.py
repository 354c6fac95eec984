"""Flow `densemark-prepare`: model -> template -> synthetic sources -> position maps ->
landmark sampling -> compare (the `dvc.yaml` stages before the build).

One task per registry stage (:data:`densemark.pipeline.STAGES`), named after it and calling the
same stage function as `densemark <stage>` and `dvc.yaml`, on the same paths.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from densemark.flows.common import load, run_stages, stage_call
from densemark.flows.overrides import Sections

# the registry stages this flow runs, in dvc.yaml's order
STAGE_NAMES = ("model", "template", "synth_300wlp", "synth_aflw2000", "posmap", "sample", "compare")


@flow(name="densemark-prepare", log_prints=True)
def prepare_flow(
    params_path: str = "params.yaml",
    root: str | None = None,
    overrides: Sections | None = None,
    chosen_set: str | None = None,
) -> dict:
    """Model, template, synthetic sources, position maps and landmark set, as `dvc repro compare` makes them.

    Args:
        params_path: the params file.
        root: folder the layout's paths are relative to (default: the params file's folder).
        overrides: params sections merged over the params file (only the keys given).
        chosen_set: the tracked set to compare with the sampler's (default `landmarks/embedded-520.json`);
            the comparison is skipped when the file is absent.

    Returns:
        `{stage: {"state": "Completed" | "Cached", "seconds", "result": {"outputs", "metrics", "notes"}}}`.
    """
    p, base = load(params_path, overrides, root)
    names = list(STAGE_NAMES)
    a = base / stage_call("compare", p, base, a=chosen_set)["paths"]["a"]
    if not a.is_file():
        print(f"compare skipped: {a} not found")
        names.remove("compare")
    done = run_stages(names, p, base, {"compare": {"a": chosen_set}})
    if "compare" in done:
        md = Path(done["compare"]["result"]["outputs"]["markdown"]).read_text(encoding="utf-8")
        create_markdown_artifact(
            md, key="densemark-compare", description="chosen set vs sampled set"
        )
    return done
