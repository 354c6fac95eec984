"""Appearance of the synthetic faces: per-vertex albedo (skin, brows, eyes, lips, hair) as a
fixed function of UV and a texture vector, and cluttered image backgrounds.

Every transcendental goes through :mod:`densemark.core.detmath` and every sum is numpy's
fixed-order reduction, so the images are the same bytes on every CPU.
"""

from __future__ import annotations

import cv2
import numpy as np

from densemark.core import detmath
from densemark.faces import procedural as fs

N_TEX = 199

# ----------------------------------------------------------------------------- texture


def _rbf_noise(uv: np.ndarray, w: np.ndarray, level: int) -> np.ndarray:
    """(N,) smooth field over UV from ``level**2`` RBF weights ``w``."""
    c = np.linspace(0.0, 1.0, level)
    cu, cv = np.meshgrid(c, c)
    d2 = (uv[:, None, 0] - cu.ravel()) ** 2 + (uv[:, None, 1] - cv.ravel()) ** 2
    phi = detmath.exp(-0.5 * d2 / (1.0 / level) ** 2)
    return np.add.reduce(phi * w, axis=1) / np.sqrt(
        phi.sum(1) + 1e-9
    )  # numpy's fixed-order sum, no BLAS


def albedo(uv: np.ndarray, tex: np.ndarray) -> np.ndarray:
    """Per-vertex RGB albedo (N, 3) in [0, 1], a fixed function of UV and ``tex: (199,)`` normals.

    ``tex`` drives: skin tone and tint (0-3), smooth variation (4-52), brow colour/thickness
    (53-56), iris colour and gaze (57-61), lip colour (62-64), hair (65-70).
    """
    u, v = uv[:, 0], uv[:, 1]
    du = np.abs(u - 0.5)
    q = detmath.ndtr(tex)  # uniforms
    light, dark = np.array([0.95, 0.80, 0.70]), np.array([0.36, 0.24, 0.17])
    skin = light + (dark - light) * detmath.power(q[0], 1.3)
    skin = skin * (1 + 0.04 * np.array([tex[1], 0.5 * tex[2], 0.5 * tex[3]]))
    col = np.tile(skin, (uv.shape[0], 1))
    col *= 1 + 0.06 * np.stack(
        [_rbf_noise(uv, tex[4 + 16 * k : 20 + 16 * k], 4) for k in range(3)], 1
    )
    red = 0.5 * fs.gauss_bump(du, v, 0.17, 0.57, 0.07, 0.06) + 0.4 * fs.gauss_bump(
        du, v, 0.0, 0.63, 0.035, 0.05
    )
    col = col * (1 - 0.12 * red[:, None]) + 0.12 * red[:, None] * np.array([0.85, 0.35, 0.3])
    neck = fs.uv_frame(uv)["jaw_out"]
    col *= (1 - 0.25 * np.clip(neck * 4, 0, 1))[:, None]

    def blend(w: np.ndarray, c: np.ndarray) -> None:
        w = np.clip(w, 0, 1)[:, None]
        col[:] = col * (1 - w) + w * c

    # brows
    hair_col = np.array([0.08, 0.06, 0.05]) + q[53] * np.array([0.45, 0.32, 0.18])
    vb = 0.835 + 0.014 * (1 - ((du - 0.16) / 0.15) ** 2)
    thick = 0.008 + 0.006 * q[54]
    brow = (
        detmath.exp(-0.5 * detmath.powi((v - vb) / thick, 4))
        * fs.smoothstep(0.30, 0.24, du)
        * fs.smoothstep(0.05, 0.075, du)
    )
    blend(brow * (0.75 + 0.2 * q[55]), hair_col)
    # eyes: white almond, iris, pupil, lash line
    eu = (du - fs.EYE_C[0]) / fs.EYE_HALF_W
    alm = np.clip(1 - eu**2, 0, None)
    dv = v - fs.EYE_C[1]
    in_eye = (dv < fs.EYE_UP * alm) & (-dv < fs.EYE_LO * alm)
    blend(in_eye * 0.9, np.array([0.9, 0.88, 0.85]))
    gaze = 0.012 * np.clip(tex[57], -1.5, 1.5)
    ex = np.where(u < 0.5, 0.5 - fs.EYE_C[0], 0.5 + fs.EYE_C[0]) + gaze
    ri = detmath.hypot((u - ex) / 0.02, (v - fs.EYE_C[1]) / 0.022)
    irises = np.array([[0.35, 0.2, 0.1], [0.15, 0.1, 0.06], [0.25, 0.4, 0.6], [0.3, 0.45, 0.25]])
    iris = irises[int(q[58] * 4) % 4] * (0.8 + 0.4 * q[59])
    blend(in_eye * (ri < 1), iris)
    blend(in_eye * (ri < 0.45), np.array([0.03, 0.03, 0.03]))
    lash = detmath.exp(-0.5 * ((dv - fs.EYE_UP * alm) / 0.004) ** 2) * (alm > 0)
    blend(lash * 0.8, hair_col * 0.6)
    # lips, mouth interior, teeth
    lipc = np.array([0.75, 0.32, 0.32]) * (0.8 + 0.3 * q[62]) + 0.05 * tex[63:66]
    lips = fs.flat_bump(du, v, 0.0, 0.483, 0.068, 0.017) + fs.flat_bump(
        du, v, 0.0, 0.428, 0.062, 0.018
    )
    blend(lips * 0.75, lipc)
    band = (du < fs.MOUTH_DU * np.sqrt(np.clip(1 - ((v - fs.MOUTH_V) / 0.02) ** 2, 0, 1))) & (
        v > fs.LIP_LO_V + 0.002) & (v < fs.LIP_UP_V - 0.002)  # fmt: skip
    blend(band * 0.9, np.array([0.25, 0.05, 0.05]))
    teeth = band & (v > fs.MOUTH_V + 0.002) & (du < fs.MOUTH_DU * 0.7)
    blend(teeth * 0.9, np.array([0.88, 0.86, 0.8]))
    blend(fs.gauss_bump(du, v, 0.0, fs.MOUTH_V, 0.07, 0.0025) * 0.7, np.array([0.2, 0.06, 0.06]))
    # nostrils
    blend(
        0.9 * fs.gauss_bump(du, v, fs.NOSTRIL[0], fs.NOSTRIL[1], 0.007, 0.005),
        np.array([0.12, 0.06, 0.05]),
    )
    # hair: hairline height and side burns
    if q[66] > 0.25:
        hairline = 0.93 - 0.06 * q[67] + 0.03 * detmath.cos(du * 12 + 6 * q[68])
        hair = fs.smoothstep(hairline - 0.01, hairline + 0.02, v) + fs.smoothstep(0.43, 0.47, du) * fs.smoothstep(
            0.62, 0.72, v)  # fmt: skip
        hc = np.array([0.08, 0.06, 0.05]) + q[69] * np.array([0.5, 0.38, 0.2])
        blend(hair, hc)
    return np.clip(col, 0.0, 1.0)


# ----------------------------------------------------------------------------- background


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB clutter: gradient, blotches, random shapes, blur, noise."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    a = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    sa, ca = (float(f) for f in detmath.sincos(a))
    t = ((xx - w / 2) * ca + (yy - h / 2) * sa) / max(h, w) + 0.5
    img = c0 + (c1 - c0) * np.clip(t, 0, 1)[..., None]
    blot = cv2.resize(rng.normal(0, 40, (6, 6, 3)), (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img + blot, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 20))):
        color = tuple(int(x) for x in rng.integers(0, 256, 3))
        kind = rng.integers(3)
        p = rng.integers(0, [w, h])
        if kind == 0:
            q = rng.integers(0, [w, h])
            cv2.rectangle(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), color, -1)
        elif kind == 1:
            cv2.circle(img, (int(p[0]), int(p[1])), int(rng.integers(5, max(h, w) // 3)), color, -1)
        else:
            q = rng.integers(0, [w, h])
            cv2.line(
                img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), color, int(rng.integers(1, 12))
            )
    k = int(rng.integers(0, 4)) * 2 + 1
    if k > 1:
        img = cv2.GaussianBlur(img, (k, k), 0)
    return img
