"""Batched per-sample geometry: 3DMM fit -> posed image-space mesh -> crop-space mesh.

For a batch of fits it computes, with a handful of array operations and no per-vertex Python:

1. the 68 keypoints alone (68 rows of the bases), posed, to place each sample's crop;
2. one affine map per sample folding pose, image y flip and crop into ``A (3, 3), b (3,)``;
3. every vertex of every sample as one product over the bases, written straight into the
   vertex-major layout ``(N, B, 3)`` that :meth:`UVMap.render` consumes without a transpose.

Reproducibility: BLAS results change with operand shapes and CPU kernels, so nothing that
reaches an output depends on them. :class:`BasisRows` defines each basis product entry as a
fixed left-to-right float64 sum rounded to float32 (computed fast with a BLAS product whose
error bound proves the rounding, falling back to the sum where it cannot); rotations and the
pose are elementwise. The same fit thus gives the same bits in any batch, any subset of
vertices (the dataset labels) and on any BLAS kernel.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from densemark.core.errors import InputError
from densemark.faces.crop import CropTransform, crop_square, crop_transform
from densemark.faces.model import MorphableModel
from densemark.faces.pose import rotation_3ddfa


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


_U64 = 2.0**-53


class BasisRows:
    """``mean + [shape_basis | exp_basis] @ coeffs`` at chosen vertices, bit-reproducible.

    The value of every entry is *defined* as the float32 rounding of the float64 sum
    ``mean + t_0 + t_1 + ... + t_{K-1}`` taken left to right, with ``t_k = basis[r, k] * c_k``
    (exact in float64 for vertex rows: both factors are float32). It therefore never depends on the batch
    size, on which rows are asked for, or on the BLAS kernel. It is computed fast: a float64
    BLAS product, then every entry whose float32 rounding the BLAS error bound cannot settle
    (about one in a million) is recomputed left to right.

    Args:
        model: the morphable model.
        vids: (V,) vertex ids (None: every vertex); with ``weights``, (V, J) ids of barycentric rows.
        weights: (V, J) weights: the rows are then the points ``sum_j weights[:, j] * vertex[vids[:, j]]``
            (their float64 mean and basis rows are fixed once, so the definition above still holds).
    """

    def __init__(
        self,
        model: MorphableModel,
        vids: np.ndarray | None = None,
        weights: np.ndarray | None = None,
    ):
        self.k_shape, self.k_exp = model.n_shape, model.n_exp
        if (
            weights is not None
        ):  # rows of barycentric combinations: point k = sum_j w[k, j] vertex vids[k, j]
            v, w = np.asarray(vids, np.int64), np.asarray(weights, np.float64)
            n = model.n_vertices
            mean = np.zeros((v.shape[0], 3))
            basis = np.zeros((v.shape[0], 3, self.k_shape + self.k_exp))
            full = (model.shape_basis.reshape(n, 3, -1), model.exp_basis.reshape(n, 3, -1))
            for j in range(v.shape[1]):
                mean += w[:, j, None] * model.mean[v[:, j]]
                basis += w[:, j, None, None] * np.concatenate(
                    [full[0][v[:, j]], full[1][v[:, j]]], 2
                )
            self.mean, self.basis = mean.reshape(-1), basis.reshape(mean.size, basis.shape[2])
            self.n_rows = self.mean.size
        else:
            if vids is None:
                rows = slice(None)
                self.n_rows = 3 * model.n_vertices
            else:
                v = np.asarray(vids, np.int64)
                rows = (3 * v[:, None] + np.arange(3)).ravel()
                self.n_rows = rows.size
            self.mean = model.mean.reshape(-1)[rows].astype(np.float64)
            self.basis = np.concatenate([model.shape_basis[rows], model.exp_basis[rows]], 1).astype(
                np.float64
            )
        self._abs_mean = np.abs(self.mean)
        # row sums of |basis| per block (identity, expression): their coefficients differ by orders of magnitude
        self._abs_rows = np.stack(
            [
                np.abs(self.basis[:, : self.k_shape]).sum(1),
                np.abs(self.basis[:, self.k_shape :]).sum(1),
            ],
            1,
        )

    def _cmax(self, c: np.ndarray) -> np.ndarray:
        """(2, B) max |coefficient| per block."""
        ks = self.k_shape
        z = np.zeros(c.shape[0])
        return np.stack(
            [np.abs(c[:, :ks]).max(1) if ks else z, np.abs(c[:, ks:]).max(1) if self.k_exp else z]
        )

    def coefficients(
        self, shape_para: np.ndarray | None, exp_para: np.ndarray | None, b: int
    ) -> np.ndarray:
        """(B, K) float32 concatenated coefficients (missing trailing ones are zero)."""
        c = np.concatenate(
            [_coeffs(shape_para, self.k_shape, b), _coeffs(exp_para, self.k_exp, b)], 1
        )
        if not np.isfinite(c).all():
            raise InputError(None, "coefficients", "non-finite shape or expression coefficients")
        return c

    def __call__(self, coeffs: np.ndarray) -> np.ndarray:
        """(R, B) float32 rows (R = 3 V, x, y, z interleaved per vertex) for (B, K) float32 coefficients."""
        c = np.asarray(coeffs, np.float32).astype(np.float64)
        k = c.shape[1]
        y = self.basis @ c.T if k else np.zeros((self.n_rows, c.shape[0]))
        y += self.mean[:, None]
        # |BLAS - reference| <= 2 gamma_{K+1} (|mean| + sum |t|) + u |y| with sum_k |t_k| <= sum_blocks
        # |row|_1 max |c| and |y| <= the same: one bound per sample (B,), the max over rows
        big = self._abs_mean.max(initial=0) + self._abs_rows.max(0, initial=0) @ self._cmax(c)
        b = c.shape[0]
        return settle_float32(y, dot_error(k, big), lambda f: self.reference(f // b, c[f % b]))

    def reference(self, rows: np.ndarray, c: np.ndarray) -> np.ndarray:
        """The defining left-to-right sums for rows (M,) with their coefficients (M, K) float64: (M,) float64."""
        return left_to_right(self.mean[rows], self.basis[rows], c)


def dot_error(k: int, big: np.ndarray | float) -> np.ndarray | float:
    """Bound on |a dot product of K terms plus one, in any order (BLAS, FMA) - the left-to-right
    float64 sum|, for terms whose absolute values (and the first) sum to at most ``big``."""
    return (2.2 * (k + 2) + 2) * _U64 * big


def settle_float32(y: np.ndarray, err: np.ndarray | float, exact) -> np.ndarray:
    """The float32 rounding of values *defined* by left-to-right sums, from float64 ``y`` (any
    shape) known to within ``err`` (broadcast) of them.

    Where ``err`` cannot change the rounding, ``y`` is rounded; the rare other entries are
    recomputed: ``exact(flat_indices)`` returns their defining float64 values.
    """
    out = y.astype(np.float32)
    bad = (y - err).astype(np.float32) != (y + err).astype(np.float32)
    if bad.any():
        f = np.flatnonzero(bad)  # 6x faster than a 2D nonzero
        out.flat[f] = exact(f).astype(np.float32)
    return out


def left_to_right(first: np.ndarray, basis: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(M,) float64 sums ``first + t_0 + t_1 + ... + t_{K-1}`` taken left to right, ``t_k = basis[:, k] * c[:, k]``.

    ``first`` (M,), ``basis`` and ``c`` (M, K) float64. ``np.add.accumulate`` adds strictly in
    order along a row, so this equals the plain loop bit for bit, without a Python step per k.
    """
    terms = np.empty((first.shape[0], basis.shape[1] + 1))
    terms[:, 0] = first
    np.multiply(basis, c, out=terms[:, 1:])
    return np.add.accumulate(terms, axis=1)[:, -1].copy()


def rotation_exact(angles: np.ndarray) -> np.ndarray:
    """(B, 3) [pitch, yaw, roll] radians -> (B, 3, 3) float64 ``Rx @ Ry @ Rz`` (face3d's
    ``angle2matrix_3ddfa``): :func:`~densemark.faces.pose.rotation_3ddfa`, written out entry by
    entry with :mod:`~densemark.core.detmath`'s sin/cos so no BLAS kernel or SIMD path can
    change a bit."""
    return rotation_3ddfa(np.asarray(angles, np.float64).reshape(-1, 3))


@lru_cache(maxsize=4)
def basis_rows(model: MorphableModel, which: str = "all") -> BasisRows:
    """Cached :class:`BasisRows` of a model: ``"all"`` vertices or the 68 ``"kpt"`` vertices."""
    return BasisRows(model, None if which == "all" else model.kpt_ind)


def pose_affine(
    pose_para: np.ndarray, image_height: np.ndarray, crops: list[CropTransform] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The per-sample affine maps folding pose, image y flip and crop: ``A (B, 3, 3), b (B, 3)`` float64.

    ``crops``: B crop transforms, or their (B, 5) ``[scale, tx, ty, tz, size]`` vectors.
    Crop-space ``p' = A @ X + b`` (before the z shift) for model-space ``X``; elementwise only.
    """
    pose = np.asarray(pose_para, np.float64).reshape(-1, 7)
    b = pose.shape[0]
    h = np.broadcast_to(np.asarray(image_height, np.float64), (b,))
    rot = rotation_exact(pose[:, :3])
    if isinstance(crops, np.ndarray):
        cr = crops.astype(np.float64).reshape(-1, 5)
        scale, tx, ty = cr[:, 0], cr[:, 1], cr[:, 2]
    else:
        scale, tx, ty = (
            np.array([getattr(tf, n) for tf in crops], np.float64) for n in ("scale", "tx", "ty")
        )
    flip = np.stack([scale, -scale, scale], 1)  # crop scale with the image y flip
    a = (flip * pose[:, 6, None])[:, :, None] * rot
    off = flip * pose[:, 3:6] + np.stack([tx, scale * (h - 1) + ty, np.zeros(b)], 1)
    return a, off


def apply_affine32(y: np.ndarray, a: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Posed float32 vertices: ``y (V, 3, B)`` float32 rows, ``a (B, 3, 3)``, ``off (B, 3)`` -> (V, B, 3) float32.

    The float32 operation sequence (per coordinate r: ``y0 a_r0 + y1 a_r1 + y2 a_r2 + b_r``, each
    step rounded) is the definition every consumer (position maps, labels, relabel) shares.
    """
    a32, off32 = a.astype(np.float32), off.astype(np.float32)
    out = np.empty((y.shape[0], y.shape[2], 3), np.float32)
    for r in range(3):
        o = out[:, :, r]
        np.multiply(y[:, 0], a32[:, r, 0], out=o)
        o += y[:, 1] * a32[:, r, 1]
        o += y[:, 2] * a32[:, r, 2]
        o += off32[:, r]
    return out


def image_keypoints(
    kpt_model: np.ndarray, pose_para: np.ndarray, image_height: np.ndarray
) -> np.ndarray:
    """(B, 68, 3) float64 image-space keypoints (x, y_img, z) from float32 model-space ones, elementwise."""
    pose = np.asarray(pose_para, np.float64).reshape(-1, 7)
    rot = rotation_exact(pose[:, :3])
    k = kpt_model.astype(np.float64)
    s = pose[:, 6, None]
    out = np.empty_like(k)
    for r in range(3):
        out[..., r] = (
            s
            * (
                rot[:, None, r, 0] * k[..., 0]
                + rot[:, None, r, 1] * k[..., 1]
                + rot[:, None, r, 2] * k[..., 2]
            )
            + pose[:, None, 3 + r]
        )
    h = np.broadcast_to(np.asarray(image_height, np.float64), (pose.shape[0],))
    out[..., 1] = (h[:, None] - 1) - out[..., 1]
    return out


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

    Every output bit is independent of the batch size and of the BLAS kernel: the basis
    product goes through :class:`BasisRows`, the pose through elementwise float32 steps
    (:func:`apply_affine32`).

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
    if rngs is not None and len(rngs) != b:
        raise InputError(None, "rngs", f"{len(rngs)} generators for a batch of {b}")
    br = basis_rows(model, "all")
    c = br.coefficients(shape_para, exp_para, b)

    # 1. keypoints -> crop squares
    kbr = basis_rows(model, "kpt")
    kpt = image_keypoints(np.ascontiguousarray(kbr(c).T.reshape(b, 68, 3)), pose, h)
    tfs = crops_from_keypoints(kpt, res, crop_scale, jitter, size_jitter, rngs)
    a, off = pose_affine(pose, h, tfs)

    # 2. every vertex, vertex-major: (3N, B) -> (N, 3, B) -> (N, B, 3)
    out = apply_affine32(br(c).reshape(model.n_vertices, 3, b), a, off)
    zmin = out[:, :, 2].min(0)  # (B,)
    out[:, :, 2] -= zmin
    # z' = sc * z_img - zmin: the folded map already holds sc * z_img
    crops = [dataclasses.replace(tf, tz=float(-zmin[i])) for i, tf in enumerate(tfs)]
    return BatchGeometry(vertices=out, crops=crops, image_kpt=kpt)


def crops_from_keypoints(
    kpt: np.ndarray,
    res: int,
    crop_scale: float = 1.5,
    jitter: float = 0.0,
    size_jitter: float = 0.0,
    rngs: list[np.random.Generator] | None = None,
) -> list[CropTransform]:
    """One crop transform per sample from (B, 68, >=2) image keypoints (tz = 0 until the z shift is known)."""
    out = []
    for i in range(kpt.shape[0]):
        center, side = crop_square(
            kpt[i, :, :2], crop_scale, jitter, size_jitter, rngs[i] if rngs else None
        )
        out.append(crop_transform(center, side, res))
    return out
