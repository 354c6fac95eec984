"""The synthetic 300W-LP / AFLW2000-3D sources (``densemark.sources.synthetic``)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest
import scipy.io as sio
from scipy import ndimage

from densemark.core.matio import read_mat
from densemark.faces import procedural as fs
from densemark.faces.procedural.params import ProceduralParams
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
def wlp(model, params, tmp_path_factory):
    d = tmp_path_factory.mktemp("wlp")
    return ds.generate_300wlp(model, params, d, 3)


@pytest.fixture(scope="module")
def aflw(model, params, tmp_path_factory):
    d = tmp_path_factory.mktemp("aflw")
    return ds.generate_aflw2000(model, params, d, 3)


@pytest.fixture(scope="module")
def profile(params) -> SyntheticParams:
    """Near-profile poses (|yaw| 70-85 degrees), no pitch or roll."""
    return params.model_copy(update={"yaw_core_deg": 70.0, "yaw_max_deg": 85.0, "yaw_tail_prob": 1.0,
                                     "pitch_std_deg": 0.0, "roll_std_deg": 0.0})  # fmt: skip


def test_params_validation():
    with pytest.raises(ValueError, match="scale_min"):
        SyntheticParams(scale_min=2e-3, scale_max=1e-3)
    with pytest.raises(ValueError):
        SyntheticParams(bogus=1)


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


@pytest.mark.real
def test_300wlp_matches_real_format(wlp, real_dir):
    real = sio.loadmat(real_dir / "300wlp" / "IBUG_image_008_1_0.mat")
    ours = sio.loadmat(wlp[0])
    keys = [k for k in real if not k.startswith("__")]
    assert [k for k in ours if not k.startswith("__")] == keys
    for k in keys:
        assert (ours[k].shape, ours[k].dtype) == (real[k].shape, real[k].dtype), k


def test_pt2d_is_the_keypoint_projection(wlp, model, params):
    """``pt2d`` is the keypoint projection, except the jaw points of the side turned away,
    which follow the contour convention (the extreme vertex of their contour line)."""
    from densemark.faces.pose import to_image, transform_3ddfa

    for p in wlp:
        m = read_mat(p)
        x = model.vertices(m["Shape_Para"].ravel(), m["Exp_Para"].ravel())
        img_v = to_image(transform_3ddfa(x, m["Pose_Para"].ravel()), params.image_size)
        kp = img_v[model.kpt_ind]
        yaw = float(m["Pose_Para"].ravel()[1])
        away = np.arange(0, 8) if yaw > 0 else np.arange(9, 17)
        kept = np.setdiff1d(np.arange(68), away)
        np.testing.assert_allclose(kp[kept, :2].T, m["pt2d"][:, kept], atol=1e-6)
        lines = fs.jaw_contour_lines(model.uv, model.kpt_ind)
        for k in away:  # naive: the line vertex farthest out on that side
            xs = img_v[lines[k], 0] * (1 if yaw < 0 else -1)
            np.testing.assert_allclose(
                img_v[lines[k][np.argmax(xs)], :2], m["pt2d"][:, k], atol=1e-6
            )


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


@pytest.mark.real
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
        assert gt["AFLW2000-3D.pose.npy"][i] == pytest.approx(
            np.degrees(m["Pose_Para"][0, 1]), abs=1e-4
        )


def test_aflw_visibility_follows_yaw(model, params):
    ids = fs.aflw21_ids(model)
    strong = params.model_copy(
        update={"yaw_core_deg": 70.0, "yaw_max_deg": 80.0, "yaw_tail_prob": 1.0}
    )
    for index in range(4):
        s = ds.render_sample(model, strong, ds.TEST_STREAM, index, extra_ids=ids)
        vis = s["extra_visible"]
        away, toward = (
            (0, 5) if s["mat"]["Pose_Para"][0, 1] > 0 else (5, 0)
        )  # +yaw turns the image-left side away
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
        [
            "--params",
            str(cfg),
            "synth-300wlp",
            "--model-dir",
            str(tmp_path / "m"),
            "--out",
            str(tmp_path / "w"),
            "--n",
            "1",
        ],
        [
            "--params",
            str(cfg),
            "synth-aflw2000",
            "--model-dir",
            str(tmp_path / "m"),
            "--out",
            str(tmp_path / "t"),
        ],
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


def _depth_in(inside: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Pixels from the mask's outside at the points' pixels (0 outside, 1 on the outline)."""
    xi, yi = np.rint(pts[:, 0]).astype(int), np.rint(pts[:, 1]).astype(int)
    return inside[yi, xi]


def test_profile_pt2d_on_the_outline(model, profile):
    """Real 300W-LP puts the hidden side's jaw points on the visible face outline."""
    signs = set()
    for index in range(4):
        s = ds.render_sample(model, profile, ds.TRAIN_STREAM, index)
        yaw = float(s["mat"]["Pose_Para"][0, 1])
        assert 70 <= abs(np.degrees(yaw)) <= 85
        signs.add(yaw > 0)
        inside = ndimage.distance_transform_edt(s["mask"])  # 1 on the face's outline pixels
        away = np.arange(0, 8) if yaw > 0 else np.arange(9, 17)
        pt2d = s["mat"]["pt2d"].T
        assert (_depth_in(inside, pt2d[away]) <= 3).all()  # on the outline, within two pixels
        assert (
            _depth_in(inside, np.asarray(s["kpt"])[away]).max() > 10
        )  # the vertices lie inside the cheek
        # the side facing the camera and the inner points keep the vertices
        kept = np.setdiff1d(np.arange(68), away)
        np.testing.assert_array_equal(pt2d[kept], np.asarray(s["kpt"])[kept, :2])
    assert signs == {True, False}


def test_profile_pt3d_68_is_the_vertex_projection(model, profile, tmp_path):
    from densemark.faces.pose import to_image, transform_3ddfa

    [p] = ds.generate_aflw2000(model, profile, tmp_path, 1)
    m = read_mat(p)
    assert abs(np.degrees(m["Pose_Para"].ravel()[1])) >= 70
    x = model.vertices(m["Shape_Para"].ravel(), m["Exp_Para"].ravel())
    kp = to_image(transform_3ddfa(x[model.kpt_ind], m["Pose_Para"].ravel()), profile.image_size)
    np.testing.assert_allclose(m["pt3d_68"], kp.T, atol=1e-3)


def test_draw_rules_follow_the_model_generator(model, params):
    """The procedural draw rules key on ``MorphableModel.generator``, not on the name."""
    rng = np.random.default_rng(0)
    exp = np.array([ds.draw_coefficients(model, params, rng)[1] for _ in range(200)])
    assert (exp[:, fs.EXP_MOUTH_OPEN] >= 0).all()
    assert (
        exp[:, fs.EXP_EYE_CLOSE].min() >= -1.0
        and exp[:, fs.EXP_EYE_CLOSE].max() <= fs.EYE_CLOSE_FULL
    )
    other = replace(model, generator="", name="synthetic")
    rng = np.random.default_rng(0)
    free = np.array([ds.draw_coefficients(other, params, rng)[1] for _ in range(200)])
    assert (free[:, fs.EXP_MOUTH_OPEN] < 0).any() and free[:, fs.EXP_EYE_CLOSE].min() < -1.0
    np.testing.assert_array_equal(np.abs(free[:, fs.EXP_MOUTH_OPEN]), exp[:, fs.EXP_MOUTH_OPEN])


def test_configured_model_loader_reads_the_generator(proc, tmp_path):
    from densemark.faces.params import ModelParams
    from densemark.faces.stages import load_configured_model

    fs.write_model(proc, tmp_path)
    for source in ("embedded", "bfm"):
        assert load_configured_model(ModelParams(source=source), tmp_path).generator == fs.GENERATOR
    (tmp_path / "model_info.json").unlink()
    assert load_configured_model(ModelParams(source="bfm"), tmp_path).generator == ""
