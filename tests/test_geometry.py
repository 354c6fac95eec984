"""Batched pose + crop against the one-sample reference, on a self-made model and the real BFM mean."""

from __future__ import annotations

import numpy as np
import pytest

from densemark.core.seeding import rng_for
from densemark.faces.geometry import pose_batch
from densemark.faces.uvmap import UVMap
from densemark.reference.faces import pose_reference
from tests.factories import grid_model


@pytest.fixture(scope="module")
def model():
    return grid_model()


def _poses(b: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ang = rng.uniform(-0.6, 0.6, (b, 3))
    t = np.column_stack(
        [rng.uniform(100, 200, b), rng.uniform(100, 200, b), rng.uniform(-50, 50, b)]
    )
    s = rng.uniform(8e-4, 1.4e-3, (b, 1))
    return np.hstack([ang, t, s])


def test_batch_matches_reference(model):
    b = 5
    rng = np.random.default_rng(2)
    sp, ep, pose = rng.normal(0, 1, (b, 199)), rng.normal(0, 1, (b, 29)), _poses(b)
    geo = pose_batch(model, sp, ep, pose, 300)
    assert geo.vertices.shape == (model.n_vertices, b, 3)
    for i in range(b):
        ref, tf = pose_reference(model, sp[i], ep[i], pose[i], 300)
        span = np.abs(ref).max()
        np.testing.assert_allclose(geo.vertices[:, i], ref, atol=1e-5 * span)
        c = geo.crops[i]
        np.testing.assert_allclose(
            [c.scale, c.tx, c.ty, c.tz], [tf.scale, tf.tx, tf.ty, tf.tz], rtol=1e-6, atol=1e-3
        )
        assert geo.vertices[:, i, 2].min() == pytest.approx(0.0, abs=1e-3)


def test_crop_transform_maps_image_keypoints(model):
    pose = _poses(3)
    geo = pose_batch(model, None, None, pose, 300)
    for i in range(3):
        crop_kpt = geo.crops[i].apply(geo.image_kpt[i])
        np.testing.assert_allclose(crop_kpt, geo.vertices[model.kpt_ind, i], rtol=1e-5, atol=1e-2)
        assert crop_kpt[:, :2].min() >= 0 and crop_kpt[:, :2].max() <= 255


def test_jitter_is_seeded_by_sample_id(model):
    pose = _poses(2)
    kw = dict(jitter=0.1, size_jitter=0.1)
    a = pose_batch(model, None, None, pose, 300, rngs=[rng_for(0, "x"), rng_for(0, "y")], **kw)
    b = pose_batch(model, None, None, pose, 300, rngs=[rng_for(0, "x"), rng_for(0, "y")], **kw)
    c = pose_batch(model, None, None, pose, 300, rngs=[rng_for(1, "x"), rng_for(1, "y")], **kw)
    assert a.crops == b.crops
    assert a.crops[0] != c.crops[0]
    np.testing.assert_array_equal(a.vertices, b.vertices)


def test_render_of_batch_equals_per_sample(model):
    uvm = UVMap.for_model(model, 64)
    geo = pose_batch(model, None, None, _poses(4), 300, res=64)
    maps = uvm.render(geo.vertices, vertex_major=True)
    for i in range(4):
        np.testing.assert_allclose(maps[i], uvm.render(geo.vertices[:, i]), rtol=1e-6, atol=1e-4)


@pytest.mark.real
def test_real_sample_keypoints_land_on_pt2d(real_dir):
    """The BFM mean posed by the real 300W-LP fit lands near the annotated keypoints."""
    from densemark.faces.io import load_bfm_mean_model
    from densemark.sources.readers import read_fit_mat

    m = load_bfm_mean_model(real_dir / "bfm")
    s = read_fit_mat(real_dir / "300wlp" / "IBUG_image_008_1_0.mat", 199, 29)
    geo = pose_batch(
        m, s.shape_para[None], s.exp_para[None], s.pose_para[None], s.load_image().shape[0]
    )
    err = np.linalg.norm(geo.image_kpt[0, :, :2] - s.pt2d.T, axis=1)
    box = np.ptp(s.pt2d, axis=1).mean()
    assert err.mean() < 0.1 * box, (err.mean(), box)


def _naive_sum(first: np.ndarray, basis: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The definition, one entry and one term at a time in Python floats (float64)."""
    out = np.empty(first.shape[0])
    for m in range(first.shape[0]):
        acc = float(first[m])
        for k in range(basis.shape[1]):
            acc += float(basis[m, k]) * float(c[m, k])
        out[m] = acc
    return out


def test_left_to_right_is_the_plain_loop_bit_for_bit():
    """Terms of very different sizes, so any other order or pairing would round differently."""
    from densemark.faces.geometry import left_to_right

    rng = np.random.default_rng(5)
    m, k = 40, 60
    basis = (
        (rng.normal(size=(m, k)) * 10.0 ** rng.integers(-8, 8, (m, k)))
        .astype(np.float32)
        .astype(np.float64)
    )
    c = (
        (rng.normal(size=(m, k)) * 10.0 ** rng.integers(-4, 6, (m, k)))
        .astype(np.float32)
        .astype(np.float64)
    )
    first = rng.normal(size=m) * 1e5
    got = left_to_right(first, basis, c)
    assert got.dtype == np.float64 and got.shape == (m,)
    assert np.array_equal(got, _naive_sum(first, basis, c))
    assert not np.array_equal(
        got, first + (basis * c).sum(1)
    )  # pairwise summation differs: the test can tell
    assert np.array_equal(left_to_right(first, basis[:, :0], c[:, :0]), first)


def test_basis_rows_equal_their_definition_also_through_the_fallback(model, monkeypatch):
    """BasisRows (BLAS + error bound) equals the float32 rounding of the left-to-right sums,
    entry by entry; also when the bound is made so large that every entry is recomputed."""
    from densemark.faces import geometry as G

    rng = np.random.default_rng(8)
    vids = rng.choice(model.n_vertices, 25, replace=False)
    br = G.BasisRows(model, vids)
    b = 6
    coeffs = br.coefficients(
        rng.normal(0, 3e4, (b, model.n_shape)), rng.normal(0, 1, (b, model.n_exp)), b
    )
    c64 = coeffs.astype(np.float64)
    want = np.stack(
        [_naive_sum(br.mean, br.basis, np.broadcast_to(c64[j], br.basis.shape)) for j in range(b)],
        1,
    ).astype(np.float32)
    assert np.array_equal(br(coeffs), want)
    monkeypatch.setattr(G, "_U64", 1.0)  # every entry unsettled: all through reference()
    assert np.array_equal(br(coeffs), want)
