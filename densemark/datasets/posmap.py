"""The ``posmap`` stage: PRNet-style 256x256 crops + UV position maps for a 300W-LP-format source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from densemark import __version__
from densemark.core import outdir
from densemark.core.atomic import save_npy
from densemark.core.errors import InputError
from densemark.core.images import write_jpeg
from densemark.core.report import RunReport, StageResult
from densemark.core.seeding import rng_for
from densemark.datasets.params import PosmapParams
from densemark.faces.crop import crop_image
from densemark.faces.geometry import pose_batch
from densemark.faces.params import ModelParams
from densemark.faces.stages import load_configured_model
from densemark.faces.uvmap import UVMap
from densemark.sources.readers import FitSample, iter_source, list_fit_mats, orphan_images


def run_posmap(
    model_params: ModelParams,
    p: PosmapParams,
    model_dir: str | Path,
    source_dir: str | Path,
    out_dir: str | Path,
    report_path: str | Path,
) -> StageResult:
    """PRNet-style training pairs for every sample of a 300W-LP-format source.

    Writes ``<id>.jpg`` (the res x res crop, ``res = model.uv_res``) and ``<id>_posmap.npy``
    ((res, res, 3) float32, x, y, z in crop space) per sample. The folder is stamped with a
    fingerprint of the params, the model's content and the code version
    (:mod:`densemark.core.outdir`): a rerun with the same fingerprint resumes (samples whose
    outputs exist are skipped), one with another fingerprint rebuilds. Bad samples (unreadable
    fits or images, images without a ``.mat``) are quarantined in the report and the run goes on.

    Raises:
        InputError: the source folder holds no samples, or the output folder holds files of
            something else.
    """
    res = model_params.uv_res
    model = load_configured_model(model_params, model_dir)
    mats = list_fit_mats(source_dir)
    orphans = orphan_images(source_dir)
    if not mats and not orphans:
        raise InputError(source_dir, None, "no samples (no <id>.mat files) in the source folder")
    uvm = UVMap.for_model(model, res, model_params.cache_dir)
    out = Path(out_dir)
    inputs = {"posmap": p.model_dump(mode="json", exclude={"batch"}), "uv_res": res,
              "model": model.content_hash(), "densemark": __version__}  # fmt: skip
    state = outdir.prepare(out, "posmap", inputs, ("*.jpg", "*_posmap.npy"))
    rep = RunReport(
        "posmap", params=p.model_dump(mode="json"), extra={"fingerprint": state["fingerprint"]}
    )
    if state["rebuilt"]:
        print(
            f"posmap: settings changed since the last run into {out}: rebuilding ({state['stale_removed']} old files removed)"
        )
    for img in orphans:
        rep.quarantined(img, InputError(img, None, "image without its .mat (no 3DMM fit)"))
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

    for item in tqdm(
        iter_source(source_dir, model.n_shape or None, model.n_exp or None),
        total=len(mats),
        desc="posmap",
    ):
        if isinstance(item, InputError):
            rep.quarantined(item.path or "?", item)
            continue
        if (out / f"{item.sample_id}_posmap.npy").exists() and (
            out / f"{item.sample_id}.jpg"
        ).exists():
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
    done = rep.counts.get("written", 0) + rep.counts.get("skipped_existing", 0)
    return StageResult(
        outputs={"posmaps": out, "report": Path(report_path)},
        report=rep,
        metrics={"samples": done, "quarantined": rep.counts.get("quarantined", 0)},
    )


def _write_pair(out: Path, sample_id: str, crop: np.ndarray, posmap: np.ndarray) -> None:
    # map first, image last: a pair counts as done only when both exist
    save_npy(out / f"{sample_id}_posmap.npy", posmap.astype(np.float32))
    write_jpeg(out / f"{sample_id}.jpg", crop, quality=95)
