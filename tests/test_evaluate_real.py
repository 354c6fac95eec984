"""The AFLW2000-3D protocol on the real samples: ground truth scores 0, known perturbations score
what a hand computation gives, bins follow the pose arrays, 0-/1-based files agree."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from densemark.cli import main
from densemark.core.errors import InputError
from densemark.core.matio import atomic_savemat, read_mat
from densemark.evaluate.groundtruth import load_truth
from densemark.evaluate.params import EvaluateParams
from densemark.evaluate.predictions import Predictions, read_predictions, write_predictions
from densemark.evaluate.score import score_aflw2000
from densemark.evaluate.stages import run_evaluate

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def aflw_dir(real_dir):
    return real_dir / "aflw2000"


@pytest.fixture(scope="module")
def truth(aflw_dir):
    return load_truth(aflw_dir)


def _hand_norm(pts):
    """sqrt(w * h) of one image's (68, >=2) points, by hand."""
    xs, ys = [float(p[0]) for p in pts], [float(p[1]) for p in pts]
    return math.sqrt((max(xs) - min(xs)) * (max(ys) - min(ys)))


def _hand_bin(yaw):
    a = abs(yaw)
    return 0 if a <= 30 else (1 if a <= 60 else 2)


def test_sources_agree_and_gt_scores_zero(aflw_dir, truth):
    mats = load_truth(aflw_dir, source="mat")
    assert truth.source == "arrays" and mats.source == "mat"
    assert truth.one_based and mats.one_based  # real AFLW2000-3D: MATLAB pixels
    assert truth.names.tolist() == sorted(p.stem for p in aflw_dir.glob("*.mat"))
    np.testing.assert_allclose(truth.pts68, mats.pts68, atol=1e-3)
    np.testing.assert_allclose(truth.pts21, mats.pts21, atol=1e-3)
    np.testing.assert_allclose(truth.yaw, mats.yaw, atol=1e-4)
    for t in (truth, mats):
        s = score_aflw2000(Predictions(t.names, t.pts68.copy(), True), t)
        assert np.all(s.nme68 == 0) and np.all(s.nme3d == 0)
        sm = s.summaries()["nme68"]
        assert sm["mean"] == 0 and sm["image_mean"] == 0


def test_bins_match_pose_arrays(aflw_dir, truth):
    gt_dir = aflw_dir / "gt"
    pts68 = np.load(gt_dir / "AFLW2000-3D.pts68.npy")
    pose = np.load(gt_dir / "AFLW2000-3D.pose.npy")
    s = score_aflw2000(Predictions(truth.names, truth.pts68.copy(), True), truth)
    for k, name in enumerate(truth.names.tolist()):
        m = read_mat(aflw_dir / f"{name}.mat")
        row = int(
            np.argmin(np.abs(pts68 - m["pt3d_68"][None]).reshape(len(pts68), -1).max(1))
        )  # sorted index
        mat_yaw = math.degrees(float(m["Pose_Para"].ravel()[1]))
        assert pose[row] == pytest.approx(mat_yaw, abs=1e-4)
        assert truth.yaw[k] == pytest.approx(float(pose[row]), abs=1e-6)
        assert s.bins[k] == _hand_bin(float(pose[row])) == _hand_bin(mat_yaw)
    assert sorted(s.bins.tolist()) == [0, 0, 0, 1, 1, 2]  # the six samples cover all three bins


def test_shift_gives_d_over_box(truth):
    d = np.array([3.0, -4.0])  # 5 px
    pts = truth.pts68.copy()
    pts[..., :2] += d
    s = score_aflw2000(Predictions(truth.names, pts, True), truth)
    want = [5.0 / _hand_norm(g) for g in truth.pts68]
    np.testing.assert_allclose(s.nme68, want, rtol=1e-9)
    np.testing.assert_allclose(s.nme3d, want, rtol=1e-9)  # z untouched
    # AFLW21: the 21 points from the shifted 68 (3DDFA's 1-based ind_68to21, written out here),
    # against AFLW's own visible points, by hand
    groups = [[18], [20], [22], [23], [25], [27], [37], [37, 38, 39, 40, 41, 42], [40], [43],
              [43, 44, 45, 46, 47, 48], [46], [3], [32], [31], [36], [15], [49],
              [61, 62, 63, 64, 65, 66, 67, 68], [55], [9]]  # fmt: skip
    for k, (p68, g21) in enumerate(zip(pts, truth.pts21, strict=True)):
        dists = []
        for j, grp in enumerate(groups):
            if g21[j][0] == -1 or g21[j][1] == -1:
                continue
            ex = sum(p68[i - 1][0] for i in grp) / len(grp)
            ey = sum(p68[i - 1][1] for i in grp) / len(grp)
            dists.append(math.hypot(ex - g21[j][0], ey - g21[j][1]))
        assert s.nme21[k] == pytest.approx(
            sum(dists) / len(dists) / _hand_norm(truth.pts68[k]), rel=1e-9
        )


def test_scale_about_centre_by_hand(truth):
    f = 1.1
    pts = truth.pts68.copy()
    c = pts[..., :2].mean(axis=1, keepdims=True)
    pts[..., :2] = c + f * (pts[..., :2] - c)
    s = score_aflw2000(Predictions(truth.names, pts, True), truth)
    for k, g in enumerate(truth.pts68):
        cx, cy = sum(p[0] for p in g) / 68, sum(p[1] for p in g) / 68
        dist = sum((f - 1) * math.hypot(p[0] - cx, p[1] - cy) for p in g) / 68
        assert s.nme68[k] == pytest.approx(dist / _hand_norm(g), rel=1e-9)


def test_per_bin_placement(truth):
    """Move one image per bin by a different distance: bin means and both averages by hand."""
    b = np.array([_hand_bin(y) for y in truth.yaw])
    dist = {0: 2.0, 1: 6.0, 2: 10.0}
    pts = truth.pts68.copy()
    for k in range(len(truth)):
        pts[k, :, 0] += dist[int(b[k])] if k == int(np.flatnonzero(b == b[k])[0]) else 0.0
    s = score_aflw2000(Predictions(truth.names, pts, True), truth).summaries()["nme68"]
    per = []
    for k, g in enumerate(truth.pts68):
        moved = k == int(np.flatnonzero(b == b[k])[0])
        per.append(dist[int(b[k])] / _hand_norm(g) if moved else 0.0)
    bins = [sum(per[k] for k in range(len(per)) if b[k] == j) / sum(b == j) for j in range(3)]
    for j, key in enumerate(("0_30", "30_60", "60_90")):
        assert s["bins"][key]["mean"] == pytest.approx(bins[j], rel=1e-9)
    assert s["mean"] == pytest.approx(sum(bins) / 3, rel=1e-9)
    assert s["image_mean"] == pytest.approx(sum(per) / len(per), rel=1e-9)


def test_zero_and_one_based_files_score_equal(truth, tmp_path):
    rng = np.random.default_rng(0)
    pts = truth.pts68 + rng.normal(0, 2, truth.pts68.shape)
    f1 = write_predictions(tmp_path / "one.npz", truth.names, pts, one_based=True)
    zero = pts.copy()
    zero[..., :2] -= 1.0
    f0 = write_predictions(tmp_path / "zero.npz", truth.names, zero, one_based=False)
    s1 = score_aflw2000(read_predictions(f1), truth)
    s0 = score_aflw2000(read_predictions(f0), truth)
    np.testing.assert_allclose(s0.nme68, s1.nme68, rtol=1e-5)
    np.testing.assert_allclose(s0.nme21, s1.nme21, rtol=1e-5)
    assert s1.nme68.min() > 0
    # the same 0-based points mislabelled as 1-based are 1 px off in x and y: a different score
    wrong = score_aflw2000(Predictions(truth.names, zero, True), truth)
    assert not np.allclose(wrong.nme68, s1.nme68, rtol=1e-3)


def test_missing_prediction_names_the_file(truth, tmp_path):
    f = write_predictions(tmp_path / "p.npz", truth.names[:4], truth.pts68[:4], True)
    with pytest.raises(InputError) as e:
        score_aflw2000(read_predictions(f), truth)
    assert e.value.field == "names" and str(f) in str(e.value) and truth.names[5] in str(e.value)
    extra = write_predictions(tmp_path / "x.npz", [*truth.names, "image99999"],
                              np.concatenate([truth.pts68, truth.pts68[:1]]), True)  # fmt: skip
    assert score_aflw2000(read_predictions(extra), truth).unscored == ("image99999",)


def test_reannotated_and_densemark_origin(aflw_dir, truth, tmp_path):
    re = load_truth(aflw_dir, reannotated=True)
    assert re.source == "arrays-reannotated" and not re.has_depth
    s = score_aflw2000(Predictions(truth.names, truth.pts68.copy(), True), re)
    assert s.nme3d is None and np.all(s.nme68 > 0)  # the re-annotation moves the points
    with pytest.raises(InputError, match="re-annotated"):
        load_truth(aflw_dir, source="mat", reannotated=True)
    # a .mat written by densemark (the synthetic generator) is in the pipeline's 0-based frame
    d = tmp_path / "syn"
    d.mkdir()
    atomic_savemat(d / "image00001.mat", read_mat(aflw_dir / "image00050.mat"))
    syn = load_truth(d)
    assert syn.source == "mat" and not syn.one_based
    assert load_truth(d, one_based=True).one_based


class _GTPredictor:
    """Stub model: for a box, the 0-based ground truth of the image with that 68-point box (K=68)."""

    def __init__(self, truth, k_extra=5):
        self.gt0 = truth.pts68 - np.array([1.0, 1.0, 0.0])
        self.k_extra = k_extra
        self.landmark_set = {"sha256": "x", "kpt68": list(range(k_extra, k_extra + 68))}
        self.calls = 0

    def predict(self, images, boxes, box_kind="landmarks"):
        self.calls += 1
        out = []
        for img, b in zip(images, boxes, strict=True):
            assert img.ndim == 3 and img.dtype == np.uint8
            k = next(
                i
                for i, g in enumerate(self.gt0)
                if np.allclose([*g[:, :2].min(0), *g[:, :2].max(0)], b)
            )
            out.append(np.concatenate([np.zeros((self.k_extra, 3)), self.gt0[k]]))
        return np.stack(out)


def test_run_evaluate_model_and_file_paths(aflw_dir, truth, tmp_path):
    params = EvaluateParams(batch_size=4)
    res = run_evaluate(params, tmp_path / "model", gt_dir=aflw_dir, predictor=_GTPredictor(truth))
    m = res.metrics["aflw2000"]
    assert (
        m["n_images"] == 6
        and m["nme68_mean"] == 0
        and m["nme68_image_mean"] == 0
        and m["nme21_mean"] > 0
    )
    pred = read_predictions(res.outputs["predictions"])
    assert not pred.one_based and pred.names.tolist() == truth.names.tolist()
    for name in ("report.json", "results.md", "ced.png", "metrics.json"):
        assert (tmp_path / "model" / name).is_file()
    rep = json.loads((tmp_path / "model" / "report.json").read_text())
    assert rep["ground_truth"]["one_based"] and len(rep["aflw2000"]["images"]) == 6
    # the written file scored through the CLI gives the same numbers
    out = tmp_path / "cli"
    (tmp_path / "none.yaml").write_text("")  # an empty params file: the defaults
    rc = main(["--params", str(tmp_path / "none.yaml"), "evaluate", "--predictions", str(res.outputs["predictions"]),
               "--gt", str(aflw_dir), "--out", str(out)])  # fmt: skip
    assert rc == 0
    assert json.loads((out / "metrics.json").read_text()) == res.metrics
    assert "**densemark**" in (out / "results.md").read_text()


def test_run_evaluate_skips_missing_images(aflw_dir, truth, tmp_path):
    d = tmp_path / "gt"
    shutil.copytree(aflw_dir, d)
    (d / "image00475.jpg").unlink()
    res = run_evaluate(EvaluateParams(), tmp_path / "o", gt_dir=d, predictor=_GTPredictor(truth))
    assert res.metrics["aflw2000"]["n_images"] == 5
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert [q["sample"] for q in rep["quarantine"]] == ["image00475"]
