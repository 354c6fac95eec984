"""The embedded default: procedural model and synthetic 300W-LP / AFLW2000-3D sources."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import scipy.io as sio

from densemark.core.matio import MAT_HEADER, read_mat
from densemark.faces import procedural as fs
from densemark.faces.io import load_model
from densemark.faces.procedural.params import ProceduralParams
from densemark.faces.render import triangle_normals
from densemark.sources import synthetic as ds
from densemark.sources.params import SyntheticParams


@pytest.fixture(scope="module")
def proc() -> ProceduralParams:
    return ProceduralParams(grid=41)


@pytest.fixture(scope="module")
def params() -> SyntheticParams:
    return SyntheticParams(image_size=450)


@pytest.fixture(scope="module")
def model(proc):
    return fs.build_model(proc)


@pytest.fixture(scope="module")
def model_dir(proc, tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    fs.write_model(proc, d)
    return d


@pytest.fixture(scope="module")
def wlp(model, params, tmp_path_factory):
    d = tmp_path_factory.mktemp("wlp")
    return ds.generate_300wlp(model, params, d, 3)


@pytest.fixture(scope="module")
def aflw(model, params, tmp_path_factory):
    d = tmp_path_factory.mktemp("aflw")
    return ds.generate_aflw2000(model, params, d, 3)


def _bytes(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- model


def test_model_shapes(model, params):
    n = model.n_vertices
    assert model.shape_basis.shape == (3 * n, 199) and model.exp_basis.shape == (3 * n, 29)
    assert model.shape_ev.shape == (199,) and model.exp_ev.shape == (29,)
    assert np.isfinite(model.shape_basis).all() and np.isfinite(model.exp_basis).all()
    # BFM-like units: ~1.6e5 wide, y up (brows above chin), nose tip closest to the camera
    m = model.mean
    assert 1.4e5 < np.ptp(m[:, 0]) < 2.0e5
    k = m[model.kpt_ind]
    assert k[19, 1] > k[30, 1] > k[57, 1] > k[8, 1]
    assert k[30, 2] == k[:, 2].max()
    assert k[0, 0] < 0 < k[16, 0]  # point 0 on the subject's right (image left)
    # the identity basis is orthogonal, BFM-scaled
    g = model.shape_basis.T.astype(np.float64) @ model.shape_basis
    np.testing.assert_allclose(g, np.eye(199) * 3 * n / (3 * fs.BFM_N_VERTICES), atol=1e-5)


def test_model_round_trip(model, model_dir):
    back = load_model(model_dir / "BFM.mat", model_dir / "BFM_UV.mat")
    np.testing.assert_array_equal(back.mean, model.mean)
    np.testing.assert_array_equal(back.shape_basis, model.shape_basis)
    np.testing.assert_array_equal(back.exp_basis, model.exp_basis)
    np.testing.assert_array_equal(back.triangles, model.triangles)
    np.testing.assert_array_equal(back.kpt_ind, model.kpt_ind)
    np.testing.assert_array_equal(back.shape_ev, model.shape_ev)
    np.testing.assert_array_equal(back.exp_ev, model.exp_ev)
    np.testing.assert_array_equal(back.uv, model.uv)
    assert back.fingerprint() == model.fingerprint()
    # the file itself is 1-based with tri / tri_mouth split as face3d's
    raw = sio.loadmat(model_dir / "BFM.mat")["model"][0, 0]
    assert raw["tri"].shape[0] == 3 and raw["tri_mouth"].shape[1] > 0
    assert raw["tri"].min() == 1 and raw["kpt_ind"].ravel()[0] == model.kpt_ind[0] + 1
    info = json.loads((model_dir / "model_info.json").read_text())
    assert info["kpt_ind"] == model.kpt_ind.tolist() and len(info["aflw21_ind"]) == 21


def test_model_files_deterministic(proc, model_dir, tmp_path):
    fs.write_model(proc, tmp_path / "a")
    assert _bytes(tmp_path / "a") == _bytes(model_dir)
    assert (tmp_path / "a" / "BFM.mat").read_bytes().startswith(MAT_HEADER)
    fs.write_model(proc.model_copy(update={"seed": 1}), tmp_path / "b")
    assert (tmp_path / "b" / "BFM.mat").read_bytes() != (model_dir / "BFM.mat").read_bytes()


def test_uv_mirror_symmetry(model, proc):
    uv, tri, mirror, n_mouth = fs.uv_grid(proc.grid)
    np.testing.assert_array_equal(model.uv, uv)
    np.testing.assert_allclose(uv[mirror], np.stack([1 - uv[:, 0], uv[:, 1]], 1), atol=1e-12)
    np.testing.assert_allclose(model.mean[mirror] * [-1, 1, 1], model.mean, atol=1.0)  # micrometres
    np.testing.assert_array_equal(mirror[model.kpt_ind], model.kpt_ind[fs.KPT_MIRROR])
    a21 = fs.aflw21_ids(model)
    pairs = [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 16), (13, 15), (17, 19)]
    for i, j in pairs:
        assert mirror[a21[i]] == a21[j]
    # UV triangles are consistently oriented (no fold-over) and inside the unit square
    p = uv[tri]
    area = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1])
    assert (area > 0).all() and uv.min() >= 0 and uv.max() <= 1
    assert n_mouth > 0


def test_params_validation():
    with pytest.raises(ValueError, match="odd"):
        ProceduralParams(grid=40)
    with pytest.raises(ValueError, match="scale_min"):
        SyntheticParams(scale_min=2e-3, scale_max=1e-3)
    with pytest.raises(ValueError):
        SyntheticParams(bogus=1)


def test_real_parameters_give_a_sane_face(model, real_dir):
    m = sio.loadmat(real_dir / "300wlp" / "IBUG_image_008_1_0.mat")
    x = model.vertices(m["Shape_Para"].ravel(), m["Exp_Para"].ravel())
    flipped = (triangle_normals(x, model.triangles) * triangle_normals(model.mean, model.triangles)).sum(1) < 0
    assert flipped.mean() < 0.01
    from densemark.faces.pose import to_image, transform_3ddfa

    kp = to_image(transform_3ddfa(x[model.kpt_ind], m["Pose_Para"].ravel()), 450)
    assert 120 < np.ptp(kp[:, 0]) + np.ptp(kp[:, 1]) < 600
    inner = np.arange(17, 68)  # the contour points of 300W-LP are annotations, not fixed vertices
    assert np.linalg.norm(kp[inner, :2] - m["pt2d"].T[inner], axis=1).mean() < 25


# ----------------------------------------------------------------------------- sources


def test_300wlp_fields(wlp, params):
    assert [p.name for p in wlp] == [f"SYN_image_{i:05d}_0.mat" for i in range(3)]
    for p in wlp:
        m = sio.loadmat(p)
        assert p.with_suffix(".jpg").is_file()
        assert m["pt2d"].shape == (2, 68) and m["pt2d"].dtype == np.float64
        assert m["Pose_Para"].shape == (1, 7) and m["Pose_Para"].dtype == np.float32
        assert m["roi"].dtype == np.int16
        pts = m["pt2d"]
        assert (pts >= 0).all() and (pts <= params.image_size - 1).all()


def test_300wlp_matches_real_format(wlp, real_dir):
    real = sio.loadmat(real_dir / "300wlp" / "IBUG_image_008_1_0.mat")
    ours = sio.loadmat(wlp[0])
    keys = [k for k in real if not k.startswith("__")]
    assert [k for k in ours if not k.startswith("__")] == keys
    for k in keys:
        assert (ours[k].shape, ours[k].dtype) == (real[k].shape, real[k].dtype), k


def test_pt2d_is_the_keypoint_projection(wlp, model, params):
    from densemark.faces.pose import to_image, transform_3ddfa

    m = read_mat(wlp[1])
    x = model.vertices(m["Shape_Para"].ravel(), m["Exp_Para"].ravel())
    kp = to_image(transform_3ddfa(x[model.kpt_ind], m["Pose_Para"].ravel()), params.image_size)
    np.testing.assert_allclose(kp[:, :2].T, m["pt2d"], atol=1e-6)


def test_sources_deterministic(wlp, model, params, tmp_path):
    again = ds.generate_300wlp(model, params, tmp_path / "a", 2)
    for p, q in zip(again, wlp, strict=False):
        assert p.read_bytes() == q.read_bytes()
        assert p.with_suffix(".jpg").read_bytes() == q.with_suffix(".jpg").read_bytes()
    other = ds.generate_300wlp(model, params.model_copy(update={"seed": 5}), tmp_path / "b", 1)
    assert other[0].read_bytes() != wlp[0].read_bytes()
    # start offsets the range without changing the samples
    part = ds.generate_300wlp(model, params, tmp_path / "c", 1, start=2)
    assert part[0].name == wlp[2].name and part[0].read_bytes() == wlp[2].read_bytes()


def test_aflw2000_fields_and_gt(aflw, params, real_dir):
    d = aflw[0].parent
    real = sio.loadmat(real_dir / "aflw2000" / "image00050.mat")
    keys = [k for k in real if not k.startswith("__")]
    for p in aflw:
        ours = sio.loadmat(p)
        assert [k for k in ours if not k.startswith("__")] == keys
        for k in keys:
            assert (ours[k].shape, ours[k].dtype) == (real[k].shape, real[k].dtype), k
        pts = ours["pt2d"]
        hidden = pts[0] < 0
        assert (pts[1, hidden] == params.image_size + 2).all()
        assert ((pts[:, ~hidden] >= 0) & (pts[:, ~hidden] < params.image_size)).all()
    gt = {p.name: np.load(p) for p in (d / "gt").glob("*.npy")}
    assert gt["AFLW2000-3D.pts68.npy"].shape == (3, 3, 68)
    assert gt["AFLW2000-3D.pts21.npy"].shape == (3, 2, 21)
    assert gt["AFLW2000-3D.pose.npy"].shape == (3,)
    assert gt["AFLW2000-3D_crop.roi_box.npy"].shape == (3, 4)
    for i, p in enumerate(sorted(aflw)):
        m = sio.loadmat(p)
        np.testing.assert_array_equal(gt["AFLW2000-3D.pts68.npy"][i], m["pt3d_68"])
        assert gt["AFLW2000-3D.pose.npy"][i] == pytest.approx(np.degrees(m["Pose_Para"][0, 1]), abs=1e-4)


def test_aflw_visibility_follows_yaw(model, params):
    ids = fs.aflw21_ids(model)
    strong = params.model_copy(update={"yaw_core_deg": 70.0, "yaw_max_deg": 80.0, "yaw_tail_prob": 1.0})
    for index in range(4):
        s = ds.render_sample(model, strong, ds.TEST_STREAM, index, extra_ids=ids)
        vis = s["extra_visible"]
        away, toward = (0, 5) if s["mat"]["Pose_Para"][0, 1] > 0 else (5, 0)  # +yaw turns the image-left side away
        assert not vis[away] and vis[toward]
        assert vis[14]  # the nose centre stays in view


def test_train_and_test_streams_differ(model, params):
    a = ds.render_sample(model, params, ds.TRAIN_STREAM, 0)["mat"]["Shape_Para"]
    b = ds.render_sample(model, params, ds.TEST_STREAM, 0)["mat"]["Shape_Para"]
    assert not np.array_equal(a, b)


def test_pose_distribution(params):
    rng = np.random.default_rng(0)
    yaw = np.array([np.degrees(ds.draw_pose(rng, params)[1]) for _ in range(2000)])
    assert np.abs(yaw).max() <= 90
    assert 0.12 < (np.abs(yaw) > 60).mean() < 0.28
    assert (yaw > 0).mean() == pytest.approx(0.5, abs=0.05)


def test_cli(params, tmp_path):
    from densemark.cli import faces as cli
    from densemark.cli import sources as synthetic_cli

    cfg = tmp_path / "params.yaml"
    cfg.write_text("procedural:\n  grid: 31\nsynthetic:\n  n_test: 2\n")
    parser = argparse.ArgumentParser()
    parser.add_argument("--params")
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    synthetic_cli.register(sub)
    for argv in (
        ["--params", str(cfg), "model", "--out", str(tmp_path / "m")],
        ["--params", str(cfg), "synth-300wlp", "--model-dir", str(tmp_path / "m"), "--out", str(tmp_path / "w"), "--n", "1"],
        ["--params", str(cfg), "synth-aflw2000", "--model-dir", str(tmp_path / "m"), "--out", str(tmp_path / "t")],
    ):
        args = parser.parse_args(argv)
        assert args.func(args) == 0
    assert len(list((tmp_path / "w").glob("*.jpg"))) == 1
    assert len(list((tmp_path / "t").glob("image*.mat"))) == 2


def test_failing_sample_is_quarantined_and_the_run_goes_on(model, params, tmp_path, monkeypatch):
    real = ds.render_sample

    def flaky(model, params, stream, index, *a, **kw):
        if index == 1:
            raise ValueError("boom")
        return real(model, params, stream, index, *a, **kw)

    monkeypatch.setattr(ds, "render_sample", flaky)
    paths = ds.generate_300wlp(model, params, tmp_path, 3)
    assert [p.stem for p in paths] == ["SYN_image_00000_0", "SYN_image_00002_0"]
    rep = json.loads((tmp_path / "failures_0_3.json").read_text())
    assert rep["counts"] == {"quarantined": 1, "written": 2}
    assert rep["quarantine"] == [{"sample": "1", "error": "ValueError: boom"}]
