"""Stage functions of the face part: ``model``, ``template``, ``posmap``.

Each is a plain function ``(input paths, params) -> output paths + report``; the CLI, DVC and
the Prefect flows call these and hold no logic of their own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from densemark.atomic import atomic_path, save_npy
from densemark.config import Params
from densemark.errors import InputError
from densemark.faces.crop import crop_image
from densemark.faces.geometry import pose_batch
from densemark.faces.io import load_bfm_mean_model, load_model
from densemark.faces.model import MorphableModel
from densemark.faces.template import FaceTemplate, load_template, save_template
from densemark.faces.uvmap import UVMap, derive_template
from densemark.report import RunReport
from densemark.seeding import rng_for


def run_model(params: Params, out_dir: str | Path) -> dict[str, Path]:
    """Write the embedded procedural model (``BFM.mat`` + ``BFM_UV.mat``) into ``out_dir``.

    For ``model.source`` ``bfm`` / ``bfm-mean`` the user's files are read where they are;
    this stage then only checks they load.
    """
    if params.model.source == "embedded":
        from densemark.faces.synthetic import write_model

        return write_model(params.synthetic, out_dir)
    load_configured_model(params, out_dir)
    return {}


def load_configured_model(params: Params, model_dir: str | Path | None = None) -> MorphableModel:
    """The model ``params.model`` names, from ``model_dir`` (default ``params.model.dir``)."""
    d = Path(model_dir or params.model.dir)
    if params.model.source == "bfm-mean":
        return load_bfm_mean_model(d)
    return load_model(d / "BFM.mat", d / "BFM_UV.mat")


def run_template(params: Params, model_dir: str | Path, out_dir: str | Path, report_path: str | Path | None = None) -> FaceTemplate:
    """The face template the pipeline samples landmarks on, written in PRNet's file format.

    With ``model.template_dir`` set (e.g. PRNet's ``Data/uv-data``), that template is read and
    checked against the model's UV rasterization (every face pixel must be covered); otherwise
    the template is derived from the model (its covered UV pixels).
    """
    model = load_configured_model(params, model_dir)
    uvm = UVMap.for_model(model, params.posmap.res, params.model.cache_dir)
    rep = RunReport("template", params={"model": params.model.model_dump(mode="json")})
    if params.model.template_dir is not None:
        tpl = load_template(params.model.template_dir, params.posmap.res)
        missing = int((~uvm.coverage.ravel()[tpl.face_ind]).sum())
        if missing:
            raise InputError(params.model.template_dir, "face_ind", f"{missing} face pixels not covered by the model's UV mesh")
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


def run_posmap(params: Params, model_dir: str | Path, source_dir: str | Path, out_dir: str | Path, report_path: str | Path) -> RunReport:
    """PRNet-style training pairs for every sample of a 300W-LP-format source.

    Writes ``<id>.jpg`` (the res x res crop) and ``<id>_posmap.npy`` ((res, res, 3) float32,
    x, y, z in crop space) per sample. Samples whose outputs exist are skipped (resume); bad
    samples are quarantined in the report and the run goes on.
    """
    from densemark.datasets.sources import FitSample, iter_source, list_fit_mats

    p = params.posmap
    model = load_configured_model(params, model_dir)
    uvm = UVMap.for_model(model, p.res, params.model.cache_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rep = RunReport("posmap", params=p.model_dump(mode="json"))
    pending: list[tuple[FitSample, np.ndarray]] = []  # (sample, its decoded image)

    def process(batch: list[tuple[FitSample, np.ndarray]]) -> None:
        try:
            geo = pose_batch(
                model,
                np.stack([s.shape_para for s, _ in batch]),
                np.stack([s.exp_para for s, _ in batch]),
                np.stack([s.pose_para for s, _ in batch]),
                np.array([img.shape[0] for _, img in batch]),
                res=p.res, crop_scale=p.crop_scale, jitter=p.jitter, size_jitter=p.size_jitter,
                rngs=[rng_for(p.seed, s.sample_id) for s, _ in batch],
            )  # fmt: skip
        except InputError as exc:  # a bad fit: redo one by one so only it is quarantined
            if len(batch) == 1:
                rep.quarantined(batch[0][0].sample_id, exc)
            else:
                for one in batch:
                    process([one])
            return
        maps = uvm.render(geo.vertices, vertex_major=True)
        for i, (s, img) in enumerate(batch):
            if not np.isfinite(maps[i]).all():
                rep.quarantined(s.sample_id, "non-finite position map")
                continue
            _write_pair(out, s.sample_id, crop_image(img, geo.crops[i]), maps[i])
            rep.count("written")

    total = len(list_fit_mats(source_dir))
    for item in tqdm(iter_source(source_dir, model.n_shape or None, model.n_exp or None), total=total, desc="posmap"):
        if isinstance(item, InputError):
            rep.quarantined(item.path or "?", item)
            continue
        if (out / f"{item.sample_id}_posmap.npy").exists() and (out / f"{item.sample_id}.jpg").exists():
            rep.count("skipped_existing")
            continue
        try:
            pending.append((item, item.load_image()))
        except InputError as exc:
            rep.quarantined(item.sample_id, exc)
            continue
        if len(pending) >= p.batch:
            process(pending)
            pending = []
    if pending:
        process(pending)
    rep.write(report_path)
    return rep


def _write_pair(out: Path, sample_id: str, crop: np.ndarray, posmap: np.ndarray) -> None:
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise InputError(out / f"{sample_id}.jpg", "image", "JPEG encoding failed")
    # map first, image last: a pair counts as done only when both exist
    save_npy(out / f"{sample_id}_posmap.npy", posmap.astype(np.float32))
    with atomic_path(out / f"{sample_id}.jpg") as tmp:
        tmp.write_bytes(buf.tobytes())
