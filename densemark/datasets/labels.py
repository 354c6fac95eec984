"""Landmark labels straight from geometry: a landmark set's barycentric rows, posed per sample.

A landmark set indexes template vertices = UV face pixels ``template.face_ind[ids]``; each is a
fixed barycentric row over model vertices (:meth:`UVMap.rows`). :class:`LabelGeometry`
precomputes them once per (model, set); per sample only the vertices those rows touch (plus the
68 keypoint vertices) are computed, posed and cropped with the very float32 steps of
:func:`densemark.faces.geometry.pose_batch`, and interpolated in the order the position-map
product uses. The labels are therefore bit-identical to the position map read at the set's
pixels, for any batch and any BLAS kernel.

The z shift (crop z starts at 0 over the whole mesh) needs the mesh minimum: a float32 BLAS
product of the full mesh finds the few candidate vertices within its proven error bound of the
minimum, which are then recomputed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from densemark.core.errors import InputError
from densemark.faces.crop import CropTransform
from densemark.faces.geometry import (
    BasisRows,
    apply_affine32,
    crops_from_keypoints,
    image_keypoints,
    pose_affine,
)
from densemark.faces.model import MorphableModel
from densemark.faces.template import FaceTemplate
from densemark.faces.uvmap import UVMap

# iBUG 68-point left/right pairs (the standard annotation's mirror)
KPT68_MIRROR = np.array(
    [16 - i for i in range(17)]
    + [26 - i for i in range(5)] + [21 - i for i in range(5)]
    + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65],
    np.int64,
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class Labels:
    """Labels of a batch.

    Attributes:
        landmarks: (B, K, 3) float32 crop pixels (x right, y down, z shifted like the position maps).
        kpt68: (B, 68, 3) float32 the model's 68 keypoint vertices, same space.
        crops: B crop transforms (``tz`` = minus the mesh's minimum scaled z).
    """

    landmarks: np.ndarray
    kpt68: np.ndarray
    crops: list[CropTransform]


def csr_order(vids: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each barycentric row by vertex id: the order the CSR position-map product sums in."""
    o = np.argsort(vids, axis=1, kind="stable")
    return np.take_along_axis(vids, o, 1), np.take_along_axis(w, o, 1)


def interpolate(posed: np.ndarray, pos: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``sum_j w[k, j] * posed[pos[k, j]]`` summed from 0 left to right in float32, as the sparse product does.

    Args:
        posed: (M, B, 3) float32 posed vertices.
        pos: (K, 3) rows into ``posed``.
        w: (K, 3) float32 weights.

    Returns:
        (B, K, 3) float32.
    """
    acc = np.zeros((posed.shape[1], pos.shape[0], 3), np.float32)
    for j in range(pos.shape[1]):
        acc += posed[pos[:, j]].transpose(1, 0, 2) * w[None, :, j, None]
    return acc


class LabelGeometry:
    """Per (model, template, landmark-set ids): the rows, the needed vertices and their bases.

    Args:
        model: the morphable model.
        uvmap: its UV map (``res`` = the template's).
        template: the face template the ids index.
        ids: (K,) template vertex ids.
        full_mesh: keep the float32 bases for the z-minimum search (a relabel does not need it).
    """

    def __init__(self, model: MorphableModel, uvmap: UVMap, template: FaceTemplate, ids: np.ndarray, full_mesh: bool = True):
        if template.res != uvmap.res:
            raise InputError(None, "template", f"template side {template.res} != UV map side {uvmap.res}")
        vids, w = csr_order(*uvmap.rows(template.face_ind[np.asarray(ids, np.int64)]))
        self.model = model
        self.n_points = int(vids.shape[0])
        self.needed = np.unique(np.concatenate([vids.ravel(), model.kpt_ind]))
        self.pos = np.searchsorted(self.needed, vids)
        self.w = w
        self.kpt_pos = np.searchsorted(self.needed, model.kpt_ind)
        self.rows = BasisRows(model, self.needed)
        self.full_mesh = full_mesh

    def posed(self, coeffs: np.ndarray, a: np.ndarray, off: np.ndarray) -> np.ndarray:
        """(M, B, 3) float32 posed needed vertices (before the z shift)."""
        y = self.rows(coeffs).reshape(len(self.needed), 3, -1)
        return apply_affine32(y, a, off)

    def compute(
        self,
        shape_para: np.ndarray | None,
        exp_para: np.ndarray | None,
        pose_para: np.ndarray,
        image_height: np.ndarray,
        res: int = 256,
        crop_scale: float = 1.5,
        jitter: float = 0.0,
        size_jitter: float = 0.0,
        rngs: list[np.random.Generator] | None = None,
    ) -> Labels:
        """Labels of a batch of fits (arguments as :func:`densemark.faces.geometry.pose_batch`)."""
        pose = np.asarray(pose_para, np.float64).reshape(-1, 7)
        b = pose.shape[0]
        h = np.broadcast_to(np.asarray(image_height, np.float64), (b,))
        c = self.rows.coefficients(shape_para, exp_para, b)
        y = self.rows(c).reshape(len(self.needed), 3, b)
        kpt_img = image_keypoints(np.ascontiguousarray(y[self.kpt_pos].transpose(2, 0, 1)), pose, h)
        tfs = crops_from_keypoints(kpt_img, res, crop_scale, jitter, size_jitter, rngs)
        a, off = pose_affine(pose, h, tfs)
        posed = apply_affine32(y, a, off)
        zmin = self.mesh_zmin(c, a, off)
        posed[:, :, 2] -= zmin
        crops = [CropTransform(tf.scale, tf.tx, tf.ty, float(-zmin[i]), tf.size) for i, tf in enumerate(tfs)]
        return Labels(interpolate(posed, self.pos, self.w), np.ascontiguousarray(posed[self.kpt_pos].transpose(1, 0, 2)), crops)

    def relabel(self, coeffs: np.ndarray, pose_para: np.ndarray, image_height: np.ndarray, crops: np.ndarray) -> np.ndarray:
        """Labels from stored fits and crop transforms, no mesh minimum needed.

        Args:
            coeffs: (B, K) float32 concatenated shape + expression coefficients.
            pose_para: (B, 7); image_height: (B,); crops: (B, 5) ``[scale, tx, ty, tz, size]``.

        Returns:
            (B, K, 3) float32, bit-identical to :meth:`compute` for the same fit.
        """
        cr = np.asarray(crops, np.float64).reshape(-1, 5)
        tfs = [CropTransform(float(s), float(tx), float(ty), float(tz), int(n)) for s, tx, ty, tz, n in cr]
        a, off = pose_affine(pose_para, image_height, tfs)
        posed = self.posed(coeffs, a, off)
        posed[:, :, 2] -= (-cr[:, 3]).astype(np.float32)
        return interpolate(posed, self.pos, self.w)

    def mesh_zmin(self, coeffs: np.ndarray, a: np.ndarray, off: np.ndarray) -> np.ndarray:
        """(B,) float32 exact minimum over the whole mesh of the posed float32 z (as pose_batch computes it)."""
        m = self.model
        b = coeffs.shape[0]
        n = m.n_vertices
        ks = m.n_shape
        y = np.empty((3 * n, b), np.float32)
        y[:] = m.mean.reshape(-1, 1)
        if ks:
            y += m.shape_basis @ np.ascontiguousarray(coeffs[:, :ks].T)
        if m.n_exp:
            y += m.exp_basis @ np.ascontiguousarray(coeffs[:, ks:].T)
        y3 = y.reshape(n, 3, b)
        a32, off32 = a.astype(np.float32), off.astype(np.float32)
        z = y3[:, 0] * a32[:, 2, 0]
        z += y3[:, 1] * a32[:, 2, 1]
        z += y3[:, 2] * a32[:, 2, 2]
        z += off32[:, 2]
        # bound on |approx - exact| per sample: basis error through the row of A, plus the chain's roundings
        cmax = np.abs(coeffs).max(1) if coeffs.shape[1] else np.zeros(b)
        arow = np.abs(a32[:, 2]).sum(1)
        ymax = np.abs(y).max(0)
        err = self.rows.error_bound32(cmax) * arow * 1.01 + 8 * 2.0**-24 * (arow * ymax + np.abs(off32[:, 2]) + np.abs(z).max(0))
        err = err + 1e-30
        zmin_a = z.min(0)
        cand_v, cand_b = np.nonzero(z <= (zmin_a + 2 * err)[None, :])
        # exact values of the candidates: the defining left-to-right sums
        rows = (3 * cand_v[:, None] + np.arange(3)).ravel()
        c64 = coeffs.astype(np.float64)
        cb = np.repeat(cand_b, 3)
        acc = m.mean.reshape(-1)[rows].astype(np.float64)
        basis = np.concatenate([m.shape_basis[rows], m.exp_basis[rows]], 1)
        for k in range(c64.shape[1]):
            acc += basis[:, k] * c64[cb, k]
        ye = acc.astype(np.float32).reshape(-1, 3)
        ze = ye[:, 0] * a32[cand_b, 2, 0]
        ze += ye[:, 1] * a32[cand_b, 2, 1]
        ze += ye[:, 2] * a32[cand_b, 2, 2]
        ze += off32[cand_b, 2]
        out = np.full(b, np.inf, np.float32)
        np.minimum.at(out, cand_b, ze)
        return out


def flip_points(points: np.ndarray, perm: np.ndarray, res: int) -> np.ndarray:
    """Mirror crop-space points (..., K, 3): reorder by the mirror permutation, ``x -> res - 1 - x``."""
    out = np.array(points[..., perm, :], copy=True)
    out[..., 0] = np.asarray(res - 1, out.dtype) - out[..., 0]
    return out


def flip_image(image: np.ndarray) -> np.ndarray:
    """Mirror an (H, W[, C]) image left-right."""
    return np.ascontiguousarray(image[:, ::-1])
