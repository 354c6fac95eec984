"""The procedural mean face: a head-front surface over UV plus features along its normal.

The base is a head-front cross-section ``x = A sin(theta)``, ``z = Zc + B cos(theta)`` with
``theta`` linear in ``u``; features are added along the surface normal: brow ridges, eye
sockets and eyeballs, nose (ridge, tip, alar wings), lips and mouth line, cheeks, chin, ears.
Below the jaw contour (a superellipse in UV) the surface folds back toward the neck.
Micrometres, x to the subject's left, y up, z toward the camera (the BFM's frame).
"""

from __future__ import annotations

import numpy as np

from densemark.core import detmath
from densemark.faces.procedural.layout import (
    A_X,
    B_Z,
    EAR,
    EYE_C,
    EYE_HALF_W,
    EYE_LO,
    EYE_UP,
    MOUTH_V,
    NOSTRIL,
    V_0,
    Y_SCALE,
    Z_C,
    flat_bump,
    gauss_bump,
    smoothstep,
    uv_frame,
)


def feature_heights(f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Named (N,) float64 height fields (micrometres, along the base normal) of the mean face:
    ``nose``, ``eyes``, ``brows``, ``cheeks``, ``muzzle``, ``lips``, ``chin``, ``ears``.

    Args:
        f: :func:`~densemark.faces.procedural.layout.uv_frame` of the vertices.
    """
    du, v = f["du"], f["v"]
    # nose: ridge height and width profiles along v
    hv = np.interp(
        v, [0.53, 0.556, 0.60, 0.628, 0.665, 0.72, 0.80], [0, 9000, 19000, 24000, 19000, 9000, 1500]
    )
    wv = np.interp(
        v,
        [0.53, 0.556, 0.60, 0.628, 0.665, 0.72, 0.80],
        [0.03, 0.032, 0.03, 0.026, 0.019, 0.016, 0.018],
    )
    nose = hv * detmath.exp(-0.5 * (du / wv) ** 2) + 6500 * gauss_bump(
        du, v, 0.040, 0.572, 0.016, 0.018
    )
    nose -= 2500 * gauss_bump(du, v, NOSTRIL[0], NOSTRIL[1], 0.008, 0.006)
    eu = (du - EYE_C[0]) / EYE_HALF_W
    almond = np.clip(1 - eu**2, 0, None)
    in_eye = (v - EYE_C[1] < EYE_UP * almond) & (EYE_C[1] - v < EYE_LO * almond)
    eyes = -10000 * gauss_bump(du, v, EYE_C[0], EYE_C[1] + 0.005, 0.065, 0.042) + 4500 * gauss_bump(
        du, v, EYE_C[0], EYE_C[1], 0.04, 0.024
    )
    eyes += 800 * in_eye
    vb = 0.835 + 0.014 * (1 - ((du - 0.16) / 0.15) ** 2)
    brows = 6000 * detmath.exp(-0.5 * ((v - vb) / 0.022) ** 2) * smoothstep(0.33, 0.22, du)
    cheeks = 7000 * gauss_bump(du, v, 0.17, 0.56, 0.08, 0.07) + 4000 * gauss_bump(
        du, v, 0.25, 0.66, 0.06, 0.05
    )
    muzzle = 9000 * gauss_bump(du, v, 0.0, 0.46, 0.13, 0.08)
    lips = 5500 * flat_bump(du, v, 0.0, 0.483, 0.068, 0.016) + 6000 * flat_bump(
        du, v, 0.0, 0.428, 0.062, 0.017
    )
    lips -= 2500 * flat_bump(du, v, 0.0, MOUTH_V, 0.07, 0.006)
    chin = 6000 * gauss_bump(du, v, 0.0, 0.29, 0.06, 0.045)
    ears = 9000 * gauss_bump(du, v, EAR[0], EAR[1], 0.012, 0.05)
    return {"nose": nose, "eyes": eyes, "brows": brows, "cheeks": cheeks, "muzzle": muzzle, "lips": lips,
            "chin": chin, "ears": ears}  # fmt: skip


def base_surface(f: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Base head surface (N, 3) float64 and its approximate outward unit normal (N, 3) float64.

    Args:
        f: :func:`~densemark.faces.procedural.layout.uv_frame` of the vertices.
    """
    v, th, jo = f["v"], f["theta"], f["jaw_out"]
    taper = 1.0 - 0.2 * smoothstep(0.62, 0.22, v) - 0.1 * smoothstep(0.8, 1.0, v)
    sin_th, cos_th = detmath.sincos(th)
    x = A_X * sin_th * taper
    y = Y_SCALE * (v - V_0) + 45000 * jo
    z = Z_C + B_Z * cos_th
    z -= 1.3e6 * np.maximum(v - 0.86, 0) ** 2 + 2.8e5 * np.maximum(0.45 - v, 0) ** 2
    z -= (
        1.2e5
        * np.maximum((2 * f["du"]) ** 2 + ((v - 0.5) / 0.5) ** 2 - 1.0, 0)
        * smoothstep(0.5, 0.7, v)
    )
    z -= 80000 * jo + 60000 * jo**2
    n = np.stack([sin_th / A_X, np.zeros_like(th), cos_th / B_Z], 1)
    n /= np.sqrt(np.add.reduce(n * n, axis=1))[:, None]
    return np.stack([x, y, z], 1), n


def mean_shape(uv: np.ndarray) -> np.ndarray:
    """(N, 3) float64 mean face at UV coordinates ``uv: (N, 2)``."""
    f = uv_frame(uv)
    base, n = base_surface(f)
    h = sum(feature_heights(f).values())
    return base + h[:, None] * n
