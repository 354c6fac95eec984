"""AFLW2000-3D ground truth for the benchmark, from the ``.mat`` files or 3DDFA's arrays.

Two sources give the same numbers on the real data (checked in the tests): each sample's
``.mat`` (``pt3d_68`` (3, 68), AFLW's 21-point ``pt2d`` (2, 21), yaw = ``Pose_Para[1]``) and
3DDFA's ``test.configs`` arrays (``AFLW2000-3D.pts68.npy`` (n, 3, 68), ``AFLW2000-3D.pts21.npy``,
``AFLW2000-3D.pose.npy`` yaw in degrees, rows in sorted file-name order), optionally with the
re-annotated 2D points (``AFLW2000-3D-Reannotated.pts68.npy``, no depth).

Array rows are named, in this order of preference, by a name list beside the arrays
(``files.json``, as densemark's synthetic generator writes, or a text list ``*.list`` of image
file names, as 3DDFA ships), by the sorted ``.mat`` names of the folder when there are as many
as rows, or else by matching each ``.mat``'s ``pt3d_68`` to its array row (a folder holding a
few of the 2000 images).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from densemark.core.errors import InputError
from densemark.core.matio import MAT_HEADER
from densemark.sources.readers import IMAGE_SUFFIXES, list_fit_mats, load_aflw2000_gt, read_fit_mat

PTS68_FILE = "AFLW2000-3D.pts68.npy"
_MATCH_TOL = 1e-3  # pixels: a .mat's pt3d_68 equals its array row (both float32 of the same value)


@dataclass(frozen=True, eq=False)
class AFLW2000Truth:
    """Ground truth of N AFLW2000-3D images.

    Attributes:
        names: (N,) str image file stems, sorted.
        pts68: (N, 68, 2 or 3) float64 ground-truth 68 points in image pixels (3 with depth).
        pts21: (N, 21, 2) float64 AFLW 21-point annotation (-1 where unseen), or None.
        yaw: (N,) float64 yaw in degrees.
        one_based: whether the pixel coordinates count from 1 (MATLAB).
        source: ``"mat"``, ``"arrays"`` or ``"arrays-reannotated"``.
        root: the folder (images are looked up there by name).
    """

    names: np.ndarray
    pts68: np.ndarray
    pts21: np.ndarray | None
    yaw: np.ndarray
    one_based: bool
    source: str
    root: Path

    def __len__(self) -> int:
        return len(self.names)

    @property
    def has_depth(self) -> bool:
        return self.pts68.shape[-1] == 3

    def index(self, names: np.ndarray) -> np.ndarray:
        """(M,) rows of ``names`` (all must be present)."""
        pos = {n: i for i, n in enumerate(self.names.tolist())}
        return np.array([pos[n] for n in np.asarray(names).tolist()], np.int64)

    def subset(self, names: np.ndarray) -> AFLW2000Truth:
        """The ground truth of ``names`` (in the order given)."""
        i = self.index(names)
        return replace(self, names=self.names[i], pts68=self.pts68[i], yaw=self.yaw[i],
                       pts21=None if self.pts21 is None else self.pts21[i])  # fmt: skip

    def image_path(self, name: str) -> Path | None:
        """The image file of ``name`` in the folder, or None."""
        return next((p for s in IMAGE_SUFFIXES if (p := self.root / f"{name}{s}").is_file()), None)


def written_by_densemark(path: str | os.PathLike) -> bool:
    """Whether a ``.mat`` carries densemark's header (the synthetic generator's files)."""
    with open(path, "rb") as f:
        return f.read(116).startswith(MAT_HEADER)


def arrays_dir(root: str | os.PathLike) -> Path | None:
    """The folder holding 3DDFA's arrays: ``root/gt`` or ``root`` itself, or None."""
    r = Path(root)
    return next((d for d in (r / "gt", r) if (d / PTS68_FILE).is_file()), None)


def load_truth(
    root: str | os.PathLike,
    source: str = "auto",
    reannotated: bool = False,
    one_based: bool | str = "auto",
) -> AFLW2000Truth:
    """Read AFLW2000-3D's ground truth from a folder.

    Args:
        root: the AFLW2000-3D folder (``image*.jpg`` + ``.mat``), with 3DDFA's arrays in
            ``root/gt/`` or ``root/``, or a folder of the arrays alone.
        source: ``"arrays"``, ``"mat"`` or ``"auto"`` (arrays when present).
        reannotated: score the re-annotated 2D points (arrays only).
        one_based: bool, or ``"auto"``: False when the files were written by densemark's
            synthetic generator (``.mat`` header, or ``files.json`` beside the arrays), else True.

    Raises:
        InputError: naming the file and field (missing folder/arrays, shapes, unmatched rows).
    """
    r = Path(root)
    if not r.is_dir():
        raise InputError(r, None, "ground-truth folder not found")
    adir = arrays_dir(r)
    if source == "auto":
        source = "arrays" if adir is not None else "mat"
    if reannotated and source != "arrays":
        raise InputError(
            r, "reannotated", "the re-annotated points come from 3DDFA's arrays; none found"
        )
    mats = list_fit_mats(r, "*.mat")
    if source == "mat":
        truth = _from_mats(r, mats)
        synthetic = bool(mats) and written_by_densemark(mats[0])
    elif source == "arrays":
        if adir is None:
            raise InputError(r / "gt" / PTS68_FILE, "pts68", "3DDFA's AFLW2000-3D arrays not found")
        truth = _from_arrays(r, adir, mats, reannotated)
        synthetic = (adir / "files.json").is_file() or (
            bool(mats) and written_by_densemark(mats[0])
        )
    else:
        raise InputError(r, "gt_source", f"unknown source {source!r} (arrays, mat or auto)")
    ob = (not synthetic) if one_based == "auto" else bool(one_based)
    return replace(truth, one_based=ob)


def _from_mats(root: Path, mats: list[Path]) -> AFLW2000Truth:
    if not mats:
        raise InputError(root, None, "no .mat files")
    names, p68, p21, yaw = [], [], [], []
    for p in mats:
        s = read_fit_mat(p)
        if s.pt3d_68 is None:
            raise InputError(p, "pt3d_68", "missing (not an AFLW2000-3D sample)")
        names.append(s.sample_id)
        p68.append(s.pt3d_68.T)
        yaw.append(s.yaw_degrees)
        p21.append(s.pt2d.T if s.pt2d is not None and s.pt2d.shape == (2, 21) else None)
    pts21 = np.stack(p21) if all(x is not None for x in p21) else None
    return AFLW2000Truth(
        np.array(names), np.stack(p68), pts21, np.array(yaw, np.float64), True, "mat", root
    )


def _row_names(adir: Path, mats: list[Path], pts68: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(names, rows) of the array rows that can be named."""
    n = pts68.shape[0]
    listed = adir / "files.json"
    lists = sorted(adir.glob("*.list"))
    if listed.is_file() or lists:
        src = listed if listed.is_file() else lists[0]
        try:
            items = (
                json.loads(src.read_text("utf-8"))
                if src.suffix == ".json"
                else src.read_text("utf-8").split()
            )
        except (OSError, ValueError) as exc:
            raise InputError(src, None, f"cannot read the name list ({exc})") from exc
        if not isinstance(items, list) or len(items) != n:
            raise InputError(src, None, f"expected a list of {n} file names (one per array row)")
        return np.array([Path(str(x)).stem for x in items]), np.arange(n)
    if len(mats) == n:
        return np.array([p.stem for p in mats]), np.arange(n)
    if not mats:
        raise InputError(
            adir,
            None,
            f"cannot name the {n} array rows: no name list (files.json, *.list) and no .mat files",
        )
    flat = pts68.reshape(n, -1).astype(np.float64)
    rows = []
    for p in mats:
        s = read_fit_mat(p)
        if s.pt3d_68 is None:
            raise InputError(p, "pt3d_68", "missing: cannot find this sample's row in the arrays")
        d = np.abs(flat - s.pt3d_68.reshape(1, -1)).max(axis=1)
        i = int(d.argmin())
        if d[i] > _MATCH_TOL:
            raise InputError(
                p,
                "pt3d_68",
                f"matches no row of {PTS68_FILE} (closest row {i}, {d[i]:.3g} px apart)",
            )
        rows.append(i)
    return np.array([p.stem for p in mats]), np.array(rows, np.int64)


def _from_arrays(root: Path, adir: Path, mats: list[Path], reannotated: bool) -> AFLW2000Truth:
    gt = load_aflw2000_gt(adir)
    if gt.yaw is None:
        raise InputError(adir / "AFLW2000-3D.pose.npy", "pose", "file not found (yaw of each row)")
    names, rows = _row_names(adir, mats, gt.pts68)
    if reannotated:
        if gt.pts68_reannotated is None:
            raise InputError(
                adir / "AFLW2000-3D-Reannotated.pts68.npy", "pts68_reannotated", "file not found"
            )
        p68 = gt.pts68_reannotated[rows].transpose(0, 2, 1)
    else:
        p68 = gt.pts68[rows].transpose(0, 2, 1)
    pts21 = None if gt.pts21 is None else gt.pts21[rows].transpose(0, 2, 1).astype(np.float64)
    order = np.argsort(names, kind="stable")
    return AFLW2000Truth(
        names=names[order],
        pts68=p68[order].astype(np.float64),
        pts21=None if pts21 is None else pts21[order],
        yaw=gt.yaw[rows][order].astype(np.float64),
        one_based=True,
        source="arrays-reannotated" if reannotated else "arrays",
        root=root,
    )
