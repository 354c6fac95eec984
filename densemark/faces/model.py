"""The morphable model: ``vertices = mean + shape_basis @ alpha + exp_basis @ beta``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from densemark.core.errors import InputError

# The iBUG 68-point scheme's left/right pairs: keypoint i's mirror partner (midline points map to
# themselves). Flipped labels of the 68 keypoints are reordered by it.
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
class MorphableModel:
    """A linear 3D morphable face model in face3d's layout (BFM units: micrometres for BFM).

    Attributes:
        mean: (N, 3) float32 mean shape (BFM: ``shapeMU + expMU``).
        shape_basis: (3N, S) float32 identity basis; rows interleave x, y, z per vertex.
        exp_basis: (3N, E) float32 expression basis, same row layout.
        triangles: (T, 3) int64 0-based triangles (BFM: ``tri`` plus ``tri_mouth``).
        kpt_ind: (68,) int64 0-based vertex ids of the 68 standard keypoints.
        uv: (N, 2) float64 per-vertex UV coordinates in [0, 1], or None when unknown.
        shape_ev: (S,) float32 standard deviations of the identity basis (may be empty).
        exp_ev: (E,) float32 standard deviations of the expression basis (may be empty).
        name: a label recorded in provenance.
        generator: what made the model, e.g. ``"densemark.faces.procedural"`` (recorded as
            ``generator`` in its ``model_info.json``); empty for a model read from files of
            unknown origin. Rules that hold for one generator's bases only (such as the
            procedural model's expression draws) key on this field, never on ``name``.
    """

    mean: np.ndarray
    shape_basis: np.ndarray
    exp_basis: np.ndarray
    triangles: np.ndarray
    kpt_ind: np.ndarray
    uv: np.ndarray | None = None
    shape_ev: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    exp_ev: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    name: str = "model"
    generator: str = ""

    def __post_init__(self) -> None:
        n = self.mean.shape[0]
        if self.mean.ndim != 2 or self.mean.shape[1] != 3:
            raise InputError(self.name, "mean", f"expected (N, 3), got {self.mean.shape}")
        for fname in ("shape_basis", "exp_basis"):
            b = getattr(self, fname)
            if b.ndim != 2 or b.shape[0] != 3 * n:
                raise InputError(self.name, fname, f"expected ({3 * n}, K), got {b.shape}")
        if self.triangles.ndim != 2 or self.triangles.shape[1] != 3:
            raise InputError(self.name, "triangles", f"expected (T, 3), got {self.triangles.shape}")
        if self.triangles.size and (self.triangles.min() < 0 or self.triangles.max() >= n):
            raise InputError(self.name, "triangles", f"vertex index out of range [0, {n})")
        if self.kpt_ind.shape != (68,):
            raise InputError(self.name, "kpt_ind", f"expected (68,), got {self.kpt_ind.shape}")
        if self.kpt_ind.min() < 0 or self.kpt_ind.max() >= n:
            raise InputError(self.name, "kpt_ind", f"vertex index out of range [0, {n})")
        if self.uv is not None and self.uv.shape != (n, 2):
            raise InputError(self.name, "uv", f"expected ({n}, 2), got {self.uv.shape}")

    @property
    def n_vertices(self) -> int:
        return int(self.mean.shape[0])

    @property
    def n_shape(self) -> int:
        return int(self.shape_basis.shape[1])

    @property
    def n_exp(self) -> int:
        return int(self.exp_basis.shape[1])

    def with_uv(self, uv: np.ndarray) -> MorphableModel:
        """A copy of this model with per-vertex UV coordinates ``uv: (N, 2)``."""
        return replace(self, uv=np.asarray(uv, np.float64))

    def vertices(
        self, shape_para: np.ndarray | None = None, exp_para: np.ndarray | None = None
    ) -> np.ndarray:
        """Model instances.

        Args:
            shape_para: (S,) or (B, S) identity coefficients (300W-LP ``Shape_Para``;
                extra trailing coefficients beyond the basis are an error, missing ones are zero).
            exp_para: (E,) or (B, E) expression coefficients (300W-LP ``Exp_Para``).

        Returns:
            (N, 3) float32 for unbatched input, (B, N, 3) float32 for batched input.
        """
        batched = any(p is not None and np.ndim(p) == 2 for p in (shape_para, exp_para))
        sp = self._coeffs(shape_para, self.n_shape, "shape_para")
        ep = self._coeffs(exp_para, self.n_exp, "exp_para")
        b = max(sp.shape[0], ep.shape[0])
        if {sp.shape[0], ep.shape[0]} - {1, b}:
            raise InputError(
                None,
                "exp_para",
                f"batch {ep.shape[0]} does not match shape_para batch {sp.shape[0]}",
            )
        offs = np.zeros((b, 3 * self.n_vertices), np.float32)
        if self.n_shape:
            offs += sp @ self.shape_basis.T
        if self.n_exp:
            offs += ep @ self.exp_basis.T
        out = self.mean[None] + offs.reshape(b, self.n_vertices, 3)
        return out if batched else out[0]

    @staticmethod
    def _coeffs(p: np.ndarray | None, k: int, name: str) -> np.ndarray:
        if p is None:
            return np.zeros((1, k), np.float32)
        a = np.asarray(p, np.float32)
        a = a.reshape(1, -1) if a.ndim == 1 else a.reshape(a.shape[0], -1)
        if a.shape[1] > k:
            raise InputError(None, name, f"{a.shape[1]} coefficients for a basis of {k}")
        if a.shape[1] < k:
            a = np.pad(a, ((0, 0), (0, k - a.shape[1])))
        return a

    def content_hash(self) -> str:
        """SHA-256 (hex) over every array of the model, bases included: the model's one identity
        (datasets record it, caches are keyed by it). Each array of ``mean``, ``shape_basis``,
        ``exp_basis``, ``triangles``, ``kpt_ind``, ``uv`` (empty when None) enters as its dtype
        and shape (``f"{dtype.str}{shape}"``) then its C-order bytes, hashed in row blocks (no
        full copy of a Fortran-ordered basis). Names and standard deviations are not content.
        Computed once per instance."""
        memo = self.__dict__.get("_content_hash")
        if memo is not None:
            return memo
        h = hashlib.sha256()
        for a in (self.mean, self.shape_basis, self.exp_basis, self.triangles, self.kpt_ind,
                  self.uv if self.uv is not None else np.zeros(0)):  # fmt: skip
            h.update(f"{a.dtype.str}{a.shape}".encode())
            if a.ndim == 0 or a.flags.c_contiguous:
                h.update(np.ascontiguousarray(a).data)
                continue
            step = max(1, (1 << 20) // max(a[0].nbytes, 1))
            for i in range(0, a.shape[0], step):
                h.update(np.ascontiguousarray(a[i : i + step]).data)
        object.__setattr__(self, "_content_hash", h.hexdigest())
        return self.__dict__["_content_hash"]

    def fingerprint(self) -> str:
        """The first 16 hex digits of :meth:`content_hash` (for file names of caches)."""
        return self.content_hash()[:16]
