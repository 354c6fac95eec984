"""Readers of 300W-LP / AFLW2000-3D samples and of AFLW2000-3D's benchmark arrays."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import scipy.io as sio

from densemark.core.errors import InputError
from densemark.sources.readers import (
    FitSample,
    iter_source,
    list_fit_mats,
    load_aflw2000_gt,
    read_fit_mat,
    read_image,
)

# --- self-made samples -------------------------------------------------------------------------


def fit_fields(seed=0, **over) -> dict:
    rng = np.random.default_rng(seed)
    d = {
        "Shape_Para": rng.normal(0, 1e5, (199, 1)),
        "Exp_Para": rng.normal(0, 1, (29, 1)),
        "Pose_Para": np.array([[0.1, -0.5, 0.05, 200.0, 210.0, -80.0, 1.3e-3]], np.float32),
        "pt2d": rng.uniform(0, 450, (2, 68)),
        "roi": np.array([[53, -166, 638, 419]], np.int16),
        "Tex_Para": rng.normal(size=(199, 1)),
    }
    for k, v in over.items():
        if v is None:
            del d[k]
        else:
            d[k] = v
    return d


def write_sample(folder, name, image=True, **over):
    folder.mkdir(parents=True, exist_ok=True)
    sio.savemat(folder / f"{name}.mat", fit_fields(**over))
    if image:
        img = np.zeros((40, 50, 3), np.uint8)
        img[..., 2] = 255  # red in RGB, so BGR order is caught
        cv2.imwrite(str(folder / f"{name}.jpg"), img[..., ::-1])
    return folder / f"{name}.mat"


def test_read_fit_mat_self_made(tmp_path):
    f = fit_fields()
    p = write_sample(tmp_path, "s1")
    s = read_fit_mat(p, 199, 29)
    assert isinstance(s, FitSample) and s.sample_id == "s1" and s.mat_path == p
    assert s.image_path == tmp_path / "s1.jpg"
    assert s.shape_para.shape == (199,) and s.shape_para.dtype == np.float64
    assert np.array_equal(s.shape_para, f["Shape_Para"].ravel())
    assert s.exp_para.shape == (29,) and s.pose_para.shape == (7,)
    np.testing.assert_allclose(s.pose_para, f["Pose_Para"].ravel().astype(np.float64))
    assert s.pt2d.shape == (2, 68) and s.pt3d_68 is None
    assert s.roi.tolist() == [53, -166, 638, 419]
    assert s.yaw_degrees == pytest.approx(np.degrees(np.float32(-0.5)))
    img = s.load_image()
    assert img.shape == (40, 50, 3) and img.dtype == np.uint8
    assert img[..., 2].mean() > 200 and img[..., 0].mean() < 50  # RGB, not BGR


def test_read_fit_mat_fit_only_reads_the_fit_alone(tmp_path):
    p = write_sample(tmp_path, "s1")
    full, fit = read_fit_mat(p, 199, 29), read_fit_mat(p, 199, 29, fit_only=True)
    for name in ("shape_para", "exp_para", "pose_para"):
        assert np.array_equal(getattr(fit, name), getattr(full, name))
    assert fit.pt2d is None and fit.roi is None and full.pt2d is not None
    assert fit.image_path == full.image_path
    bad = write_sample(tmp_path, "bad", Exp_Para=np.full((29, 1), np.nan))
    with pytest.raises(InputError, match="Exp_Para") as e:
        read_fit_mat(bad, fit_only=True)
    assert str(bad) in str(e.value)
    sio.savemat(
        tmp_path / "missing.mat", {k: v for k, v in fit_fields().items() if k != "Pose_Para"}
    )
    with pytest.raises(InputError, match="Pose_Para"):
        read_fit_mat(tmp_path / "missing.mat", fit_only=True)


def test_read_fit_mat_accepts_any_count_unless_told(tmp_path):
    p = write_sample(tmp_path, "s", Shape_Para=np.zeros((60, 1)), Exp_Para=np.zeros((1, 10)))
    s = read_fit_mat(p)
    assert s.shape_para.shape == (60,) and s.exp_para.shape == (10,)
    with pytest.raises(InputError, match="Shape_Para"):
        read_fit_mat(p, n_shape=199)


def test_sample_without_image(tmp_path):
    p = write_sample(tmp_path, "noimg", image=False)
    s = read_fit_mat(p)
    assert s.image_path is None
    with pytest.raises(InputError) as ei:
        s.load_image()
    assert "noimg.jpg" in str(ei.value) and ei.value.field == "image"


@pytest.mark.parametrize(
    ("over", "field", "word"),
    [
        ({"Shape_Para": None}, "Shape_Para", "missing"),
        ({"Exp_Para": None}, "Exp_Para", "missing"),
        ({"Pose_Para": None}, "Pose_Para", "missing"),
        ({"Shape_Para": np.zeros((3, 1))}, "Shape_Para", "shape"),
        ({"Shape_Para": np.zeros((199, 2))}, "Shape_Para", "shape"),
        ({"Exp_Para": np.full((29, 1), np.nan)}, "Exp_Para", "non-finite"),
        (
            {"Shape_Para": np.where(np.arange(199)[:, None] == 5, np.inf, 0.0)},
            "Shape_Para",
            "non-finite",
        ),
        ({"Pose_Para": np.zeros((1, 6))}, "Pose_Para", "shape"),
        ({"Pose_Para": np.array([[0, 0, 0, 1, 1, 1, 0]], float)}, "Pose_Para", "positive"),
        ({"Pose_Para": np.array([[0, 0, 0, 1, 1, 1, -1e-3]], float)}, "Pose_Para", "positive"),
        ({"Pose_Para": "pitch yaw"}, "Pose_Para", "dtype"),
        ({"pt2d": np.zeros((3, 68))}, "pt2d", "shape"),
        ({"pt2d": np.full((2, 68), np.nan)}, "pt2d", "non-finite"),
        ({"pt3d_68": np.zeros((3, 67))}, "pt3d_68", "shape"),
        ({"roi": np.zeros((1, 3))}, "roi", "shape"),
        ({"Exp_Para": {"a": 1.0}}, "Exp_Para", "dtype"),  # a MATLAB struct where numbers belong
    ],
)
def test_read_fit_mat_bad_fields(tmp_path, over, field, word):
    p = write_sample(tmp_path, "bad", **over)
    with pytest.raises(InputError) as ei:
        read_fit_mat(p, 199, 29)
    msg = str(ei.value)
    assert str(p) in msg and field in msg and word in msg, msg
    assert ei.value.field == field


def test_read_fit_mat_bad_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_fit_mat(tmp_path / "none.mat")
    (tmp_path / "e.mat").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_fit_mat(tmp_path / "e.mat")
    p = write_sample(tmp_path, "full", image=False)
    b = p.read_bytes()
    (tmp_path / "half.mat").write_bytes(b[: len(b) // 2])
    with pytest.raises(InputError) as ei:
        read_fit_mat(tmp_path / "half.mat")
    assert "half.mat" in str(ei.value)


def test_iter_source_quarantines_bad_samples_in_order(tmp_path):
    write_sample(tmp_path / "b", "s2")
    write_sample(tmp_path / "a", "s9")
    write_sample(tmp_path / "a", "s1", Pose_Para=np.zeros((1, 6)))
    write_sample(tmp_path, "top")
    (tmp_path / "a" / ".hidden.mat").write_bytes(b"junk")
    (tmp_path / "a" / "notes.txt").write_text("x")
    mats = list_fit_mats(tmp_path)
    rel = [p.relative_to(tmp_path).as_posix() for p in mats]
    assert rel == ["a/s1.mat", "a/s9.mat", "b/s2.mat", "top.mat"]
    got = list(iter_source(tmp_path, 199, 29))
    assert len(got) == 4
    assert (
        isinstance(got[0], InputError) and "s1.mat" in str(got[0]) and got[0].field == "Pose_Para"
    )
    assert [g.sample_id for g in got[1:]] == ["s9", "s2", "top"]
    # n_shape / n_exp are passed on
    assert all(isinstance(g, InputError) for g in iter_source(tmp_path, 100, 29))
    with pytest.raises(InputError, match="not found"):
        list_fit_mats(tmp_path / "missing")


def test_read_image_errors(tmp_path):
    with pytest.raises(InputError, match="not found") as ei:
        read_image(tmp_path / "x.jpg")
    assert ei.value.field == "image"
    (tmp_path / "t.jpg").write_text("not an image at all")
    with pytest.raises(InputError, match="decode"):
        read_image(tmp_path / "t.jpg")
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "ok.png"), img)
    assert np.array_equal(read_image(tmp_path / "ok.png"), img[..., ::-1])
    gray = img[..., 0]
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    assert read_image(tmp_path / "g.png").shape == (64, 64, 3)


def test_read_image_empty_file(tmp_path):
    (tmp_path / "e.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="e.jpg"):  # not a cv2.error from decoding 0 bytes
        read_image(tmp_path / "e.jpg")


@pytest.mark.real
def test_read_image_truncated_real(real_dir, tmp_path):
    b = (real_dir / "300wlp" / "IBUG_image_008_1_0.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(b[: len(b) // 2])
    with pytest.raises(InputError, match="half.jpg"):
        read_image(tmp_path / "half.jpg")


# --- AFLW2000 benchmark arrays -----------------------------------------------------------------


def write_gt(d, n=5, **over):
    rng = np.random.default_rng(0)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {
        "AFLW2000-3D.pts68.npy": rng.random((n, 3, 68)).astype(np.float32),
        "AFLW2000-3D.pts21.npy": rng.random((n, 2, 21)).astype(np.float32),
        "AFLW2000-3D_crop.roi_box.npy": rng.random((n, 4)).astype(np.float32),
        "AFLW2000-3D.pose.npy": rng.random(n).astype(np.float32),
        "AFLW2000-3D-Reannotated.pts68.npy": rng.random((n, 2, 68)).astype(np.float32),
    }
    arrays.update(over)
    for name, a in arrays.items():
        if a is not None:
            np.save(d / name, a)
    return arrays


def test_load_aflw2000_gt_self_made(tmp_path):
    arrays = write_gt(tmp_path)
    gt = load_aflw2000_gt(tmp_path)
    assert np.array_equal(gt.pts68, arrays["AFLW2000-3D.pts68.npy"])
    assert np.array_equal(gt.yaw, arrays["AFLW2000-3D.pose.npy"])
    assert np.array_equal(gt.pts68_reannotated, arrays["AFLW2000-3D-Reannotated.pts68.npy"])
    (tmp_path / "AFLW2000-3D.pts21.npy").unlink()
    (tmp_path / "AFLW2000-3D.pose.npy").unlink()
    gt = load_aflw2000_gt(tmp_path)
    assert gt.pts21 is None and gt.yaw is None and gt.roi_box is not None


@pytest.mark.parametrize(
    ("over", "name", "field"),
    [
        ({"AFLW2000-3D.pts68.npy": None}, "AFLW2000-3D.pts68.npy", "pts68"),
        (
            {"AFLW2000-3D.pts68.npy": np.zeros((5, 2, 68), np.float32)},
            "AFLW2000-3D.pts68.npy",
            "pts68",
        ),
        (
            {"AFLW2000-3D.pts21.npy": np.zeros((4, 2, 21), np.float32)},
            "AFLW2000-3D.pts21.npy",
            "pts21",
        ),
        (
            {"AFLW2000-3D_crop.roi_box.npy": np.zeros((5, 5), np.float32)},
            "AFLW2000-3D_crop.roi_box.npy",
            "roi_box",
        ),
        ({"AFLW2000-3D.pose.npy": np.full(5, np.nan, np.float32)}, "AFLW2000-3D.pose.npy", "pose"),
        ({"AFLW2000-3D.pose.npy": np.arange(5)}, "AFLW2000-3D.pose.npy", "pose"),
    ],
)
def test_load_aflw2000_gt_bad(tmp_path, over, name, field):
    write_gt(tmp_path, **over)  # a None entry is not written
    with pytest.raises(InputError) as ei:
        load_aflw2000_gt(tmp_path)
    assert name in str(ei.value) and ei.value.field == field


def test_load_aflw2000_gt_truncated(tmp_path):
    write_gt(tmp_path, n=50)
    p = tmp_path / "AFLW2000-3D.pts68.npy"
    b = p.read_bytes()
    p.write_bytes(b[: len(b) // 2])
    with pytest.raises(InputError) as ei:
        load_aflw2000_gt(tmp_path)
    assert "AFLW2000-3D.pts68.npy" in str(ei.value) and ei.value.field == "pts68"


# --- real samples ------------------------------------------------------------------------------


@pytest.mark.real
def test_real_300wlp_sample(real_dir):
    p = real_dir / "300wlp" / "IBUG_image_008_1_0.mat"
    s = read_fit_mat(p, 199, 29)
    assert s.sample_id == "IBUG_image_008_1_0" and s.image_path == p.with_suffix(".jpg")
    assert s.shape_para.shape == (199,) and s.exp_para.shape == (29,) and s.pose_para.shape == (7,)
    assert s.pt2d.shape == (2, 68) and s.pt3d_68 is None and s.roi.shape == (4,)
    raw = sio.loadmat(p)
    assert np.array_equal(s.pose_para, raw["Pose_Para"].ravel().astype(np.float64))
    assert 0 < s.pose_para[6] < 0.01  # BFM micrometres to pixels
    assert -90 < s.yaw_degrees < 90
    img = s.load_image()
    assert img.shape == (450, 450, 3) and img.dtype == np.uint8
    bgr = cv2.imread(str(s.image_path))
    assert np.array_equal(img, bgr[..., ::-1])
    # pt2d lies on the image
    assert (s.pt2d >= 0).all() and (s.pt2d < 450).all()


@pytest.fixture(scope="module")
def aflw(real_dir):
    return [x for x in iter_source(real_dir / "aflw2000", 199, 29)], load_aflw2000_gt(
        real_dir / "aflw2000" / "gt"
    )


@pytest.mark.real
def test_real_aflw2000_samples_read(aflw):
    samples, _ = aflw
    assert not [s for s in samples if isinstance(s, InputError)]
    ids = [s.sample_id for s in samples]
    assert ids == sorted(ids) and len(ids) == 6  # gt/ holds .npy only: no sample from it
    for s in samples:
        assert s.pt3d_68.shape == (3, 68) and s.pt2d.shape == (2, 21)
        assert s.image_path is not None and s.image_path.suffix == ".jpg"


@pytest.mark.real
def test_real_aflw2000_gt_arrays(aflw):
    _, gt = aflw
    assert gt.pts68.shape == (2000, 3, 68) and gt.pts68.dtype == np.float32
    assert (
        gt.pts21.shape == (2000, 2, 21)
        and gt.roi_box.shape == (2000, 4)
        and gt.yaw.shape == (2000,)
    )
    assert gt.pts68_reannotated.shape == (2000, 2, 68)
    # yaw in degrees (a few AFLW2000-3D fits are known to have out-of-range angles)
    assert np.isfinite(gt.yaw).all() and np.median(np.abs(gt.yaw)) < 90


@pytest.mark.real
def test_real_aflw2000_pt3d_rows_in_sorted_name_order(aflw):
    """Each sample's pt3d_68 is one row of pts68; the rows follow the sorted image names.

    The six names are a sparse subset of the 2,000 (image00050 ... image03614), so the row is
    found by search; the row index can be at most the image number, and increases with the name.
    """
    samples, gt = aflw
    flat = gt.pts68.reshape(2000, -1)
    rows = []
    for s in samples:
        d = np.abs(flat - s.pt3d_68.reshape(1, -1)).max(1)
        i = int(d.argmin())
        assert d[i] < 1e-3, f"{s.sample_id}: no matching row (best {d[i]:.3g})"
        assert np.partition(d, 1)[1] > 1.0  # unique: the next best row is far away
        rows.append(i)
        assert i <= int(s.sample_id.removeprefix("image"))
        # the same row also carries the sample's yaw and its 21-point annotation
        assert s.yaw_degrees == pytest.approx(float(gt.yaw[i]), abs=1e-3)
        np.testing.assert_allclose(gt.pts21[i], s.pt2d, atol=1e-3)
    assert rows == sorted(rows) and len(set(rows)) == len(rows)
    assert rows == [28, 150, 286, 611, 1263, 1636]
