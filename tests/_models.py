"""Small self-made models and samples for tests that must run without the real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io as sio

from densemark.faces.model import MorphableModel
from densemark.faces.template import grid_triangles


def grid_model(n: int = 24, n_shape: int = 199, n_exp: int = 29, seed: int = 0) -> MorphableModel:
    """A bumped square patch: n*n vertices on a UV grid, BFM-like units (~1e5 wide), random bases."""
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    uv = np.stack([u.ravel(), v.ravel()], 1)
    x = (uv[:, 0] - 0.5) * 1.6e5
    y = (uv[:, 1] - 0.5) * 2.0e5
    z = 6e4 * np.exp(-((uv[:, 0] - 0.5) ** 2 + (uv[:, 1] - 0.5) ** 2) / 0.08)
    mean = np.stack([x, y, z], 1).astype(np.float32)
    # triangles over the grid (pixel ids on an n x n "map" are vertex ids here)
    tri = grid_triangles(np.arange(n * n), n)
    kpt = rng.choice(np.arange(n * n).reshape(n, n)[2:-2, 2:-2].ravel(), 68, replace=False)
    return MorphableModel(
        mean=mean,
        shape_basis=(rng.normal(0, 1, (3 * n * n, n_shape)) * 5).astype(np.float32),
        exp_basis=(rng.normal(0, 1, (3 * n * n, n_exp)) * 50).astype(np.float32),
        triangles=tri,
        kpt_ind=np.sort(kpt).astype(np.int64),
        uv=uv,
        shape_ev=np.ones(n_shape, np.float32),
        exp_ev=np.ones(n_exp, np.float32),
        name="grid",
    )


def write_fit(folder: Path, name: str, pose: np.ndarray, shape: np.ndarray | None = None, exp: np.ndarray | None = None, h: int = 300) -> Path:
    """A 300W-LP-format sample: a gray ``<name>.jpg`` and ``<name>.mat``."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    img = np.full((h, h, 3), 128, np.uint8)
    cv2.imwrite(str(folder / f"{name}.jpg"), img)
    sio.savemat(
        folder / f"{name}.mat",
        {
            "Shape_Para": np.zeros((199, 1)) if shape is None else shape.reshape(199, 1),
            "Exp_Para": np.zeros((29, 1)) if exp is None else exp.reshape(29, 1),
            "Pose_Para": np.asarray(pose, np.float32).reshape(1, 7),
            "pt2d": np.zeros((2, 68)),
            "roi": np.zeros((1, 4), np.int16),
        },
    )
    return folder / f"{name}.mat"
