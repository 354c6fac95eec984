"""Small naive reference implementations that the fast paths are tested and benchmarked against.

Deliberately plain: one Python loop over triangles, face3d's ``render_colors`` rule per pixel.
"""

from __future__ import annotations

import numpy as np


def naive_render_uv(uv_px: np.ndarray, triangles: np.ndarray, values: np.ndarray, res: int) -> tuple[np.ndarray, np.ndarray]:
    """Rasterize triangles laid out at ``uv_px`` and interpolate per-vertex ``values``.

    Args:
        uv_px: (N, 2) float pixel coordinates (x = column, y = row).
        triangles: (T, 3) int vertex ids.
        values: (N, C) per-vertex values (positions for a position map).
        res: map side.

    Returns:
        ((res, res, C) float64 map, (res, res) int64 covering triangle or -1). First triangle
        wins where triangles share a pixel; inside means barycentrics ``b >= 0, c >= 0, b + c < 1``.
    """
    out = np.zeros((res, res, values.shape[1]))
    owner = np.full((res, res), -1, np.int64)
    for t, (i, j, k) in enumerate(np.asarray(triangles)):
        a, b, c = uv_px[i], uv_px[j], uv_px[k]
        x0, x1 = max(int(np.ceil(min(a[0], b[0], c[0]))), 0), min(int(np.floor(max(a[0], b[0], c[0]))), res - 1)
        y0, y1 = max(int(np.ceil(min(a[1], b[1], c[1]))), 0), min(int(np.floor(max(a[1], b[1], c[1]))), res - 1)
        v0, v1 = c - a, b - a
        # explicit products (no BLAS dot, whose fused multiply-adds round differently)
        d00 = v0[0] * v0[0] + v0[1] * v0[1]
        d01 = v0[0] * v1[0] + v0[1] * v1[1]
        d11 = v1[0] * v1[0] + v1[1] * v1[1]
        deno = d00 * d11 - d01 * d01
        if deno == 0:
            continue
        inv = 1.0 / deno
        for y in range(y0, y1 + 1):
            for x in range(x0, x1 + 1):
                if owner[y, x] >= 0:
                    continue
                v2x, v2y = x - a[0], y - a[1]
                d02 = v0[0] * v2x + v0[1] * v2y
                d12 = v1[0] * v2x + v1[1] * v2y
                wc = (d11 * d02 - d01 * d12) * inv
                wb = (d00 * d12 - d01 * d02) * inv
                if wc >= 0 and wb >= 0 and wb + wc < 1:
                    owner[y, x] = t
                    out[y, x] = (1 - wb - wc) * values[i] + wb * values[j] + wc * values[k]
    return out, owner
