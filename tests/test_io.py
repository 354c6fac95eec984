"""Readers of the face-model formats (real files and broken ones), array checks, atomic writes."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
import scipy.io as sio

from densemark.core import atomic
from densemark.core.errors import InputError
from densemark.core.validate import check_array, check_indices
from densemark.faces.io import (
    atomic_savemat,
    load_bfm_info,
    load_bfm_mat,
    load_bfm_mean_model,
    load_mean_shape,
    load_model,
    load_npy,
    load_tri_mat,
    load_uv_mat,
    model_from_mean,
    read_mat,
    save_bfm_mat,
    save_uv_mat,
)
from densemark.faces.model import MorphableModel


def raises_named(path, field, fn, *args, match=None, **kwargs) -> str:
    """Call ``fn`` expecting an InputError whose message names the file and the field."""
    with pytest.raises(InputError) as ei:
        fn(*args, **kwargs)
    msg = str(ei.value)
    assert os.fspath(path) in msg, msg
    if field is not None:
        assert field in msg, msg
        assert ei.value.field is not None and field in ei.value.field
    if match is not None:
        assert match in msg, msg
    return msg


def write_half(src, dst):
    b = src.read_bytes()
    dst.write_bytes(b[: len(b) // 2])
    return dst


# --- errors and checks -------------------------------------------------------------------------


def test_input_error_format():
    e = InputError("a/b.mat", "Shape_Para", "expected shape (199, 1), got (3,)")
    assert str(e) == "a/b.mat: field Shape_Para: expected shape (199, 1), got (3,)"
    assert isinstance(e, ValueError) and e.path == "a/b.mat" and e.field == "Shape_Para"
    assert str(InputError(None, None, "bad")) == "bad"
    assert str(InputError("x.npy", None, "bad")) == "x.npy: bad"


def test_check_array_accepts_and_rejects():
    a = check_array(np.zeros((4, 3)), "f", "x", (None, 3))
    assert a.shape == (4, 3)
    assert check_array(np.zeros((1, 7)), "f", "p", (7,), squeeze=True).shape == (7,)
    assert check_array(np.array([[5.0]]), "f", "p", (1,), squeeze=True).shape == (1,)
    for bad, shape, kw, word in [
        (np.zeros((4, 2)), (None, 3), {}, "shape"),
        (np.zeros((4, 3, 1)), (None, 3), {}, "shape"),
        (np.zeros((0, 3)), (None, 3), {}, "empty"),
        (np.array([1.0, np.nan]), None, {}, "non-finite"),
        (np.array([1.0, -np.inf]), None, {}, "non-finite"),
        (np.array(["a", "b"]), None, {}, "dtype"),
        (np.array([1, 2]), None, {"kind": "f"}, "dtype"),
        (np.array([{}, 1], dtype=object), None, {}, "object"),
    ]:
        with pytest.raises(InputError, match=word) as ei:
            check_array(bad, "file.mat", "fld", shape, **kw)
        assert "file.mat" in str(ei.value) and "fld" in str(ei.value)
    # finite=False lets NaN through
    assert np.isnan(check_array(np.array([np.nan]), "f", "x", finite=False)).any()


def test_check_indices():
    assert check_indices(np.array([1.0, 3.0]), "f", "i", 3, one_based=True).tolist() == [0, 2]
    assert check_indices(np.array([0, 2], np.uint16), "f", "i", 3).dtype == np.int64
    with pytest.raises(InputError, match="out of range"):
        check_indices(np.array([0, 3]), "f", "i", 3, one_based=True)  # 0 is not a 1-based index
    with pytest.raises(InputError, match="out of range"):
        check_indices(np.array([1, 4]), "f", "i", 3, one_based=True)
    with pytest.raises(InputError, match="whole"):
        check_indices(np.array([1.5]), "f", "i", 3)
    with pytest.raises(InputError, match="whole"):
        check_indices(np.array([np.nan]), "f", "i", 3)


# --- read_mat ----------------------------------------------------------------------------------


def test_read_mat_missing_empty_garbage(tmp_path):
    raises_named(tmp_path / "nope.mat", None, read_mat, tmp_path / "nope.mat", match="not found")
    (tmp_path / "empty.mat").write_bytes(b"")
    raises_named(tmp_path / "empty.mat", None, read_mat, tmp_path / "empty.mat", match="empty")
    (tmp_path / "text.mat").write_text("this is not a MATLAB file\n" * 20)
    raises_named(tmp_path / "text.mat", None, read_mat, tmp_path / "text.mat")


@pytest.mark.parametrize("compress", [False, True])
def test_read_mat_truncated_self_made(tmp_path, compress):
    p = tmp_path / "a.mat"
    sio.savemat(p, {"UV": np.random.default_rng(0).random((500, 2))}, do_compression=compress)
    assert read_mat(p)["UV"].shape == (500, 2)
    raises_named(tmp_path / "half.mat", None, read_mat, write_half(p, tmp_path / "half.mat"))


@pytest.mark.real
@pytest.mark.parametrize(
    "name", ["bfm/BFM_UV.mat", "bfm/tri.mat", "bfm/BFM_info.mat", "300wlp/IBUG_image_008_1_0.mat"]
)
def test_read_mat_truncated_real(real_dir, tmp_path, name):
    half = write_half(real_dir / name, tmp_path / f"half_{os.path.basename(name)}")
    raises_named(half, None, read_mat, half)


def _scipy_vars(path) -> dict:
    return {k: v for k, v in sio.loadmat(path).items() if not k.startswith("__")}


def _same_arrays(got: dict, ref: dict) -> None:
    assert set(got) == set(ref)
    for k, v in ref.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and np.array_equal(got[k], v), k


@pytest.mark.parametrize("compress", [False, True])
def test_fast_v5_reader_equals_scipy(tmp_path, compress):
    """read_v5_numeric (the fast path of read_mat for named variables) returns what scipy
    returns for real numeric matrices of every type and shape; anything else falls back."""
    from densemark.core.matio import read_v5_numeric

    rng = np.random.default_rng(0)
    data = {
        "Shape_Para": rng.normal(size=(199, 1)), "Exp_Para": rng.normal(size=(29, 1)).astype(np.float32),
        "roi": np.array([[1, 2, 300, 400]], np.int16), "pix": rng.integers(0, 255, (3, 4, 2), dtype=np.uint8),
        "big": rng.integers(-(2**40), 2**40, (2, 3)), "one": np.array([[7.5]]), "empty": np.zeros((0, 3)),
        "name": "a string", "cplx": np.array([[1 + 2j]]), "st": {"a": np.ones(3)},
    }  # fmt: skip
    p = tmp_path / "a.mat"
    sio.savemat(p, data, do_compression=compress)
    ref = _scipy_vars(p)
    numeric = {"Shape_Para", "Exp_Para", "roi", "pix", "big", "one", "empty"}
    _same_arrays(read_v5_numeric(p.read_bytes(), numeric), {k: ref[k] for k in numeric})
    _same_arrays(read_mat(p, ["Exp_Para", "roi"]), {k: ref[k] for k in ("Exp_Para", "roi")})
    assert read_v5_numeric(p.read_bytes(), {"Exp_Para", "missing"}).keys() == {
        "Exp_Para"
    }  # absent: absent
    for other in ("name", "cplx", "st"):  # not a real numeric matrix: scipy's job
        assert read_v5_numeric(p.read_bytes(), {"roi", other}) is None
        assert other in read_mat(p, ["roi", other])
    half = write_half(p, tmp_path / "half.mat")
    assert read_v5_numeric(half.read_bytes(), numeric) is None
    raises_named(half, None, read_mat, half, ["Shape_Para", "Exp_Para", "big", "empty"])
    assert read_v5_numeric(b"MATLAB 5.0" + b"\0" * 116 + b"MI", {"x"}) is None  # big-endian


@pytest.mark.real
@pytest.mark.parametrize(
    "name",
    ["300wlp/IBUG_image_008_1_0.mat", "aflw2000/image00050.mat", "bfm/BFM_UV.mat", "bfm/tri.mat"],
)
def test_fast_v5_reader_on_real_files(real_dir, name):
    from densemark.core.matio import read_v5_numeric

    ref = _scipy_vars(real_dir / name)
    _same_arrays(read_v5_numeric((real_dir / name).read_bytes(), set(ref)), ref)


def _mat73(path, datasets: dict, groups: dict | None = None):
    """A MATLAB v7.3 file: HDF5 with MATLAB's 512-byte header block, arrays stored transposed."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=np.asarray(v).T)
        for g, fields in (groups or {}).items():
            grp = f.create_group(g)
            for k, v in fields.items():
                grp.create_dataset(k, data=np.asarray(v).T)
    hdr = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(hdr.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM")
    return path


def test_read_mat_v73(tmp_path):
    uv = np.random.default_rng(1).random((40, 2))
    p = _mat73(tmp_path / "uv73.mat", {"UV": uv})
    with pytest.raises(NotImplementedError):
        sio.loadmat(p)  # scipy cannot: the reader must fall back to HDF5
    got = load_uv_mat(p, 40)
    assert got.shape == (40, 2) and np.array_equal(got, uv)
    raises_named(tmp_path / "half73.mat", None, read_mat, write_half(p, tmp_path / "half73.mat"))


# --- BFM_UV.mat --------------------------------------------------------------------------------


@pytest.mark.real
def test_load_uv_mat_real(real_dir):
    uv = load_uv_mat(real_dir / "bfm" / "BFM_UV.mat", 53215)
    assert uv.shape == (53215, 2) and uv.dtype == np.float64
    assert uv.min() >= 0 and uv.max() <= 1 and np.ptp(uv, 0).min() > 0.5
    with pytest.raises(InputError, match="shape"):
        load_uv_mat(real_dir / "bfm" / "BFM_UV.mat", 53214)


def test_uv_mat_round_trip_and_bad_values(tmp_path):
    uv = np.random.default_rng(2).random((30, 2))
    p = save_uv_mat(uv, tmp_path / "BFM_UV.mat")
    assert np.array_equal(load_uv_mat(p, 30), uv)
    assert np.array_equal(load_uv_mat(p), uv)
    cases = {
        "three_cols": np.random.default_rng(3).random((30, 3)),
        "nan": np.where(np.arange(60).reshape(30, 2) == 7, np.nan, uv),
        "outside": uv * 2,
        "negative": uv - 0.5,
        "int": np.ones((30, 2), np.int32),
    }
    for name, arr in cases.items():
        q = tmp_path / f"{name}.mat"
        sio.savemat(q, {"UV": arr})
        raises_named(q, "UV", load_uv_mat, q)
    q = tmp_path / "wrongkey.mat"
    sio.savemat(q, {"uv_coords": uv})
    raises_named(q, "UV", load_uv_mat, q, match="missing")


# --- tri.mat -----------------------------------------------------------------------------------


@pytest.mark.real
def test_load_tri_mat_real(real_dir):
    p = real_dir / "bfm" / "tri.mat"
    raw = sio.loadmat(p)["tri"]
    assert raw.shape == (3, 105840) and raw.min() == 1  # 1-based, (3, T)
    tri = load_tri_mat(p, 53215)
    assert tri.shape == (105840, 3) and tri.dtype == np.int64 and tri.flags.c_contiguous
    assert np.array_equal(tri, raw.T.astype(np.int64) - 1)
    assert tri.min() == 0 and tri.max() == 53214
    raises_named(p, "tri", load_tri_mat, p, 50000, match="out of range")


@pytest.mark.parametrize(
    ("case", "word"),
    [
        ("zero", "out of range"),
        ("too_big", "out of range"),
        ("fraction", "whole"),
        ("nan", "tri"),
        ("four_rows", "(3, T)"),
        ("empty", "empty"),
    ],
)
def test_load_tri_mat_bad(tmp_path, case, word):
    tri = np.array(
        [[1, 2, 3], [2, 3, 4], [3, 4, 5], [1, 3, 5]], float
    ).T  # (3, 4), 1-based, 5 vertices
    if case == "zero":
        tri[0, 0] = 0
    elif case == "too_big":
        tri[1, 2] = 6
    elif case == "fraction":
        tri[2, 1] = 2.5
    elif case == "nan":
        tri[2, 1] = np.nan
    elif case == "four_rows":
        tri = np.vstack([tri, tri[:1]])
    elif case == "empty":
        tri = np.zeros((3, 0))
    p = tmp_path / "tri.mat"
    sio.savemat(p, {"tri": tri})
    raises_named(p, "tri", load_tri_mat, p, 5, match=word)


def test_load_tri_mat_with_three_triangles(tmp_path):
    # tri.mat is (3, T); with T = 3 the array is square and must not be guessed as (T, 3)
    t = np.array([[1, 2, 3], [1, 3, 4], [2, 4, 5]])  # three triangles, one per row (not symmetric)
    sio.savemat(tmp_path / "tri.mat", {"tri": t.T.astype(float)})
    assert np.array_equal(load_tri_mat(tmp_path / "tri.mat", 5), t - 1)


def test_load_tri_mat_accepts_either_orientation(tmp_path):
    t = np.array([[1, 2, 3], [2, 3, 4], [3, 4, 5], [1, 3, 5]])
    sio.savemat(tmp_path / "a.mat", {"tri": t.T.astype(np.uint16)})
    sio.savemat(tmp_path / "b.mat", {"tri": t.astype(float)})
    assert np.array_equal(load_tri_mat(tmp_path / "a.mat", 5), t - 1)
    assert np.array_equal(load_tri_mat(tmp_path / "b.mat", 5), t - 1)


# --- BFM_info.mat ------------------------------------------------------------------------------


@pytest.mark.real
def test_load_bfm_info_real(real_dir):
    p = real_dir / "bfm" / "BFM_info.mat"
    info = load_bfm_info(p)
    raw = sio.loadmat(p)["model_info"][0, 0]
    assert info.n_vertices == 53215
    assert info.kpt_ind.shape == (68,) and info.kpt_ind.dtype == np.int64
    assert np.array_equal(info.kpt_ind, raw["kpt_ind"].ravel().astype(np.int64) - 1)
    assert info.tri_mouth.shape == (114, 3)
    assert np.array_equal(info.tri_mouth, raw["tri_mouth"].T.astype(np.int64) - 1)
    assert (
        info.symlist.shape == (2, 26720) and info.symlist.min() >= 0 and info.symlist.max() < 53215
    )
    assert len(np.unique(info.kpt_ind)) == 68


def _info_struct(n=20, **over):
    s = {
        "kpt_ind": np.arange(1, 69, dtype=float).reshape(1, 68) % n + 1,
        "trimIndex": np.arange(1, n + 1, dtype=float).reshape(n, 1),
        "symlist": np.array([[1, 2], [3, 4]], float),
        "tri_mouth": np.array([[1, 2, 3], [2, 3, 4]], float).T,
    }
    for k, v in over.items():
        if v is None:
            del s[k]
        else:
            s[k] = v
    return s


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"kpt_ind": None}, "kpt_ind"),
        ({"trimIndex": None}, "trimIndex"),
        ({"kpt_ind": np.arange(1, 68, dtype=float).reshape(1, 67)}, "kpt_ind"),
        ({"kpt_ind": np.zeros((1, 68))}, "kpt_ind"),  # 0 in a 1-based list
        ({"kpt_ind": np.full((1, 68), 21.0)}, "kpt_ind"),  # vertex 21 of 20
        ({"symlist": np.array([[1, 2, 3]], float)}, "symlist"),
        ({"symlist": np.array([[1, 2], [3, 40]], float)}, "symlist"),
        ({"tri_mouth": np.array([[1, 2, 30]], float).T}, "tri_mouth"),
    ],
)
def test_load_bfm_info_bad(tmp_path, over, field):
    p = tmp_path / "BFM_info.mat"
    sio.savemat(p, {"model_info": _info_struct(**over)})
    raises_named(p, field, load_bfm_info, p)


def test_load_bfm_info_not_a_struct(tmp_path):
    p = tmp_path / "BFM_info.mat"
    sio.savemat(p, {"model_info": np.zeros((3, 3))})
    raises_named(p, "model_info", load_bfm_info, p, match="struct")
    sio.savemat(p, {"info": _info_struct()})
    raises_named(p, "model_info", load_bfm_info, p, match="missing")


# --- .npy and the 3DDFA mean shape -------------------------------------------------------------


def test_load_npy_errors(tmp_path):
    raises_named(tmp_path / "x.npy", "fld", load_npy, tmp_path / "x.npy", "fld", match="not found")
    (tmp_path / "e.npy").write_bytes(b"")
    raises_named(tmp_path / "e.npy", "fld", load_npy, tmp_path / "e.npy", "fld")
    np.save(tmp_path / "a.npy", np.arange(3000, dtype=np.float32))
    raises_named(
        tmp_path / "h.npy",
        "fld",
        load_npy,
        write_half(tmp_path / "a.npy", tmp_path / "h.npy"),
        "fld",
    )
    np.save(tmp_path / "o.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    raises_named(tmp_path / "o.npy", "fld", load_npy, tmp_path / "o.npy", "fld")
    np.save(tmp_path / "n.npy", np.array([1.0, np.nan]))
    raises_named(tmp_path / "n.npy", "fld", load_npy, tmp_path / "n.npy", "fld", match="non-finite")
    raises_named(
        tmp_path / "a.npy", "fld", load_npy, tmp_path / "a.npy", "fld", (None, 3), match="shape"
    )
    # the field defaults to the file name
    raises_named(tmp_path / "a.npy", "a.npy", load_npy, tmp_path / "a.npy", None, (None, 3))


@pytest.mark.real
def test_load_mean_shape_real(real_dir):
    d = real_dir / "bfm"
    mean = load_mean_shape(d / "u_shp.npy", d / "u_exp.npy")
    assert mean.shape == (53215, 3) and mean.dtype == np.float32
    shp, exp = np.load(d / "u_shp.npy"), np.load(d / "u_exp.npy")
    # xyz interleaved per vertex: vertex i is rows 3i, 3i+1, 3i+2
    assert np.array_equal(mean[10], (shp + exp)[30:33, 0])
    assert np.array_equal(load_mean_shape(d / "u_shp.npy"), shp.reshape(-1, 3))
    assert not np.array_equal(mean, load_mean_shape(d / "u_shp.npy"))
    # BFM units: a face about 1.5e5 wide
    assert 1e5 < np.ptp(mean[:, 0]) < 3e5


@pytest.mark.real
def test_load_mean_shape_truncated_real(real_dir, tmp_path):
    half = write_half(real_dir / "bfm" / "u_exp.npy", tmp_path / "u_exp.npy")
    raises_named(half, "u_exp", load_mean_shape, real_dir / "bfm" / "u_shp.npy", half)


def test_load_mean_shape_bad(tmp_path):
    np.save(tmp_path / "s.npy", np.zeros((10, 1), np.float32))
    raises_named(
        tmp_path / "s.npy", "u_shp", load_mean_shape, tmp_path / "s.npy", match="multiple of 3"
    )
    np.save(tmp_path / "s.npy", np.zeros((9, 1), np.float32))
    np.save(tmp_path / "e.npy", np.zeros((12, 1), np.float32))
    raises_named(
        tmp_path / "e.npy",
        "u_exp",
        load_mean_shape,
        tmp_path / "s.npy",
        tmp_path / "e.npy",
        match="shape",
    )
    np.save(tmp_path / "i.npy", np.zeros((9, 1), np.int32))
    raises_named(tmp_path / "i.npy", "u_shp", load_mean_shape, tmp_path / "i.npy", match="dtype")
    np.save(tmp_path / "r.npy", np.zeros((3, 3), np.float32))
    raises_named(tmp_path / "r.npy", "u_shp", load_mean_shape, tmp_path / "r.npy", match="shape")


# --- the real BFM mean model -------------------------------------------------------------------


@pytest.mark.real
def test_load_bfm_mean_model_real(real_dir):
    d = real_dir / "bfm"
    m = load_bfm_mean_model(d)
    assert m.n_vertices == 53215 and m.n_shape == 0 and m.n_exp == 0
    assert m.triangles.shape == (105840 + 114, 3)
    tri = load_tri_mat(d / "tri.mat", 53215)
    info = load_bfm_info(d / "BFM_info.mat")
    assert np.array_equal(m.triangles[:105840], tri) and np.array_equal(
        m.triangles[105840:], info.tri_mouth
    )
    assert np.array_equal(m.kpt_ind, info.kpt_ind)
    assert m.uv.shape == (53215, 2)
    assert np.array_equal(m.vertices(), m.mean)
    # the mouth triangles are new triangles, not repeats of tri.mat's
    known = {frozenset(t) for t in tri.tolist()}
    assert not any(frozenset(t) in known for t in info.tri_mouth.tolist())


def test_load_bfm_mean_model_vertex_count_mismatch(tmp_path):
    n = 20
    np.save(tmp_path / "u_shp.npy", np.zeros((3 * n, 1), np.float32))
    np.save(tmp_path / "u_exp.npy", np.zeros((3 * n, 1), np.float32))
    sio.savemat(tmp_path / "tri.mat", {"tri": np.array([[1, 2, 3]], float).T})
    sio.savemat(tmp_path / "BFM_UV.mat", {"UV": np.full((n, 2), 0.5)})
    sio.savemat(tmp_path / "BFM_info.mat", {"model_info": _info_struct(n=n + 1)})
    raises_named(tmp_path / "BFM_info.mat", "trimIndex", load_bfm_mean_model, tmp_path)
    sio.savemat(tmp_path / "BFM_info.mat", {"model_info": _info_struct(n=n)})
    m = load_bfm_mean_model(tmp_path)
    assert m.n_vertices == n and m.triangles.shape == (3, 3)
    sio.savemat(tmp_path / "BFM_UV.mat", {"UV": np.full((n - 1, 2), 0.5)})
    raises_named(tmp_path / "BFM_UV.mat", "UV", load_bfm_mean_model, tmp_path)


# --- face3d BFM.mat ----------------------------------------------------------------------------


def face3d_struct(n=40, n_tri=30, n_mouth=4, seed=0) -> dict:
    """The ``model`` struct of face3d's BFM.mat, with face3d's shapes and MATLAB conventions."""
    rng = np.random.default_rng(seed)
    tri = rng.integers(1, n + 1, (3, n_tri + n_mouth)).astype(float)
    return {
        "shapeMU": rng.normal(0, 1e4, (3 * n, 1)),
        "shapePC": rng.normal(0, 1, (3 * n, 199)).astype(np.float32),
        "shapeEV": rng.random((199, 1)) * 1e5,
        "expMU": rng.normal(0, 1e3, (3 * n, 1)),
        "expPC": rng.normal(0, 1, (3 * n, 29)).astype(np.float32),
        "expEV": rng.random((29, 1)),
        "tri": tri[:, :n_tri],
        "tri_mouth": tri[:, n_tri:],
        "kpt_ind": rng.choice(np.arange(1, n + 1), 68).astype(float).reshape(1, 68),
    }


def test_load_bfm_mat_face3d_conventions(tmp_path):
    s = face3d_struct()
    p = tmp_path / "BFM.mat"
    sio.savemat(p, {"model": s})
    m = load_bfm_mat(p)
    n = 40
    assert m.n_vertices == n and m.n_shape == 199 and m.n_exp == 29 and m.name == "BFM"
    assert m.mean.dtype == np.float32 and m.shape_basis.dtype == np.float32
    # face3d: the mean is shapeMU + expMU; xyz interleaved per vertex
    np.testing.assert_allclose(m.mean, (s["shapeMU"] + s["expMU"]).reshape(n, 3), rtol=1e-6)
    np.testing.assert_allclose(
        m.mean[5], [*(s["shapeMU"][15:18, 0] + s["expMU"][15:18, 0])], rtol=1e-6
    )
    # triangles: tri then tri_mouth, transposed, 0-based
    assert np.array_equal(
        m.triangles, np.concatenate([s["tri"].T, s["tri_mouth"].T]).astype(np.int64) - 1
    )
    assert np.array_equal(m.kpt_ind, s["kpt_ind"].ravel().astype(np.int64) - 1)
    np.testing.assert_allclose(m.shape_ev, s["shapeEV"].ravel(), rtol=1e-6)
    np.testing.assert_allclose(m.exp_ev, s["expEV"].ravel(), rtol=1e-6)
    # face3d's generate_vertices: shapeMU + expMU + shapePC @ sp + expPC @ ep, reshaped (N, 3)
    rng = np.random.default_rng(1)
    sp, ep = rng.normal(0, 1e3, 199), rng.normal(0, 1, 29)
    want = (
        s["shapeMU"] + s["expMU"] + s["shapePC"] @ sp[:, None] + s["expPC"] @ ep[:, None]
    ).reshape(n, 3)
    np.testing.assert_allclose(m.vertices(sp, ep), want, rtol=1e-4, atol=1e-3 * np.abs(want).max())


def test_load_bfm_mat_without_tri_mouth(tmp_path):
    s = face3d_struct()
    del s["tri_mouth"]
    sio.savemat(tmp_path / "BFM.mat", {"model": s})
    assert load_bfm_mat(tmp_path / "BFM.mat").triangles.shape == (30, 3)


# n_mouth = 3 stores tri_mouth as a (3, 3) array: it must still be read as (3, T)
@pytest.mark.parametrize("n_mouth", [0, 3, 5])
def test_save_load_bfm_mat_round_trip(tmp_path, n_mouth):
    sio.savemat(tmp_path / "src.mat", {"model": face3d_struct()})
    m = load_bfm_mat(tmp_path / "src.mat")
    p = save_bfm_mat(m, tmp_path / "out" / "BFM.mat", n_mouth=n_mouth)
    assert p.is_file() and [q.name for q in p.parent.iterdir()] == ["BFM.mat"]
    back = load_bfm_mat(p)
    for f in ("mean", "shape_basis", "exp_basis", "triangles", "kpt_ind", "shape_ev", "exp_ev"):
        a, b = getattr(m, f), getattr(back, f)
        assert a.dtype == b.dtype and np.array_equal(a, b), f
    raw = sio.loadmat(p)["model"][0, 0]
    assert raw["tri_mouth"].shape[1] == n_mouth and raw["tri"].min() >= 1  # stored 1-based


@pytest.mark.parametrize(
    ("field", "value", "word"),
    [
        ("shapeMU", np.zeros((121, 1)), "multiple of 3"),
        ("shapeMU", np.zeros((3, 40)), "shape"),
        ("expMU", np.zeros((119, 1)), "shape"),
        ("shapePC", np.zeros((119, 199), np.float32), "shape"),
        ("shapeEV", np.ones((198, 1)), "shape"),
        ("expEV", np.ones((1, 30)), "shape"),
        ("expPC", "not numbers", "dtype"),
        ("kpt_ind", np.arange(1, 68, dtype=float).reshape(1, 67), "shape"),
        ("kpt_ind", np.zeros((1, 68)), "out of range"),
        ("tri", np.full((3, 5), 41.0), "out of range"),
        ("tri_mouth", np.full((3, 2), 0.5), "whole"),
        ("shapePC", None, "missing"),
        ("expPC", "nan", "non-finite"),
    ],
)
def test_load_bfm_mat_bad(tmp_path, field, value, word):
    s = face3d_struct()
    if value is None:
        del s[field]
    elif isinstance(value, str) and value == "nan":
        s[field] = s[field].copy()
        s[field][7, 3] = np.nan
    else:
        s[field] = value
    p = tmp_path / "BFM.mat"
    sio.savemat(p, {"model": s})
    raises_named(p, field if value is None else f"model.{field}", load_bfm_mat, p, match=word)


def test_load_bfm_mat_not_a_model(tmp_path):
    p = tmp_path / "BFM.mat"
    sio.savemat(p, {"shapeMU": np.zeros((3, 1))})
    raises_named(p, "model", load_bfm_mat, p, match="missing")
    sio.savemat(p, {"model": np.zeros((3, 1))})
    raises_named(p, "model", load_bfm_mat, p, match="struct")


def test_load_bfm_mat_v73(tmp_path):
    s = face3d_struct()
    sio.savemat(tmp_path / "v5.mat", {"model": s})
    p = _mat73(tmp_path / "v73.mat", {}, {"model": s})
    a, b = load_bfm_mat(tmp_path / "v5.mat"), load_bfm_mat(p)
    for f in ("mean", "shape_basis", "exp_basis", "triangles", "kpt_ind", "shape_ev", "exp_ev"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


def test_load_model_with_uv(tmp_path):
    sio.savemat(tmp_path / "BFM.mat", {"model": face3d_struct()})
    uv = np.random.default_rng(4).random((40, 2))
    save_uv_mat(uv, tmp_path / "BFM_UV.mat")
    m = load_model(tmp_path / "BFM.mat", tmp_path / "BFM_UV.mat")
    assert np.array_equal(m.uv, uv) and m.n_shape == 199
    save_uv_mat(uv[:39], tmp_path / "BFM_UV.mat")
    raises_named(
        tmp_path / "BFM_UV.mat",
        "UV",
        load_model,
        tmp_path / "BFM.mat",
        tmp_path / "BFM_UV.mat",
        match="shape",
    )


def test_model_from_mean():
    mean = np.random.default_rng(5).normal(size=(10, 3))
    m = model_from_mean(mean, np.array([[0, 1, 2]]), np.arange(68) % 10, name="m")
    assert isinstance(m, MorphableModel) and m.mean.dtype == np.float32
    assert m.shape_basis.shape == (30, 0) and m.exp_basis.shape == (30, 0) and m.uv is None
    np.testing.assert_allclose(m.vertices(), mean, rtol=1e-6)


# --- atomic writes -----------------------------------------------------------------------------


def test_atomic_savemat_replaces_and_cleans_up(tmp_path):
    p = tmp_path / "a.mat"
    atomic_savemat(p, {"x": np.arange(3.0)})
    atomic_savemat(p, {"x": np.arange(4.0)})
    assert read_mat(p)["x"].shape == (1, 4)
    assert [q.name for q in tmp_path.iterdir()] == ["a.mat"]


def test_atomic_savemat_failure_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "a.mat"
    atomic_savemat(p, {"x": np.arange(4.0)})

    def half_then_fail(f, data, **kw):
        f.write(b"MATLAB 5.0 partial")
        raise OSError("disk full")

    monkeypatch.setattr(sio, "savemat", half_then_fail)
    with pytest.raises(OSError):
        atomic_savemat(p, {"x": np.arange(9.0)})
    monkeypatch.undo()
    # the old file is intact and no temp file is left behind
    assert read_mat(p)["x"].shape == (1, 4)
    assert [q.name for q in tmp_path.iterdir()] == ["a.mat"]


def test_atomic_helpers(tmp_path):
    p = atomic.write_json(
        tmp_path / "sub" / "a.json", {"b": np.int64(2), "a": np.arange(2), "p": tmp_path}
    )
    first = p.read_bytes()
    atomic.write_json(p, {"p": tmp_path, "a": [0, 1], "b": 2})
    assert p.read_bytes() == first  # key-sorted, numpy values as plain JSON
    assert json.loads(first) == {"a": [0, 1], "b": 2, "p": str(tmp_path)}
    q = atomic.save_npy(tmp_path / "x.npy", np.arange(5))
    assert np.array_equal(np.load(q, allow_pickle=False), np.arange(5))
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(tmp_path / "y.txt") as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert not (tmp_path / "y.txt").exists()
    assert sorted(q.name for q in tmp_path.iterdir()) == ["sub", "x.npy"]
    with pytest.raises(TypeError):
        atomic.write_json(tmp_path / "z.json", {"s": {1, 2}})
    assert not (tmp_path / "z.json").exists()
