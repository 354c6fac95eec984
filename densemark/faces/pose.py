"""The 3DDFA pose convention used by 300W-LP and AFLW2000-3D fits.

``Pose_Para = [pitch, yaw, roll, tx, ty, tz, s]`` (radians, pixels, scale). A model instance
``X: (N, 3)`` is posed as ``s * X @ R.T + t`` with ``R = Rx(pitch) @ Ry(yaw) @ Rz(roll)``
(face3d's ``angle2matrix_3ddfa``), and image rows are ``y_img = h - 1 - y`` (the image y flip).

Every value here is written out entry by entry with :mod:`densemark.core.detmath`'s sin/cos and
elementwise products, so neither numpy's SIMD dispatch nor a BLAS kernel can change a bit.
"""

from __future__ import annotations

import numpy as np

from densemark.core import detmath
from densemark.core.errors import InputError


def rotation_3ddfa(angles: np.ndarray) -> np.ndarray:
    """Rotation matrices from 3DDFA angles.

    Args:
        angles: (..., 3) [pitch, yaw, roll] in radians.

    Returns:
        (..., 3, 3) float64 ``R = Rx @ Ry @ Rz`` as in face3d's ``angle2matrix_3ddfa``.
    """
    a = np.asarray(angles, np.float64)
    if a.shape[-1] != 3:
        raise InputError(None, "angles", f"expected (..., 3), got {a.shape}")
    s, c = detmath.sincos(a)
    sx, sy, sz = s[..., 0], s[..., 1], s[..., 2]
    cx, cy, cz = c[..., 0], c[..., 1], c[..., 2]
    rows = (
        (cy * cz, cy * sz, -sy),
        (sx * sy * cz - cx * sz, sx * sy * sz + cx * cz, sx * cy),
        (cx * sy * cz + sx * sz, cx * sy * sz - sx * cz, cx * cy),
    )
    return np.stack([np.stack(r, -1) for r in rows], -2)


def pose_para_to_srt(pose_para: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split (..., 7) ``Pose_Para`` into scale (...,), rotation (..., 3, 3), translation (..., 3)."""
    p = np.asarray(pose_para, np.float64)
    if p.shape[-1] != 7:
        raise InputError(None, "Pose_Para", f"expected (..., 7), got {p.shape}")
    return p[..., 6], rotation_3ddfa(p[..., :3]), p[..., 3:6]


def transform_3ddfa(vertices: np.ndarray, pose_para: np.ndarray) -> np.ndarray:
    """Pose model instances: ``s * X @ R.T + t``.

    Args:
        vertices: (N, 3) or (B, N, 3) model-space vertices.
        pose_para: (7,) or (B, 7) ``[pitch, yaw, roll, tx, ty, tz, s]``.

    Returns:
        Posed vertices with the broadcast batch shape, float64.
    """
    s, r, t = pose_para_to_srt(pose_para)
    v = np.asarray(vertices, np.float64)
    r = r[..., None, :, :]  # (..., 1, 3, 3) against (..., N, 3)
    rot = np.stack(
        [
            v[..., 0] * r[..., i, 0] + v[..., 1] * r[..., i, 1] + v[..., 2] * r[..., i, 2]
            for i in range(3)
        ],
        -1,
    )
    return s[..., None, None] * rot + t[..., None, :]


def to_image(vertices: np.ndarray, height: float | np.ndarray) -> np.ndarray:
    """Flip y to image rows: ``y_img = height - 1 - y`` (x and z unchanged).

    Args:
        vertices: (..., N, 3).
        height: image height, scalar or broadcastable to (..., N), e.g. (B, 1) for a batch.
    """
    out = np.array(vertices, np.float64, copy=True)
    out[..., 1] = np.asarray(height, np.float64) - 1 - out[..., 1]
    return out


def matrix_to_angles_3ddfa(r: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rotation_3ddfa` for (..., 3, 3) rotations: (..., 3) [pitch, yaw, roll].

    Uses ``R[0, 2] = -sin(yaw)``; exact away from gimbal lock (|yaw| = 90 degrees).
    """
    r = np.asarray(r, np.float64)
    yaw = -detmath.asin(np.clip(r[..., 0, 2], -1.0, 1.0))
    pitch = detmath.atan2(r[..., 1, 2], r[..., 2, 2])
    roll = detmath.atan2(r[..., 0, 1], r[..., 0, 0])
    return np.stack([pitch, yaw, roll], -1)
