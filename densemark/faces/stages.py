"""Stage functions of the face part: ``model``, ``template``.

Each is a plain function ``(input paths, params) -> output paths + report``; the CLI, DVC and
the Prefect flows call these and hold no logic of their own.
"""

from __future__ import annotations

from pathlib import Path

from densemark.core.errors import InputError
from densemark.core.report import RunReport
from densemark.faces.io import load_bfm_mean_model, load_model
from densemark.faces.model import MorphableModel
from densemark.faces.params import ModelParams
from densemark.faces.procedural.params import ProceduralParams
from densemark.faces.template import FaceTemplate, load_template, save_template
from densemark.faces.uvmap import UVMap, derive_template


def run_model(model: ModelParams, procedural: ProceduralParams, out_dir: str | Path) -> dict[str, Path]:
    """Write the embedded procedural model (``BFM.mat`` + ``BFM_UV.mat``) into ``out_dir``.

    For ``model.source`` ``bfm`` / ``bfm-mean`` the user's files are read where they are;
    this stage then only checks they load.
    """
    if model.source == "embedded":
        from densemark.faces.procedural import write_model

        return write_model(procedural, out_dir)
    load_configured_model(model, out_dir)
    return {}


def load_configured_model(params: ModelParams, model_dir: str | Path | None = None) -> MorphableModel:
    """The model the ``model`` section names, from ``model_dir`` (default ``params.dir``)."""
    d = Path(model_dir or params.dir)
    if params.source == "bfm-mean":
        return load_bfm_mean_model(d)
    return load_model(d / "BFM.mat", d / "BFM_UV.mat")


def run_template(params: ModelParams, model_dir: str | Path, out_dir: str | Path, report_path: str | Path | None = None) -> FaceTemplate:
    """The face template the pipeline samples landmarks on, written in PRNet's file format.

    With ``model.template_dir`` set (e.g. PRNet's ``Data/uv-data``), that template is read and
    checked against the model's UV rasterization (every face pixel must be covered); otherwise
    the template is derived from the model (its covered UV pixels).
    """
    model = load_configured_model(params, model_dir)
    uvm = UVMap.for_model(model, params.uv_res, params.cache_dir)
    rep = RunReport("template", params={"model": params.model_dump(mode="json")})
    if params.template_dir is not None:
        tpl = load_template(params.template_dir, params.uv_res)
        missing = int((~uvm.coverage.ravel()[tpl.face_ind]).sum())
        if missing:
            raise InputError(params.template_dir, "face_ind", f"{missing} face pixels not covered by the model's UV mesh")
        rep.extra["source"] = "template_dir"
    else:
        tpl = derive_template(model, uvm)
        rep.extra["source"] = "derived"
    save_template(tpl, out_dir)
    rep.counts.update(n_vertices=tpl.n_vertices, n_triangles=int(tpl.triangles.shape[0]), covered_pixels=int(uvm.coverage.sum()))
    rep.extra["template_sha256"] = tpl.sha256()
    if report_path is not None:
        rep.write(report_path)
    return tpl
