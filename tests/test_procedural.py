"""The embedded procedural face model (``densemark.faces.procedural``)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio

from densemark.core.matio import MAT_HEADER
from densemark.faces import procedural as fs
from densemark.faces.io import load_model
from densemark.faces.procedural.params import ProceduralParams
from densemark.faces.render import triangle_normals

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def proc() -> ProceduralParams:
    return ProceduralParams(grid=41)


@pytest.fixture(scope="module")
def model(proc):
    return fs.build_model(proc)


@pytest.fixture(scope="module")
def model_dir(proc, tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    fs.write_model(proc, d)
    return d


@pytest.fixture(scope="module")
def fine():
    """Identity basis of a finer grid, with its raw fields and edges (smoothness is judged here)."""
    uv, tri, mirror, _ = fs.uv_grid(81)
    mean = fs.mean_shape(uv)
    basis, raw = fs.shape_basis(uv, mean, mirror, 199, np.random.default_rng((0, 100)))
    edges = np.unique(
        np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), 1), axis=0
    )
    return uv, basis, raw, edges


def _bytes(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_model_shapes(model):
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
    assert model.generator == fs.GENERATOR


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
    # the generator travels in model_info.json, not in the model's name
    assert back.generator == "" and info["generator"] == fs.GENERATOR
    assert fs.read_model_dir(model_dir).generator == fs.GENERATOR


def test_read_model_dir_without_or_with_bad_info(model_dir, tmp_path):
    from densemark.core.errors import InputError

    for name in ("BFM.mat", "BFM_UV.mat"):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    assert fs.read_model_dir(tmp_path).generator == ""  # a BFM folder of unknown origin
    (tmp_path / "model_info.json").write_text('{"generator": 3}')
    with pytest.raises(InputError, match="generator"):
        fs.read_model_dir(tmp_path)


def test_model_files_deterministic(proc, model_dir, tmp_path):
    fs.write_model(proc, tmp_path / "a")
    assert _bytes(tmp_path / "a") == _bytes(model_dir)
    assert (tmp_path / "a" / "BFM.mat").read_bytes().startswith(MAT_HEADER)
    fs.write_model(proc.model_copy(update={"seed": 1}), tmp_path / "b")
    assert (tmp_path / "b" / "BFM.mat").read_bytes() != (model_dir / "BFM.mat").read_bytes()


def _openblas() -> bool:
    blas = np.__config__.CONFIG.get("Build Dependencies", {}).get("blas", {})
    return "openblas" in str(blas.get("name", "")).lower()


@pytest.mark.slow
@pytest.mark.skipif(
    not _openblas(), reason="numpy is not linked to OpenBLAS (OPENBLAS_CORETYPE has no effect)"
)
def test_model_bytes_identical_across_blas_kernels(tmp_path):
    """The written files do not depend on the BLAS kernel (they did: a rank-deficient basis
    orthonormalised by LAPACK gave other bytes per kernel)."""
    code = (
        "import sys\nfrom densemark.faces.procedural import write_model\n"
        "from densemark.faces.procedural.params import ProceduralParams\n"
        "write_model(ProceduralParams(grid=41), sys.argv[1])\n"
    )
    digests = {}
    for core in ("Haswell", "Prescott"):
        env = {**os.environ, "OPENBLAS_CORETYPE": core, "PYTHONPATH": str(ROOT)}
        out = tmp_path / core
        subprocess.run([sys.executable, "-c", code, str(out)], env=env, check=True, cwd=ROOT)
        digests[core] = {k: hashlib.sha256(v).hexdigest() for k, v in _bytes(out).items()}
    assert set(digests["Haswell"]) == {"BFM.mat", "BFM_UV.mat", "model_info.json"}
    assert digests["Haswell"] == digests["Prescott"]


def test_identity_fields_well_conditioned(fine):
    """Every identity mode is a field of its own: the candidate fields the basis is made from
    are far from dependent (the old basis had a Gram condition number of ~1e20)."""
    _, basis, raw, _ = fine
    f = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    ev = np.linalg.eigvalsh(f @ f.T)
    assert ev[0] > 0 and ev[-1] / ev[0] < 1e3
    # each column has unit norm (after the BFM scale) and is orthogonal to the others
    b = basis.astype(np.float64) / np.sqrt(basis.shape[0] / 3 / fs.BFM_N_VERTICES)
    np.testing.assert_allclose(b.T @ b, np.eye(199), atol=1e-5)
    # semantic modes come first, in order: column i is raw field i made orthogonal to those before
    q, _ = np.linalg.qr(raw[:20].T)
    np.testing.assert_allclose(np.abs((q * b[:, :20]).sum(0)), 1.0, atol=1e-5)


def _roughness(d: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """RMS difference across mesh edges over the RMS value, per mode: d (K, N, 3)."""
    diff = d[:, edges[:, 0]] - d[:, edges[:, 1]]
    return np.sqrt((diff**2).sum(-1).mean(1) / (d**2).sum(-1).mean(1))


def test_identity_modes_smooth(fine):
    uv, basis, _, edges = fine
    d = basis.T.astype(np.float64).reshape(199, -1, 3)
    r = _roughness(d, edges)
    noise = _roughness(np.random.default_rng(0).standard_normal((1, uv.shape[0], 3)), edges)
    assert noise[0] > 1.2  # what a rounding-noise mode looks like: neighbours independent
    assert r.max() < 0.8, (r.argmax(), r.max())
    assert r[:60].max() < 0.7 and np.median(r) < 0.5


def test_gram_schmidt_matches_qr_and_drops_dependent_candidates():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 5, 3))
    q, raw = fs.gram_schmidt(lambda i: a[i], 6, required=6)
    ref, r = np.linalg.qr(a.reshape(6, -1).T)
    np.testing.assert_allclose(q, (ref * np.sign(np.diag(r))).T, atol=1e-12)
    np.testing.assert_array_equal(raw, a.reshape(6, -1))
    # a candidate (nearly) in the span of the kept ones is dropped and the next one taken
    cands = iter([a[0], a[1], a[0] - 2 * a[1] + 1e-9 * a[2], a[3]])
    q2, raw2 = fs.gram_schmidt(lambda i: next(cands), 3, required=2)
    np.testing.assert_array_equal(raw2, a[[0, 1, 3]].reshape(3, -1))
    np.testing.assert_allclose(q2 @ q2.T, np.eye(3), atol=1e-12)
    with pytest.raises(ValueError, match="mode 2"):
        fs.gram_schmidt(lambda i: [a[0], a[1], a[0] + a[1]][i], 3, required=3)


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
    area = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (
        p[:, 1, 1] - p[:, 0, 1]
    )
    assert (area > 0).all() and uv.min() >= 0 and uv.max() <= 1
    assert n_mouth > 0


def test_jaw_contour_lines(model):
    uv, kpt = model.uv, model.kpt_ind
    _, _, mirror, _ = fs.uv_grid(41)
    lines = fs.jaw_contour_lines(uv, kpt)
    assert len(lines) == 17
    for k, line in enumerate(lines):
        assert line[0] == kpt[k]
        assert np.all(uv[line, 1] == uv[kpt[k], 1])  # one horizontal row
        lo, hi = sorted((uv[kpt[k], 0], 1 - uv[kpt[k], 0]))
        expect = np.flatnonzero(
            (uv[:, 1] == uv[kpt[k], 1]) & (uv[:, 0] >= lo - 1e-12) & (uv[:, 0] <= hi + 1e-12)
        )
        assert sorted(line.tolist()) == expect.tolist()  # the whole row between k and its mirror
        assert sorted(mirror[line].tolist()) == sorted(lines[16 - k].tolist())
    assert len(lines[8]) == 1 and all(len(lines[k]) > 5 for k in range(7))


def test_semantic_helpers_public():
    du, v = np.array([0.0, 0.1]), np.array([0.5, 0.5])
    np.testing.assert_allclose(fs.gauss_bump(du, v, 0.0, 0.5, 0.1, 0.1), [1.0, np.exp(-0.5)])
    np.testing.assert_allclose(fs.flat_bump(du, v, 0.0, 0.5, 0.1, 0.1), [1.0, np.exp(-0.5)])
    np.testing.assert_allclose(fs.smoothstep(0.0, 1.0, np.array([-1, 0.5, 2])), [0, 0.5, 1])
    f = fs.uv_frame(np.array([[0.2, 0.5], [0.5, 0.9], [0.8, 0.1]]))
    np.testing.assert_array_equal(f["sgn"], [-1, 0, 1])
    assert f["jaw_out"][1] == 0 and f["jaw_out"][2] > 0


def test_constrain_expression():
    e = np.full(29, -3.0)
    c = fs.constrain_expression(e)
    assert c[fs.EXP_MOUTH_OPEN] == 3.0 and c[fs.EXP_EYE_CLOSE] == -1.0 and e[0] == -3.0
    assert np.array_equal(np.delete(c, [fs.EXP_MOUTH_OPEN, fs.EXP_EYE_CLOSE]), np.full(27, -3.0))
    assert fs.constrain_expression(np.full(29, 9.0))[fs.EXP_EYE_CLOSE] == fs.EYE_CLOSE_FULL
    np.testing.assert_array_equal(fs.constrain_expression(np.array([-1.0])), [-1.0])


def test_params_validation():
    with pytest.raises(ValueError, match="odd"):
        ProceduralParams(grid=40)


@pytest.mark.real
def test_real_parameters_give_a_sane_face(model, real_dir):
    m = sio.loadmat(real_dir / "300wlp" / "IBUG_image_008_1_0.mat")
    x = model.vertices(m["Shape_Para"].ravel(), m["Exp_Para"].ravel())
    flipped = (
        triangle_normals(x, model.triangles) * triangle_normals(model.mean, model.triangles)
    ).sum(1) < 0
    assert flipped.mean() < 0.01
    from densemark.faces.pose import to_image, transform_3ddfa

    kp = to_image(transform_3ddfa(x[model.kpt_ind], m["Pose_Para"].ravel()), 450)
    assert 120 < np.ptp(kp[:, 0]) + np.ptp(kp[:, 1]) < 600
    inner = np.arange(17, 68)  # the contour points of 300W-LP are annotations, not fixed vertices
    assert np.linalg.norm(kp[inner, :2] - m["pt2d"].T[inner], axis=1).mean() < 25
