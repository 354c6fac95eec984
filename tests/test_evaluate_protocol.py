"""Evaluation protocol, predictions file, reports: against naive loops and hand-made cases."""

from __future__ import annotations

import json
import math
import zipfile

import numpy as np
import pytest

from densemark.core.errors import DensemarkError, InputError
from densemark.evaluate import protocol as pr
from densemark.evaluate.params import EvaluateParams
from densemark.evaluate.predictions import Predictions, read_predictions, write_predictions
from densemark.evaluate.report import PUBLISHED, markdown_table, metrics, plot_ced
from densemark.evaluate.score import score_dense
from densemark.evaluate.stages import predict_dense, run_evaluate


def _naive_nme(pred, gt, mask=None):
    out = []
    for p, g, m in zip(pred, gt, mask if mask is not None else [None] * len(pred), strict=True):
        xs, ys = [q[0] for q in g], [q[1] for q in g]
        norm = math.sqrt((max(xs) - min(xs)) * (max(ys) - min(ys)))
        d = [
            math.dist(a, b) for j, (a, b) in enumerate(zip(p, g, strict=True)) if m is None or m[j]
        ]
        out.append(sum(d) / len(d) / norm if d else float("nan"))
    return np.array(out)


def test_nme_matches_naive():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 300, (5, 68, 2))
    pred = gt + rng.normal(0, 3, gt.shape)
    np.testing.assert_allclose(pr.nme(pred, gt, pr.box_size(gt)), _naive_nme(pred, gt), rtol=1e-12)
    mask = rng.random((5, 68)) < 0.5
    mask[2] = False
    got = pr.nme(pred, gt, pr.box_size(gt), mask)
    want = _naive_nme(pred, gt, mask)
    assert np.isnan(got[2]) and np.isnan(want[2])
    np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=1e-12)


def test_nme_3d_aligns_mean_z():
    rng = np.random.default_rng(1)
    gt = rng.uniform(0, 200, (3, 68, 3))
    norm = pr.box_size(gt)
    pred = gt.copy()
    pred[..., 2] += np.array([5.0, -40.0, 100.0])[:, None]  # an offset per image: no error
    np.testing.assert_allclose(pr.nme_3d(pred, gt, norm), 0.0, atol=1e-12)
    d = 2.5
    pred[:, :34, 2] += d  # +d on half the points: +-d/2 on every point after aligning the mean
    np.testing.assert_allclose(pr.nme_3d(pred, gt, norm), (d / 2) / norm, rtol=1e-12)


def test_yaw_bins_follow_3ddfa_edges():
    yaw = np.array([0, 30, -30, 30.001, 60, -60, 60.01, -89, 95])
    assert pr.yaw_bin(yaw).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_summarise_against_hand_values():
    x = np.array([0.01, 0.03, 0.02, 0.05, np.nan])
    yaw = np.array([10, -20, 45, 70, 80])
    s = pr.summarise(x, yaw)
    assert s["bins"]["0_30"]["mean"] == pytest.approx(0.02)
    assert s["bins"]["30_60"]["mean"] == pytest.approx(0.02)
    assert s["bins"]["60_90"]["mean"] == pytest.approx(0.05) and s["bins"]["60_90"]["n"] == 1
    assert s["mean"] == pytest.approx(0.03)
    assert s["image_mean"] == pytest.approx(0.0275)
    assert s["n"] == 4
    empty = pr.summarise(np.array([0.01, 0.02]), np.array([5, 40]))
    assert empty["bins"]["60_90"]["mean"] is None and empty["mean"] is None


def test_ced_matches_counting():
    x = np.array([0.5, 1.0, 1.0, 3.0, np.nan])
    t = np.array([0.0, 0.5, 0.99, 1.0, 2.9, 10])
    want = [sum(v <= tt for v in x[:4]) / 4 for tt in t]
    np.testing.assert_allclose(pr.ced(x, t), want)


def test_aflw21_mapping_named_points():
    rng = np.random.default_rng(2)
    p68 = rng.normal(size=(2, 68, 2))
    p21 = pr.pts68_to_aflw21(p68)
    np.testing.assert_allclose(p21[:, 0], p68[:, 17])  # right brow outer
    np.testing.assert_allclose(p21[:, 7], p68[:, 36:42].mean(1))  # right eye centre
    np.testing.assert_allclose(p21[:, 10], p68[:, 42:48].mean(1))  # left eye centre
    np.testing.assert_allclose(p21[:, 14], p68[:, 30])  # nose tip
    np.testing.assert_allclose(p21[:, 18], p68[:, 60:68].mean(1))  # mouth centre (inner lips)
    np.testing.assert_allclose(p21[:, 20], p68[:, 8])  # chin
    assert np.allclose(pr.aflw21_matrix().sum(1), 1.0)


# --- predictions file ---------------------------------------------------------------------------


def test_predictions_roundtrip_and_stable_bytes(tmp_path):
    names = np.array(["image00002", "image00004"])
    pts = np.random.default_rng(3).uniform(0, 400, (2, 68, 3)).astype(np.float32)
    a = write_predictions(tmp_path / "a.npz", names, pts, one_based=False)
    b = write_predictions(tmp_path / "b.npz", names, pts, one_based=False)
    assert a.read_bytes() == b.read_bytes()
    p = read_predictions(a)
    assert p.names.tolist() == names.tolist() and not p.one_based and p.path == a
    np.testing.assert_array_equal(p.points, pts)
    # numpy's own savez is accepted too
    np.savez(tmp_path / "c.npz", names=names, points=pts[..., :2], one_based=True)
    c = read_predictions(tmp_path / "c.npz")
    assert c.one_based and c.points.shape == (2, 68, 2)


@pytest.mark.parametrize(
    ("arrays", "field", "msg"),
    [
        ({"points": np.zeros((1, 68, 2)), "one_based": True}, "names", "missing"),
        ({"names": np.array(["a"]), "one_based": True}, "points", "missing"),
        ({"names": np.array(["a"]), "points": np.zeros((1, 68, 2))}, "one_based", "missing"),
        (
            {"names": np.array(["a"]), "points": np.zeros((1, 21, 2)), "one_based": True},
            "points",
            "shape",
        ),
        (
            {"names": np.array(["a"]), "points": np.zeros((1, 68, 4)), "one_based": True},
            "points",
            "shape",
        ),
        (
            {"names": np.array(["a", "b"]), "points": np.zeros((1, 68, 2)), "one_based": True},
            "points",
            "shape",
        ),
        (
            {"names": np.array(["a", "a"]), "points": np.zeros((2, 68, 2)), "one_based": True},
            "names",
            "duplicate",
        ),
        (
            {"names": np.array([1, 2]), "points": np.zeros((2, 68, 2)), "one_based": True},
            "names",
            "strings",
        ),
        (
            {"names": np.array(["a"]), "points": np.full((1, 68, 2), np.nan), "one_based": True},
            "points",
            "NaN",
        ),
        (
            {"names": np.array(["a"]), "points": np.zeros((1, 68, 2)), "one_based": 0.5},
            "one_based",
            "bool",
        ),
    ],
)
def test_predictions_errors_name_file_and_field(tmp_path, arrays, field, msg):
    f = tmp_path / "bad.npz"
    np.savez(f, **arrays)
    with pytest.raises(InputError) as e:
        read_predictions(f)
    assert e.value.field == field and str(f) in str(e.value) and msg in str(e.value)


def test_predictions_refuses_pickles(tmp_path):
    f = tmp_path / "obj.npz"
    np.savez(
        f, names=np.array(["a", None], dtype=object), points=np.zeros((2, 68, 2)), one_based=True
    )
    with pytest.raises(InputError, match="pickles"):
        read_predictions(f)
    g = tmp_path / "notzip.npz"
    g.write_bytes(b"hello")
    with pytest.raises(InputError):
        read_predictions(g)


def test_shift_between_origins():
    p = Predictions(np.array(["a"]), np.zeros((1, 68, 3)), one_based=False)
    s = p.shifted_to(True)
    assert (s[..., :2] == 1).all() and (s[..., 2] == 0).all()
    assert (Predictions(p.names, s, True).shifted_to(False) == 0).all()


# --- dense --------------------------------------------------------------------------------------


class _FakeDataset:
    def __init__(self, rows, sha="abc"):
        self.rows, self.landmark_set = (
            rows,
            {"sha256": sha, "name": "fake", "n_points": rows[0]["landmarks"].shape[0]},
        )

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


class _ShiftPredictor:
    """Returns the row's labels (looked up by its 68-point box) moved by ``shift``."""

    def __init__(self, rows, shift, sha="abc"):
        self.rows, self.shift = rows, np.asarray(shift, np.float64)
        self.landmark_set = {"sha256": sha, "kpt68": list(range(68))}

    def predict(self, images, boxes, box_kind="landmarks"):
        assert box_kind == "landmarks" and len(images) == len(boxes)
        out = []
        for b in boxes:
            r = next(
                r
                for r in self.rows
                if np.allclose([*r["kpt68"][:, :2].min(0), *r["kpt68"][:, :2].max(0)], b)
            )
            out.append(r["landmarks"] + self.shift)
        return np.stack(out).astype(np.float32)


def _dense_rows(n=5, k=100):
    rng = np.random.default_rng(4)
    rows = []
    for i in range(n):
        lm = rng.uniform(20, 230, (k, 3)).astype(np.float32)
        rows.append({"image": np.zeros((256, 256, 3), np.uint8), "landmarks": lm, "kpt68": lm[:68].copy(),
                     "id": f"r{i}", "yaw": float(rng.uniform(-90, 90)), "flip": False})  # fmt: skip
    return rows


def test_dense_nme_with_stub_predictor():
    rows = _dense_rows()
    d = np.array([3.0, 4.0, 7.0])
    s = predict_dense(_ShiftPredictor(rows, d), _FakeDataset(rows), batch_size=2)
    norm = pr.box_size(np.stack([r["kpt68"] for r in rows]))
    np.testing.assert_allclose(s.nme2d, 5.0 / norm, rtol=1e-5)
    np.testing.assert_allclose(
        s.nme3d, 5.0 / norm, rtol=1e-5
    )  # the uniform z shift is aligned away
    assert s.ids.tolist() == [f"r{i}" for i in range(5)]
    m = metrics(None, s)["dense"]
    assert m["n_rows"] == 5 and m["nme2d"] == pytest.approx(
        100 * float(np.mean(5.0 / norm)), abs=1e-3
    )
    assert predict_dense(_ShiftPredictor(rows, d), _FakeDataset(rows), max_samples=3).ids.size == 3


def test_run_evaluate_dense_only(tmp_path):
    rows = _dense_rows(3)
    res = run_evaluate(
        EvaluateParams(),
        tmp_path,
        predictor=_ShiftPredictor(rows, [0, 0, 0]),
        dataset=_FakeDataset(rows),
    )
    assert res.value.aflw is None and res.metrics == {
        "dense": {"nme2d": 0.0, "nme3d": 0.0, "n_rows": 3}
    }
    assert json.loads((tmp_path / "metrics.json").read_text()) == res.metrics
    assert "Dense NME" in (tmp_path / "results.md").read_text()
    with pytest.raises(DensemarkError, match="nothing to evaluate"):
        run_evaluate(EvaluateParams(), tmp_path)


def test_dense_refuses_other_landmark_set():
    rows = _dense_rows(2)
    with pytest.raises(DensemarkError, match="landmark set"):
        predict_dense(_ShiftPredictor(rows, [0, 0, 0], sha="other"), _FakeDataset(rows))


def test_score_dense_shape_check():
    with pytest.raises(ValueError):
        score_dense(
            ["a"], np.zeros((1, 10, 3)), np.zeros((1, 11, 3)), np.zeros((1, 68, 3)), np.zeros(1)
        )


# --- reports ------------------------------------------------------------------------------------


def test_ced_png_has_stable_bytes(tmp_path):
    curves = {"a": np.array([0.01, 0.02, 0.05]), "b": np.array([np.nan]), "c": np.array([0.03])}
    a = plot_ced(tmp_path / "a.png", curves, 10.0).read_bytes()
    b = plot_ced(tmp_path / "b.png", curves, 10.0).read_bytes()
    assert a == b and a[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"Software" not in a and b"Creation" not in a


def test_markdown_table_lists_published_rows():
    text = markdown_table(None, None, "x")
    for name, row in PUBLISHED:
        assert name in text and " | ".join(f"{v:.2f}" for v in row) in text
    assert "| 3DDFA-V2 (Guo et al. 2020) | 2.63 | 3.42 | 4.48 | 3.51 |" in text


def test_zip_entries_have_fixed_time(tmp_path):
    f = write_predictions(tmp_path / "p.npz", ["a"], np.zeros((1, 68, 2)), True)
    with zipfile.ZipFile(f) as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
