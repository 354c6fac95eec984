"""Identity and expression bases of the procedural face, and their standard deviations.

* identity (``n_shape`` columns): the semantic modes of :data:`SHAPE_NAMES` first (face
  width/length/depth, nose size/width/length, jaw width, chin, cheeks, ...), then smooth random
  fields: random combinations of UV cosines ``cos(pi a u) cos(pi b v)`` whose frequency band
  rises with the mode index (mostly mirror-symmetric; :class:`RandomShapeFields`).
  Gram-Schmidt makes them orthonormal in that order; a random candidate that is nearly a combination of the modes before it (its
  residual below :data:`MIN_RESIDUAL` of its norm) is dropped and the next one drawn, so every
  mode is a real, smooth deformation of its own, never the rounding noise of a near-dependent
  column. Columns are scaled like the BFM's orthonormal ``shapePC`` over 53,215 vertices
  (per-entry RMS ``1 / sqrt(3 * 53215)``), so real ``Shape_Para`` magnitudes give BFM-like
  displacements; ``shapeEV`` decays like 300W-LP's fitted coefficients.
* expression (``n_exp`` columns): displacement per unit coefficient in micrometres;
  :data:`EXP_NAMES` lists the semantic modes, the rest are smooth localised random modes.

Reproducible bytes: nothing that reaches the written basis goes through BLAS / LAPACK (whose
kernels differ in the last bits between CPUs): sums are numpy's own reductions
(``np.add.reduce``, ``np.einsum(..., optimize=False)``) in a fixed order, so the files are the
same under any OpenBLAS kernel; sin, cos, exp and powers come from :mod:`densemark.core.detmath`,
never from numpy's SIMD-dispatched ufuncs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from densemark.core import detmath
from densemark.faces.procedural.layout import (
    A_X,
    EYE_C,
    EYE_HALF_W,
    EYE_LO,
    EYE_UP,
    K_THETA,
    LIP_LO_V,
    LIP_UP_V,
    MOUTH_DU,
    MOUTH_V,
    V_0,
    Y_SCALE,
    flat_bump,
    gauss_bump,
    smoothstep,
    uv_frame,
)
from densemark.faces.procedural.mesh import base_surface, feature_heights

BFM_N_VERTICES = 53215  # the BFM's vertex count: basis columns are scaled as if orthonormal over it
MIN_RESIDUAL = 0.25  # a random identity candidate must keep this share of its norm after projection
ANTI_SHARE = 0.2  # share of mirror-antisymmetric random identity modes

SHAPE_NAMES = (
    "face_width",
    "face_length",
    "face_depth",
    "nose_size",
    "nose_width",
    "nose_length",
    "jaw_width",
    "chin",
    "cheeks",
    "eye_spacing",
    "eye_size",
    "brow_height",
    "mouth_width",
    "lips",
    "forehead_slope",
    "face_taper",
    "eye_depth",
    "nose_bridge",
    "nose_shift_asym",
    "face_asym",
)

EXP_NAMES = (
    "smile",
    "mouth_open",
    "brow_raise",
    "eye_close",
    "jaw_side",
    "pucker",
    "frown",
    "squint",
    "mouth_side",
    "wink",
    "cheek_puff",
    "upper_lip_raise",
    "lower_lip_depress",
    "nose_wrinkle",
    "smile_asym",
    "brow_raise_asym",
)
EXP_MOUTH_OPEN = EXP_NAMES.index("mouth_open")
EXP_EYE_CLOSE = EXP_NAMES.index("eye_close")
EYE_CLOSE_FULL = 2.5  # eye_close coefficient that shuts the lids


def symmetrize(d: np.ndarray, mirror: np.ndarray, anti: bool = False) -> np.ndarray:
    """Mirror-symmetric (or, with ``anti``, antisymmetric) part of a displacement field.

    Args:
        d: (N, 3) float64 per-vertex displacement.
        mirror: (N,) int64 mirror vertex of each vertex (``u -> 1 - u``).

    Returns:
        (N, 3) float64; symmetric means ``out[mirror] == out * (-1, 1, 1)``.
    """
    m = d[mirror] * np.array([-1.0, 1.0, 1.0])
    return 0.5 * (d - m) if anti else 0.5 * (d + m)


# ----------------------------------------------------------------------------- identity


def semantic_shape_fields(uv: np.ndarray, mean: np.ndarray) -> list[np.ndarray]:
    """The identity modes of :data:`SHAPE_NAMES`, in that order: (N, 3) float64 displacements
    (unnormalised) at vertex UV ``uv: (N, 2)`` of the mean face ``mean: (N, 3)``."""
    f = uv_frame(uv)
    du, v, sgn = f["du"], f["v"], f["sgn"]
    _, n = base_surface(f)
    fh = feature_heights(f)
    x, y, z = mean[:, 0], mean[:, 1], mean[:, 2]
    zero = np.zeros_like(x)
    nose_w = gauss_bump(du, v, 0.0, 0.61, 0.06, 0.09)
    eye_w = gauss_bump(du, v, EYE_C[0], EYE_C[1], 0.06, 0.035)
    mouth_w = gauss_bump(du, v, 0.0, 0.455, 0.09, 0.05)
    lower = smoothstep(0.55, 0.3, v)
    ex = 0.5 + np.sign(x) * (0.5 - EYE_C[0])
    return [
        np.stack([x, zero, zero], 1),
        np.stack([zero, y - y.mean(), zero], 1),
        np.stack([zero, zero, z - z.mean()], 1),
        fh["nose"][:, None] * n,
        np.stack([x * nose_w, zero, zero], 1),
        np.stack([zero, -30000 * nose_w * smoothstep(0.75, 0.6, v), zero], 1),
        np.stack([x * lower, zero, zero], 1),
        (fh["chin"] + 3000 * gauss_bump(du, v, 0, 0.26, 0.1, 0.06))[:, None] * n,
        fh["cheeks"][:, None] * n,
        np.stack([sgn * 20000 * eye_w, zero, zero], 1),
        np.stack(
            [
                (x - np.sign(x) * A_X * detmath.sin(K_THETA * (ex - 0.5))) * eye_w,
                (y - Y_SCALE * (EYE_C[1] - V_0)) * eye_w,
                zero,
            ],
            1,
        ),  # fmt: skip
        np.stack([zero, 20000 * gauss_bump(du, v, 0.16, 0.84, 0.12, 0.04), zero], 1),
        np.stack([x * mouth_w, zero, zero], 1),
        fh["lips"][:, None] * n,
        np.stack([zero, zero, -60000 * np.maximum(v - 0.8, 0)], 1),
        np.stack([x * (v - 0.55), zero, zero], 1),
        fh["eyes"][:, None] * n,
        (6000 * gauss_bump(du, v, 0.0, 0.72, 0.03, 0.06))[:, None] * n,
        np.stack([20000 * nose_w, zero, zero], 1),
        np.stack([zero, 0.1 * x * (v - 0.5), 0.1 * x], 1),
    ]


def random_level(index: int) -> int:
    """Highest UV frequency of identity mode ``index``'s random candidates: ``(level + 1)^2``
    grows with the index so that the modes before it fill at most about half of the
    symmetric fields' room (``~1.5 (level + 1)^2`` dimensions), leaving independent ones to draw."""
    return max(2, int(np.ceil(np.sqrt(1.1 * (index + 1)))) - 1)


class RandomShapeFields:
    """Smooth random identity candidates over a mesh's UV.

    The candidate for mode ``i`` has coordinate ``c`` equal to
    ``sum_ab g_abc cos(pi a u) cos(pi b v)`` with standard normal ``g`` over the two highest
    frequency shells, ``L - 1 <= max(a, b) <= L`` for ``L = random_level(i)``: band-limited
    (smooth at any grid that resolves ``L``), and mostly made of frequencies the modes before
    it have not used, so it is far from their span. It is mirror-symmetric, or with
    probability :data:`ANTI_SHARE` antisymmetric: only
    the terms of the right parity are drawn (``cos(pi a (1 - u)) = (-1)^a cos(pi a u)``, so x
    takes odd ``a`` in a symmetric field), then :func:`symmetrize` makes the symmetry exact.
    Sums are elementwise numpy operations in a fixed order (no BLAS).

    Args:
        uv: (N, 2) float64 vertex UV.
        mirror: (N,) int64 mirror vertex ids.
        rng: the draws, in call order.
    """

    def __init__(self, uv: np.ndarray, mirror: np.ndarray, rng: np.random.Generator) -> None:
        self.uv, self.mirror, self.rng = uv, mirror, rng
        self._phi: dict[tuple[int, int], np.ndarray] = {}

    def _term(self, a: int, b: int) -> np.ndarray:
        if (a, b) not in self._phi:
            self._phi[a, b] = detmath.cos(np.pi * a * self.uv[:, 0]) * detmath.cos(
                np.pi * b * self.uv[:, 1]
            )
        return self._phi[a, b]

    def __call__(self, index: int) -> np.ndarray:
        """A new (N, 3) float64 candidate for mode ``index``."""
        level = random_level(index)
        anti = bool(self.rng.random() < ANTI_SHARE)
        g = self.rng.standard_normal((level + 1, level + 1, 3))
        d = np.zeros((self.uv.shape[0], 3))
        for a in range(level + 1):
            comps = (1, 2) if (a % 2 == 0) != anti else (0,)
            for b in range(level + 1):
                if max(a, b) < level - 1:
                    continue
                phi = self._term(a, b)
                for c in comps:
                    d[:, c] += g[a, b, c] * phi
        return symmetrize(d, self.mirror, anti=anti)


def gram_schmidt(
    candidate: Callable[[int], np.ndarray],
    k: int,
    required: int,
    min_residual: float = MIN_RESIDUAL,
) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormalise candidate fields in order, dropping those nearly dependent on the modes kept.

    Classical Gram-Schmidt, re-orthogonalised once where the first pass cancels more than 30 %
    of the norm ("twice is enough"). Every sum is numpy's own code in a
    fixed order (``np.add.reduce``, and ``np.einsum`` with ``optimize=False``, which never
    calls BLAS), so the result is bit-identical whatever BLAS kernel numpy is linked to.

    Args:
        candidate: ``candidate(i)`` gives a new (N, 3) float64 candidate for mode ``i``;
            it is called again for the same ``i`` after a rejection.
        k: modes to make.
        required: modes ``0 .. required - 1`` (the semantic ones) must be kept; one whose
            residual falls below ``min_residual`` of its norm is an error.
        min_residual: keep a candidate only if its part orthogonal to the modes before keeps
            at least this share of its norm.

    Returns:
        q: (k, 3N) float64 orthonormal rows (xyz interleaved per vertex);
        raw: (k, 3N) float64 the kept candidates themselves (before orthonormalisation).
    """
    q: np.ndarray | None = None
    raw: np.ndarray | None = None
    i = 0
    while i < k:
        f = np.ascontiguousarray(candidate(i), np.float64).reshape(-1)
        if q is None or raw is None:
            q, raw = np.zeros((k, f.size)), np.zeros((k, f.size))
        norm = rn = np.sqrt(np.add.reduce(f * f))
        r = f
        for _ in range(2 if i else 0):  # a second pass only where the first cancelled much
            before = rn
            c = np.einsum("ij,j->i", q[:i], r, optimize=False)
            r = r - np.einsum("i,ij->j", c, q[:i], optimize=False)
            rn = np.sqrt(np.add.reduce(r * r))
            if rn > 0.7 * before:
                break
        if norm > 0 and rn >= min_residual * norm:
            q[i], raw[i] = r / rn, f
            i += 1
        elif i < required:
            raise ValueError(f"identity mode {i} is (nearly) a combination of the modes before it")
    assert q is not None and raw is not None
    return q, raw


def shape_ev(k: int) -> np.ndarray:
    """(k,) float32 identity standard deviations: ``4e5 * (i + 1)^-0.8 * exp(-i / 60)``."""
    i = np.arange(k, dtype=np.float64)
    return (4e5 * detmath.power(i + 1, -0.8) * detmath.exp(-i / 60)).astype(np.float32)


def shape_basis(
    uv: np.ndarray, mean: np.ndarray, mirror: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The identity basis and the fields it was made from.

    Returns:
        basis: (3N, k) float32, orthogonal columns scaled to norm ``sqrt(N / 53215)`` (the BFM's
            per-entry RMS), xyz interleaved per vertex;
        raw: (k, 3N) float64 the unnormalised fields, one per column (semantic modes first).
    """
    sem = semantic_shape_fields(uv, mean)[:k]
    rand = RandomShapeFields(uv, mirror, rng)
    q, raw = gram_schmidt(lambda i: sem[i] if i < len(sem) else rand(i), k, required=len(sem))
    basis = q.T * np.sqrt(uv.shape[0] / BFM_N_VERTICES)
    return basis.astype(np.float32), raw


# ----------------------------------------------------------------------------- expression


def exp_ev(k: int) -> np.ndarray:
    """(k,) float32 expression standard deviations (semantic modes first)."""
    ev = np.array(
        [2.0, 1.8, 1.1, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35, 0.35, 0.3, 0.3, 0.25, 0.25, 0.25]
    )
    tail = 0.2 * np.ones(max(k - ev.size, 0))
    return np.concatenate([ev, tail])[:k].astype(np.float32)


def exp_fields(
    uv: np.ndarray, mirror: np.ndarray, k: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Expression displacement per unit coefficient (micrometres), :data:`EXP_NAMES` order, then
    localised random modes: ``k`` (N, 3) float64 fields."""
    f = uv_frame(uv)
    du, v, sgn = f["du"], f["v"], f["sgn"]
    _, n = base_surface(f)
    zero = np.zeros_like(du)
    # lower jaw weight: 1 below the lower inner lip, 0 above the upper one, ramp across the band;
    # the ramp widens beyond the mouth corners and the motion fades toward the jaw hinge
    wide = np.maximum(du - MOUTH_DU, 0) * 1.5
    jaw = smoothstep(LIP_UP_V + wide, LIP_LO_V - wide, v) * (1 - smoothstep(0.25, 0.47, du))
    corner = gauss_bump(du, v, MOUTH_DU, MOUTH_V, 0.035, 0.03)
    lips = flat_bump(du, v, 0.0, MOUTH_V, 0.085, 0.045)
    brow = gauss_bump(du, v, 0.16, 0.84, 0.14, 0.06)
    brow_in = gauss_bump(du, v, 0.07, 0.82, 0.05, 0.04)
    eu = np.clip((du - EYE_C[0]) / (EYE_HALF_W * 1.15), -1, 1)
    # upper lid: full motion above the upper lid line, ramp down to 0 at the lower lid line
    lid = (
        smoothstep(EYE_C[1] - EYE_LO, EYE_C[1] + EYE_UP, v)
        * (1 - eu**2)
        * detmath.exp(-0.5 * (np.maximum(v - EYE_C[1] - EYE_UP, 0) / 0.02) ** 2)
    )
    lid_close = -(EYE_UP + EYE_LO) * Y_SCALE / EYE_CLOSE_FULL  # full closure at EYE_CLOSE_FULL
    lower_lid = gauss_bump(du, v, EYE_C[0], EYE_C[1] - EYE_LO, 0.04, 0.012)
    cheek = gauss_bump(du, v, 0.15, 0.55, 0.06, 0.05)
    upper_lip = flat_bump(du, v, 0.0, 0.485, 0.07, 0.025)
    lower_lip = flat_bump(du, v, 0.0, 0.425, 0.07, 0.025)
    one_side = np.where(sgn > 0, 1.0, 0.0)[:, None]
    smile = np.stack(
        [sgn * 2200 * corner, 2600 * corner + 900 * cheek, -800 * corner + 1500 * cheek], 1
    )
    eye_close = np.stack([zero, lid_close * lid, zero], 1)
    brow_up = np.stack([zero, 3000 * brow, zero], 1)
    wrinkle = gauss_bump(du, v, 0.03, 0.62, 0.05, 0.06)
    fields = [
        smile,
        np.stack([zero, -4000 * jaw, -1200 * jaw], 1),
        brow_up,
        eye_close,
        np.stack([2500 * jaw, zero, zero], 1),
        np.stack([-0.25 * sgn * du * A_X * K_THETA * lips, zero, 3000 * lips], 1),
        np.stack([-sgn * 1500 * brow_in, -2000 * brow_in, 500 * brow_in], 1),
        np.stack([zero, 1500 * lower_lid + 0.3 * lid_close * lid, zero], 1),
        np.stack([2000 * lips, zero, zero], 1),
        eye_close * sgn[:, None],
        (3000 * gauss_bump(du, v, 0.12, 0.46, 0.06, 0.06))[:, None] * n,
        np.stack([zero, 1500 * upper_lip, 300 * upper_lip], 1),
        np.stack([zero, -1500 * lower_lip, -500 * lower_lip], 1),
        np.stack([zero, 800 * wrinkle, 400 * wrinkle], 1),
        smile * one_side,
        brow_up * one_side,
    ]
    # localised smooth random modes around the mouth, eyes and brows
    centres = [(0.0, MOUTH_V), (EYE_C[0], EYE_C[1]), (0.12, 0.83), (0.08, 0.5), (0.2, 0.4)]
    while len(fields) < k:
        cu, cv = centres[rng.integers(len(centres))]
        w = gauss_bump(du, v, cu, cv, 0.05 + 0.05 * rng.random(), 0.04 + 0.04 * rng.random())
        d = w[:, None] * (rng.standard_normal(3) * 1200)
        fields.append(symmetrize(d, mirror, anti=rng.random() < 0.3))
    return [fl.astype(np.float64) for fl in fields[:k]]


def constrain_expression(exp: np.ndarray) -> np.ndarray:
    """The procedural model's draw rules for random expression coefficients: the mouth only
    opens (``mouth_open`` folded to ``|x|``) and the eyelids never cross (``eye_close`` clipped
    to ``[-1, EYE_CLOSE_FULL]``).

    Args:
        exp: (E,) float64 coefficients; returned as a new array, unchanged when ``E`` is too
            short to hold both modes.
    """
    out = np.array(exp, np.float64)
    if out.size > max(EXP_MOUTH_OPEN, EXP_EYE_CLOSE):
        out[EXP_MOUTH_OPEN] = abs(out[EXP_MOUTH_OPEN])
        out[EXP_EYE_CLOSE] = np.clip(out[EXP_EYE_CLOSE], -1.0, EYE_CLOSE_FULL)
    return out
