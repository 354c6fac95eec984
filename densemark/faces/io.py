"""Readers and writers of the real face-model formats.

* face3d's ``BFM.mat``: struct ``model`` with ``shapeMU, shapePC, shapeEV, expMU, expPC, expEV,
  tri, tri_mouth, kpt_ind`` (MATLAB 1-based indices, xyz interleaved per vertex).
* ``BFM_UV.mat``: key ``UV``, (N, 2) UV coordinates in [0, 1].
* ``BFM_info.mat``: struct ``model_info`` (``kpt_ind``, ``symlist``, ``tri_mouth``, ...).
* BFM ``tri.mat``: key ``tri``, (3, T) 1-based triangles.
* 3DDFA's mean-shape arrays ``u_shp.npy`` + ``u_exp.npy``: (3N, 1) float32, xyz interleaved.

Every reader validates shapes, dtypes and finiteness and raises :class:`InputError` naming the
file and the field. Nothing here unpickles: ``.npy`` files load with ``allow_pickle=False``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from densemark.core.errors import InputError
from densemark.core.matio import atomic_savemat, load_npy, read_mat
from densemark.core.validate import check_array, check_indices
from densemark.faces.model import MorphableModel

PathLike = str | os.PathLike


def _field(mat: dict[str, object], path: PathLike, key: str) -> object:
    if key not in mat:
        raise InputError(path, key, f"missing (found: {', '.join(sorted(mat)) or 'nothing'})")
    return mat[key]


def _struct(mat: dict[str, object], path: PathLike, key: str) -> dict[str, object]:
    """Unwrap a MATLAB struct (a (1, 1) record array from scipy, a dict from h5py)."""
    s = _field(mat, path, key)
    if isinstance(s, dict):
        return s
    arr = np.asarray(s)
    if arr.dtype.names is None or arr.size != 1:
        raise InputError(path, key, "expected a MATLAB struct")
    rec = arr.reshape(-1)[0]
    return {name: rec[name] for name in arr.dtype.names}


def load_bfm_mat(path: PathLike, name: str | None = None) -> MorphableModel:
    """Read face3d's ``BFM.mat`` into a :class:`MorphableModel` (no UV; add it with ``with_uv``).

    The mean is ``shapeMU + expMU`` as face3d does; triangles are ``tri`` followed by
    ``tri_mouth`` (the full list used for rendering); indices become 0-based.
    """
    mat = read_mat(path)
    m = _struct(mat, path, "model")

    def field(key: str) -> object:
        if key not in m:
            raise InputError(path, f"model.{key}", f"missing (found: {', '.join(sorted(m))})")
        return m[key]

    def get(key: str, shape, kind="fiu") -> np.ndarray:
        return check_array(field(key), path, f"model.{key}", shape, kind=kind)

    shape_mu = get("shapeMU", (None, 1))
    n3 = shape_mu.shape[0]
    if n3 % 3:
        raise InputError(path, "model.shapeMU", f"length {n3} is not a multiple of 3")
    n = n3 // 3
    exp_mu = get("expMU", (n3, 1))
    shape_pc = get("shapePC", (n3, None)).astype(np.float32)
    exp_pc = get("expPC", (n3, None)).astype(np.float32)
    shape_ev = check_array(
        field("shapeEV"), path, "model.shapeEV", (shape_pc.shape[1],), squeeze=True
    )
    exp_ev = check_array(field("expEV"), path, "model.expEV", (exp_pc.shape[1],), squeeze=True)
    tri = load_triangles(field("tri"), path, "model.tri", n, one_based=True, layout="3T")
    tri_mouth = (
        load_triangles(m["tri_mouth"], path, "model.tri_mouth", n, one_based=True, layout="3T")
        if "tri_mouth" in m and np.size(m["tri_mouth"]) > 0
        else np.zeros((0, 3), np.int64)
    )
    kpt = check_array(field("kpt_ind"), path, "model.kpt_ind", (68,), squeeze=True)
    kpt = check_indices(kpt, path, "model.kpt_ind", n, one_based=True)
    mean = (shape_mu + exp_mu).astype(np.float32).reshape(n, 3)
    return MorphableModel(
        mean=mean,
        shape_basis=shape_pc,
        exp_basis=exp_pc,
        triangles=np.concatenate([tri, tri_mouth]),
        kpt_ind=kpt,
        shape_ev=shape_ev.astype(np.float32),
        exp_ev=exp_ev.astype(np.float32),
        name=name or Path(path).stem,
    )


def save_bfm_mat(model: MorphableModel, path: PathLike, n_mouth: int = 0) -> Path:
    """Write ``model`` as a face3d ``BFM.mat`` (atomically). Inverse of :func:`load_bfm_mat`.

    Args:
        n_mouth: how many of the last triangles to store as ``tri_mouth`` instead of ``tri``.
    """
    n3 = 3 * model.n_vertices
    tri1 = (model.triangles + 1).T.astype(np.float64)
    k = model.triangles.shape[0] - n_mouth
    struct = {
        "shapeMU": model.mean.reshape(n3, 1).astype(np.float64),
        "expMU": np.zeros((n3, 1)),
        "shapePC": model.shape_basis.astype(np.float32),
        "shapeEV": model.shape_ev.reshape(-1, 1).astype(np.float64),
        "expPC": model.exp_basis.astype(np.float32),
        "expEV": model.exp_ev.reshape(-1, 1).astype(np.float64),
        "tri": tri1[:, :k],
        "tri_mouth": tri1[:, k:],
        "kpt_ind": (model.kpt_ind + 1).reshape(1, -1).astype(np.float64),
    }
    return atomic_savemat(path, {"model": struct})


def load_uv_mat(path: PathLike, n_vertices: int | None = None, key: str = "UV") -> np.ndarray:
    """Read ``BFM_UV.mat``: (N, 2) float64 UV coordinates in [0, 1]."""
    mat = read_mat(path)
    uv = check_array(_field(mat, path, key), path, key, (n_vertices, 2), kind="f").astype(
        np.float64
    )
    if uv.min() < -1e-6 or uv.max() > 1 + 1e-6:
        raise InputError(
            path, key, f"UV coordinates outside [0, 1]: [{uv.min():.3g}, {uv.max():.3g}]"
        )
    return uv


def save_uv_mat(uv: np.ndarray, path: PathLike) -> Path:
    """Write (N, 2) UV coordinates as a ``BFM_UV.mat`` (key ``UV``), atomically."""
    return atomic_savemat(path, {"UV": np.asarray(uv, np.float64)})


def load_triangles(
    value: object, path: PathLike, field: str, n: int, *, one_based: bool, layout: str = "auto"
) -> np.ndarray:
    """Validate a triangle array; return (T, 3) int64 0-based.

    Args:
        layout: ``"3T"`` (MATLAB files: (3, T) wins, a (T, 3) array is still accepted, so three
            triangles are read as MATLAB stores them), or ``"auto"`` ((T, 3) wins).
    """
    arr = check_array(value, path, field, (None, None))
    if arr.shape[0] == 3 and (layout == "3T" or arr.shape[1] != 3):
        arr = arr.T
    if arr.shape[1] != 3:
        raise InputError(path, field, f"expected (3, T) or (T, 3), got {np.shape(value)}")
    return np.ascontiguousarray(check_indices(arr, path, field, n, one_based=one_based))


def load_tri_mat(path: PathLike, n_vertices: int) -> np.ndarray:
    """Read BFM ``tri.mat`` (key ``tri``, (3, T) 1-based): (T, 3) int64 0-based."""
    mat = read_mat(path)
    return load_triangles(
        _field(mat, path, "tri"), path, "tri", n_vertices, one_based=True, layout="3T"
    )


@dataclass(frozen=True)
class BFMInfo:
    """The parts of ``BFM_info.mat`` (``model_info``) the toolkit uses; all 0-based.

    Attributes:
        kpt_ind: (68,) int64 keypoint vertex ids.
        tri_mouth: (M, 3) int64 mouth triangles (missing from ``tri.mat``).
        symlist: (2, P) int64 left/right vertex pairs.
        n_vertices: N, the vertex count the indices refer to.
    """

    kpt_ind: np.ndarray
    tri_mouth: np.ndarray
    symlist: np.ndarray
    n_vertices: int


def load_bfm_info(path: PathLike) -> BFMInfo:
    """Read ``BFM_info.mat`` (struct ``model_info``)."""
    mat = read_mat(path)
    info = _struct(mat, path, "model_info")
    trim = check_array(_field(info, path, "trimIndex"), path, "model_info.trimIndex", (None, 1))
    n = int(trim.shape[0])
    kpt = check_array(
        _field(info, path, "kpt_ind"), path, "model_info.kpt_ind", (68,), squeeze=True
    )
    tri_mouth = load_triangles(
        _field(info, path, "tri_mouth"),
        path,
        "model_info.tri_mouth",
        n,
        one_based=True,
        layout="3T",
    )
    sym = check_array(_field(info, path, "symlist"), path, "model_info.symlist", (2, None))
    return BFMInfo(
        kpt_ind=check_indices(kpt, path, "model_info.kpt_ind", n, one_based=True),
        tri_mouth=tri_mouth,
        symlist=check_indices(sym, path, "model_info.symlist", n, one_based=True),
        n_vertices=n,
    )


def load_mean_shape(u_shp: PathLike, u_exp: PathLike | None = None) -> np.ndarray:
    """3DDFA's ``u_shp.npy`` (+ ``u_exp.npy``): (3N, 1) interleaved -> (N, 3) float32 mean shape."""
    shp = load_npy(u_shp, "u_shp", (None, 1), kind="f")
    if shp.shape[0] % 3:
        raise InputError(u_shp, "u_shp", f"length {shp.shape[0]} is not a multiple of 3")
    if u_exp is not None:
        shp = shp + load_npy(u_exp, "u_exp", shp.shape, kind="f")
    return shp.reshape(-1, 3).astype(np.float32)


def model_from_mean(
    mean: np.ndarray,
    triangles: np.ndarray,
    kpt_ind: np.ndarray,
    uv: np.ndarray | None = None,
    name: str = "mean",
) -> MorphableModel:
    """A basis-free model (every instance is the mean), e.g. from 3DDFA's mean arrays."""
    n3 = 3 * mean.shape[0]
    return MorphableModel(
        mean=np.asarray(mean, np.float32),
        shape_basis=np.zeros((n3, 0), np.float32),
        exp_basis=np.zeros((n3, 0), np.float32),
        triangles=np.asarray(triangles, np.int64),
        kpt_ind=np.asarray(kpt_ind, np.int64),
        uv=uv,
        name=name,
    )


def load_bfm_mean_model(bfm_dir: PathLike) -> MorphableModel:
    """The real BFM mean model from a folder holding ``u_shp.npy``, ``u_exp.npy``, ``tri.mat``,
    ``BFM_info.mat`` and ``BFM_UV.mat`` (full triangles = ``tri`` + ``tri_mouth``)."""
    d = Path(bfm_dir)
    mean = load_mean_shape(d / "u_shp.npy", d / "u_exp.npy")
    n = mean.shape[0]
    info = load_bfm_info(d / "BFM_info.mat")
    if info.n_vertices != n:
        raise InputError(
            d / "BFM_info.mat", "model_info.trimIndex", f"{info.n_vertices} vertices, mean has {n}"
        )
    tri = np.concatenate([load_tri_mat(d / "tri.mat", n), info.tri_mouth])
    uv = load_uv_mat(d / "BFM_UV.mat", n)
    return model_from_mean(mean, tri, info.kpt_ind, uv, name="bfm-mean")


def load_model(bfm_mat: PathLike, uv_mat: PathLike) -> MorphableModel:
    """A full model: face3d ``BFM.mat`` plus its ``BFM_UV.mat``."""
    model = load_bfm_mat(bfm_mat)
    return model.with_uv(load_uv_mat(uv_mat, model.n_vertices))
