"""Reference implementations of the face part that the fast paths are tested and benchmarked against.

Deliberately plain: the naive rasterizer loops over triangles and the pixels of each
triangle's bounding box with face3d's ``render_colors`` rule per pixel, in plain Python floats;
:func:`pose_reference` runs face3d's steps one by one for one sample.
"""

from __future__ import annotations

import math

import numpy as np

from densemark.faces.crop import CropTransform, crop_square, crop_transform
from densemark.faces.model import MorphableModel
from densemark.faces.pose import to_image, transform_3ddfa
from densemark.faces.uvmap import UVMap, barycentric_gather


def point_in_tri_weights(
    px: float, py: float, p0, p1, p2
) -> tuple[bool, tuple[float, float, float]]:
    """face3d's ``isPointInTri`` + ``get_point_weight`` for one point, in plain Python floats.

    ``v0 = p2 - p0, v1 = p1 - p0, v2 = p - p0``; ``u`` is the weight of ``p2``, ``v`` the weight
    of ``p1``; inside when ``u >= 0, v >= 0, u + v < 1``. A degenerate triangle (zero
    denominator) covers nothing (face3d would set the inverse to 0; the toolkit skips it).
    """
    v0x, v0y = p2[0] - p0[0], p2[1] - p0[1]
    v1x, v1y = p1[0] - p0[0], p1[1] - p0[1]
    v2x, v2y = px - p0[0], py - p0[1]
    dot00 = v0x * v0x + v0y * v0y
    dot01 = v0x * v1x + v0y * v1y
    dot02 = v0x * v2x + v0y * v2y
    dot11 = v1x * v1x + v1y * v1y
    dot12 = v1x * v2x + v1y * v2y
    deno = dot00 * dot11 - dot01 * dot01
    if deno == 0:
        return False, (0.0, 0.0, 0.0)
    inv = 1.0 / deno
    u = (dot11 * dot02 - dot01 * dot12) * inv
    v = (dot00 * dot12 - dot01 * dot02) * inv
    return (u >= 0 and v >= 0 and u + v < 1), (1.0 - u - v, v, u)


def rasterize_naive(
    uv_px: np.ndarray, triangles: np.ndarray, res: int
) -> dict[int, tuple[int, tuple[float, float, float]]]:
    """Per-triangle loop over the pixels of each triangle's bounding box (face3d's render loop).

    Returns ``{flat pixel (row * res + col): (triangle index, (w0, w1, w2))}``; the first
    triangle (lowest index) that covers a pixel keeps it.
    """
    pts = np.asarray(uv_px, np.float64)
    out: dict[int, tuple[int, tuple[float, float, float]]] = {}
    for t, (i0, i1, i2) in enumerate(np.asarray(triangles).tolist()):
        p0, p1, p2 = (tuple(map(float, pts[i])) for i in (i0, i1, i2))
        x_min = max(math.ceil(min(p0[0], p1[0], p2[0])), 0)
        x_max = min(math.floor(max(p0[0], p1[0], p2[0])), res - 1)
        y_min = max(math.ceil(min(p0[1], p1[1], p2[1])), 0)
        y_max = min(math.floor(max(p0[1], p1[1], p2[1])), res - 1)
        for y in range(y_min, y_max + 1):
            for x in range(x_min, x_max + 1):
                key = y * res + x
                if key in out:
                    continue
                inside, w = point_in_tri_weights(float(x), float(y), p0, p1, p2)
                if inside:
                    out[key] = (t, w)
    return out


def render_naive(
    uv_px: np.ndarray, triangles: np.ndarray, res: int, values: np.ndarray
) -> np.ndarray:
    """(res, res, C) float64 map: barycentric interpolation of per-vertex ``values`` (N, C)."""
    vals = np.asarray(values, np.float64)
    tri = np.asarray(triangles)
    out = np.zeros((res * res, vals.shape[1]))
    for pix, (t, w) in rasterize_naive(uv_px, tri, res).items():
        out[pix] = sum(wj * vals[tri[t, j]] for j, wj in enumerate(w))
    return out.reshape(res, res, -1)


def umeyama(
    src: np.ndarray, dst: np.ndarray, *, allow_reflection: bool = True
) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ~ s * src @ R.T + t`` (Umeyama 1991).

    With ``allow_reflection`` the orthogonal part may have det -1 (no sign correction).
    Returns ``(s, R, t)``.
    """
    x = np.asarray(src, np.float64)
    y = np.asarray(dst, np.float64)
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    cov = yc.T @ xc / len(x)
    u, d, vt = np.linalg.svd(cov)
    e = np.ones(3)
    if not allow_reflection and np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[-1] = -1.0
    r = u @ np.diag(e) @ vt
    s = float((d * e).sum() / (xc**2).sum(1).mean())
    return s, r, my - s * r @ mx


def rx_ry_rz(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """face3d's ``angle2matrix_3ddfa`` written out element by element."""
    cx, sx = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    cz, sz = math.cos(roll), math.sin(roll)
    rx = np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]])
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    rz = np.array([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]])
    return rx @ ry @ rz


def pose_reference(
    model: MorphableModel,
    shape_para,
    exp_para,
    pose_para,
    image_height: int,
    res: int = 256,
    crop_scale: float = 1.5,
) -> tuple[np.ndarray, CropTransform]:
    """One sample the plain way (face3d's steps one by one); the reference :func:`pose_batch` must match.

    Returns:
        (N, 3) float64 crop-space vertices and the crop transform.
    """
    img = to_image(transform_3ddfa(model.vertices(shape_para, exp_para), pose_para), image_height)
    center, side = crop_square(img[model.kpt_ind, :2], crop_scale)
    tf = crop_transform(center, side, res)
    z = tf.scale * img[:, 2]
    tf = CropTransform(tf.scale, tf.tx, tf.ty, float(-z.min()), res)
    return tf.apply(img), tf


def render_gather(uvmap: UVMap, vertices: np.ndarray) -> np.ndarray:
    """Reference for :meth:`UVMap.render` by direct barycentric gathering (slower; same result).

    Args:
        uvmap: the UV map.
        vertices: (N, 3) or (B, N, 3) posed vertices.

    Returns:
        (res, res, 3) or (B, res, res, 3) float32 position maps.
    """
    v = np.asarray(vertices, np.float32)
    single = v.ndim == 2
    v = v[None] if single else v
    r = uvmap.raster
    out = np.zeros((v.shape[0], uvmap.res * uvmap.res, 3), np.float32)
    out[:, r.pixels] = barycentric_gather(v, r.vids, r.bary.astype(np.float32))
    out = out.reshape(v.shape[0], uvmap.res, uvmap.res, 3)
    return out[0] if single else out
