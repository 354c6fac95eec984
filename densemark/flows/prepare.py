"""Flow ``prepare``: model -> template -> (synthetic sources, landmark sampling) -> compare.

The same stage functions as ``densemark model | template | synth-300wlp | synth-aflw2000 |
sample | landmarks compare`` and the matching ``dvc.yaml`` stages, writing the same paths.
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from densemark.config import Params
from densemark.faces.params import ModelParams
from densemark.faces.procedural.params import ProceduralParams
from densemark.flows.common import LAYOUT, in_root, load, options, paths, stage_task
from densemark.flows.keys import plain
from densemark.sampling.params import SampleParams
from densemark.sources.params import SyntheticParams


@stage_task("model", "faces", "core")
def model_task(inputs: dict, outputs: dict, model: ModelParams, procedural: ProceduralParams, model_dir: str) -> dict:
    """``densemark model``: write the embedded model (or check the configured one loads)."""
    from densemark.faces.stages import run_model

    res = run_model(model, procedural, model_dir)
    return plain({"outputs": res.outputs, "metrics": res.metrics})


@stage_task("template", "faces", "core")
def template_task(inputs: dict, outputs: dict, model: ModelParams) -> dict:
    """``densemark template``: the face template (derived, or checked and copied)."""
    from densemark.faces.stages import run_template

    t = run_template(model, inputs["model"], outputs["template"], outputs["report"]).value
    return {"n_vertices": t.n_vertices, "sha256": t.sha256()}


@stage_task("synthetic", "faces", "sources", "core")
def synthetic_task(inputs: dict, outputs: dict, synthetic: SyntheticParams, kind: str) -> dict:
    """``densemark synth-300wlp | synth-aflw2000``."""
    from densemark.sources.synthetic import run_synthetic

    written, n = run_synthetic(kind, inputs["model"], synthetic, outputs["source"])
    return {"kind": kind, "written": len(written), "asked": n}


@stage_task("sample", "faces", "sampling", "core")
def sample_task(inputs: dict, outputs: dict, sample: SampleParams) -> dict:
    """``densemark sample``: the dense landmark set sampled on the template."""
    from densemark.sampling.stages import run_sample

    r = run_sample(inputs["template"], sample, outputs["set"], report_json=outputs["report"], plot_png=outputs["plot"])
    return {"final": r["report"]["final"], "set_sha256": r["report"]["set_sha256"]}


@stage_task("compare", "faces", "sampling", "core")
def compare_task(inputs: dict, outputs: dict) -> dict:
    """``densemark landmarks compare``: the chosen set checked against the sampler's output."""
    from densemark.sampling.stages import run_compare

    r = run_compare(inputs["a"], inputs["b"], inputs["template"], out_md=outputs["markdown"], out_png=outputs["plot"], out_json=outputs["report"])
    return {"markdown": r["markdown"]}


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
        ``{stage: {"state": "Completed" | "Cached", "result": ...}}``.
    """
    p, base = load(params_path, overrides, root)
    with in_root(base):
        return _prepare(p, base, chosen_set)


def _prepare(p: Params, base: Path, chosen_set: str | None) -> dict:
    fp, rep = p.flows, base / LAYOUT["reports"]
    model_dir, tpl = base / p.model.dir, base / LAYOUT["template"]
    done: dict[str, dict] = {}

    def record(name: str, state) -> None:
        done[name] = {"state": state.name, "result": state.result()}

    def now(t, **kw):
        return options(t, fp, **kw)(**kw, return_state=True)

    def later(t, **kw):
        return options(t, fp, **kw).submit(**kw)

    embedded = p.model.source == "embedded"
    mdir = {"model": model_dir}
    record("model", now(model_task, inputs=paths({} if embedded else mdir), outputs=paths(mdir if embedded else {}),
                        model=p.model, procedural=p.procedural, model_dir=os.fspath(model_dir)))  # fmt: skip
    ins = {"model": model_dir, "template_dir": p.model.template_dir}
    record("template", now(template_task, inputs=paths(ins), outputs=paths({"template": tpl, "report": rep / "template.json"}), model=p.model))

    futures = {
        f"synth_{kind}": later(synthetic_task, inputs=paths(mdir), outputs=paths({"source": base / LAYOUT[kind]}), synthetic=p.synthetic, kind=kind)
        for kind in ("300wlp", "aflw2000")
    }
    sampled = base / LAYOUT["sampled"]
    outs = {"set": sampled, "report": rep / "sample.json", "plot": rep / "sample.png"}
    futures["sample"] = later(sample_task, inputs=paths({"template": tpl}), outputs=paths(outs), sample=p.sample)
    for name, fut in futures.items():
        fut.wait()
        record(name, fut.state)

    chosen = base / (chosen_set or LAYOUT["chosen"])
    if chosen.is_file():
        outs = {"markdown": rep / "compare.md", "report": rep / "compare.json", "plot": rep / "compare.png"}
        ins = {"a": chosen, "b": sampled, "template": tpl}
        record("compare", now(compare_task, inputs=paths(ins), outputs=paths(outs)))
        create_markdown_artifact(done["compare"]["result"]["markdown"], key="densemark-compare", description="chosen set vs sampled set")
    else:
        print(f"compare skipped: {chosen} not found")
    create_table_artifact(
        [{"stage": k, "state": v["state"]} for k, v in done.items()], key="densemark-prepare", description="stages of the prepare flow"
    )
    return done
