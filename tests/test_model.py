"""MorphableModel: instances (batched and not), coefficient padding, validation, fingerprint."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from densemark.core.errors import InputError
from densemark.faces.model import MorphableModel

ROOT = Path(__file__).resolve().parents[1]


def make(n=12, s=199, e=29, seed=0, **over) -> MorphableModel:
    rng = np.random.default_rng(seed)
    kw = dict(
        mean=rng.normal(0, 100, (n, 3)).astype(np.float32),
        shape_basis=rng.normal(0, 1, (3 * n, s)).astype(np.float32),
        exp_basis=rng.normal(0, 1, (3 * n, e)).astype(np.float32),
        triangles=rng.integers(0, n, (8, 3)),
        kpt_ind=rng.integers(0, n, 68),
        uv=rng.random((n, 2)),
        shape_ev=np.ones(s, np.float32),
        exp_ev=np.ones(e, np.float32),
        name="m",
    )
    kw.update(over)
    return MorphableModel(**kw)


def face3d_vertices(m: MorphableModel, sp, ep) -> np.ndarray:
    """face3d's generate_vertices in float64: mean + PC @ coeffs, xyz interleaved, reshaped (N, 3)."""
    flat = m.mean.astype(np.float64).reshape(-1, 1)
    flat = flat + m.shape_basis.astype(np.float64) @ np.asarray(sp, np.float64).reshape(-1, 1)
    flat = flat + m.exp_basis.astype(np.float64) @ np.asarray(ep, np.float64).reshape(-1, 1)
    return flat.reshape(-1, 3)


def test_vertices_unbatched_matches_face3d():
    m = make()
    rng = np.random.default_rng(1)
    sp, ep = rng.normal(0, 10, 199), rng.normal(0, 1, 29)
    v = m.vertices(sp, ep)
    assert v.shape == (12, 3) and v.dtype == np.float32
    want = face3d_vertices(m, sp, ep)
    np.testing.assert_allclose(v, want, rtol=0, atol=1e-5 * np.abs(want).max())
    # a unit coefficient moves vertex i by basis rows 3i..3i+2 (interleaved layout, not planar)
    one = np.zeros(199)
    one[4] = 1.0
    d = m.vertices(one) - m.mean
    np.testing.assert_allclose(d[7], m.shape_basis[21:24, 4], rtol=0, atol=1e-4)
    np.testing.assert_allclose(d, m.shape_basis[:, 4].reshape(12, 3), rtol=0, atol=1e-4)


def test_vertices_defaults_and_padding():
    m = make()
    assert np.array_equal(m.vertices(), m.mean)
    sp = np.random.default_rng(2).normal(size=40)
    full = np.zeros(199)
    full[:40] = sp
    np.testing.assert_allclose(m.vertices(sp), m.vertices(full), rtol=1e-6)
    np.testing.assert_allclose(m.vertices(None, np.zeros(29)), m.mean)


def test_vertices_batched_equals_loop():
    m = make()
    rng = np.random.default_rng(3)
    sp, ep = rng.normal(0, 10, (5, 199)), rng.normal(0, 1, (5, 29))
    out = m.vertices(sp, ep)
    assert out.shape == (5, 12, 3) and out.dtype == np.float32
    for i in range(5):
        np.testing.assert_allclose(out[i], m.vertices(sp[i], ep[i]), rtol=1e-5, atol=1e-3)
    # a batch of one stays batched; a 1-D partner broadcasts over the batch
    assert m.vertices(sp[:1], ep[0]).shape == (1, 12, 3)
    b = m.vertices(sp, ep[0])
    for i in range(5):
        np.testing.assert_allclose(b[i], m.vertices(sp[i], ep[0]), rtol=1e-5, atol=1e-3)
    assert m.vertices(None, ep).shape == (5, 12, 3)


def test_vertices_rejects_bad_coefficients():
    m = make()
    with pytest.raises(InputError, match="shape_para"):
        m.vertices(np.zeros(200))
    with pytest.raises(InputError, match="exp_para"):
        m.vertices(None, np.zeros((2, 30)))
    with pytest.raises(InputError, match="batch"):
        m.vertices(np.zeros((3, 199)), np.zeros((2, 29)))


def test_basis_free_model_ignores_nothing_silently():
    m = make(s=0, e=0, shape_ev=np.zeros(0, np.float32), exp_ev=np.zeros(0, np.float32))
    assert np.array_equal(m.vertices(), m.mean)
    with pytest.raises(InputError):
        m.vertices(np.ones(3))  # coefficients for a basis that is not there


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"mean": np.zeros((12, 2), np.float32)}, "mean"),
        ({"shape_basis": np.zeros((35, 199), np.float32)}, "shape_basis"),
        ({"exp_basis": np.zeros((36,), np.float32)}, "exp_basis"),
        ({"triangles": np.zeros((8, 4), np.int64)}, "triangles"),
        ({"triangles": np.full((8, 3), 12)}, "triangles"),
        ({"triangles": np.full((8, 3), -1)}, "triangles"),
        ({"kpt_ind": np.zeros(67, np.int64)}, "kpt_ind"),
        ({"kpt_ind": np.full(68, 12)}, "kpt_ind"),
        ({"kpt_ind": np.full(68, -1)}, "kpt_ind"),
        ({"uv": np.zeros((11, 2))}, "uv"),
    ],
)
def test_validation(over, field):
    with pytest.raises(InputError) as ei:
        make(**over)
    assert ei.value.field == field and ei.value.path == "m"


def test_with_uv_and_counts():
    m = make(uv=None)
    assert m.uv is None and m.n_vertices == 12 and m.n_shape == 199 and m.n_exp == 29
    uv = np.random.default_rng(4).random((12, 2)).astype(np.float32)
    m2 = m.with_uv(uv)
    assert m2.uv.dtype == np.float64 and np.array_equal(m2.uv, uv.astype(np.float64))
    assert m2.mean is m.mean and m2.name == m.name and m.uv is None
    with pytest.raises(InputError, match="uv"):
        m.with_uv(uv[:5])


def test_fingerprint():
    a, b = make(), make()
    fp = a.fingerprint()
    assert isinstance(fp, str) and re.fullmatch(r"[0-9a-f]{16}", fp), fp
    assert fp == b.fingerprint()
    # memory layout is not content; one ulp of one coordinate is
    fortran = MorphableModel(
        np.asfortranarray(a.mean),
        a.shape_basis,
        a.exp_basis,
        np.asfortranarray(a.triangles),
        a.kpt_ind,
        a.uv,
        name="m",
    )
    assert not a.mean.flags["F_CONTIGUOUS"] and fortran.fingerprint() == fp
    mean = a.mean.copy()
    mean[3, 1] = np.nextafter(mean[3, 1], np.float32(np.inf))
    assert (
        MorphableModel(
            mean, a.shape_basis, a.exp_basis, a.triangles, a.kpt_ind, a.uv, name="m"
        ).fingerprint()
        != fp
    )
    # no per-process salt: another interpreter gives the same value
    code = "from tests.test_model import make; print(make().fingerprint())"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == fp
    assert make(seed=1).fingerprint() != fp
    tri = a.triangles.copy()
    tri[0] = tri[0][::-1]
    changed = [
        MorphableModel(
            a.mean + 1, a.shape_basis, a.exp_basis, a.triangles, a.kpt_ind, a.uv, name="m"
        ),
        MorphableModel(a.mean, a.shape_basis, a.exp_basis, tri, a.kpt_ind, a.uv, name="m"),
        MorphableModel(
            a.mean, a.shape_basis, a.exp_basis, a.triangles, np.roll(a.kpt_ind, 1), a.uv, name="m"
        ),
        a.with_uv(a.uv[::-1]),
        make(uv=None),
        MorphableModel(
            a.mean, a.shape_basis[:, :100], a.exp_basis, a.triangles, a.kpt_ind, a.uv, name="m"
        ),
    ]
    fps = {m.fingerprint() for m in changed}
    assert fp not in fps and len(fps) == len(changed)
    # the label is not geometry
    assert (
        MorphableModel(
            a.mean, a.shape_basis, a.exp_basis, a.triangles, a.kpt_ind, a.uv, name="other"
        ).fingerprint()
        == fp
    )


def test_configured_model_through_the_array_cache(tmp_path):
    """load_configured_model with a cache_dir gives the arrays read_model_dir gives, bit for bit
    (dtype, memory order); a rewritten model file is read again; a corrupt copy is rebuilt."""
    import os

    from densemark.faces import procedural as fs
    from densemark.faces.params import ModelParams
    from densemark.faces.procedural.params import ProceduralParams
    from densemark.faces.procedural.writer import read_model_dir
    from densemark.faces.stages import load_configured_model

    d, cache = tmp_path / "model", tmp_path / "cache"
    fs.write_model(ProceduralParams(grid=41, n_shape=6, n_exp=3), d)
    mp = ModelParams(source="embedded", dir=d, cache_dir=cache, uv_res=64)
    ref = read_model_dir(d)

    def same(m):
        assert (m.name, m.generator) == (ref.name, ref.generator) and m.generator
        for k in (
            "mean",
            "shape_basis",
            "exp_basis",
            "triangles",
            "kpt_ind",
            "uv",
            "shape_ev",
            "exp_ev",
        ):
            a, b = getattr(m, k), getattr(ref, k)
            assert (
                a.dtype == b.dtype
                and a.flags["F_CONTIGUOUS"] == b.flags["F_CONTIGUOUS"]
                and np.array_equal(a, b)
            ), k

    same(load_configured_model(mp))  # written
    (copy,) = cache.glob("model-*.npz")
    same(load_configured_model(mp))  # read from the copy
    copy.write_bytes(b"not a zip")
    same(load_configured_model(mp))  # corrupt copy: rebuilt
    assert np.load(copy)["mean"].shape == ref.mean.shape
    # the model rewritten (another grid): the copy's key changes, the new arrays are read
    fs.write_model(ProceduralParams(grid=31, n_shape=6, n_exp=3), d)
    os.utime(d / "BFM.mat", ns=(1, 1))
    m2 = load_configured_model(mp)
    assert m2.n_vertices == read_model_dir(d).n_vertices != ref.n_vertices
    assert len(list(cache.glob("model-*.npz"))) == 2
