"""Landmark labels straight from geometry: a landmark set's barycentric rows, posed per sample.

A landmark set indexes template vertices = UV face pixels ``template.face_ind[ids]``; each is a
fixed barycentric row over model vertices (:meth:`UVMap.rows`). :class:`LabelGeometry` folds
them once per (model, set) into K rows of model basis (the map is linear, so interpolating in
model space before the pose equals interpolating the posed vertices, up to float32 rounding);
per sample only those K points and the 68 keypoint vertices are computed (deterministically:
:class:`densemark.faces.geometry.BasisRows`), then posed and cropped with the float32 steps of
:func:`densemark.faces.geometry.pose_batch`. The keypoints and crops are bit-identical to
``pose_batch``'s; the landmarks equal the position map at the set's pixels to float precision.

The z shift (crop z starts at 0 over the whole mesh) needs the mesh minimum: patch bounds
(:class:`_Patches`) leave a few dozen candidate vertices per sample, computed exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from densemark.core.errors import InputError
from densemark.core.matio import load_npz_cache, save_npz_cache
from densemark.faces.crop import CropTransform
from densemark.faces.geometry import (
    BasisRows,
    apply_affine32,
    crops_from_keypoints,
    dot_error,
    image_keypoints,
    left_to_right,
    pose_affine,
    settle_float32,
)
from densemark.faces.model import MorphableModel
from densemark.faces.template import FaceTemplate
from densemark.faces.uvmap import UVMap


@dataclass(frozen=True, eq=False)
class Labels:
    """Labels of a batch.

    Attributes:
        landmarks: (B, K, 3) float32 crop pixels (x right, y down, z shifted like the position maps).
        kpt68: (B, 68, 3) float32 the model's 68 keypoint vertices, same space.
        crops: B crop transforms (``tz`` = minus the mesh's minimum scaled z).
        flipped: (B, K, 3) float32 landmarks of the mirrored crop (see :func:`mirror_sources`), or
            None when the geometry was made without a mirror permutation.
    """

    landmarks: np.ndarray
    kpt68: np.ndarray
    crops: list[CropTransform]
    flipped: np.ndarray | None = None


def mirror_sources(
    template: FaceTemplate, ids: np.ndarray, perm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where each landmark of a mirrored crop is read: the UV pixel mirror ``(u, v) -> (res-1-u, v)``.

    In the crop mirrored left-right, landmark ``j`` (UV pixel ``(u, v)`` of the mirrored face)
    sits at the image mirror of the original face's surface point at ``(res-1-u, v)``. For a pair
    of the set's mirror permutation that point is the partner ``perm[j]``; a point of the two
    centre columns is paired with itself by the set convention (the map has no centre column),
    but its mirror pixel is the neighbouring column, one UV pixel away: that pixel is labelled
    as an extra point, so flipped labels are exact there too.

    Where the mirror pixel is off the face (no template vertex), the permutation's partner is kept.

    Args:
        template: the face template; ids: (K,) template vertex ids; perm: (K,) mirror permutation.

    Returns:
        index: (K,) int64 into ``[ids..., extra...]``: flipped landmark ``j`` = the x-mirror of point ``index[j]``.
        extra: (E,) int64 template vertex ids to label besides the set's own (E = 0 for a set
            whose every pair is a pixel mirror).
    """
    ids, perm = np.asarray(ids, np.int64), np.asarray(perm, np.int64)
    mir = template.mirror_ids[ids]  # the vertex at the mirror pixel, -1 off the face
    index = perm.copy()
    pos = {int(v): i for i, v in enumerate(ids.tolist())}
    extra: list[int] = []
    for j in np.flatnonzero((mir >= 0) & (mir != ids[perm])).tolist():
        v = int(mir[j])
        if v in pos:  # the mirror pixel is another landmark of the set
            index[j] = pos[v]
        else:
            if v not in extra:
                extra.append(v)
            index[j] = len(ids) + extra.index(v)
    return index, np.asarray(extra, np.int64)


class LabelGeometry:
    """Per (model, template, landmark-set ids): the landmarks' basis rows, the keypoints', the mesh bounds.

    Args:
        model: the morphable model.
        uvmap: its UV map (``res`` = the template's).
        template: the face template the ids index.
        ids: (K,) template vertex ids.
        full_mesh: keep the float32 bases for the z-minimum search (a relabel does not need it).
        patches_cache: an ``.npz`` path keyed by the model's content hash: the patch bounds of the
            z-minimum search are loaded from it, or computed and saved there (None: computed).
        mirror_perm: (K,) the set's mirror permutation: labels of the mirrored crop are computed
            too (:func:`mirror_sources`; ``Labels.flipped``). None: no flipped labels.
        err_scale: factor on the rounding bound of the z-minimum search's matrix products; the
            result is exact for any value >= 1 (larger values only send more entries through
            the left-to-right recomputation, which the exactness tests use).
        matmul_ratio: the z-minimum search forms one (unique candidate vertices x batch) matrix
            product while that costs at most this many times the (candidate, sample) pairs,
            else the pairs' products only (same result; cost only).
    """

    def __init__(
        self, model: MorphableModel, uvmap: UVMap, template: FaceTemplate, ids: np.ndarray, full_mesh: bool = True,
        patches_cache: str | os.PathLike | None = None, mirror_perm: np.ndarray | None = None,
        err_scale: float = 1.0, matmul_ratio: float = 32,
    ):  # fmt: skip
        if not err_scale >= 1:
            raise InputError(
                None, "err_scale", f"must be >= 1 (a smaller bound is not exact), got {err_scale}"
            )
        self.err_scale, self.matmul_ratio = float(err_scale), float(matmul_ratio)
        if template.res != uvmap.res:
            raise InputError(
                None, "template", f"template side {template.res} != UV map side {uvmap.res}"
            )
        pix = template.face_ind[np.asarray(ids, np.int64)]
        self.n_points = int(pix.shape[0])
        self.flip_index: np.ndarray | None = None
        if mirror_perm is not None:
            self.flip_index, extra = mirror_sources(template, ids, mirror_perm)
            pix = np.concatenate([pix, template.face_ind[extra]])
        vids, w = uvmap.rows(pix)
        self.model = model
        self.rows = BasisRows(
            model, vids, w
        )  # the landmarks (+ extra mirror pixels): barycentric rows of the bases
        self.kpt_rows = BasisRows(model, model.kpt_ind)
        if full_mesh:
            self._patches = _Patches.cached(model, patches_cache)

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
        yk = self.kpt_rows(c).reshape(68, 3, b)
        kpt_img = image_keypoints(np.ascontiguousarray(yk.transpose(2, 0, 1)), pose, h)
        tfs = crops_from_keypoints(kpt_img, res, crop_scale, jitter, size_jitter, rngs)
        a, off = pose_affine(pose, h, tfs)
        zmin = self.mesh_zmin(c, a, off)
        kpt = apply_affine32(yk, a, off)
        kpt[:, :, 2] -= zmin
        lm = apply_affine32(self.rows(c).reshape(-1, 3, b), a, off)
        lm[:, :, 2] -= zmin
        crops = [
            CropTransform(tf.scale, tf.tx, tf.ty, float(-zmin[i]), tf.size)
            for i, tf in enumerate(tfs)
        ]
        lm = lm.transpose(1, 0, 2)
        return Labels(
            np.ascontiguousarray(lm[:, : self.n_points]),
            np.ascontiguousarray(kpt.transpose(1, 0, 2)),
            crops,
            self._flipped(lm, res),
        )

    def _flipped(self, lm: np.ndarray, res: int | np.ndarray) -> np.ndarray | None:
        """(B, K, 3) labels of the mirrored crops (sides ``res``: int or (B,)) from (B, K + E, 3)
        labels; None without a mirror. Row by row what :func:`flip_points` gives."""
        if self.flip_index is None:
            return None
        out = np.array(lm[:, self.flip_index], copy=True)
        out[..., 0] = (np.asarray(res, np.float64) - 1).astype(out.dtype).reshape(-1, 1) - out[
            ..., 0
        ]
        return out

    def relabel(
        self, coeffs: np.ndarray, pose_para: np.ndarray, image_height: np.ndarray, crops: np.ndarray
    ) -> Labels:
        """Labels from stored fits and crop transforms, no mesh minimum needed.

        Args:
            coeffs: (B, C) float32 concatenated shape + expression coefficients.
            pose_para: (B, 7); image_height: (B,); crops: (B, 5) ``[scale, tx, ty, tz, size]``.

        Returns:
            ``landmarks`` (B, K, 3) float32 and ``flipped`` bit-identical to :meth:`compute` for
            the same fit (``kpt68`` is empty (B, 0, 3); ``crops`` those given).
        """
        cr = np.asarray(crops, np.float64).reshape(-1, 5)
        a, off = pose_affine(pose_para, image_height, cr)
        lm = apply_affine32(self.rows(coeffs).reshape(-1, 3, cr.shape[0]), a, off)
        lm[:, :, 2] -= (-cr[:, 3]).astype(np.float32)
        lm = lm.transpose(1, 0, 2)
        crop_list = [
            CropTransform(sc, tx, ty, tz, int(round(size))) for sc, tx, ty, tz, size in cr.tolist()
        ]
        flipped = self._flipped(lm, np.round(cr[:, 4]))
        return Labels(
            np.ascontiguousarray(lm[:, : self.n_points]),
            np.zeros((cr.shape[0], 0, 3), np.float32),
            crop_list,
            flipped,
        )

    def mesh_zmin(self, coeffs: np.ndarray, a: np.ndarray, off: np.ndarray) -> np.ndarray:
        """(B,) float32 exact minimum over the whole mesh of the posed float32 z (as pose_batch computes it).

        Patch bounds (:class:`_Patches`) leave a few dozen candidate vertices per sample; those are
        computed exactly (the defining left-to-right sums, then the float32 pose steps).
        """
        m = self.model
        b = coeffs.shape[0]
        cand_v, cand_b = self._patches.candidates(coeffs, a, off)
        # samples of a batch share most candidates: gather each vertex's basis rows once (the
        # bases may be column-major, where a row gather is the costly part) and form every
        # (candidate row, sample) product with one matrix product
        uv, inv = np.unique(cand_v, return_inverse=True)
        rows_u = (3 * uv[:, None] + np.arange(3)).ravel()
        basis = np.concatenate([m.shape_basis[rows_u], m.exp_basis[rows_u]], 1).astype(
            np.float64
        )  # (3U, C)
        mean = m.mean.reshape(-1)[rows_u].astype(np.float64)
        c64 = coeffs.astype(np.float64)
        ri = (
            3 * inv[:, None] + np.arange(3)
        ).ravel()  # each candidate's 3 rows in the unique block
        cb = np.repeat(cand_b, 3)
        # the vertex coordinates are *defined* by left-to-right float64 sums (BasisRows); a dot
        # product in any order (BLAS, FMA) is within ``err`` of that sum, which settles the
        # float32 rounding of all but a rare few entries, recomputed left to right
        if len(uv) * b <= self.matmul_ratio * len(cand_v):
            acc = mean[ri] + (basis @ c64.T)[ri, cb]
        else:  # candidates rarely shared: the products of the (candidate, sample) pairs only
            acc = mean[ri] + np.einsum("mk,mk->m", basis[ri], c64[cb])
        ks = self._patches.n_shape
        cmax = np.abs(c64[:, :ks]).max(1, initial=0)[cb], np.abs(c64[:, ks:]).max(1, initial=0)[cb]
        big = self._patches.amax + self._patches.rsum[0] * cmax[0] + self._patches.rsum[1] * cmax[1]
        err = self.err_scale * dot_error(c64.shape[1], big)
        ye = settle_float32(
            acc, err, lambda f: left_to_right(mean[ri[f]], basis[ri[f]], c64[cb[f]])
        ).reshape(-1, 3)
        a32, off32 = a.astype(np.float32), off.astype(np.float32)
        ze = ye[:, 0] * a32[cand_b, 2, 0]
        ze += ye[:, 1] * a32[cand_b, 2, 1]
        ze += ye[:, 2] * a32[cand_b, 2, 2]
        ze += off32[cand_b, 2]
        out = np.full(b, np.inf, np.float32)
        np.minimum.at(out, cand_b, ze)
        return out


class _Patches:
    """Vertex patches (a grid over the mean shape's x, y) with per-basis-column displacement
    centres and radii, to bound every vertex's posed z without computing the mesh.

    For a vertex v in patch P and a posing row ``a2`` (3,): ``a2 . X_v = a2 . mean_v + a2 . C_P c +
    a2 . (B_v - C_P) c`` and the last term is at most ``|a2| sum_k |c_k| rho_Pk``. The vertices whose
    lower bound does not exceed the smallest upper bound (plus a float slack) hold the minimum.
    """

    FIELDS = (
        "patch",
        "rho",
        "centre",
        "order",
        "starts",
        "ends",
        "mean_sorted",
        "n_shape",
        "amax",
        "rsum",
    )

    @classmethod
    def cached(cls, model: MorphableModel, path: str | os.PathLike | None) -> _Patches:
        """The patches of ``model``, loaded from ``path`` (an ``.npz`` keyed by the model's content
        hash) when readable and consistent, else computed (and saved there)."""
        if path is None:
            return cls(model)
        z = load_npz_cache(path)
        if z is not None:
            try:
                obj = cls.__new__(cls)
                for f in cls.FIELDS:
                    setattr(obj, f, z[f])
                obj.n_shape, obj.amax, obj.rsum = (
                    int(obj.n_shape),
                    float(obj.amax),
                    (float(obj.rsum[0]), float(obj.rsum[1])),
                )
                if (
                    obj.order.shape == (model.n_vertices,)
                    and obj.rho.shape[1] == model.n_shape + model.n_exp
                ):
                    return obj
            except (ValueError, KeyError, IndexError):
                pass  # inconsistent: rebuilt below
        obj = cls(model)
        save_npz_cache(path, {k: np.asarray(getattr(obj, k)) for k in cls.FIELDS})
        return obj

    def __init__(self, model: MorphableModel, cells: int = 32):
        n = model.n_vertices
        xy = model.mean[:, :2].astype(np.float64)
        g = (
            np.floor((xy - xy.min(0)) / (np.ptp(xy, 0) + 1e-12) * cells)
            .clip(0, cells - 1)
            .astype(np.int64)
        )
        _, self.patch = np.unique(g[:, 0] * cells + g[:, 1], return_inverse=True)
        order = np.argsort(self.patch, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(self.patch[order]) != 0])
        count = np.diff(np.r_[starts, n])
        basis = np.concatenate([model.shape_basis, model.exp_basis], 1).reshape(n, 3, -1)[
            order
        ]  # (n, 3, K) float32
        k = basis.shape[2]
        # any centre works (rho is measured from the very centre stored): float32 keeps this cheap
        centre = (
            np.add.reduceat(basis, starts, axis=0) / count[:, None, None].astype(np.float32)
        ).astype(np.float32)
        pidx = np.repeat(np.arange(len(starts)), count)
        dev = np.zeros((n, k), np.float32)
        for j in range(3):
            d = basis[:, j] - centre[pidx, j]
            dev += d * d
        np.sqrt(dev, out=dev)
        self.rho = (
            np.maximum.reduceat(dev, starts, axis=0).astype(np.float64) * (1 + 1e-4) + 1e-30
        )  # (P, K)
        self.centre = centre.reshape(3 * len(starts), k).astype(np.float64)  # (3P, K)
        self.order, self.starts, self.ends = order, starts, np.r_[starts[1:], n]
        self.mean_sorted = model.mean[order].astype(np.float64)
        self.n_shape = model.n_shape
        self.amax = float(np.abs(model.mean).max())
        self.rsum = (
            float(np.abs(model.shape_basis).sum(1).max(initial=0)),
            float(np.abs(model.exp_basis).sum(1).max(initial=0)),
        )

    def candidates(
        self, coeffs: np.ndarray, a: np.ndarray, off: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(vertex ids, sample index) pairs that may hold each sample's minimum posed z."""
        c = coeffs.astype(np.float64)  # (B, K)
        a2 = a[:, 2, :]  # (B, 3)
        zm = (
            a2 @ self.mean_sorted.T
        )  # (B, n), vertices in patch order (sample-major: contiguous reductions)
        zc = np.einsum("bpj,bj->bp", (c @ self.centre.T).reshape(c.shape[0], -1, 3), a2)  # (B, P)
        rad = np.linalg.norm(a2, axis=1)[:, None] * (np.abs(c) @ self.rho.T)  # (B, P)
        pmin = (
            np.minimum.reduceat(zm, self.starts, axis=1) + zc
        )  # (B, P) patch minimum of the mean part
        hi = (pmin + rad).min(1)  # an upper bound of each sample's minimum
        # slack for the float32 steps that define z and the rounding of these bounds
        ac, ks = np.abs(c), self.n_shape
        xmax = (
            self.amax
            + self.rsum[0] * ac[:, :ks].max(1, initial=0)
            + self.rsum[1] * ac[:, ks:].max(1, initial=0)
        )
        lim = hi + 1e-5 * (np.abs(a2).sum(1) * xmax + np.abs(off[:, 2]))
        pb, pp = np.nonzero(
            pmin - rad <= lim[:, None]
        )  # candidate (sample, patch) pairs, then their vertices
        lens = self.ends[pp] - self.starts[pp]
        total = int(lens.sum())
        if not total:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        first = np.cumsum(lens) - lens  # where each pair's run starts in the flat list
        idx = np.repeat(self.starts[pp] - first, lens) + np.arange(
            total
        )  # patch-order vertex positions
        rp, rb = np.repeat(pp, lens), np.repeat(pb, lens)
        ok = zm[rb, idx] + (zc[rb, rp] - rad[rb, rp]) <= lim[rb]
        return self.order[idx[ok]], rb[ok]


def flip_points(points: np.ndarray, perm: np.ndarray, res: int) -> np.ndarray:
    """Mirror crop-space points (..., K, 3): reorder by the mirror permutation, ``x -> res - 1 - x``."""
    out = np.array(points[..., perm, :], copy=True)
    out[..., 0] = np.asarray(res - 1, out.dtype) - out[..., 0]
    return out


def flip_image(image: np.ndarray) -> np.ndarray:
    """Mirror an (H, W[, C]) image left-right."""
    return np.ascontiguousarray(image[:, ::-1])
