"""Small, slow, obviously-correct reference implementations the fast paths are checked against.

The naive UV rasterizer lives in :mod:`densemark.faces.reference` (the benchmark uses it too).
"""

from __future__ import annotations

import math

import numpy as np


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
