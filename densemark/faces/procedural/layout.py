"""UV layout of the procedural face: the UV grid mesh, where the features and keypoints sit,
the mirror map, and the UV primitives (bumps, ramps, the surface frame) the other modules
shape their fields with.

``u`` runs across the face (the subject's right side is ``u < 0.5``), ``v`` grows upward as in
``BFM_UV.mat`` (the chin is near ``v = 0.24``, the brows near ``v = 0.84``). Feature positions
are given as ``(du, v)`` with ``du = |u - 0.5|``, so every feature is mirror-symmetric.
"""

from __future__ import annotations

import numpy as np

from densemark.core import detmath
from densemark.faces.model import KPT68_MIRROR, MorphableModel

# --- base surface (micrometres): the layout's map from UV to space, shared with the mesh ---
K_THETA = 3.0  # theta = K * (u - 0.5): +-86 degrees at the UV edge
A_X, B_Z, Z_C = 82000.0, 118000.0, -10000.0  # x = A sin(theta), z = Zc + B cos(theta)
Y_SCALE, V_0 = 225000.0, 0.63  # y = Y_SCALE * (v - V_0)
# jaw contour: superellipse in UV, |du / JAW_RU|^3 + |dv / JAW_RV|^3 = 1 below JAW_C
JAW_C, JAW_RU, JAW_RV = 0.64, 0.445, 0.395

# --- feature layout in UV (du = |u - 0.5|) ---
EYE_C = (0.145, 0.747)  # eye centre (du, v)
EYE_HALF_W, EYE_UP, EYE_LO = 0.048, 0.020, 0.014  # almond half width, upper / lower lid heights
MOUTH_V, MOUTH_DU = 0.457, 0.075  # mouth line height and half width (corners)
LIP_UP_V, LIP_LO_V = 0.470, 0.443  # inner lip lines: the mouth band between them opens
NOSTRIL = (0.021, 0.562)
EAR = (0.485, 0.56)

# The 68 iBUG keypoints (u, v) for the subject's right half and the midline; the left half
# mirrors them (u -> 1 - u). Jaw 0-8 are computed on the jaw contour.
_KPT_RIGHT: dict[int, tuple[float, float]] = {
    17: (0.230, 0.808), 18: (0.280, 0.838), 19: (0.332, 0.848), 20: (0.380, 0.846), 21: (0.418, 0.836),
    27: (0.5, 0.772), 28: (0.5, 0.717), 29: (0.5, 0.665), 30: (0.5, 0.625),
    31: (0.460, 0.566), 32: (0.479, 0.557), 33: (0.5, 0.550),
    36: (0.307, 0.739), 37: (0.339, 0.764), 38: (0.372, 0.764), 39: (0.401, 0.746), 40: (0.372, 0.734),
    41: (0.339, 0.733),
    48: (0.425, 0.452), 49: (0.455, 0.485), 50: (0.485, 0.500), 51: (0.5, 0.497),
    57: (0.5, 0.410), 58: (0.481, 0.413), 59: (0.458, 0.424),
    60: (0.432, 0.457), 61: (0.477, 0.471), 62: (0.5, 0.472), 66: (0.5, 0.442), 67: (0.477, 0.443),
}  # fmt: skip
KPT_MIRROR = KPT68_MIRROR  # the 68-point scheme's left/right pairs
N_JAW = 17  # keypoints 0-16 trace the jaw (0-7 on the subject's right, 8 the chin, 9-16 the left)

# AFLW's 21 points (image-left first): brows 6, eyes 6, ears/nose 5, mouth 3, chin 1.
AFLW21_NAMES = (
    "brow_r_outer", "brow_r_centre", "brow_r_inner", "brow_l_inner", "brow_l_centre", "brow_l_outer",
    "eye_r_outer", "eye_r_centre", "eye_r_inner", "eye_l_inner", "eye_l_centre", "eye_l_outer",
    "ear_r", "nose_wing_r", "nose_centre", "nose_wing_l", "ear_l",
    "mouth_r", "mouth_centre", "mouth_l", "chin",
)  # fmt: skip


# ----------------------------------------------------------------------------- UV primitives


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """Cubic ramp ``3t^2 - 2t^3`` of ``t = clip((x - e0) / (e1 - e0), 0, 1)``: 0 at ``e0``, 1 at
    ``e1`` (``e1 < e0`` gives a falling ramp). ``x``: any shape, float64; returns the same shape."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def gauss_bump(
    du: np.ndarray, v: np.ndarray, cu: float, cv: float, su: float, sv: float
) -> np.ndarray:
    """Anisotropic Gaussian bump in UV, 1 at ``(cu, cv)`` with widths ``(su, sv)``.

    Args:
        du, v: (N,) float64 ``|u - 0.5|`` and ``v`` (so the bump is mirrored on both sides).

    Returns:
        (N,) float64 in (0, 1].
    """
    return detmath.exp(-0.5 * (((du - cu) / su) ** 2 + ((v - cv) / sv) ** 2))


def flat_bump(
    du: np.ndarray, v: np.ndarray, cu: float, cv: float, su: float, sv: float, p: float = 4.0
) -> np.ndarray:
    """Flat-topped (super-Gaussian, exponent ``p``) bump in UV; arguments as :func:`gauss_bump`.

    Returns:
        (N,) float64 in (0, 1].
    """
    pw = (
        (lambda a: detmath.powi(a, int(p)))
        if float(p).is_integer() and p >= 1
        else (lambda a: detmath.power(a, p))
    )
    return detmath.exp(-0.5 * (pw(np.abs((du - cu) / su)) + pw(np.abs((v - cv) / sv))))


def uv_frame(uv: np.ndarray) -> dict[str, np.ndarray]:
    """Per-vertex quantities every field of the face is written in.

    Args:
        uv: (N, 2) float64 UV coordinates.

    Returns:
        (N,) float64 arrays: ``u``, ``v``; ``du = |u - 0.5|``; ``sgn`` (-1 on the subject's
        right, +1 on the left, 0 on the midline); ``theta`` (the head-section angle of ``u``);
        ``jaw_out`` (0 inside the jaw contour, growing beyond it where the surface folds back
        toward the neck).
    """
    u, v = uv[:, 0], uv[:, 1]
    du = np.abs(u - 0.5)
    sgn = np.where(u < 0.5, -1.0, np.where(u > 0.5, 1.0, 0.0))
    theta = K_THETA * (u - 0.5)
    dv = np.minimum(v - JAW_C, 0.0)
    rj = detmath.cbrt(detmath.powi(du / JAW_RU, 3) + detmath.powi(np.abs(dv) / JAW_RV, 3))
    jaw_out = np.maximum(rj - 1.0, 0.0) * smoothstep(JAW_C, JAW_C - 0.08, v)
    return {"u": u, "v": v, "du": du, "sgn": sgn, "theta": theta, "jaw_out": jaw_out}


# ----------------------------------------------------------------------------- mesh topology


def uv_grid(grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The mesh topology: UV grid points inside the face region.

    Args:
        grid: points per UV side (odd, so the midline ``u = 0.5`` is a grid column).

    Returns:
        uv: (N, 2) float64 vertex UV coordinates;
        triangles: (T, 3) int64, counter-clockwise in UV (front-facing, normals toward +z),
            the mouth-band triangles last;
        mirror: (N,) int64 vertex id of each vertex's mirror image (``u -> 1 - u``);
        n_mouth: how many of the last triangles fill the mouth band (face3d's ``tri_mouth``).
    """
    if grid % 2 == 0 or grid < 3:
        raise ValueError(f"grid must be odd and >= 3, got {grid}")
    t = np.linspace(0.0, 1.0, grid)
    uu, vv = np.meshgrid(t, t)  # [j, i]: row j = v, column i = u
    inside = detmath.powi(np.abs(2 * uu - 1), 3) + detmath.powi(np.abs(2 * vv - 1), 3) <= 1.0 + 1e-9
    c = inside[:-1, :-1] & inside[:-1, 1:] & inside[1:, :-1] & inside[1:, 1:]
    used = np.zeros_like(inside)
    used[:-1, :-1] |= c
    used[:-1, 1:] |= c
    used[1:, :-1] |= c
    used[1:, 1:] |= c
    vid = np.full(inside.shape, -1, np.int64)
    vid[used] = np.arange(int(used.sum()))
    jj, ii = np.nonzero(c)
    a, b = vid[jj, ii], vid[jj, ii + 1]
    d, e = vid[jj + 1, ii + 1], vid[jj + 1, ii]
    # diagonal mirrored across the midline so the triangulation is symmetric too
    left = ii < (grid - 1) // 2
    t1 = np.where(left[:, None], np.stack([a, b, d], 1), np.stack([a, b, e], 1))
    t2 = np.where(left[:, None], np.stack([a, d, e], 1), np.stack([b, d, e], 1))
    tri = np.concatenate([t1, t2])
    uv = _smooth_boundary(np.stack([uu[used], vv[used]], 1), np.concatenate([t1, t2]))
    jv, iv = np.nonzero(used)
    mirror = vid[jv, grid - 1 - iv]
    # mouth band last
    cu = uv[tri].mean(1)
    mouth = (np.abs(cu[:, 0] - 0.5) < MOUTH_DU) & (cu[:, 1] > LIP_LO_V) & (cu[:, 1] < LIP_UP_V)
    tri = np.concatenate([tri[~mouth], tri[mouth]])
    return uv, tri.astype(np.int64), mirror.astype(np.int64), int(mouth.sum())


def _smooth_boundary(uv: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Move boundary vertices radially onto the face-region curve (no staircase silhouette),
    keeping every triangle's UV orientation (moves that would flip one are undone)."""
    count = np.bincount(tri.ravel(), minlength=uv.shape[0])
    edge = count < 6  # interior grid vertices have 6 triangles
    a = 2 * uv - 1
    r = detmath.cbrt(detmath.powi(np.abs(a[:, 0]), 3) + detmath.powi(np.abs(a[:, 1]), 3))
    moved = uv.copy()
    moved[edge] = (a[edge] / np.maximum(r[edge, None], 1e-12) + 1) / 2
    moved = np.clip(moved, 0.0, 1.0)
    for _ in range(3):
        p = moved[tri]
        area = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (
            p[:, 1, 1] - p[:, 0, 1]
        )
        bad = area <= 1e-4 / (count.size)
        if not bad.any():
            break
        v = np.unique(tri[bad])
        moved[v] = uv[v]
    return moved


# ----------------------------------------------------------------------------- keypoints


def jaw_uv(n: int = 9) -> np.ndarray:
    """(n, 2) float64 UV points on the subject's right jaw contour, evenly spaced in arc length
    from the side (``v = 0.62``) to the chin bottom (``u = 0.5``)."""
    phi = np.linspace(np.pi + 0.015, 1.5 * np.pi, 2000)
    s, c = detmath.sincos(phi)
    u = 0.5 - JAW_RU * detmath.power(np.abs(c), 2 / 3)
    v = JAW_C - JAW_RV * detmath.power(np.abs(s), 2 / 3)
    seg = detmath.hypot(
        np.diff(u * A_X * K_THETA), np.diff(v * Y_SCALE)
    )  # arc length in model units
    arc = np.concatenate([[0], np.cumsum(seg)])
    k = np.searchsorted(arc, np.linspace(0, arc[-1], n)).clip(0, arc.size - 1)
    pts = np.stack([u[k], v[k]], 1)
    pts[-1] = (0.5, v[-1])
    return pts


def kpt_uv() -> np.ndarray:
    """(68, 2) float64 UV targets of the 68 keypoints (mirror-exact: left = 1 - u of right)."""
    out = np.full((68, 2), np.nan)
    out[:9] = jaw_uv(9)
    for k, uv in _KPT_RIGHT.items():
        out[k] = uv
    for k in range(68):
        m = KPT_MIRROR[k]
        if np.isnan(out[k, 0]) and not np.isnan(out[m, 0]):
            out[k] = (1.0 - out[m, 0], out[m, 1])
    return out


def aflw21_uv() -> np.ndarray:
    """(21, 2) float64 UV targets of AFLW's 21 points, in AFLW order (:data:`AFLW21_NAMES`)."""
    k = kpt_uv()
    eye = (0.5 - EYE_C[0], EYE_C[1])
    ear = (0.5 - EAR[0], EAR[1])
    wing = (0.452, 0.572)
    pts = [k[17], k[19], k[21], k[22], k[24], k[26], k[36], eye, k[39], k[42], (1 - eye[0], eye[1]), k[45],
           ear, wing, (0.5, 0.585), (1 - wing[0], wing[1]), (1 - ear[0], ear[1]),
           k[48], (0.5, MOUTH_V), k[54], k[8]]  # fmt: skip
    return np.array(pts, np.float64)


def snap_to_vertices(uv: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(K,) int64 ids of the vertices nearest in UV to (K, 2) targets.

    On a symmetric grid, mirrored targets snap to mirrored vertices (ties broken toward the
    midline on both sides).
    """
    t = np.asarray(targets, np.float64)
    t = t + np.where(t[:, :1] < 0.5, 1e-9, -1e-9) * np.array([1.0, 0.0])  # break ties symmetrically
    d = ((uv[None, :, :] - t[:, None, :]) ** 2).sum(-1)
    return d.argmin(1).astype(np.int64)


def aflw21_ids(model: MorphableModel) -> np.ndarray:
    """(21,) int64 vertex ids of AFLW's 21 points on a model with UV (nearest vertex in UV)."""
    if model.uv is None:
        raise ValueError("the model has no UV coordinates")
    return snap_to_vertices(model.uv, aflw21_uv())


def jaw_contour_lines(uv: np.ndarray, kpt_ind: np.ndarray) -> list[np.ndarray]:
    """The 17 jaw-contour lines (3DDFA's ``face_contour`` parallels) of a UV-grid face.

    Line ``k`` runs horizontally across the face along the grid row of jaw keypoint ``k``
    (same ``v``), from the keypoint over the cheek and the midline to its mirror point. At a
    yaw that turns keypoint ``k``'s side away, the line's vertex with the extreme image x on
    that side is the visible outline point (300W-LP's contour convention for ``pt2d``); the
    line crosses the midline so that beyond a profile the outline found is the near side's.

    Args:
        uv: (N, 2) float64 vertex UV of a :func:`uv_grid` mesh (rows of equal ``v``).
        kpt_ind: (68,) int64 keypoint vertex ids.

    Returns:
        17 (L_k,) int64 vertex ids, starting with ``kpt_ind[k]`` and ordered across the face
        (the chin's line is the chin vertex alone: the jaw contour's lowest row).
    """
    lines = []
    for k in range(N_JAW):
        kv = int(kpt_ind[k])
        u0, v0 = uv[kv]
        lo, hi = min(u0, 1.0 - u0), max(u0, 1.0 - u0)
        ids = np.flatnonzero((uv[:, 1] == v0) & (uv[:, 0] >= lo - 1e-12) & (uv[:, 0] <= hi + 1e-12))
        order = np.argsort(np.abs(uv[ids, 0] - u0), kind="stable")
        lines.append(ids[order].astype(np.int64))
    return lines
