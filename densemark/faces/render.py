"""A vectorised numpy z-buffer renderer for orthographic image-space meshes.

Conventions (face3d's): vertices are in image space with rows already flipped
(``x`` = column, ``y`` = row, both in pixels, pixel centres at integer coordinates) and
**larger z is closer to the camera**, so the z-buffer keeps the maximum depth.

Rasterisation enumerates each triangle's pixel bounding box in buckets of equal (power-of-two)
box size, so the work is proportional to the summed box areas and fully vectorised; fragments are
resolved by one sort on (pixel, depth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from densemark.core.errors import InputError

_EPS = 1e-9


@dataclass(frozen=True)
class Raster:
    """Per-pixel result of :func:`rasterize` (H, W = image size).

    Attributes:
        depth: (H, W) float64 depth of the closest surface, ``-inf`` where nothing is drawn.
        tri_id: (H, W) int64 triangle index drawn at each pixel, -1 where nothing is drawn.
        bary: (H, W, 3) float64 barycentric weights of the triangle's vertices (0 off the mesh).
    """

    depth: np.ndarray
    tri_id: np.ndarray
    bary: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool: pixels covered by the mesh."""
        return self.tri_id >= 0

    def interpolate(self, attr: np.ndarray, triangles: np.ndarray) -> np.ndarray:
        """Interpolate per-vertex attributes (N, C) to (H, W, C) float64 (0 off the mesh)."""
        a = np.asarray(attr, np.float64)
        out = np.zeros((*self.tri_id.shape, a.shape[1]), np.float64)
        m = self.mask
        corners = a[triangles[self.tri_id[m]]]  # (P, 3, C)
        out[m] = np.einsum("pk,pkc->pc", self.bary[m], corners)
        return out


def _check(vertices: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(vertices, np.float64)
    t = np.asarray(triangles)
    if v.ndim != 2 or v.shape[1] != 3:
        raise InputError(None, "vertices", f"expected (N, 3), got {v.shape}")
    if t.ndim != 2 or t.shape[1] != 3 or t.dtype.kind not in "iu":
        raise InputError(None, "triangles", f"expected (T, 3) integers, got {t.shape} {t.dtype}")
    if t.size and (t.min() < 0 or t.max() >= v.shape[0]):
        raise InputError(None, "triangles", f"vertex index out of range [0, {v.shape[0]})")
    return v, t.astype(np.int64, copy=False)


def _pow2(n: np.ndarray) -> np.ndarray:
    """Smallest power of two >= n (n >= 1)."""
    m = np.maximum(np.asarray(n, np.int64), 1) - 1
    e = np.zeros_like(m)
    while np.any(m >> e):  # bit length of n - 1, in integers
        e += (m >> e) > 0
    return (np.int64(1) << e).astype(np.int64)


def rasterize(vertices: np.ndarray, triangles: np.ndarray, height: int, width: int) -> Raster:
    """Z-buffer rasterisation of an image-space mesh.

    A pixel centre on a shared edge belongs to both triangles; the closer one wins (ties:
    the later triangle). Triangles of either winding are drawn (no culling).

    Args:
        vertices: (N, 3) image-space vertices (x = column, y = row, z larger = closer).
        triangles: (T, 3) 0-based vertex indices.
        height, width: image size in pixels.

    Returns:
        A :class:`Raster` of the visible surface.
    """
    v, tri = _check(vertices, triangles)
    h, w = int(height), int(width)
    depth = np.full((h, w), -np.inf)
    tri_id = np.full((h, w), -1, np.int64)
    bary = np.zeros((h, w, 3))
    if tri.shape[0] == 0:
        return Raster(depth, tri_id, bary)
    p = v[tri]  # (T, 3, 3)
    x0, y0 = p[:, 0, 0], p[:, 0, 1]
    e1x, e1y = p[:, 1, 0] - x0, p[:, 1, 1] - y0
    e2x, e2y = p[:, 2, 0] - x0, p[:, 2, 1] - y0
    area = e1x * e2y - e2x * e1y
    xmin = np.maximum(np.ceil(p[..., 0].min(1)), 0)
    xmax = np.minimum(np.floor(p[..., 0].max(1)), w - 1)
    ymin = np.maximum(np.ceil(p[..., 1].min(1)), 0)
    ymax = np.minimum(np.floor(p[..., 1].max(1)), h - 1)
    keep = (np.abs(area) > _EPS) & (xmax >= xmin) & (ymax >= ymin) & np.isfinite(p).all((1, 2))
    ids = np.nonzero(keep)[0]
    if ids.size == 0:
        return Raster(depth, tri_id, bary)
    xmin, ymin = xmin[ids].astype(np.int64), ymin[ids].astype(np.int64)
    bw = xmax[ids].astype(np.int64) - xmin + 1
    bh = ymax[ids].astype(np.int64) - ymin + 1
    bucket = _pow2(bw) * (1 << 20) + _pow2(bh)
    frag_pix, frag_z, frag_tri, frag_b = [], [], [], []
    for key in np.unique(bucket):
        sel = bucket == key
        kw, kh = int(key >> 20), int(key & ((1 << 20) - 1))
        t = ids[sel]
        dx, dy = np.meshgrid(np.arange(kw), np.arange(kh))
        dx, dy = dx.ravel(), dy.ravel()
        # chunk so one bucket never holds more than ~4M candidate pixels
        step = max(1, (1 << 22) // dx.size)
        for s in range(0, t.size, step):
            tt = t[s : s + step]
            ii = np.nonzero(sel)[0][s : s + step]
            inb = (dx[None] < bw[ii, None]) & (dy[None] < bh[ii, None])
            ti, k = np.nonzero(inb)
            px = xmin[ii][ti] + dx[k]
            py = ymin[ii][ti] + dy[k]
            tj = tt[ti]
            qx, qy = px - x0[tj], py - y0[tj]
            a = area[tj]
            b1 = (qx * e2y[tj] - e2x[tj] * qy) / a
            b2 = (e1x[tj] * qy - qx * e1y[tj]) / a
            b0 = 1.0 - b1 - b2
            inside = (b0 >= -1e-7) & (b1 >= -1e-7) & (b2 >= -1e-7)
            if not inside.any():
                continue
            b = np.stack([b0[inside], b1[inside], b2[inside]], 1)
            tj = tj[inside]
            frag_z.append((b * p[tj, :, 2]).sum(1))
            frag_pix.append(py[inside] * w + px[inside])
            frag_tri.append(tj)
            frag_b.append(b)
    if not frag_pix:
        return Raster(depth, tri_id, bary)
    pix = np.concatenate(frag_pix)
    z = np.concatenate(frag_z)
    order = np.lexsort((z, pix))  # by pixel, then depth ascending: the last of each pixel wins
    pix_s = pix[order]
    last = np.ones(pix_s.size, bool)
    last[:-1] = pix_s[1:] != pix_s[:-1]
    win = order[last]
    depth.reshape(-1)[pix[win]] = z[win]
    tri_id.reshape(-1)[pix[win]] = np.concatenate(frag_tri)[win]
    bary.reshape(-1, 3)[pix[win]] = np.concatenate(frag_b)[win]
    return Raster(depth, tri_id, bary)


def triangle_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(T, 3) float64 unit normals ``(v1 - v0) x (v2 - v0)`` (right-hand rule; 0 for degenerate)."""
    v, tri = _check(vertices, triangles)
    p = v[tri]
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(N, 3) float64 unit per-vertex normals: area-weighted sums of the adjacent face normals."""
    v, tri = _check(vertices, triangles)
    p = v[tri]
    fn = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])  # length = 2 * area
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, tri[:, k], fn)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)


def lambert(
    normals: np.ndarray,
    albedo: np.ndarray,
    light_dir: np.ndarray = (0.0, 0.0, 1.0),
    ambient: np.ndarray | float = 0.4,
    diffuse: np.ndarray | float = 0.6,
    two_sided: bool = True,
) -> np.ndarray:
    """Lambertian + ambient shading per vertex: ``albedo * (ambient + diffuse * max(0, n . l))``.

    Args:
        normals: (N, 3) unit normals in the camera frame (x right, y up, z toward the camera).
        albedo: (N, 3) float colours in [0, 1].
        light_dir: (3,) direction *toward* the light, same frame (normalised here).
        ambient, diffuse: scalars or (3,) RGB intensities.
        two_sided: flip normals that face away from the camera (winding-independent shading).

    Returns:
        (N, 3) float64 shaded colours (not clipped).
    """
    n = np.asarray(normals, np.float64)
    if two_sided:
        n = n * np.where(n[:, 2:3] < 0, -1.0, 1.0)
    ld = np.asarray(light_dir, np.float64)
    ld = ld / max(float(np.sqrt(ld[0] * ld[0] + ld[1] * ld[1] + ld[2] * ld[2])), _EPS)
    shade = np.maximum(n[:, 0] * ld[0] + n[:, 1] * ld[1] + n[:, 2] * ld[2], 0.0)[:, None]  # no BLAS
    amb = np.asarray(ambient, np.float64).reshape(1, -1)
    dif = np.asarray(diffuse, np.float64).reshape(1, -1)
    return np.asarray(albedo, np.float64) * (amb + dif * shade)


def render(
    vertices_img: np.ndarray,
    triangles: np.ndarray,
    colors: np.ndarray,
    height: int,
    width: int,
    background: np.ndarray | None = None,
    *,
    light_dir: np.ndarray = (0.0, 0.0, 1.0),
    ambient: np.ndarray | float = 0.4,
    diffuse: np.ndarray | float = 0.6,
    shade: bool = True,
) -> np.ndarray:
    """Render a shaded mesh over a background.

    Args:
        vertices_img: (N, 3) image-space vertices, y already flipped to rows, larger z closer.
        triangles: (T, 3) 0-based vertex indices.
        colors: (N, 3) per-vertex albedo, float in [0, 1] (RGB or BGR: channels pass through).
        height, width: output size.
        background: (H, W, 3) uint8, or None for black.
        light_dir: direction toward the light in the camera frame with y *up*
            (x right, y up, z toward the camera).
        ambient, diffuse: scalar or (3,) intensities of :func:`lambert`.
        shade: False draws the colours unlit (Gouraud interpolation only).

    Returns:
        (H, W, 3) uint8 image.
    """
    return render_with_raster(
        vertices_img, triangles, colors, height, width, background,
        light_dir=light_dir, ambient=ambient, diffuse=diffuse, shade=shade,
    )[0]  # fmt: skip


def render_with_raster(
    vertices_img: np.ndarray,
    triangles: np.ndarray,
    colors: np.ndarray,
    height: int,
    width: int,
    background: np.ndarray | None = None,
    *,
    light_dir: np.ndarray = (0.0, 0.0, 1.0),
    ambient: np.ndarray | float = 0.4,
    diffuse: np.ndarray | float = 0.6,
    shade: bool = True,
) -> tuple[np.ndarray, Raster]:
    """:func:`render`, also returning the :class:`Raster` (depth buffer, triangle ids)."""
    v, tri = _check(vertices_img, triangles)
    col = np.asarray(colors, np.float64)
    if col.shape != (v.shape[0], 3):
        raise InputError(None, "colors", f"expected ({v.shape[0]}, 3), got {col.shape}")
    if background is None:
        out = np.zeros((height, width, 3), np.uint8)
    else:
        out = np.array(background, np.uint8, copy=True)
        if out.shape != (height, width, 3):
            raise InputError(
                None, "background", f"expected ({height}, {width}, 3), got {out.shape}"
            )
    if shade:
        up = v * np.array([1.0, -1.0, 1.0])  # undo the row flip: normals in the y-up camera frame
        col = lambert(vertex_normals(up, tri), col, light_dir, ambient, diffuse)
    r = rasterize(v, tri, height, width)
    m = r.mask
    if m.any():
        corners = col[tri[r.tri_id[m]]]
        rgb = np.einsum("pk,pkc->pc", r.bary[m], corners)
        out[m] = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    return out, r
