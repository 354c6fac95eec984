"""The z-buffer renderer against a naive per-pixel reference."""

from __future__ import annotations

import numpy as np
import pytest

from densemark.core.errors import InputError
from densemark.faces.render import lambert, rasterize, render, triangle_normals, vertex_normals


def naive_raster(v: np.ndarray, tri: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel loop: depth (max z wins) and triangle id."""
    depth = np.full((h, w), -np.inf)
    tid = np.full((h, w), -1)
    for t, (a, b, c) in enumerate(tri):
        p0, p1, p2 = v[a], v[b], v[c]
        area = (p1[0] - p0[0]) * (p2[1] - p0[1]) - (p2[0] - p0[0]) * (p1[1] - p0[1])
        if abs(area) < 1e-12:
            continue
        for y in range(h):
            for x in range(w):
                b1 = ((x - p0[0]) * (p2[1] - p0[1]) - (p2[0] - p0[0]) * (y - p0[1])) / area
                b2 = ((p1[0] - p0[0]) * (y - p0[1]) - (x - p0[0]) * (p1[1] - p0[1])) / area
                b0 = 1 - b1 - b2
                if min(b0, b1, b2) < -1e-7:
                    continue
                z = b0 * p0[2] + b1 * p1[2] + b2 * p2[2]
                if z >= depth[y, x]:
                    depth[y, x], tid[y, x] = z, t
    return depth, tid


@pytest.fixture(scope="module")
def soup():
    rng = np.random.default_rng(7)
    v = np.concatenate([rng.uniform(-4, 28, (30, 2)), rng.uniform(0, 10, (30, 1))], 1)
    tri = rng.integers(0, 30, (12, 3))
    return v, tri


def test_rasterize_matches_naive(soup):
    v, tri = soup
    r = rasterize(v, tri, 20, 24)
    depth, tid = naive_raster(v, tri, 20, 24)
    assert np.array_equal(np.isfinite(r.depth), np.isfinite(depth))
    m = np.isfinite(depth)
    np.testing.assert_allclose(r.depth[m], depth[m], atol=1e-9)
    # where depths differ between triangles, the same triangle must win
    same = r.tri_id[m] == tid[m]
    assert same.mean() > 0.97  # exact ties may resolve to either triangle


def test_render_unshaded_interpolates_colors(soup):
    v, tri = soup
    rng = np.random.default_rng(1)
    col = rng.random((v.shape[0], 3))
    img = render(v, tri, col, 20, 24, shade=False)
    depth, tid = naive_raster(v, tri, 20, 24)
    r = rasterize(v, tri, 20, 24)
    ref = np.rint(np.clip(r.interpolate(col, tri), 0, 1) * 255)
    m = tid >= 0
    assert np.array_equal(img[m], ref[m].astype(np.uint8))
    assert (img[~m] == 0).all()


def test_zbuffer_keeps_closest_regardless_of_order():
    far = np.array([[0, 0, 1.0], [20, 0, 1.0], [0, 20, 1.0]])
    near = np.array([[0, 0, 5.0], [20, 0, 5.0], [0, 20, 5.0]])
    v = np.concatenate([far, near])
    col = np.array([[1.0, 0, 0]] * 3 + [[0, 1.0, 0]] * 3)
    for tri in (np.array([[0, 1, 2], [3, 4, 5]]), np.array([[3, 4, 5], [0, 1, 2]])):
        img = render(v, tri, col, 24, 24, shade=False)
        assert tuple(img[5, 5]) == (0, 255, 0)
    # a background shows through outside the mesh
    bg = np.full((24, 24, 3), 7, np.uint8)
    assert tuple(render(v, np.array([[0, 1, 2]]), col, 24, 24, bg, shade=False)[22, 22]) == (
        7,
        7,
        7,
    )


def test_normals_and_lambert():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], np.float64)
    tri = np.array([[0, 1, 2], [1, 3, 2]])
    np.testing.assert_allclose(triangle_normals(v, tri), [[0, 0, 1]] * 2)
    n = vertex_normals(v, tri)
    np.testing.assert_allclose(n, [[0, 0, 1]] * 4)
    alb = np.full((4, 3), 0.5)
    np.testing.assert_allclose(lambert(n, alb, (0, 0, 1), 0.2, 0.8), 0.5)
    np.testing.assert_allclose(
        lambert(n, alb, (0, 0, -1), 0.2, 0.8), 0.1
    )  # light from behind: ambient only
    np.testing.assert_allclose(lambert(-n, alb, (0, 0, 1), 0.2, 0.8), 0.5)  # two-sided


def test_bad_input():
    with pytest.raises(InputError, match="triangles"):
        rasterize(np.zeros((3, 3)), np.array([[0, 1, 3]]), 4, 4)
    with pytest.raises(InputError, match="colors"):
        render(np.zeros((3, 3)), np.array([[0, 1, 2]]), np.zeros((2, 3)), 4, 4)


def test_40k_triangles_cover_their_square():
    """A face-sized grid (2 * 141^2 ~ 40k triangles over a 250 px square) leaves no pixel of the
    square undrawn and draws nothing outside it. Its speed goal is in bench/bench_render.py."""
    k = 142
    u, v = np.meshgrid(np.linspace(0, 1, k), np.linspace(0, 1, k))
    verts = np.stack([100 + 250 * u.ravel(), 100 + 250 * v.ravel(), 30 * np.sin(3 * u.ravel())], 1)
    i = np.arange(k * k).reshape(k, k)
    a, b, c, d = i[:-1, :-1].ravel(), i[:-1, 1:].ravel(), i[1:, :-1].ravel(), i[1:, 1:].ravel()
    tri = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    col = np.full((k * k, 3), 0.5)
    img = render(verts, tri, col, 450, 450)
    drawn = img.sum(2) > 0
    assert drawn.sum() == 251 * 251 and drawn[100:351, 100:351].all()  # pixel centres 100..350
