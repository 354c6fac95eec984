"""UV rasterization and position maps: the vectorised rasterizer against a naive per-triangle
loop, the four ways of producing a position map, the raster cache, and the real BFM claims."""

from __future__ import annotations

import numpy as np
import pytest

import densemark.faces.uvmap as uvmap_mod
from densemark.core.errors import InputError
from densemark.faces.io import load_bfm_mean_model, model_from_mean
from densemark.faces.model import MorphableModel
from densemark.faces.template import grid_triangles
from densemark.faces.uvmap import UVMap, derive_template, rasterize_uv, uv_to_pixels
from densemark.reference.faces import rasterize_naive, render_gather, render_naive, umeyama

# --- small meshes ------------------------------------------------------------------------------


def grid_mesh(
    n: int, lo: float, hi: float, jitter: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """An n x n vertex grid over [lo, hi]^2 in pixel space, jittered, with 2 triangles per cell."""
    g = np.linspace(lo, hi, n)
    x, y = np.meshgrid(g, g)
    pts = np.stack([x.ravel(), y.ravel()], 1)
    pts = pts + rng.uniform(-jitter, jitter, pts.shape) * (g[1] - g[0])
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = (
        idx[:-1, :-1].ravel(),
        idx[:-1, 1:].ravel(),
        idx[1:, :-1].ravel(),
        idx[1:, 1:].ravel(),
    )
    tri = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return pts, tri[rng.permutation(len(tri))]


def soup_mesh(n_tri: int, res: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random, overlapping triangles, some reaching outside the map, some with both windings."""
    centres = rng.uniform(-3, res + 3, (n_tri, 1, 2))
    pts = (centres + rng.normal(0, 4, (n_tri, 3, 2))).reshape(-1, 2)
    return pts, np.arange(3 * n_tri).reshape(n_tri, 3)


def assert_matches_naive(uv_px: np.ndarray, tri: np.ndarray, res: int) -> int:
    """The fast raster equals the naive one: same pixels, same triangle, same weights."""
    fast = rasterize_uv(uv_px, tri, res)
    ref = rasterize_naive(uv_px, tri, res)
    want_pix = np.array(sorted(ref), np.int64)
    assert np.array_equal(fast.pixels, want_pix), (
        f"pixel sets differ: {len(set(fast.pixels.tolist()) ^ set(ref))} pixels in only one of them"
    )
    want_tri = np.array([ref[p][0] for p in want_pix.tolist()], np.int64)
    want_w = np.array([ref[p][1] for p in want_pix.tolist()], np.float64).reshape(-1, 3)
    assert np.array_equal(fast.tri, want_tri), (
        "a shared pixel went to a triangle other than the first"
    )
    assert np.array_equal(fast.vids, np.asarray(tri)[want_tri])
    np.testing.assert_allclose(fast.bary, want_w, rtol=0, atol=1e-9)
    return len(want_pix)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rasterizer_matches_naive_on_jittered_grid(seed):
    rng = np.random.default_rng(seed)
    pts, tri = grid_mesh(9, -0.7, 31.6, 0.3, rng)
    covered = assert_matches_naive(pts, tri, 32)
    assert covered > 0.9 * 32 * 32  # the grid spans the map: nearly every pixel is covered


def test_rasterizer_matches_naive_on_integer_grid_with_ties():
    # Vertices on integer pixel centres: many pixels lie exactly on shared edges and vertices,
    # so the inclusive/exclusive edge rule and "first triangle wins" decide them.
    rng = np.random.default_rng(3)
    pts, tri = grid_mesh(9, 0, 32, 0.0, rng)
    pts = np.round(pts)
    assert_matches_naive(pts, tri, 32)
    assert_matches_naive(pts, tri[::-1], 32)


@pytest.mark.parametrize("seed", [4, 5])
def test_rasterizer_matches_naive_on_overlapping_soup(seed):
    rng = np.random.default_rng(seed)
    pts, tri = soup_mesh(120, 32, rng)
    assert_matches_naive(pts, tri, 32)


def test_rasterizer_first_triangle_wins():
    # two triangles sharing the edge x = 5; the rule includes that edge in both (it is the
    # edge where the weight of the other vertex is 0), so the first triangle must keep it
    pts = np.array([[5, 2], [15, 2], [5, 12], [0, 2]], float)
    t_a, t_b = [0, 1, 2], [0, 3, 2]

    def on_edge(r):
        return (r.pixels % 16) == 5

    for order in ([t_a, t_b], [t_b, t_a]):
        r = rasterize_uv(pts, np.array(order), 16)
        assert on_edge(r).sum() >= 9
        assert (r.tri[on_edge(r)] == 0).all()
        assert set(r.tri.tolist()) == {0, 1}
    # the same triangle twice: the second one gets nothing
    r = rasterize_uv(pts, np.array([t_a, t_a]), 16)
    assert (r.tri == 0).all() and len(r.pixels) > 40


def test_rasterizer_degenerate_and_outside_triangles_cover_nothing():
    pts = np.array(
        [[1, 1], [5, 5], [9, 9], [-20, -20], [-10, -20], [-20, -10], [40, 40], [50, 40], [40, 50]],
        float,
    )
    r = rasterize_uv(pts, np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 0, 1]]), 16)
    assert r.pixels.size == 0 and r.bary.shape == (0, 3)


def test_rasterizer_clips_to_the_map():
    pts = np.array([[-10, -10], [50, -10], [-10, 50]], float)
    r = rasterize_uv(pts, np.array([[0, 1, 2]]), 16)
    assert r.pixels.min() >= 0 and r.pixels.max() < 16 * 16
    # every pixel of the 16x16 map has x + y < 40: all are inside the big triangle
    assert len(r.pixels) == 16 * 16


def test_raster_weights_are_barycentric():
    rng = np.random.default_rng(6)
    pts, tri = grid_mesh(7, 0.2, 30.8, 0.25, rng)
    r = rasterize_uv(pts, tri, 32)
    np.testing.assert_allclose(r.bary.sum(1), 1, atol=1e-12)
    assert (r.bary >= -1e-12).all()
    # the weights reproduce the pixel's own coordinates
    xy = np.stack([r.pixels % 32, r.pixels // 32], 1)
    np.testing.assert_allclose(np.einsum("pk,pkd->pd", r.bary, pts[r.vids]), xy, atol=1e-9)


def test_uv_to_pixels_convention():
    px = uv_to_pixels(np.array([[0, 0], [1, 1], [0.5, 0.25]]), 256)
    np.testing.assert_allclose(px, [[0, 255], [255, 0], [127.5, 255 - 63.75]])


# --- position maps -----------------------------------------------------------------------------


def small_model(seed: int = 7, n: int = 9) -> MorphableModel:
    rng = np.random.default_rng(seed)
    pts, tri = grid_mesh(n, 0.0, 31.0, 0.3, rng)
    uv = np.clip(np.stack([pts[:, 0] / 31.0, 1 - pts[:, 1] / 31.0], 1), 0, 1)
    mean = rng.normal(0, 50, (n * n, 3)).astype(np.float32) + np.array([0, 0, 1000], np.float32)
    return model_from_mean(mean, tri, np.arange(68) % (n * n), uv, name="small")


@pytest.fixture(scope="module")
def small():
    m = small_model()
    return m, UVMap.for_model(m, res=32)


def test_render_matches_naive_render(small):
    m, uvm = small
    got = uvm.render(m.mean)
    want = render_naive(uv_to_pixels(m.uv, 32), m.triangles, 32, m.mean.astype(np.float64))
    assert got.shape == (32, 32, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())
    assert np.array_equal(np.any(got != 0, -1), uvm.coverage)


def test_position_maps_agree_across_paths(small):
    m, uvm = small
    rng = np.random.default_rng(8)
    b = 7
    batch = (m.mean[None] + rng.normal(0, 20, (b, m.n_vertices, 3))).astype(np.float32)
    ref = render_gather(uvm, batch)
    tol = dict(rtol=0, atol=1e-6 * float(np.abs(batch).max()))
    for chunk in (1, 3, 8):
        np.testing.assert_allclose(uvm.render(batch, chunk=chunk), ref, **tol)
    vm = np.ascontiguousarray(batch.transpose(1, 0, 2))
    np.testing.assert_allclose(uvm.render(vm, chunk=3, vertex_major=True), ref, **tol)
    mat = np.stack([uvm.matrix @ v for v in batch]).reshape(b, 32, 32, 3)
    np.testing.assert_allclose(mat, ref, **tol)
    # single sample == batch row; sample() == the map at the covered pixels
    np.testing.assert_allclose(uvm.render(batch[2]), ref[2], **tol)
    np.testing.assert_allclose(render_gather(uvm, batch[2]), ref[2], **tol)
    np.testing.assert_allclose(uvm.sample(batch), ref.reshape(b, -1, 3)[:, uvm.pixels], **tol)
    some = uvm.pixels[::5]
    np.testing.assert_allclose(uvm.sample(batch, some), ref.reshape(b, -1, 3)[:, some], **tol)
    # off the face the map is zero
    assert (ref[:, ~uvm.coverage] == 0).all()


def test_render_writes_into_out_buffer(small):
    m, uvm = small
    batch = np.stack([m.mean, m.mean * 2])
    out = np.full((2, 32, 32, 3), np.nan, np.float32)
    got = uvm.render(batch, out=out)
    assert got is out and np.isfinite(out).all()
    np.testing.assert_allclose(out[1], 2 * out[0], rtol=1e-6)
    with pytest.raises(InputError):
        uvm.render(batch, out=np.zeros((2, 32, 32, 3), np.float64))
    with pytest.raises(InputError):
        uvm.render(batch, out=np.zeros((3, 32, 32, 3), np.float32))


def test_render_vertex_major_checks_out_buffer(small):
    # same contract as the sample-major path: a wrong buffer is bad input, not a numpy error
    m, uvm = small
    vm = np.stack([m.mean, m.mean], 1)  # (N, 2, 3)
    out = np.zeros((2, 32, 32, 3), np.float32)
    assert uvm.render(vm, vertex_major=True, out=out) is out
    np.testing.assert_allclose(out[0], uvm.render(m.mean), rtol=1e-6)
    for bad in (np.zeros((2, 32, 32, 3), np.float64), np.zeros((3, 32, 32, 3), np.float32)):
        with pytest.raises(InputError, match="out"):
            uvm.render(vm, vertex_major=True, out=bad)


def test_render_rejects_wrong_vertex_shapes(small):
    m, uvm = small
    with pytest.raises(InputError, match="vertices"):
        uvm.render(m.mean[:-1])
    with pytest.raises(InputError, match="vertices"):
        uvm.render(m.mean[:, :2])
    with pytest.raises(InputError, match="vertices"):
        uvm.render(m.mean[None, :-1].transpose(1, 0, 2), vertex_major=True)


def test_matrix_rows_are_partitions_of_unity(small):
    _, uvm = small
    s = np.asarray(uvm.matrix.sum(1)).ravel()
    np.testing.assert_allclose(s[uvm.pixels], 1, atol=1e-6)
    assert (s[np.setdiff1d(np.arange(32 * 32), uvm.pixels)] == 0).all()


def test_rows_reject_uncovered_pixels(small):
    m, uvm = small
    off = np.setdiff1d(np.arange(32 * 32), uvm.pixels)
    assert off.size  # the jittered grid leaves a few border pixels uncovered
    with pytest.raises(InputError, match="pixels"):
        uvm.rows(off[:1])
    with pytest.raises(InputError, match="pixels"):
        uvm.sample(m.mean, np.concatenate([uvm.pixels[:3], off[:1]]))


@pytest.mark.parametrize("bad", [-1, -32 * 32, 32 * 32, 10**6])
def test_rows_reject_pixels_outside_the_map(bad):
    # On a map covered edge to edge, a negative index must not wrap around to the end of the
    # map, and a large one must not escape as an IndexError: both are bad input.
    pts = np.array([[-1, -1], [33, -1], [-1, 33], [33, 33]], float)
    uv = np.stack([pts[:, 0] / 31, 1 - pts[:, 1] / 31], 1)
    raster = rasterize_uv(uv_to_pixels(uv, 32), np.array([[0, 1, 2], [1, 3, 2]]), 32)
    uvm = UVMap(raster)
    assert uvm.coverage.all()
    with pytest.raises(InputError, match="pixels"):
        uvm.rows(np.array([5, bad]))


def test_for_model_needs_uv(small):
    m, _ = small
    with pytest.raises(InputError, match="uv"):
        UVMap.for_model(model_from_mean(m.mean, m.triangles, m.kpt_ind, None))


# --- cache -------------------------------------------------------------------------------------


def _same_raster(a, b):
    for f in ("pixels", "vids", "bary", "tri"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and np.array_equal(x, y), f
    assert (a.res, a.n_vertices) == (b.res, b.n_vertices)


def test_cache_writes_one_file_and_reloads_it(tmp_path, monkeypatch):
    m = small_model()
    first = UVMap.for_model(m, res=32, cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and m.fingerprint() in files[0].name

    def boom(*a, **k):
        raise AssertionError("rasterized again instead of loading the cache")

    monkeypatch.setattr(uvmap_mod, "rasterize_uv", boom)
    second = UVMap.for_model(m, res=32, cache_dir=tmp_path)
    _same_raster(first.raster, second.raster)
    assert list(tmp_path.iterdir()) == files
    np.testing.assert_array_equal(second.render(m.mean), first.render(m.mean))


def test_cache_is_keyed_by_model_and_res(tmp_path):
    m = small_model()
    UVMap.for_model(m, res=32, cache_dir=tmp_path)
    uv2 = m.uv.copy()
    uv2[0] = [0.5, 0.5]
    m2 = m.with_uv(uv2)
    m3 = model_from_mean(m.mean, m.triangles[:-1], m.kpt_ind, m.uv)
    assert len({m.fingerprint(), m2.fingerprint(), m3.fingerprint()}) == 3
    r2 = UVMap.for_model(m2, res=32, cache_dir=tmp_path)
    UVMap.for_model(m3, res=32, cache_dir=tmp_path)
    UVMap.for_model(m, res=24, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 4
    # the changed model got its own raster, not the first one's
    _same_raster(r2.raster, rasterize_uv(uv_to_pixels(uv2, 32), m.triangles, 32, m.n_vertices))


def test_fingerprint_is_stable_and_content_based():
    a, b = small_model(), small_model()
    assert a is not b and a.fingerprint() == b.fingerprint()
    mean = a.mean.copy()
    mean[3, 1] += 1e-3
    assert model_from_mean(mean, a.triangles, a.kpt_ind, a.uv).fingerprint() != a.fingerprint()


def test_corrupt_cache_file_is_not_trusted(tmp_path):
    m = small_model()
    good = UVMap.for_model(m, res=32)
    path = tmp_path / f"uvraster-{m.fingerprint()}-32.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    try:
        got = UVMap.for_model(m, res=32, cache_dir=tmp_path)
    except InputError as exc:  # acceptable: a clear error naming the cache file
        assert path.name in str(exc)
    else:  # or: rebuilt
        _same_raster(got.raster, good.raster)


# --- real BFM mean -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bfm(real_dir):
    model = load_bfm_mean_model(real_dir / "bfm")
    return model, UVMap.for_model(model)


@pytest.mark.real
@pytest.mark.parametrize("part", [slice(0, 3000), slice(52000, 55000), slice(-3000, None)])
def test_rasterizer_matches_naive_on_real_bfm_slices(bfm, part):
    model, _ = bfm
    uv_px = uv_to_pixels(model.uv, 256)
    tri = model.triangles[part]
    assert assert_matches_naive(uv_px, tri, 256) > 300


@pytest.mark.real
def test_real_bfm_mean_covers_every_face_pixel(bfm, real_template):
    _, uvm = bfm
    assert np.isin(real_template.face_ind, uvm.pixels).all()
    assert uvm.coverage.ravel()[real_template.face_ind].all()
    # the mesh covers more than the face mask (ears, neck), but not the whole map
    assert real_template.n_vertices < len(uvm.pixels) < 256 * 256
    # tri_mouth (the last 114 triangles) is part of the rendering: it wins some face pixels
    mouth = uvm.raster.tri >= 105840
    assert mouth.sum() > 50 and np.isin(uvm.pixels[mouth], real_template.face_ind).any()


@pytest.mark.real
def test_real_render_paths_agree(bfm):
    model, uvm = bfm
    rng = np.random.default_rng(9)
    batch = (model.mean[None] + rng.normal(0, 1000, (3, model.n_vertices, 3))).astype(np.float32)
    ref = render_gather(uvm, batch)
    tol = dict(rtol=0, atol=2e-6 * float(np.abs(batch).max()))
    np.testing.assert_allclose(uvm.render(batch, chunk=2), ref, **tol)
    np.testing.assert_allclose(
        uvm.render(np.ascontiguousarray(batch.transpose(1, 0, 2)), vertex_major=True), ref, **tol
    )
    np.testing.assert_allclose((uvm.matrix @ batch[1]).reshape(256, 256, 3), ref[1], **tol)


@pytest.mark.real
def test_real_template_is_the_bfm_mean_up_to_a_reflected_similarity(bfm, real_template):
    model, uvm = bfm
    x = uvm.sample(model.mean, real_template.face_ind).astype(np.float64)
    y = real_template.vertices
    s, r, t = umeyama(x, y, allow_reflection=True)
    res = np.linalg.norm(s * x @ r.T + t - y, axis=1)
    width = np.ptp(y[:, 0])
    assert 200 < width < 225  # "a face 212 units wide"
    assert np.linalg.det(r) < 0, (
        "PRNet's canonical frame has y flipped: the best fit must be a reflection"
    )
    assert s > 0
    assert res.mean() <= 0.5, f"mean residual {res.mean():.3f}"
    assert res.max() <= 5.0, f"max residual {res.max():.3f}"
    # a proper rotation alone cannot do it
    s2, r2, t2 = umeyama(x, y, allow_reflection=False)
    assert np.linalg.det(r2) > 0
    assert np.linalg.norm(s2 * x @ r2.T + t2 - y, axis=1).mean() > 10 * res.mean()


@pytest.mark.real
def test_real_uv_keypoints_land_on_model_keypoints(bfm, real_template):
    model, uvm = bfm
    pos = uvm.render(model.mean)
    u, v = real_template.uv_kpt_ind
    at_kpt = pos[v, u]
    dist = np.linalg.norm(at_kpt - model.mean[model.kpt_ind], axis=1)
    nbr = np.stack([pos[v, u + 1], pos[v, u - 1], pos[v + 1, u], pos[v - 1, u]])
    spacing = np.linalg.norm(nbr - at_kpt[None], axis=2).mean(0)
    assert (spacing > 0).all()
    ratio = dist / spacing
    assert ratio.max() < 2.0, f"keypoint {ratio.argmax()} is {ratio.max():.2f} UV spacings away"
    assert ratio.mean() < 1.0


@pytest.mark.real
def test_derive_template_reproduces_prnet_template(bfm, real_template):
    model, uvm = bfm
    mask = np.zeros(256 * 256, bool)
    mask[real_template.face_ind] = True
    t = derive_template(model, uvm, mask.reshape(256, 256))
    assert np.array_equal(t.face_ind, real_template.face_ind)
    # measured: every one of the 68 keypoints lands on PRNet's uv_kpt_ind pixel exactly
    diff = np.abs(t.uv_kpt_ind - real_template.uv_kpt_ind).max(0)
    assert diff.max() <= 1
    assert (diff == 0).sum() >= 66
    np.testing.assert_allclose(
        t.vertices, uvm.sample(model.mean, real_template.face_ind), rtol=0, atol=1e-3
    )
    assert np.array_equal(t.triangles, grid_triangles(real_template.face_ind))
    # without a mask: every covered pixel
    full = derive_template(model, uvm)
    assert np.array_equal(full.face_ind, uvm.pixels)
