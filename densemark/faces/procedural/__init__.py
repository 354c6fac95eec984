"""The embedded default face model: a procedural morphable model in the BFM's conventions.

Geometry is a surface parameterised over UV (the mesh *is* a UV grid clipped to a
superelliptic face region, so triangles never overlap in UV and the layout is mirror-symmetric
under ``u -> 1 - u``). Units and orientation follow the BFM mean shape: micrometres, x to the
subject's left (image right in a frontal view), y up, z toward the camera, a face ~1.6e5 wide,
so 300W-LP ``Pose_Para`` scales (~1.3e-3) give a ~200 px face. ``v`` grows upward as in
``BFM_UV.mat`` (the chin is near ``v = 0.24``, the brows near ``v = 0.84``).

* mean: a head-front cross-section ``x = A sin(theta)``, ``z = Zc + B cos(theta)`` with
  ``theta`` linear in ``u``, plus features added along the surface normal: brow ridges, eye
  sockets and eyeballs, nose (ridge, tip, alar wings), lips and mouth line, cheeks, chin, ears;
  below the jaw contour (a superellipse in UV) the surface folds back toward the neck.
* identity basis (``n_shape`` columns): semantic modes first (face width/length/depth, nose
  size/width/length, jaw width, chin, cheeks, eye spacing/size, brow height, mouth width, lips,
  ...), then smooth random low-frequency fields (mostly mirror-symmetric), orthonormalised in
  that order and scaled like the BFM's orthonormal ``shapePC`` over 53,215 vertices (per-entry
  RMS ``1 / sqrt(3 * 53215)``), so real ``Shape_Para`` magnitudes give BFM-like displacements.
  ``shapeEV`` follows a decaying spectrum of the same order as 300W-LP's fitted coefficients.
* expression basis (``n_exp`` columns): displacement per unit coefficient in micrometres;
  :data:`EXP_NAMES` lists the semantic modes, the rest are smooth localised random modes.

Everything random is drawn from ``np.random.default_rng((seed, 100 + k))`` keys.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from densemark.core.atomic import write_json
from densemark.faces.io import save_bfm_mat, save_uv_mat
from densemark.faces.model import MorphableModel
from densemark.faces.procedural.params import ProceduralParams

GENERATOR_VERSION = "1"
BFM_N_VERTICES = 53215  # the BFM's vertex count: basis columns are scaled as if orthonormal over it

# --- base surface (micrometres) ---
_K_THETA = 3.0  # theta = K * (u - 0.5): +-86 degrees at the UV edge
_A, _B, _ZC = 82000.0, 118000.0, -10000.0
_YS, _V0 = 225000.0, 0.63  # y = YS * (v - V0)
# jaw contour: superellipse in UV, |du / JR_U|^3 + |dv / JR_V|^3 = 1 below V_JAW
_JAW_C, _JAW_RU, _JAW_RV = 0.64, 0.445, 0.395

# --- feature layout in UV (du = |u - 0.5|; the subject's right side is u < 0.5) ---
EYE_C = (0.145, 0.747)  # eye centre (du, v)
EYE_HALF_W, EYE_UP, EYE_LO = 0.048, 0.020, 0.014  # almond half width, upper / lower lid heights
MOUTH_V, MOUTH_DU = 0.457, 0.075  # mouth line height and half width (corners)
LIP_UP_V, LIP_LO_V = 0.470, 0.443  # inner lip lines: the mouth band between them opens
NOSTRIL = (0.021, 0.562)
EAR = (0.485, 0.56)

EXP_NAMES = (
    "smile",
    "mouth_open",
    "brow_raise",
    "eye_close",
    "jaw_side",
    "pucker",
    "frown",
    "squint",
    "mouth_side",
    "wink",
    "cheek_puff",
    "upper_lip_raise",
    "lower_lip_depress",
    "nose_wrinkle",
    "smile_asym",
    "brow_raise_asym",
)
EXP_MOUTH_OPEN = EXP_NAMES.index("mouth_open")
EXP_EYE_CLOSE = EXP_NAMES.index("eye_close")
EYE_CLOSE_FULL = 2.5  # eye_close coefficient that shuts the lids

SHAPE_NAMES = (
    "face_width",
    "face_length",
    "face_depth",
    "nose_size",
    "nose_width",
    "nose_length",
    "jaw_width",
    "chin",
    "cheeks",
    "eye_spacing",
    "eye_size",
    "brow_height",
    "mouth_width",
    "lips",
    "forehead_slope",
    "face_taper",
    "eye_depth",
    "nose_bridge",
    "nose_shift_asym",
    "face_asym",
)

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
}
# 68-point mirror pairs (right -> left)
KPT_MIRROR = np.array(
    [16 - i for i in range(17)]
    + [26 - i for i in range(5)] + [21 - i for i in range(5)]
    + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65],
    np.int64,
)

# AFLW's 21 points (image-left first): brows 6, eyes 6, ears/nose 5, mouth 3, chin 1.
AFLW21_NAMES = (
    "brow_r_outer", "brow_r_centre", "brow_r_inner", "brow_l_inner", "brow_l_centre", "brow_l_outer",
    "eye_r_outer", "eye_r_centre", "eye_r_inner", "eye_l_inner", "eye_l_centre", "eye_l_outer",
    "ear_r", "nose_wing_r", "nose_centre", "nose_wing_l", "ear_l",
    "mouth_r", "mouth_centre", "mouth_l", "chin",
)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _g(du: np.ndarray, v: np.ndarray, cu: float, cv: float, su: float, sv: float) -> np.ndarray:
    """Anisotropic Gaussian bump in UV."""
    return np.exp(-0.5 * (((du - cu) / su) ** 2 + ((v - cv) / sv) ** 2))


def _sg(du: np.ndarray, v: np.ndarray, cu: float, cv: float, su: float, sv: float, p: float = 4.0) -> np.ndarray:
    """Flat-topped (super-Gaussian) bump in UV."""
    return np.exp(-0.5 * (np.abs((du - cu) / su) ** p + np.abs((v - cv) / sv) ** p))


# ----------------------------------------------------------------------------- mesh


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
    inside = np.abs(2 * uu - 1) ** 3 + np.abs(2 * vv - 1) ** 3 <= 1.0 + 1e-9
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
    r = (np.abs(a[:, 0]) ** 3 + np.abs(a[:, 1]) ** 3) ** (1 / 3)
    moved = uv.copy()
    moved[edge] = (a[edge] / np.maximum(r[edge, None], 1e-12) + 1) / 2
    moved = np.clip(moved, 0.0, 1.0)
    for _ in range(3):
        p = moved[tri]
        area = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1])
        bad = area <= 1e-4 / (count.size)
        if not bad.any():
            break
        v = np.unique(tri[bad])
        moved[v] = uv[v]
    return moved


def _jaw_uv(n: int = 9) -> np.ndarray:
    """(n, 2) UV points on the subject's right jaw contour, evenly spaced in arc length from
    the side (``v = 0.62``) to the chin bottom (``u = 0.5``)."""
    phi = np.linspace(np.pi + 0.015, 1.5 * np.pi, 2000)
    c, s = np.cos(phi), np.sin(phi)
    u = 0.5 - _JAW_RU * np.abs(c) ** (2 / 3)
    v = _JAW_C - _JAW_RV * np.abs(s) ** (2 / 3)
    seg = np.hypot(np.diff(u * _A * _K_THETA), np.diff(v * _YS))  # arc length in model units
    arc = np.concatenate([[0], np.cumsum(seg)])
    k = np.searchsorted(arc, np.linspace(0, arc[-1], n)).clip(0, arc.size - 1)
    pts = np.stack([u[k], v[k]], 1)
    pts[-1] = (0.5, v[-1])
    return pts


def kpt_uv() -> np.ndarray:
    """(68, 2) UV targets of the 68 keypoints (mirror-exact: left = 1 - u of right)."""
    out = np.full((68, 2), np.nan)
    out[:9] = _jaw_uv(9)
    for k, uv in _KPT_RIGHT.items():
        out[k] = uv
    for k in range(68):
        m = KPT_MIRROR[k]
        if np.isnan(out[k, 0]) and not np.isnan(out[m, 0]):
            out[k] = (1.0 - out[m, 0], out[m, 1])
    return out


def aflw21_uv() -> np.ndarray:
    """(21, 2) UV targets of AFLW's 21 points, in AFLW order (:data:`AFLW21_NAMES`)."""
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


# ----------------------------------------------------------------------------- geometry


def _frame(uv: np.ndarray) -> dict[str, np.ndarray]:
    u, v = uv[:, 0], uv[:, 1]
    du = np.abs(u - 0.5)
    sgn = np.where(u < 0.5, -1.0, np.where(u > 0.5, 1.0, 0.0))
    theta = _K_THETA * (u - 0.5)
    dv = np.minimum(v - _JAW_C, 0.0)
    rj = ((du / _JAW_RU) ** 3 + (np.abs(dv) / _JAW_RV) ** 3) ** (1 / 3)
    jaw_out = np.maximum(rj - 1.0, 0.0) * _smoothstep(_JAW_C, _JAW_C - 0.08, v)
    return {"u": u, "v": v, "du": du, "sgn": sgn, "theta": theta, "jaw_out": jaw_out}


def _feature_height(f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Named height fields (micrometres, along the base normal) of the mean face."""
    du, v = f["du"], f["v"]
    # nose: ridge height and width profiles along v
    hv = np.interp(v, [0.53, 0.556, 0.60, 0.628, 0.665, 0.72, 0.80], [0, 9000, 19000, 24000, 19000, 9000, 1500])
    wv = np.interp(v, [0.53, 0.556, 0.60, 0.628, 0.665, 0.72, 0.80], [0.03, 0.032, 0.03, 0.026, 0.019, 0.016, 0.018])
    nose = hv * np.exp(-0.5 * (du / wv) ** 2) + 6500 * _g(du, v, 0.040, 0.572, 0.016, 0.018)
    nose -= 2500 * _g(du, v, NOSTRIL[0], NOSTRIL[1], 0.008, 0.006)
    eu = (du - EYE_C[0]) / EYE_HALF_W
    almond = np.clip(1 - eu**2, 0, None)
    in_eye = (v - EYE_C[1] < EYE_UP * almond) & (EYE_C[1] - v < EYE_LO * almond)
    eyes = -10000 * _g(du, v, EYE_C[0], EYE_C[1] + 0.005, 0.065, 0.042) + 4500 * _g(du, v, EYE_C[0], EYE_C[1], 0.04, 0.024)
    eyes += 800 * in_eye
    vb = 0.835 + 0.014 * (1 - ((du - 0.16) / 0.15) ** 2)
    brows = 6000 * np.exp(-0.5 * ((v - vb) / 0.022) ** 2) * _smoothstep(0.33, 0.22, du)
    cheeks = 7000 * _g(du, v, 0.17, 0.56, 0.08, 0.07) + 4000 * _g(du, v, 0.25, 0.66, 0.06, 0.05)
    muzzle = 9000 * _g(du, v, 0.0, 0.46, 0.13, 0.08)
    lips = 5500 * _sg(du, v, 0.0, 0.483, 0.068, 0.016) + 6000 * _sg(du, v, 0.0, 0.428, 0.062, 0.017)
    lips -= 2500 * _sg(du, v, 0.0, MOUTH_V, 0.07, 0.006)
    chin = 6000 * _g(du, v, 0.0, 0.29, 0.06, 0.045)
    ears = 9000 * _g(du, v, EAR[0], EAR[1], 0.012, 0.05)
    return {"nose": nose, "eyes": eyes, "brows": brows, "cheeks": cheeks, "muzzle": muzzle, "lips": lips,
            "chin": chin, "ears": ears}  # fmt: skip


def _base(f: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Base head surface (N, 3) and its approximate outward normal (N, 3)."""
    v, th, jo = f["v"], f["theta"], f["jaw_out"]
    taper = 1.0 - 0.2 * _smoothstep(0.62, 0.22, v) - 0.1 * _smoothstep(0.8, 1.0, v)
    x = _A * np.sin(th) * taper
    y = _YS * (v - _V0) + 45000 * jo
    z = _ZC + _B * np.cos(th)
    z -= 1.3e6 * np.maximum(v - 0.86, 0) ** 2 + 2.8e5 * np.maximum(0.45 - v, 0) ** 2
    z -= 1.2e5 * np.maximum((2 * f["du"]) ** 2 + ((v - 0.5) / 0.5) ** 2 - 1.0, 0) * _smoothstep(0.5, 0.7, v)
    z -= 80000 * jo + 60000 * jo**2
    n = np.stack([np.sin(th) / _A, np.zeros_like(th), np.cos(th) / _B], 1)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    return np.stack([x, y, z], 1), n


def mean_shape(uv: np.ndarray) -> np.ndarray:
    """(N, 3) float64 mean face at UV coordinates ``uv: (N, 2)``."""
    f = _frame(uv)
    base, n = _base(f)
    h = sum(_feature_height(f).values())
    return base + h[:, None] * n


# ----------------------------------------------------------------------------- bases


def _symmetrize(d: np.ndarray, mirror: np.ndarray, anti: bool = False) -> np.ndarray:
    """Mirror-(anti)symmetric part of a displacement field (N, 3)."""
    m = d[mirror] * np.array([-1.0, 1.0, 1.0])
    return 0.5 * (d - m) if anti else 0.5 * (d + m)


def _shape_fields(uv: np.ndarray, mean: np.ndarray, mirror: np.ndarray) -> list[np.ndarray]:
    f = _frame(uv)
    du, v, sgn = f["du"], f["v"], f["sgn"]
    _, n = _base(f)
    fh = _feature_height(f)
    x, y, z = mean[:, 0], mean[:, 1], mean[:, 2]
    zero = np.zeros_like(x)
    nose_w = _g(du, v, 0.0, 0.61, 0.06, 0.09)
    eye_w = _g(du, v, EYE_C[0], EYE_C[1], 0.06, 0.035)
    mouth_w = _g(du, v, 0.0, 0.455, 0.09, 0.05)
    lower = _smoothstep(0.55, 0.3, v)
    ex = 0.5 + np.sign(x) * (0.5 - EYE_C[0])
    fields = [
        np.stack([x, zero, zero], 1),
        np.stack([zero, y - y.mean(), zero], 1),
        np.stack([zero, zero, z - z.mean()], 1),
        fh["nose"][:, None] * n,
        np.stack([x * nose_w, zero, zero], 1),
        np.stack([zero, -30000 * nose_w * _smoothstep(0.75, 0.6, v), zero], 1),
        np.stack([x * lower, zero, zero], 1),
        (fh["chin"] + 3000 * _g(du, v, 0, 0.26, 0.1, 0.06))[:, None] * n,
        fh["cheeks"][:, None] * n,
        np.stack([sgn * 20000 * eye_w, zero, zero], 1),
        np.stack([(x - np.sign(x) * _A * np.sin(_K_THETA * (ex - 0.5))) * eye_w,
                  (y - _YS * (EYE_C[1] - _V0)) * eye_w, zero], 1),  # fmt: skip
        np.stack([zero, 20000 * _g(du, v, 0.16, 0.84, 0.12, 0.04), zero], 1),
        np.stack([x * mouth_w, zero, zero], 1),
        fh["lips"][:, None] * n,
        np.stack([zero, zero, -60000 * np.maximum(v - 0.8, 0)], 1),
        np.stack([x * (v - 0.55), zero, zero], 1),
        fh["eyes"][:, None] * n,
        (6000 * _g(du, v, 0.0, 0.72, 0.03, 0.06))[:, None] * n,
        np.stack([20000 * nose_w, zero, zero], 1),
        np.stack([zero, 0.1 * x * (v - 0.5), 0.1 * x], 1),
    ]
    return fields


def _smooth_random_fields(uv: np.ndarray, mirror: np.ndarray, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``k`` smooth random displacement fields: RBF bases with random 3D weights, frequency rising with index."""
    phis: dict[int, np.ndarray] = {}
    out = []
    for i in range(k):
        level = 3 + min(i // 30, 5)  # RBF lattice side: finer detail for later modes
        if level not in phis:
            c = np.linspace(0.05, 0.95, level)
            cu, cv = np.meshgrid(c, c)
            d2 = (uv[:, None, 0] - cu.ravel()) ** 2 + (uv[:, None, 1] - cv.ravel()) ** 2
            phis[level] = np.exp(-0.5 * d2 / (0.9 / level) ** 2)
        d = phis[level] @ rng.standard_normal((level * level, 3))
        out.append(_symmetrize(d, mirror, anti=rng.random() < 0.2))
    return out


def _orthonormal(fields: list[np.ndarray], n_vertices: int) -> np.ndarray:
    """(3N, K) float32: fields flattened xyz-interleaved, Gram-Schmidt in order, BFM-scaled."""
    m = np.stack([f.reshape(-1) for f in fields], 1)
    q, r = np.linalg.qr(m)
    q *= np.sign(np.diag(r))[None, :] + (np.diag(r) == 0)
    return (q * np.sqrt(3 * n_vertices / (3 * BFM_N_VERTICES))).astype(np.float32)


def shape_ev(k: int) -> np.ndarray:
    """(k,) float32 identity standard deviations: ``4e5 * (i + 1)^-0.8 * exp(-i / 60)``."""
    i = np.arange(k, dtype=np.float64)
    return (4e5 * (i + 1) ** -0.8 * np.exp(-i / 60)).astype(np.float32)


def exp_ev(k: int) -> np.ndarray:
    """(k,) float32 expression standard deviations (semantic modes first)."""
    ev = np.array([2.0, 1.8, 1.1, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35, 0.35, 0.3, 0.3, 0.25, 0.25, 0.25])
    tail = 0.2 * np.ones(max(k - ev.size, 0))
    return np.concatenate([ev, tail])[:k].astype(np.float32)


def _exp_fields(uv: np.ndarray, mirror: np.ndarray, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Expression displacement per unit coefficient (micrometres), :data:`EXP_NAMES` order."""
    f = _frame(uv)
    du, v, sgn = f["du"], f["v"], f["sgn"]
    _, n = _base(f)
    zero = np.zeros_like(du)
    # lower jaw weight: 1 below the lower inner lip, 0 above the upper one, ramp across the band;
    # the ramp widens beyond the mouth corners and the motion fades toward the jaw hinge
    wide = np.maximum(du - MOUTH_DU, 0) * 1.5
    jaw = _smoothstep(LIP_UP_V + wide, LIP_LO_V - wide, v) * (1 - _smoothstep(0.25, 0.47, du))
    corner = _g(du, v, MOUTH_DU, MOUTH_V, 0.035, 0.03)
    lips = _sg(du, v, 0.0, MOUTH_V, 0.085, 0.045)
    brow = _g(du, v, 0.16, 0.84, 0.14, 0.06)
    brow_in = _g(du, v, 0.07, 0.82, 0.05, 0.04)
    eu = np.clip((du - EYE_C[0]) / (EYE_HALF_W * 1.15), -1, 1)
    # upper lid: full motion above the upper lid line, ramp down to 0 at the lower lid line
    lid = _smoothstep(EYE_C[1] - EYE_LO, EYE_C[1] + EYE_UP, v) * (1 - eu**2) * np.exp(
        -0.5 * (np.maximum(v - EYE_C[1] - EYE_UP, 0) / 0.02) ** 2
    )
    lid_close = -(EYE_UP + EYE_LO) * _YS / EYE_CLOSE_FULL  # full closure at EYE_CLOSE_FULL
    lower_lid = _g(du, v, EYE_C[0], EYE_C[1] - EYE_LO, 0.04, 0.012)
    cheek = _g(du, v, 0.15, 0.55, 0.06, 0.05)
    upper_lip = _sg(du, v, 0.0, 0.485, 0.07, 0.025)
    lower_lip = _sg(du, v, 0.0, 0.425, 0.07, 0.025)
    side = lambda a: np.where(sgn > 0, a, 0.0)  # noqa: E731 - one side only
    smile = np.stack([sgn * 2200 * corner, 2600 * corner + 900 * cheek, -800 * corner + 1500 * cheek], 1)
    eye_close = np.stack([zero, lid_close * lid, zero], 1)
    brow_up = np.stack([zero, 3000 * brow, zero], 1)
    fields = [
        smile,
        np.stack([zero, -4000 * jaw, -1200 * jaw], 1),
        brow_up,
        eye_close,
        np.stack([2500 * jaw, zero, zero], 1),
        np.stack([-0.25 * sgn * du * _A * _K_THETA * lips, zero, 3000 * lips], 1),
        np.stack([-sgn * 1500 * brow_in, -2000 * brow_in, 500 * brow_in], 1),
        np.stack([zero, 1500 * lower_lid + 0.3 * lid_close * lid, zero], 1),
        np.stack([2000 * lips, zero, zero], 1),
        eye_close * sgn[:, None],
        (3000 * _g(du, v, 0.12, 0.46, 0.06, 0.06))[:, None] * n,
        np.stack([zero, 1500 * upper_lip, 300 * upper_lip], 1),
        np.stack([zero, -1500 * lower_lip, -500 * lower_lip], 1),
        np.stack([zero, 800 * _g(du, v, 0.03, 0.62, 0.05, 0.06), 400 * _g(du, v, 0.03, 0.62, 0.05, 0.06)], 1),
        smile * side(np.ones_like(du))[:, None],
        brow_up * side(np.ones_like(du))[:, None],
    ]
    # localised smooth random modes around the mouth, eyes and brows
    centres = [(0.0, MOUTH_V), (EYE_C[0], EYE_C[1]), (0.12, 0.83), (0.08, 0.5), (0.2, 0.4)]
    while len(fields) < k:
        cu, cv = centres[rng.integers(len(centres))]
        w = _g(du, v, cu, cv, 0.05 + 0.05 * rng.random(), 0.04 + 0.04 * rng.random())
        d = w[:, None] * (rng.standard_normal(3) * 1200)
        fields.append(_symmetrize(d, mirror, anti=rng.random() < 0.3))
    return [fl.astype(np.float64) for fl in fields[:k]]


# ----------------------------------------------------------------------------- the model


def build_model(params: ProceduralParams) -> MorphableModel:
    """The procedural morphable model for ``params`` (deterministic in ``params``).

    Returns:
        A :class:`MorphableModel` with UV, ``n_shape`` identity and ``n_exp`` expression
        columns, ``shapeEV`` / ``expEV``, 68 keypoints and the mouth triangles last.
    """
    uv, tri, mirror, _ = uv_grid(params.grid)
    mean = mean_shape(uv)
    n = uv.shape[0]
    rng_shape = np.random.default_rng((params.seed, 100))
    rng_exp = np.random.default_rng((params.seed, 101))
    sem = _shape_fields(uv, mean, mirror)
    sfields = sem + _smooth_random_fields(uv, mirror, max(params.n_shape - len(sem), 0), rng_shape)
    shape_basis = _orthonormal(sfields[: params.n_shape], n)
    exp_basis = np.stack([f.reshape(-1) for f in _exp_fields(uv, mirror, params.n_exp, rng_exp)], 1)
    return MorphableModel(
        mean=mean.astype(np.float32),
        shape_basis=shape_basis,
        exp_basis=exp_basis.astype(np.float32),
        triangles=tri,
        kpt_ind=snap_to_vertices(uv, kpt_uv()),
        uv=uv,
        shape_ev=shape_ev(params.n_shape),
        exp_ev=exp_ev(params.n_exp),
        name="synthetic",
    )


def model_info(model: MorphableModel, params: ProceduralParams) -> dict[str, object]:
    """Provenance and annotations recorded beside the model (``model_info.json``)."""
    _, _, mirror, n_mouth = uv_grid(params.grid)
    return {
        "generator": "densemark.faces.procedural",
        "generator_version": GENERATOR_VERSION,
        "params": params.model_dump(mode="json"),
        "fingerprint": model.fingerprint(),
        "n_vertices": model.n_vertices,
        "n_triangles": int(model.triangles.shape[0]),
        "n_mouth_triangles": n_mouth,
        "units": "micrometres; x right, y up, z toward the camera (BFM)",
        "kpt_ind": model.kpt_ind.tolist(),
        "aflw21_ind": aflw21_ids(model).tolist(),
        "aflw21_names": list(AFLW21_NAMES),
        "shape_modes": list(SHAPE_NAMES),
        "exp_modes": list(EXP_NAMES),
        "mirror_checksum": int(mirror.sum()),
    }


def write_model(params: ProceduralParams, out_dir: str | Path) -> dict[str, Path]:
    """Write the procedural model as ``BFM.mat`` + ``BFM_UV.mat`` + ``model_info.json``.

    The files read back with :func:`densemark.faces.io.load_model`; ``.mat`` headers carry a
    fixed description so the same params give byte-identical files.

    Returns:
        ``{"bfm": ..., "uv": ..., "info": ...}`` paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(params)
    _, _, _, n_mouth = uv_grid(params.grid)
    bfm = save_bfm_mat(model, out / "BFM.mat", n_mouth=n_mouth)
    uv = save_uv_mat(model.uv, out / "BFM_UV.mat")
    info = write_json(out / "model_info.json", model_info(model, params))
    return {"bfm": bfm, "uv": uv, "info": info}


