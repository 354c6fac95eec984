"""A small in-memory dataset with the item format of ``ShardDataset``, for tests and benchmarks.

Each sample is a face-like picture: a filled ellipse with a dot at every landmark, labels in
crop pixels (x right, y down, z >= 0), so a model can learn it and a warp can be checked by
finding the dots again.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from densemark.core.images import decode_jpeg, encode_jpeg
from densemark.core.seeding import rng_for


def synthetic_points(rng: np.random.Generator, n_points: int, res: int) -> np.ndarray:
    """(K, 3) float32 points on a random half-ellipsoid 'face' inside the crop (crop pixels)."""
    base = rng_for(12345, "layout").uniform(-1, 1, (n_points, 2))  # the same layout for every sample
    base /= np.maximum(1.0, np.linalg.norm(base, axis=1, keepdims=True))
    cx, cy = res / 2 + rng.uniform(-0.06, 0.06, 2) * res
    ax, ay = res * rng.uniform(0.22, 0.3), res * rng.uniform(0.28, 0.36)
    th = rng.uniform(-0.3, 0.3)
    c, s = np.cos(th), np.sin(th)
    xy = base * [ax, ay]
    xy = xy @ np.array([[c, s], [-s, c]]) + [cx, cy]
    z = np.sqrt(np.clip(1 - (base**2).sum(1), 0, None)) * ax * 0.8
    return np.column_stack([xy, z]).astype(np.float32)


def render_points(points: np.ndarray, res: int, rng: np.random.Generator) -> np.ndarray:
    """(res, res, 3) uint8 RGB: noisy background, a skin ellipse, a dark dot per point."""
    img = rng.integers(0, 80, (res, res, 3), dtype=np.uint8)
    lo, hi = points[:, :2].min(0), points[:, :2].max(0)
    centre = tuple(int(v) for v in (lo + hi) / 2)
    axes = tuple(int(v) for v in (hi - lo) / 2 + 3)
    cv2.ellipse(img, centre, axes, 0, 0, 360, tuple(int(v) for v in rng.integers(150, 230, 3)), -1)
    for x, y in points[:, :2]:
        cv2.circle(img, (int(round(x)), int(round(y))), 1, (20, 20, 20), -1)
    return img


class SyntheticLandmarks:
    """``n`` samples of ``n_points`` landmarks on ``res`` crops; items as ``ShardDataset``'s.

    Images are stored as JPEG bytes and decoded per item (like the shards).
    """

    def __init__(self, n: int = 16, n_points: int = 68, res: int = 256, seed: int = 0, jpeg: bool = True):
        self.n_points, self.res = n_points, res
        self.points = []
        self.images: list[Any] = []
        for i in range(n):
            rng = rng_for(seed, "synthetic-landmarks", i)
            pts = synthetic_points(rng, n_points, res)
            img = render_points(pts, res, rng)
            self.points.append(pts)
            self.images.append(encode_jpeg(img, 95) if jpeg else img)
        kpt = list(range(min(68, n_points)))
        self.landmark_set = {
            "name": f"synthetic-{n_points}",
            "sha256": f"synthetic-{n_points}-{res}",
            "n_points": n_points,
            "kpt68": kpt,
            "mirror_perm": list(range(n_points)),
        }
        self.manifest_sha256 = f"synthetic-{n}-{seed}"

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        img = self.images[i]
        img = decode_jpeg(img) if isinstance(img, bytes) else img
        pts = self.points[i]
        return {
            "image": img,
            "landmarks": pts,
            "kpt68": pts[self.landmark_set["kpt68"]],
            "id": f"synthetic_{i:05d}",
            "flip": False,
            "yaw": 0.0,
        }
