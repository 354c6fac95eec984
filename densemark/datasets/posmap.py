"""The ``posmap`` stage: PRNet-style 256x256 crops + UV position maps for a 300W-LP-format source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from densemark.core.atomic import atomic_path, save_npy
from densemark.core.errors import InputError
from densemark.core.report import RunReport
from densemark.core.seeding import rng_for
from densemark.datasets.params import PosmapParams
from densemark.faces.crop import crop_image
from densemark.faces.geometry import pose_batch
from densemark.faces.params import ModelParams
from densemark.faces.stages import load_configured_model
from densemark.faces.uvmap import UVMap
from densemark.sources.readers import FitSample, iter_source, list_fit_mats


def run_posmap(
    model_params: ModelParams,
    p: PosmapParams,
    model_dir: str | Path,
    source_dir: str | Path,
    out_dir: str | Path,
    report_path: str | Path,
) -> RunReport:
    """PRNet-style training pairs for every sample of a 300W-LP-format source.

    Writes ``<id>.jpg`` (the res x res crop) and ``<id>_posmap.npy`` ((res, res, 3) float32,
    x, y, z in crop space) per sample. Samples whose outputs exist are skipped (resume); bad
    samples are quarantined in the report and the run goes on.
    """
    res = model_params.uv_res
    model = load_configured_model(model_params, model_dir)
    uvm = UVMap.for_model(model, res, model_params.cache_dir)
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
                res=res, crop_scale=p.crop_scale, jitter=p.jitter, size_jitter=p.size_jitter,
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
