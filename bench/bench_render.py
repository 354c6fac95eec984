"""Image renderer (``faces.render``): the vectorised z-buffer against a plain per-triangle loop
over each triangle's bounding box, in one process, on one core.

    python bench/bench_render.py [--grid 142] [--size 450] [--repeats 5]

The scene is a regular UV grid of 2 * (grid - 1)^2 triangles (about 40k with the default,
the size of a face mesh) spread over a 251 px square of a ``size`` x ``size`` image, with a
wavy depth so the z-test matters. Prints ms per image for the shaded render (the goal: under
1 s for a 450 x 450 image of a 40k-triangle face, what the synthetic sources draw per sample),
for the rasterization alone, and for the baseline loop, with the speed-up against the baseline
and the fraction of pixels where both draw the same triangle.
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from densemark.faces.render import rasterize, render  # noqa: E402

GOAL_S = 1.0  # seconds for one shaded 450 x 450 image of a ~40k-triangle face


def grid_scene(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(k*k, 3) image-space vertices, (2 (k-1)^2, 3) triangles, (k*k, 3) grey albedo."""
    u, v = np.meshgrid(np.linspace(0, 1, k), np.linspace(0, 1, k))
    verts = np.stack([100 + 250 * u.ravel(), 100 + 250 * v.ravel(), 30 * np.sin(3 * u.ravel())], 1)
    i = np.arange(k * k).reshape(k, k)
    a, b, c, d = i[:-1, :-1].ravel(), i[:-1, 1:].ravel(), i[1:, :-1].ravel(), i[1:, 1:].ravel()
    tri = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return verts, tri, np.full((k * k, 3), 0.5)


def rasterize_per_triangle(v: np.ndarray, tri: np.ndarray, h: int, w: int) -> np.ndarray:
    """Baseline: (h, w) int64 triangle ids (-1 off the mesh); one triangle at a time, numpy over
    the pixels of its bounding box, the same inside test and z rule (closer wins, ties: later)."""
    depth = np.full((h, w), -np.inf)
    tid = np.full((h, w), -1, np.int64)
    for t, (i0, i1, i2) in enumerate(tri.tolist()):
        p0, p1, p2 = v[i0], v[i1], v[i2]
        e1, e2 = p1 - p0, p2 - p0
        area = e1[0] * e2[1] - e2[0] * e1[1]
        if abs(area) <= 1e-9:
            continue
        x0 = max(math.ceil(min(p0[0], p1[0], p2[0])), 0)
        x1 = min(math.floor(max(p0[0], p1[0], p2[0])), w - 1)
        y0 = max(math.ceil(min(p0[1], p1[1], p2[1])), 0)
        y1 = min(math.floor(max(p0[1], p1[1], p2[1])), h - 1)
        if x1 < x0 or y1 < y0:
            continue
        ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
        qx, qy = xs - p0[0], ys - p0[1]
        b1 = (qx * e2[1] - e2[0] * qy) / area
        b2 = (e1[0] * qy - qx * e1[1]) / area
        b0 = 1.0 - b1 - b2
        z = b0 * p0[2] + b1 * p1[2] + b2 * p2[2]
        win = (b0 >= -1e-7) & (b1 >= -1e-7) & (b2 >= -1e-7) & (z >= depth[y0 : y1 + 1, x0 : x1 + 1])
        depth[ys[win], xs[win]] = z[win]
        tid[ys[win], xs[win]] = t
    return tid


def _best(f, repeats: int) -> float:
    f()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=142)
    ap.add_argument("--size", type=int, default=450)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    verts, tri, col = grid_scene(args.grid)
    n = args.size
    print(f"scene: {len(verts)} vertices, {len(tri)} triangles, {n} x {n} image")

    t0 = time.perf_counter()
    base_tid = rasterize_per_triangle(verts, tri, n, n)
    t_base = time.perf_counter() - t0
    t_render = _best(lambda: render(verts, tri, col, n, n), args.repeats)
    t_raster = _best(lambda: rasterize(verts, tri, n, n), args.repeats)
    fast_tid = rasterize(verts, tri, n, n).tri_id
    covered = fast_tid >= 0
    same = float((fast_tid[covered] == base_tid[covered]).mean())

    print(f"{'path':48s} {'ms/image':>10s} {'speed-up':>10s}")
    for name, t in (("per-triangle loop (baseline), rasterize only", t_base),
                    ("rasterize (vectorised z-buffer)", t_raster),
                    ("render (rasterize + Lambert shading)", t_render)):  # fmt: skip
        print(f"{name:48s} {t * 1e3:10.1f} {t_base / t:9.1f}x")
    print(
        f"covered pixels: fast {int(covered.sum())}, baseline {int((base_tid >= 0).sum())}; same triangle: {same:.4f}"
    )
    verdict = "meets" if t_render < GOAL_S else "MISSES"
    print(
        f"goal: render under {GOAL_S:.1f} s -> {t_render:.3f} s, {verdict} it ({t_render / GOAL_S:.2f} of the budget)"
    )


if __name__ == "__main__":
    main()
