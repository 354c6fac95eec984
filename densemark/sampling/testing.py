"""A small synthetic face template for tests and demos (no real data needed)."""

from __future__ import annotations

import numpy as np

from densemark.faces.template import FaceTemplate, grid_triangles


def disc_template(res: int = 64, *, rx: float = 0.42, ry: float = 0.46, bump: float = 0.25) -> FaceTemplate:
    """An elliptic disc of UV pixels with a smooth, left/right symmetric bumped height field.

    The disc is centred on the UV map (so ``u -> res - 1 - u`` is exact); vertex positions are
    ``x = u - c``, ``y = c - v``, ``z = 2 * rx * res * bump * (dome + nose)``. The 68 keypoints: 0..16 on
    the lower (jaw) half of an ellipse inside the rim, 17..67 on a smaller inner ellipse except
    30 (nose tip) at the centre.

    ``load_template`` assumes ``res = 256``: for a saved copy use ``res=256`` with small radii.

    Returns:
        A :class:`FaceTemplate` with about ``3.1 * rx * ry * res**2`` vertices.
    """
    c = (res - 1) / 2
    v, u = np.mgrid[0:res, 0:res]
    x, y = (u - c) / (rx * res), (v - c) / (ry * res)
    mask = x**2 + y**2 <= 1.0
    face_ind = np.flatnonzero(mask.ravel()).astype(np.int64)
    uu, vv = face_ind % res, face_ind // res
    xn, yn = (uu - c) / (rx * res), (vv - c) / (ry * res)
    r2 = xn**2 + yn**2
    z = 2 * rx * res * bump * (np.sqrt(np.clip(1 - r2, 0, None)) + 0.6 * np.exp(-(xn**2 + (yn + 0.1) ** 2) / 0.02))
    verts = np.stack([uu - c, c - vv, z], 1).astype(np.float64)

    def ring(a: np.ndarray, s: float) -> np.ndarray:
        return np.stack([c + s * rx * res * np.cos(a), c + s * ry * res * np.sin(a)])

    jaw = ring(np.linspace(np.pi, 0, 17), 0.9)  # v grows downward: sin > 0 is the lower half
    inner = ring(np.linspace(0, 2 * np.pi, 51, endpoint=False), 0.5)
    kpt = np.concatenate([jaw, inner], 1)
    kpt = np.concatenate([kpt[:, :30], [[c + 0.5], [c]], kpt[:, 30:67]], 1)
    kpt = np.clip(np.round(kpt), 0, res - 1).astype(np.int64)
    return FaceTemplate(
        face_ind=face_ind, uv_kpt_ind=kpt, vertices=verts, triangles=grid_triangles(face_ind, res), res=res
    )
