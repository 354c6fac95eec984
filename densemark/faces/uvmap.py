"""UV position maps (PRNet convention) as a sparse product computed once per model.

The UV rasterization does not depend on the sample: every face pixel of the ``res x res`` UV
map is covered by one model triangle, with fixed barycentric weights. :func:`rasterize_uv`
finds them once (vectorised over triangles); :class:`UVMap` then turns any batch of posed
vertices into position maps, or into values at a few pixels (landmarks), by array arithmetic.

Conventions follow face3d's ``process_uv`` and ``render_colors``: vertex UV ``(u, v)`` in
[0, 1] maps to pixel ``x = u (res - 1)``, ``y = res - 1 - v (res - 1)``; pixel centres are at
integer coordinates; a pixel is inside a triangle when its barycentric coordinates satisfy
``b >= 0, c >= 0, b + c < 1``; where triangles share a pixel the first triangle wins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from densemark.core.errors import InputError
from densemark.core.matio import load_npz_cache, save_npz_cache
from densemark.faces.model import MorphableModel
from densemark.faces.template import FaceTemplate, grid_triangles

_XYZ = np.dtype((np.void, 12))  # one float32 (x, y, z) triple


def uv_to_pixels(uv: np.ndarray, res: int) -> np.ndarray:
    """(N, 2) UV in [0, 1] -> (N, 2) float64 pixel coordinates (x = column, y = row)."""
    uv = np.asarray(uv, np.float64)
    return np.stack([uv[:, 0] * (res - 1), (res - 1) - uv[:, 1] * (res - 1)], 1)


def _barycentric(
    p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """face3d's barycentrics of points p (..., 2) in triangles (a, b, c): returns (w_a, w_b, w_c, deno)."""
    v0, v1, v2 = c - a, b - a, p - a

    def dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return x[..., 0] * y[..., 0] + x[..., 1] * y[..., 1]

    d00, d01, d02, d11, d12 = dot(v0, v0), dot(v0, v1), dot(v0, v2), dot(v1, v1), dot(v1, v2)
    deno = d00 * d11 - d01 * d01
    inv = np.divide(1.0, deno, out=np.zeros_like(deno), where=deno != 0)
    wc = (d11 * d02 - d01 * d12) * inv
    wb = (d00 * d12 - d01 * d02) * inv
    return 1.0 - wb - wc, wb, wc, deno


@dataclass(frozen=True, eq=False)
class UVRaster:
    """The covered pixels of a UV rasterization.

    Attributes:
        res: map side in pixels.
        n_vertices: N, the model's vertex count.
        pixels: (P,) int64 flat pixel index ``row * res + col``, increasing.
        vids: (P, 3) int64 vertex ids of the covering triangle.
        bary: (P, 3) float64 barycentric weights (rows sum to 1).
        tri: (P,) int64 the covering triangle's index.
    """

    res: int
    n_vertices: int
    pixels: np.ndarray
    vids: np.ndarray
    bary: np.ndarray
    tri: np.ndarray


def rasterize_uv(
    uv_px: np.ndarray, triangles: np.ndarray, res: int, n_vertices: int | None = None
) -> UVRaster:
    """Rasterize a mesh laid out in UV pixel space, vectorised over triangles.

    Args:
        uv_px: (N, 2) float pixel coordinates of the vertices (see :func:`uv_to_pixels`).
        triangles: (T, 3) int vertex ids.
        res: map side.

    Returns:
        The :class:`UVRaster` of every covered pixel (first triangle wins on shared pixels).
    """
    uv_px = np.asarray(uv_px, np.float64)
    tri = np.asarray(triangles, np.int64)
    pts = uv_px[tri]  # (T, 3, 2)
    lo = np.maximum(np.ceil(pts.min(1)), 0).astype(np.int64)
    hi = np.minimum(np.floor(pts.max(1)), res - 1).astype(np.int64)
    w = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0)
    h = np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    nb = w * h
    total = int(nb.sum())
    t_idx = np.repeat(np.arange(len(tri)), nb)
    k = np.arange(total) - np.repeat(np.cumsum(nb) - nb, nb)
    wr = w[t_idx]
    x = lo[t_idx, 0] + k % wr
    y = lo[t_idx, 1] + k // wr
    p = np.stack([x, y], 1).astype(np.float64)
    a, b, c = pts[t_idx, 0], pts[t_idx, 1], pts[t_idx, 2]
    wa, wb, wc, deno = _barycentric(p, a, b, c)
    inside = (wc >= 0) & (wb >= 0) & (wb + wc < 1) & (deno != 0)
    pix = (y * res + x)[inside]
    t_in = t_idx[inside]
    order = np.lexsort((t_in, pix))  # by pixel, then triangle index
    pix, t_in = pix[order], t_in[order]
    first = np.ones(len(pix), bool)
    first[1:] = pix[1:] != pix[:-1]
    sel = np.flatnonzero(inside)[order][first]
    bary = np.stack([wa[sel], wb[sel], wc[sel]], 1)
    return UVRaster(
        res=res,
        n_vertices=int(n_vertices if n_vertices is not None else uv_px.shape[0]),
        pixels=pix[first],
        vids=tri[t_in[first]],
        bary=bary,
        tri=t_in[first],
    )


class UVMap:
    """Position maps from posed vertices through a fixed :class:`UVRaster` (for a model:
    ``UVMap.for_model(model, res, cache_dir)``): :meth:`render` gives whole maps, :meth:`sample`
    the values at chosen pixels without building them.

    Two triangles over an 8 x 8 map, each vertex placed at its own UV pixel (x, y, 0): the map
    at (row, col) is (col, row, 0).

    >>> import numpy as np
    >>> px = uv_to_pixels(np.array([[-0.1, -0.1], [1.1, -0.1], [-0.1, 1.1], [1.1, 1.1]]), 8)
    >>> uvm = UVMap(rasterize_uv(px, np.array([[0, 1, 2], [1, 3, 2]]), 8, 4))
    >>> vertices = np.c_[px, np.zeros(4)]               # (N, 3)
    >>> pos = uvm.render(vertices)                      # (res, res, 3) float32, zero off the face
    >>> pos.shape, pos.dtype, pos[2, 5].round(3).tolist()
    ((8, 8, 3), dtype('float32'), [5.0, 2.0, 0.0])
    >>> batch = np.stack([vertices, vertices + 1])      # (B, N, 3)
    >>> uvm.render(batch).shape                         # (B, res, res, 3)
    (2, 8, 8, 3)
    >>> uvm.sample(batch, np.array([2 * 8 + 5])).round(3).tolist()  # (B, K, 3) at flat pixels
    [[[5.0, 2.0, 0.0]], [[6.0, 3.0, 1.0]]]
    """

    def __init__(self, raster: UVRaster):
        self.raster = raster
        self.res = raster.res
        self._row_of_pixel = np.full(self.res * self.res, -1, np.int64)
        self._row_of_pixel[raster.pixels] = np.arange(len(raster.pixels))

    @classmethod
    def for_model(
        cls, model: MorphableModel, res: int = 256, cache_dir: str | os.PathLike | None = None
    ) -> UVMap:
        """The UV map of ``model`` (which must carry UV), loaded from / saved to ``cache_dir`` by content hash."""
        if model.uv is None:
            raise InputError(
                model.name, "uv", "the model has no UV coordinates (load a BFM_UV.mat)"
            )
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / f"uvraster-{model.fingerprint()}-{res}.npz"
            if path.is_file():
                cached = _load_raster(path)
                if (
                    cached is not None
                    and cached.res == res
                    and cached.n_vertices == model.n_vertices
                ):
                    return cls(cached)  # a corrupt or mismatched cache file is rebuilt below
        raster = rasterize_uv(uv_to_pixels(model.uv, res), model.triangles, res, model.n_vertices)
        if path is not None:
            _save_raster(raster, path)
        return cls(raster)

    @property
    def pixels(self) -> np.ndarray:
        """(P,) int64 covered flat pixel indices."""
        return self.raster.pixels

    @cached_property
    def coverage(self) -> np.ndarray:
        """(res, res) bool mask of covered pixels."""
        m = np.zeros(self.res * self.res, bool)
        m[self.raster.pixels] = True
        return m.reshape(self.res, self.res)

    def rows(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vertex ids and weights of the given flat pixels: ((K, 3) int64, (K, 3) float32).

        Raises:
            InputError: a pixel is not covered by the mesh.
        """
        p = np.asarray(pixels, np.int64)
        if p.size and (p.min() < 0 or p.max() >= self.res * self.res):
            raise InputError(
                None,
                "pixels",
                f"flat pixel index outside [0, {self.res * self.res}): min {p.min()}, max {p.max()}",
            )
        r = self._row_of_pixel[p]
        if (r < 0).any():
            bad = np.asarray(pixels)[r < 0]
            raise InputError(
                None,
                "pixels",
                f"{len(bad)} pixel(s) not covered by the UV mesh, e.g. {bad[:5].tolist()}",
            )
        return self.raster.vids[r], self.raster.bary[r].astype(np.float32)

    def sample(self, vertices: np.ndarray, pixels: np.ndarray | None = None) -> np.ndarray:
        """Position-map values at flat pixels without building the map.

        Args:
            vertices: (N, 3) or (B, N, 3) posed vertices.
            pixels: (K,) flat pixel indices (default: every covered pixel).

        Returns:
            (K, 3) or (B, K, 3) float32.
        """
        if pixels is None:
            vids, w = self.raster.vids, self.raster.bary.astype(np.float32)
        else:
            vids, w = self.rows(pixels)
        return barycentric_gather(vertices, vids, w)

    def render(
        self,
        vertices: np.ndarray,
        chunk: int = 8,
        out: np.ndarray | None = None,
        vertex_major: bool = False,
    ) -> np.ndarray:
        """Position maps: (N, 3) -> (res, res, 3) or (B, N, 3) -> (B, res, res, 3) float32; zero off the face.

        One sparse product ``matrix @ (N, 3 * chunk)`` per ``chunk`` samples: small chunks keep
        the operands in cache (8 to 16 is fastest on a desktop core; see ``bench/``).
        With ``vertex_major=True`` the input is (N, B, 3), the layout the product wants, which
        :func:`densemark.faces.geometry.pose_batch` produces directly: no input transpose.
        """
        v = np.asarray(vertices, np.float32)
        n = self.raster.n_vertices
        # xyz triples move as 12-byte items: numpy transposes those far faster than float triples
        if vertex_major:
            if v.ndim != 3 or v.shape[0] != n or v.shape[2] != 3:
                raise InputError(
                    None, "vertices", f"expected vertex-major ({n}, B, 3), got {v.shape}"
                )
            src = np.ascontiguousarray(v).view(_XYZ).reshape(n, v.shape[1])
            return self._render_chunks(src, chunk, out)
        single = v.ndim == 2
        v = v[None] if single else v
        if v.ndim != 3 or v.shape[1:] != (n, 3):
            raise InputError(None, "vertices", f"expected (B, {n}, 3), got {np.shape(vertices)}")
        src = np.ascontiguousarray(v).view(_XYZ).reshape(v.shape[0], n).T  # (N, B) view
        out = self._render_chunks(src, chunk, out)
        return out[0] if single else out

    def _render_chunks(self, src: np.ndarray, chunk: int, out: np.ndarray | None) -> np.ndarray:
        """Maps of ``src: (N, B)`` xyz items, ``chunk`` samples per sparse product: (B, res, res, 3)."""
        n, b = src.shape
        hw = self.res * self.res
        out = self._out_buffer(out, b)
        vout = out.view(_XYZ).reshape(b, hw)
        m = self.matrix
        for i in range(0, b, chunk):
            k = min(chunk, b - i)
            rhs = np.ascontiguousarray(src[:, i : i + k]).view(np.float32).reshape(n, 3 * k)
            vout[i : i + k] = (m @ rhs).view(_XYZ).reshape(hw, k).T
        return out

    def _out_buffer(self, out: np.ndarray | None, b: int) -> np.ndarray:
        if out is None:
            return np.empty((b, self.res, self.res, 3), np.float32)
        if (
            out.shape != (b, self.res, self.res, 3)
            or out.dtype != np.float32
            or not out.flags.c_contiguous
        ):
            raise InputError(
                None,
                "out",
                f"expected a C-contiguous ({b}, {self.res}, {self.res}, 3) float32 buffer",
            )
        return out

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """(res*res, N) float32 CSR: ``posmap.reshape(-1, 3) == matrix @ vertices``."""
        r = self.raster
        rows = np.repeat(r.pixels, 3)
        return sp.csr_matrix(
            (r.bary.astype(np.float32).ravel(), (rows, r.vids.ravel())),
            shape=(self.res * self.res, r.n_vertices),
        )


def barycentric_gather(vertices: np.ndarray, vids: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Interpolate: ``sum_j w[k, j] * vertices[..., vids[k, j], :]``.

    Args:
        vertices: (N, 3) or (B, N, 3).
        vids: (K, 3) int64.
        w: (K, 3) float32.

    Returns:
        (K, 3) or (B, K, 3) float32.
    """
    v = np.asarray(vertices, np.float32)
    out = v[..., vids[:, 0], :] * w[:, 0:1]
    out += v[..., vids[:, 1], :] * w[:, 1:2]
    out += v[..., vids[:, 2], :] * w[:, 2:3]
    return out


def _save_raster(r: UVRaster, path: Path) -> None:
    save_npz_cache(
        path,
        dict(
            res=r.res, n_vertices=r.n_vertices, pixels=r.pixels, vids=r.vids, bary=r.bary, tri=r.tri
        ),
    )


def _load_raster(path: Path) -> UVRaster | None:
    """A cached raster, or None when the file is unreadable (then the caller rebuilds it)."""
    z = load_npz_cache(path)
    try:
        return (
            None
            if z is None
            else UVRaster(
                int(z["res"]), int(z["n_vertices"]), z["pixels"], z["vids"], z["bary"], z["tri"]
            )
        )
    except (KeyError, TypeError, ValueError):
        return None


def derive_template(
    model: MorphableModel, uvmap: UVMap, mask: np.ndarray | None = None
) -> FaceTemplate:
    """The face template of a model: its covered UV pixels (optionally within ``mask``).

    Template vertices are the mean shape read at those pixels (model units); keypoints are the
    UV pixels of the model's 68 keypoint vertices; triangles are the UV-grid triangulation.
    """
    res = uvmap.res
    cov = uvmap.coverage.ravel()
    if mask is not None:
        cov = cov & np.asarray(mask, bool).ravel()
    face_ind = np.flatnonzero(cov).astype(np.int64)
    verts = uvmap.sample(model.mean, face_ind).astype(np.float64)
    kpt = np.rint(uv_to_pixels(model.uv[model.kpt_ind], res)).astype(np.int64).T
    return FaceTemplate(
        face_ind=face_ind,
        uv_kpt_ind=kpt,
        vertices=verts,
        triangles=grid_triangles(face_ind, res),
        res=res,
    )
