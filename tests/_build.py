"""A tiny embedded world for dataset-build tests: procedural model, template, symmetric set, synthetic source."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from densemark.datasets.params import BuildParams, SplitParams
from densemark.faces import procedural as fs
from densemark.faces.params import ModelParams
from densemark.faces.procedural.params import ProceduralParams
from densemark.faces.stages import run_template
from densemark.sampling.landmark_set import make_set
from densemark.sources import synthetic as ds
from densemark.sources.params import SyntheticParams

GRID = 61
UV_RES = 128


def make_world(root: Path, n: int = 8, n_points: int = 40, seed: int = 0) -> dict:
    """Write model, template, a mirror-exact landmark set (with the 68 keypoints) and ``n`` synthetic samples."""
    mdir, tdir, src = root / "model", root / "template", root / "src"
    proc = ProceduralParams(grid=GRID)
    fs.write_model(proc, mdir)
    mp = ModelParams(source="bfm", dir=mdir, cache_dir=root / "cache", uv_res=UV_RES)
    tpl = run_template(mp, mdir, tdir)
    rng = np.random.default_rng(seed)
    mir = tpl.mirror_ids
    pool = np.flatnonzero(mir >= 0)
    pick = rng.choice(pool, n_points // 2, replace=False)
    kpt = tpl.kpt_ids.copy()
    # coarse grids merge the inner and outer mouth corners: move the inner ones a pixel toward the midline
    uv = tpl.pixel_uv
    for i in (60, 64):
        u, v = uv[kpt[i]]
        kpt[i] = tpl.id_map[v, u + (1 if u < (tpl.res - 1) / 2 else -1)]
    ids = list(dict.fromkeys([*kpt.tolist(), *mir[kpt][mir[kpt] >= 0].tolist(), *pick.tolist(), *mir[pick].tolist()]))
    pos = {v: i for i, v in enumerate(ids)}
    lset = make_set(tpl, ids, name="test-set", kpt68=[pos[v] for v in kpt.tolist()])
    set_path = lset.save(root / "set.json")
    model = ds.load_model_dir(mdir)
    ds.generate_300wlp(model, SyntheticParams(image_size=200, shift_px=5.0), src, n)
    return {"model_params": mp, "model_dir": mdir, "template_dir": tdir, "set_path": set_path, "source_dir": src,
            "template": tpl, "set": lset, "model": model}


def build_kwargs(w: dict, out: Path) -> dict:
    return dict(model_dir=w["model_dir"], template_dir=w["template_dir"], set_path=w["set_path"], source_dir=w["source_dir"], out_dir=out)


def small_build_params(**kw) -> BuildParams:
    base = dict(res=64, chunk_size=3, row_group_size=4, formats=["parquet", "hdf5"], workers=1, batch=2)
    base.update(kw)
    return BuildParams(**base)


SPLITS = SplitParams(seed=0, val=0.25, test=0.25)
