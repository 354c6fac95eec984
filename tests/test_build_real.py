"""The build on the real 300W-LP sample with the real BFM mean model, PRNet template and the paper's 520 set."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from densemark.datasets import build as B
from densemark.datasets.chunks import crop_of
from densemark.datasets.params import BuildParams, SplitParams
from densemark.datasets.plan import BuildPaths
from densemark.faces.params import ModelParams
from densemark.faces.template import read_index_list
from densemark.sampling.landmark_set import make_set
from densemark.sources.readers import read_fit_mat

pytestmark = pytest.mark.real


def test_real_sample_builds_with_the_paper_set(real_dir, real_template, tmp_path):
    ids = read_index_list(real_dir / "seed" / "vertices_520_sel_from_blender.txt", "ids")
    k68 = read_index_list(real_dir / "seed" / "vertices_68_fil_520.txt", "kpt68")
    lset = make_set(real_template, ids, name="paper-520", kpt68=k68)
    set_path = lset.save(tmp_path / "paper-520.json")
    src = tmp_path / "300W_LP" / "IBUG"
    src.mkdir(parents=True)
    for suf in (".jpg", ".mat"):
        (src / f"IBUG_image_008_1_0{suf}").symlink_to(
            real_dir / "300wlp" / f"IBUG_image_008_1_0{suf}"
        )
    mp = ModelParams(
        source="bfm-mean", dir=real_dir / "bfm", cache_dir=tmp_path / "cache", uv_res=256
    )
    paths = BuildPaths(
        model_dir=real_dir / "bfm",
        template_dir=real_dir / "template",
        set_path=set_path,
        source_dir=tmp_path / "300W_LP",
        out_dir=tmp_path / "ds",
    )
    r = B.run_build(mp, BuildParams(workers=1), SplitParams(), paths)
    assert r.manifest["quarantined"] == 0, r.report.quarantine
    n_rows = 2 if lset.mirror_exact else 1
    assert r.manifest["rows"] == n_rows and r.manifest["counts"]["subset"] == {"IBUG": n_rows}
    (part,) = sorted((tmp_path / "ds" / "data").glob("*.parquet"))  # one sample: one split file
    t = pq.read_table(part).to_pydict()
    assert t["source_id"][0] == "IBUG/IBUG_image_008_1" and t["id"][0] == "IBUG/IBUG_image_008_1_0"
    lm = np.array(t["landmarks"][0], np.float32).reshape(520, 3)
    kp = np.array(t["kpt68"][0], np.float32).reshape(68, 3)
    assert np.isfinite(lm).all() and lm[:, 2].min() >= 0
    assert (
        np.abs(lm[k68, :2] - kp[:, :2]).max() < 0.03 * 256
    )  # the set's 68 subset sits on the keypoints
    # the keypoints, mapped back to the image, sit on the sample's 2D annotation (the mean shape
    # stands in for the fitted identity: a few pixels off on a ~200 px face)
    crop = crop_of(t["crop"][0])
    img_kp = crop.invert(kp.astype(np.float64))[:, :2]
    pt2d = read_fit_mat(src / "IBUG_image_008_1_0.mat").pt2d.T
    err = np.linalg.norm(img_kp - pt2d, axis=1)
    box = np.ptp(pt2d, 0).mean()
    assert np.median(err) < 0.06 * box, (np.median(err), box)
