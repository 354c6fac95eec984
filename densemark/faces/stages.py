"""Stage functions of the face part: ``model``, ``template``.

Each is a plain function ``(input paths, params) -> output paths + report``; the CLI, DVC and
the Prefect flows call these and hold no logic of their own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from densemark.core.errors import InputError
from densemark.core.hashing import sha256_json
from densemark.core.matio import load_npz_cache, save_npz_cache
from densemark.core.report import RunReport, StageResult
from densemark.faces.io import load_bfm_mean_model
from densemark.faces.model import MorphableModel
from densemark.faces.params import ModelParams
from densemark.faces.procedural.params import ProceduralParams
from densemark.faces.procedural.writer import read_model_dir
from densemark.faces.template import load_template, save_template
from densemark.faces.uvmap import UVMap, derive_template


def run_model(model: ModelParams, procedural: ProceduralParams, out_dir: str | Path) -> StageResult:
    """Write the embedded procedural model (``BFM.mat`` + ``BFM_UV.mat``) into ``out_dir``.

    For ``model.source`` ``bfm`` / ``bfm-mean`` the user's files are read where they are;
    this stage then only checks they load.
    """
    rep = RunReport("model", params={"model": model.recorded()})
    outputs: dict[str, Path] = {}
    if model.source == "embedded":
        from densemark.faces.procedural import write_model

        rep.params["procedural"] = procedural.model_dump(mode="json")
        outputs = write_model(procedural, out_dir)
    m = load_configured_model(model, out_dir)
    rep.counts.update(
        n_vertices=m.n_vertices,
        n_triangles=int(m.triangles.shape[0]),
        n_shape=m.n_shape,
        n_exp=m.n_exp,
    )
    return StageResult(outputs=outputs, report=rep, metrics=dict(rep.counts))


def load_configured_model(
    params: ModelParams, model_dir: str | Path | None = None
) -> MorphableModel:
    """The model the ``model`` section names, from ``model_dir`` (default ``params.dir``).

    The one loader of the configured model: ``bfm`` and ``embedded`` folders hold ``BFM.mat`` +
    ``BFM_UV.mat`` (the generator, when ``model_info.json`` names one, decides draw rules of the
    synthetic sources); ``bfm-mean`` holds 3DDFA's mean arrays.
    """
    d = Path(model_dir or params.dir)
    if params.source == "bfm-mean":
        return load_bfm_mean_model(d)
    if params.cache_dir is None:
        return read_model_dir(d)
    return _cached_model_dir(d, Path(params.cache_dir))


_MODEL_FILES = ("BFM.mat", "BFM_UV.mat", "model_info.json")
_MODEL_ARRAYS = (
    "mean",
    "shape_basis",
    "exp_basis",
    "triangles",
    "kpt_ind",
    "uv",
    "shape_ev",
    "exp_ev",
)


def _cached_model_dir(d: Path, cache_dir: Path) -> MorphableModel:
    """:func:`read_model_dir` through an uncompressed copy of its arrays in ``cache_dir``.

    ``BFM.mat`` is zlib-compressed (50 MB for the embedded model, far more for the BFM): without
    the copy every stage and build worker inflates it again (about 0.4 s for the embedded model). The
    copy is keyed by the folder and the model files' size, mtime and inode, so a rewritten file
    is read again; an unreadable copy is rebuilt. The arrays are the ones read from the files,
    bit for bit (same dtypes and memory order).
    """
    stats = []
    for name in _MODEL_FILES:
        f = d / name
        if f.is_file():
            st = f.stat()
            stats.append([name, st.st_size, st.st_mtime_ns, st.st_ino])
    if not stats or stats[0][0] != "BFM.mat":
        return read_model_dir(d)  # missing files: read_model_dir words the error
    key = sha256_json([str(d.resolve()), stats])[:20]
    path = cache_dir / f"model-{key}.npz"
    z = load_npz_cache(path)
    if z is not None:
        try:
            arr = {k: z[k] for k in _MODEL_ARRAYS if k in z}
            return MorphableModel(**arr, name=str(z["name"]), generator=str(z["generator"]))
        except (ValueError, KeyError, TypeError):
            pass  # inconsistent: read the files and rewrite the copy
    m = read_model_dir(d)
    cache_dir.mkdir(parents=True, exist_ok=True)
    arrays = {k: getattr(m, k) for k in _MODEL_ARRAYS if getattr(m, k) is not None}
    save_npz_cache(path, dict(name=np.str_(m.name), generator=np.str_(m.generator), **arrays))
    return m


def run_template(
    params: ModelParams,
    model_dir: str | Path,
    out_dir: str | Path,
    report_path: str | Path | None = None,
) -> StageResult:
    """The face template the pipeline samples landmarks on, written in PRNet's file format.

    With ``model.template_dir`` set (e.g. PRNet's ``Data/uv-data``), that template is read and
    checked against the model's UV rasterization (every face pixel must be covered); otherwise
    the template is derived from the model (its covered UV pixels).

    Returns:
        outputs ``template`` (folder) and ``report``; the template itself as ``result.value``.
    """
    model = load_configured_model(params, model_dir)
    uvm = UVMap.for_model(model, params.uv_res, params.cache_dir)
    rep = RunReport("template", params={"model": params.recorded()})
    if params.template_dir is not None:
        tpl = load_template(params.template_dir, params.uv_res)
        missing = int((~uvm.coverage.ravel()[tpl.face_ind]).sum())
        if missing:
            raise InputError(
                params.template_dir,
                "face_ind",
                f"{missing} face pixels not covered by the model's UV mesh",
            )
        rep.extra["source"] = "template_dir"
    else:
        tpl = derive_template(model, uvm)
        rep.extra["source"] = "derived"
    outputs = {"template": save_template(tpl, out_dir)}
    rep.counts.update(
        n_vertices=tpl.n_vertices,
        n_triangles=int(tpl.triangles.shape[0]),
        covered_pixels=int(uvm.coverage.sum()),
    )
    rep.extra["template_sha256"] = tpl.sha256()
    if report_path is not None:
        outputs["report"] = rep.write(report_path)
    return StageResult(outputs=outputs, report=rep, metrics=dict(rep.counts), value=tpl)
