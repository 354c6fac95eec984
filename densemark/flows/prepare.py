"""Flow ``prepare``: model -> template -> (synthetic sources, landmark sampling) -> compare.

One task per registry stage (:data:`densemark.pipeline.STAGES`), named after it and calling the
same stage function as ``densemark <stage>`` and ``dvc.yaml``, on the same paths.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from densemark.config import Params
from densemark.flows.common import call, in_root, load, stage_call, submit


@flow(name="prepare", log_prints=True)
def prepare_flow(params_path: str = "params.yaml", root: str | None = None, overrides: dict | None = None, chosen_set: str | None = None) -> dict:
    """Model, template, synthetic sources and landmark set, as ``dvc repro compare`` makes them.

    Args:
        params_path: the params file.
        root: folder the layout's paths are relative to (default: the params file's folder).
        overrides: ``{section: {key: value}}`` merged over the params file.
        chosen_set: the tracked set to compare with the sampler's (default ``landmarks/embedded-520.json``);
            the comparison is skipped when the file is absent.

    Returns:
        ``{stage: {"state": "Completed" | "Cached", "result": {"outputs", "metrics", "notes"}}}``.
    """
    p, base = load(params_path, overrides, root)
    with in_root(base):
        return _prepare(p, base, chosen_set)


def _prepare(p: Params, base: Path, chosen_set: str | None) -> dict:
    fp = p.flows
    done: dict[str, dict] = {}
    for name in ("model", "template"):
        res, state = call(name, fp, **stage_call(name, p, base))
        done[name] = {"state": state, "result": res}
    futures = {name: submit(name, fp, **stage_call(name, p, base)) for name in ("synth_300wlp", "synth_aflw2000", "sample")}
    for name, fut in futures.items():
        fut.wait()
        done[name] = {"state": fut.state.name, "result": fut.state.result()}

    kw = stage_call("compare", p, base, a=chosen_set)
    if Path(kw["paths"]["a"]).is_file():
        res, state = call("compare", fp, **kw)
        done["compare"] = {"state": state, "result": res}
        md = Path(res["outputs"]["markdown"]).read_text(encoding="utf-8")
        create_markdown_artifact(md, key="densemark-compare", description="chosen set vs sampled set")
    else:
        print(f"compare skipped: {kw['paths']['a']} not found")
    create_table_artifact(
        [{"stage": k, "state": v["state"]} for k, v in done.items()], key="densemark-prepare", description="stages of the prepare flow"
    )
    return done
