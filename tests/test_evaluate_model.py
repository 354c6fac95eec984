"""A trained (tiny) checkpoint through ``densemark evaluate``: the Predictor path end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from densemark.cli import main
from densemark.core.errors import DensemarkError
from densemark.evaluate.params import EvaluateParams
from densemark.evaluate.predictions import read_predictions
from densemark.evaluate.stages import run_evaluate
from tests.conftest import CHECKPOINT_POINTS
from tests.factories import SyntheticLandmarks

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_dense_nme_from_checkpoint(checkpoint, tmp_path):
    ds = SyntheticLandmarks(3, CHECKPOINT_POINTS, 64, seed=1)
    res = run_evaluate(EvaluateParams(batch_size=2), tmp_path, checkpoint=checkpoint, dataset=ds)
    d = res.metrics["dense"]
    assert d["n_rows"] == 3 and d["nme2d"] > 0 and np.isfinite(d["nme3d"])
    other = SyntheticLandmarks(2, 70, 64)  # another landmark set: refused
    with pytest.raises(DensemarkError, match="landmark set"):
        run_evaluate(EvaluateParams(), tmp_path / "x", checkpoint=checkpoint, dataset=other)


@pytest.mark.real
def test_checkpoint_on_real_aflw2000_matches_its_predictions_file(checkpoint, real_dir, tmp_path):
    gt = real_dir / "aflw2000"
    out = tmp_path / "model"
    (tmp_path / "none.yaml").write_text("")  # an empty params file: the defaults
    rc = main(["--params", str(tmp_path / "none.yaml"), "evaluate", "--checkpoint", str(checkpoint), "--gt", str(gt),
               "--out", str(out), "--out-predictions", str(tmp_path / "pred.npz")])  # fmt: skip
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["aflw2000"]["n_images"] == 6 and m["aflw2000"]["nme68_mean"] > 0
    p = read_predictions(tmp_path / "pred.npz")
    assert not p.one_based and p.points.shape == (6, 68, 3)
    again = tmp_path / "file"
    assert main(["--params", str(tmp_path / "none.yaml"), "evaluate", "--predictions", str(tmp_path / "pred.npz"),
                 "--gt", str(gt), "--out", str(again)]) == 0  # fmt: skip
    m2 = json.loads((again / "metrics.json").read_text())
    for k, v in m["aflw2000"].items():
        assert m2["aflw2000"][k] == pytest.approx(v, abs=1e-3)  # the file stores float32 points


@pytest.mark.real
def test_predictions_do_not_depend_on_the_callers_torch_threads(checkpoint, real_dir, tmp_path):
    """The model predicts on ``evaluate.threads`` threads whatever the process had set (a
    forward pass's reductions depend on the count), and the caller's count is restored."""
    import torch

    gt = real_dir / "aflw2000"
    got = []
    for n in (1, 2):
        torch.set_num_threads(n)
        out = tmp_path / f"t{n}"
        run_evaluate(EvaluateParams(), out, gt_dir=gt, checkpoint=checkpoint)
        assert torch.get_num_threads() == n
        got.append((out / "predictions_aflw2000.npz").read_bytes())
    assert got[0] == got[1]
