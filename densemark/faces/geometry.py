"""Batched per-sample geometry: 3DMM fit -> posed image-space mesh -> crop-space mesh.

For a batch of fits it computes, with a handful of array operations and no per-vertex Python:

1. the 68 keypoints alone (68 rows of the bases), posed, to place each sample's crop;
2. one affine map per sample folding pose, image y flip and crop into ``A (3, 3), b (3,)``;
3. every vertex of every sample as one GEMM over the bases, written straight into the
   vertex-major layout ``(N, B, 3)`` that :meth:`UVMap.render` consumes without a transpose.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from densemark.core.errors import InputError
from densemark.faces.crop import CropTransform, crop_square, crop_transform
from densemark.faces.model import MorphableModel
from densemark.faces.pose import pose_para_to_srt, to_image, transform_3ddfa


@dataclass(frozen=True, eq=False)
class BatchGeometry:
    """Attributes:
        vertices: (N, B, 3) float32 crop-space vertices (vertex-major).
        crops: B crop transforms (image pixels -> crop pixels; z shifted so min z is 0).
        image_kpt: (B, 68, 3) float64 image-space keypoints (x, y_img, z).
    """

    vertices: np.ndarray
    crops: list[CropTransform]
    image_kpt: np.ndarray

    def sample_major(self) -> np.ndarray:
        """(B, N, 3) float32 copy of :attr:`vertices`."""
        return np.ascontiguousarray(self.vertices.transpose(1, 0, 2))


def _coeffs(p: np.ndarray | None, k: int, b: int) -> np.ndarray:
    """(B, k) float32 coefficients; a basis-free model (k = 0, e.g. the BFM mean) ignores them."""
    if p is None or k == 0:
        return np.zeros((b, k), np.float32)
    return MorphableModel._coeffs(np.asarray(p).reshape(b, -1), k, "coefficients")


def keypoints_model_space(model: MorphableModel, shape: np.ndarray, exp: np.ndarray) -> np.ndarray:
    """(B, 68, 3) model-space keypoints from (B, S) and (B, E) coefficients (68 basis rows only)."""
    rows = (3 * model.kpt_ind[:, None] + np.arange(3)).ravel()
    out = np.broadcast_to(model.mean[model.kpt_ind].reshape(1, -1), (shape.shape[0], rows.size)).astype(np.float64)
    if model.n_shape:
        out = out + shape @ model.shape_basis[rows].T
    if model.n_exp:
        out = out + exp @ model.exp_basis[rows].T
    return out.reshape(-1, 68, 3)


def pose_batch(
    model: MorphableModel,
    shape_para: np.ndarray | None,
    exp_para: np.ndarray | None,
    pose_para: np.ndarray,
    image_height: int | np.ndarray,
    res: int = 256,
    crop_scale: float = 1.5,
    jitter: float = 0.0,
    size_jitter: float = 0.0,
    rngs: list[np.random.Generator] | None = None,
) -> BatchGeometry:
    """Crop-space meshes of a batch of fits (PRNet's 300W-LP preparation, batched).

    Args:
        model: the morphable model.
        shape_para: (B, S) identity coefficients (None: zeros).
        exp_para: (B, E) expression coefficients (None: zeros).
        pose_para: (B, 7) ``[pitch, yaw, roll, tx, ty, tz, s]``.
        image_height: the source image height (scalar or (B,)), for the y flip.
        res: crop side.
        crop_scale, jitter, size_jitter: see :func:`densemark.faces.crop.crop_square`.
        rngs: one generator per sample (seeded from params and the sample id) when jittering.

    Returns:
        :class:`BatchGeometry`.
    """
    pose = np.asarray(pose_para, np.float64).reshape(-1, 7)
    b = pose.shape[0]
    h = np.broadcast_to(np.asarray(image_height, np.float64), (b,))
    sp = _coeffs(shape_para, model.n_shape, b)
    ep = _coeffs(exp_para, model.n_exp, b)
    if rngs is not None and len(rngs) != b:
        raise InputError(None, "rngs", f"{len(rngs)} generators for a batch of {b}")

    # 1. keypoints -> crop squares
    kpt = transform_3ddfa(keypoints_model_space(model, sp, ep), pose)
    kpt = to_image(kpt, h[:, None])
    scale, rot, trans = pose_para_to_srt(pose)
    a = np.empty((b, 3, 3))
    off = np.empty((b, 3))
    tfs = []
    for i in range(b):
        center, side = crop_square(kpt[i, :, :2], crop_scale, jitter, size_jitter, rngs[i] if rngs else None)
        tf = crop_transform(center, side, res)
        flip = np.array([tf.scale, -tf.scale, tf.scale])  # crop scale with the image y flip
        a[i] = flip[:, None] * scale[i] * rot[i]
        off[i] = flip * trans[i] + np.array([tf.tx, tf.scale * (h[i] - 1) + tf.ty, 0.0])
        tfs.append(tf)

    # 2. every vertex, vertex-major: (3N, B) -> (N, 3, B)
    n = model.n_vertices
    y = np.empty((3 * n, b), np.float32)
    y[:] = model.mean.reshape(-1, 1)
    if model.n_shape:
        y += model.shape_basis @ sp.T
    if model.n_exp:
        y += model.exp_basis @ ep.T
    y3 = y.reshape(n, 3, b)
    out = np.empty((n, b, 3), np.float32)
    a32, off32 = a.astype(np.float32), off.astype(np.float32)
    for r in range(3):
        o = out[:, :, r]
        np.multiply(y3[:, 0], a32[:, r, 0], out=o)
        o += y3[:, 1] * a32[:, r, 1]
        o += y3[:, 2] * a32[:, r, 2]
        o += off32[:, r]
    zmin = out[:, :, 2].min(0)  # (B,)
    out[:, :, 2] -= zmin
    # z' = sc * z_img - zmin: the folded map already holds sc * z_img
    crops = [dataclasses.replace(tf, tz=float(-zmin[i])) for i, tf in enumerate(tfs)]
    return BatchGeometry(vertices=out, crops=crops, image_kpt=kpt)
