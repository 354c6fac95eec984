"""The face template: the face pixels of the 256x256 UV map, one template vertex each.

PRNet's files define it for the BFM (43,867 vertices):

* ``face_ind.txt``: (V,) flat pixel indices ``v * 256 + u`` of the face pixels (row v, column u);
* ``uv_kpt_ind.txt``: (2, 68) UV pixel coordinates of the 68 keypoints (row 0 = u, row 1 = v);
* ``canonical_vertices.npy``: (V, 3) the mean face, one row per template vertex;
* ``triangles.txt``: (T, 3) 0-based triangles over template vertices (UV-grid triangulation).

Template vertex ``i`` is UV pixel ``face_ind[i]``. The embedded default writes its own
template in the same four files, so one reader serves both.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from densemark.core.atomic import atomic_path, save_npy, write_json
from densemark.core.errors import InputError
from densemark.core.matio import load_npy
from densemark.core.validate import check_array, check_indices


@dataclass(frozen=True, eq=False)
class FaceTemplate:
    """Attributes:
    face_ind: (V,) int64 flat UV pixel index of each template vertex, strictly increasing.
    uv_kpt_ind: (2, 68) int64 UV pixel (u, v) of each of the 68 keypoints.
    vertices: (V, 3) float64 template geometry (PRNet's canonical frame for the BFM).
    triangles: (T, 3) int64 0-based triangles over template vertices.
    res: UV map side in pixels (256).
    """

    face_ind: np.ndarray
    uv_kpt_ind: np.ndarray
    vertices: np.ndarray
    triangles: np.ndarray
    res: int = 256

    @property
    def n_vertices(self) -> int:
        return int(self.face_ind.shape[0])

    @cached_property
    def pixel_uv(self) -> np.ndarray:
        """(V, 2) int64 UV pixel (u = column, v = row) of each template vertex."""
        return np.stack([self.face_ind % self.res, self.face_ind // self.res], 1)

    @cached_property
    def id_map(self) -> np.ndarray:
        """(res, res) int64: template vertex id at each UV pixel [v, u], -1 off the face."""
        m = np.full(self.res * self.res, -1, np.int64)
        m[self.face_ind] = np.arange(self.n_vertices)
        return m.reshape(self.res, self.res)

    @cached_property
    def kpt_ids(self) -> np.ndarray:
        """(68,) int64 template vertex ids of the 68 keypoints (nearest face pixel if off-face)."""
        return self.ids_of_pixels(self.uv_kpt_ind.T)

    def ids_of_pixels(self, uv: np.ndarray) -> np.ndarray:
        """Template ids of (K, 2) UV pixels (u, v); a pixel off the face snaps to the nearest face pixel."""
        uv = np.asarray(uv, np.int64)
        ids = self.id_map[uv[:, 1], uv[:, 0]]
        miss = ids < 0
        if miss.any():
            d = ((self.pixel_uv[None] - uv[miss][:, None]) ** 2).sum(-1)
            ids[miss] = d.argmin(1)
        return ids

    @cached_property
    def mirror_ids(self) -> np.ndarray:
        """(V,) int64: the template vertex at UV pixel (res - 1 - u, v), or -1 where that is off the face."""
        u, v = self.pixel_uv.T
        return self.id_map[v, self.res - 1 - u]

    def sha256(self) -> str:
        """Content hash of the template arrays (hex), recorded in landmark-set provenance.

        Vertices enter rounded to 0.01 units, so last-bit differences between CPUs (e.g. SIMD
        paths of ``exp`` when the embedded model is generated) do not change the hash.
        """
        h = hashlib.sha256()
        for a in (self.face_ind, self.uv_kpt_ind, self.triangles):
            h.update(np.ascontiguousarray(a, np.int64).tobytes())
        h.update(np.ascontiguousarray(np.round(self.vertices, 2) + 0.0, np.float64).tobytes())
        return h.hexdigest()


def _read_txt(path: Path, field: str) -> np.ndarray:
    if not path.is_file():
        raise InputError(path, field, "file not found")
    if path.stat().st_size == 0:
        raise InputError(path, field, "file is empty")
    try:
        return np.loadtxt(path, ndmin=2)
    except Exception as exc:  # noqa: BLE001
        raise InputError(path, field, f"cannot parse as a numeric text table ({exc})") from exc


def read_index_list(path: str | os.PathLike, field: str, n: int | None = None) -> np.ndarray:
    """(K,) int64 indices from a text file of numbers, one per line (floats allowed if whole).

    Raises:
        InputError: missing, empty or unparsable file; not one number per line; a value that
            is not a whole number, is negative, or is ``>= n`` when ``n`` is given.
    """
    p = Path(path)
    arr = _read_txt(p, field)
    if arr.shape[0] != 1 and arr.shape[1] != 1:
        raise InputError(
            p, field, f"expected one number per line, got a {arr.shape[0]}x{arr.shape[1]} table"
        )
    arr = check_array(arr.reshape(-1), p, field, (None,))
    return check_indices(arr, p, field, np.iinfo(np.int64).max if n is None else n)


def load_template(folder: str | os.PathLike, res: int | None = None) -> FaceTemplate:
    """Read a template folder in PRNet's format (see module docstring).

    ``triangles.txt`` may be absent: the UV-grid triangulation is then built from ``face_ind``.
    The map side comes from ``template_info.json`` (written by :func:`save_template`) when
    present, else ``res`` (default 256, PRNet's); the two must agree when both are given.
    """
    d = Path(folder)
    info = d / "template_info.json"
    if info.is_file():
        try:
            saved = int(json.loads(info.read_text(encoding="utf-8"))["res"])
        except Exception as exc:  # noqa: BLE001
            raise InputError(info, "res", f"cannot read the map side ({exc})") from exc
        if res is not None and res != saved:
            raise InputError(info, "res", f"template was saved at {saved}x{saved}, asked for {res}")
        res = saved
    res = 256 if res is None else res
    face_ind = read_index_list(d / "face_ind.txt", "face_ind", res * res)
    if np.any(np.diff(face_ind) <= 0):
        raise InputError(
            d / "face_ind.txt", "face_ind", "pixel indices must be strictly increasing (no repeats)"
        )
    kpt = check_array(
        _read_txt(d / "uv_kpt_ind.txt", "uv_kpt_ind"), d / "uv_kpt_ind.txt", "uv_kpt_ind", (2, 68)
    )
    kpt = check_indices(kpt, d / "uv_kpt_ind.txt", "uv_kpt_ind", res)
    n = face_ind.shape[0]
    verts = load_npy(d / "canonical_vertices.npy", "canonical_vertices", (n, 3), kind="f").astype(
        np.float64
    )
    tri_path = d / "triangles.txt"
    if tri_path.exists():
        tri = check_array(_read_txt(tri_path, "triangles"), tri_path, "triangles", (None, 3))
        tri = check_indices(tri, tri_path, "triangles", n)
    else:
        tri = grid_triangles(face_ind, res)
    return FaceTemplate(face_ind=face_ind, uv_kpt_ind=kpt, vertices=verts, triangles=tri, res=res)


def save_template(t: FaceTemplate, folder: str | os.PathLike) -> Path:
    """Write a template in PRNet's four-file format (atomically, file by file)."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    for name, arr, fmt in (
        ("face_ind.txt", t.face_ind.astype(np.float64), "%.18e"),
        ("uv_kpt_ind.txt", t.uv_kpt_ind.astype(np.float64), "%.18e"),
        ("triangles.txt", t.triangles, "%d"),
    ):
        with atomic_path(d / name) as tmp:
            np.savetxt(tmp, arr, fmt=fmt)
    save_npy(d / "canonical_vertices.npy", t.vertices.astype(np.float64))
    write_json(
        d / "template_info.json", {"res": t.res, "n_vertices": t.n_vertices, "sha256": t.sha256()}
    )
    return d


def grid_triangles(face_ind: np.ndarray, res: int = 256) -> np.ndarray:
    """Triangulate face pixels on the UV grid: (T, 3) int64 over template ids.

    Each 2x2 block of pixels ``a=(v,u), b=(v,u+1), c=(v+1,u), d=(v+1,u+1)`` gives the
    triangles (a, c, b) and (b, c, d) when all four are face pixels, and the one triangle of
    any three of them when exactly three are.
    """
    idm = np.full(res * res, -1, np.int64)
    idm[face_ind] = np.arange(len(face_ind))
    idm = idm.reshape(res, res)
    a, b = idm[:-1, :-1].ravel(), idm[:-1, 1:].ravel()
    c, d = idm[1:, :-1].ravel(), idm[1:, 1:].ravel()
    full = (a >= 0) & (b >= 0) & (c >= 0) & (d >= 0)
    tris = [np.stack([a, c, b], 1)[full], np.stack([b, c, d], 1)[full]]
    three = ((a >= 0).astype(int) + (b >= 0) + (c >= 0) + (d >= 0)) == 3
    for tri, missing in (((b, c, d), a), ((a, c, d), b), ((a, d, b), c), ((a, c, b), d)):
        m = three & (missing < 0)
        tris.append(np.stack(tri, 1)[m])
    return np.concatenate(tris).astype(np.int64)
