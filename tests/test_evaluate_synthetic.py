"""Evaluation on the embedded default's synthetic AFLW2000-3D source (no real data needed)."""

from __future__ import annotations

import numpy as np
import pytest

from densemark.config import load_params
from densemark.core.errors import ConfigError, InputError
from densemark.evaluate.groundtruth import load_truth
from densemark.evaluate.predictions import Predictions
from densemark.evaluate.score import score_aflw2000
from densemark.faces import procedural as fs
from densemark.faces.procedural.params import ProceduralParams
from densemark.sources import synthetic as ds
from densemark.sources.params import SyntheticParams


@pytest.fixture(scope="module")
def syn_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("aflw")
    model = fs.build_model(ProceduralParams(grid=41))
    ds.generate_aflw2000(
        model, SyntheticParams(image_size=200, scale_min=4e-4, scale_max=6e-4), d, 4
    )
    return d


def test_synthetic_truth_is_zero_based_and_sources_agree(syn_dir):
    arr, mat = load_truth(syn_dir), load_truth(syn_dir, source="mat")
    assert arr.source == "arrays" and mat.source == "mat"
    assert not arr.one_based and not mat.one_based  # densemark's generator projects 0-based
    assert arr.names.tolist() == mat.names.tolist() == [f"image{i:05d}" for i in range(4)]
    np.testing.assert_allclose(arr.pts68, mat.pts68, atol=1e-3)
    np.testing.assert_allclose(arr.yaw, mat.yaw, atol=1e-4)
    s = score_aflw2000(Predictions(arr.names, arr.pts68.copy(), False), arr)
    assert np.all(s.nme68 == 0) and np.all(s.nme3d == 0)
    # a 1-based file of the same points is read 1 px off: the origin is honoured
    assert np.all(score_aflw2000(Predictions(arr.names, arr.pts68.copy(), True), arr).nme68 > 0)


def test_name_list_must_match_rows(syn_dir, tmp_path):
    import shutil

    d = tmp_path / "g"
    shutil.copytree(syn_dir, d)
    (d / "gt" / "files.json").write_text('["image00000.mat"]')
    with pytest.raises(InputError, match="file names"):
        load_truth(d)


def test_bad_evaluate_param_names_the_key(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("evaluate:\n  batch_size: 0\n")
    with pytest.raises(ConfigError, match=r"evaluate\.batch_size"):
        load_params(p)
    p.write_text("evaluate:\n  gt_source: foo\n")
    with pytest.raises(ConfigError, match=r"evaluate\.gt_source"):
        load_params(p)
