"""Readers of 3DMM-fit samples: 300W-LP and AFLW2000-3D (image + ``.mat``), and AFLW2000-3D's
benchmark arrays (3DDFA's ``test.configs``).

300W-LP ``.mat`` fields: ``Shape_Para`` (199, 1), ``Exp_Para`` (29, 1), ``Pose_Para`` (1, 7) =
``[pitch, yaw, roll, tx, ty, tz, s]``, ``pt2d`` (2, 68), ``roi`` (1, 4); AFLW2000-3D adds
``pt3d_68`` (3, 68) and its ``pt2d`` is the 21-point AFLW annotation (2, 21), -1 where unseen.
The synthetic sources write the same files, so one reader serves all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from densemark.core.errors import InputError
from densemark.core.images import read_image
from densemark.core.matio import load_npy, read_mat
from densemark.core.validate import check_array

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True, eq=False)
class FitSample:
    """One image with its 3DMM fit.

    Attributes:
        sample_id: the file stem (e.g. ``IBUG_image_008_1_0``), unique within a source.
        image_path: path of the image, or None when no image sits beside the ``.mat``.
        mat_path: path of the ``.mat``.
        shape_para: (S,) float64 identity coefficients (S = 199 for BFM).
        exp_para: (E,) float64 expression coefficients (E = 29).
        pose_para: (7,) float64 ``[pitch, yaw, roll, tx, ty, tz, s]``.
        pt2d: (2, K) float64 2D landmarks (K = 68 for 300W-LP, 21 for AFLW2000-3D), or None.
        pt3d_68: (3, 68) float64 3D landmarks (AFLW2000-3D), or None.
        roi: (4,) float64 face box, or None.
    """

    sample_id: str
    image_path: Path | None
    mat_path: Path
    shape_para: np.ndarray
    exp_para: np.ndarray
    pose_para: np.ndarray
    pt2d: np.ndarray | None = None
    pt3d_68: np.ndarray | None = None
    roi: np.ndarray | None = None

    @property
    def yaw_degrees(self) -> float:
        return float(np.degrees(self.pose_para[1]))

    def load_image(self) -> np.ndarray:
        """The image as (H, W, 3) uint8 RGB."""
        return read_image(
            self.image_path if self.image_path is not None else self.mat_path.with_suffix(".jpg")
        )


def _opt(mat: dict, path: Path, key: str, shape) -> np.ndarray | None:
    if key not in mat:
        return None
    return check_array(mat[key], path, key, shape).astype(np.float64)


FIT_FIELDS = ("Shape_Para", "Exp_Para", "Pose_Para")


def read_fit_mat(
    path: str | os.PathLike,
    n_shape: int | None = None,
    n_exp: int | None = None,
    fit_only: bool = False,
) -> FitSample:
    """Read a 300W-LP / AFLW2000-3D ``.mat`` (and locate its image beside it).

    Args:
        n_shape, n_exp: expected coefficient counts (None accepts any).
        fit_only: read only the 3DMM fit (:data:`FIT_FIELDS`; ``pt2d``, ``pt3d_68`` and ``roi`` are
            then None): the other variables are skipped unparsed.

    Raises:
        InputError: naming the file and the field (missing, wrong shape, NaN, ...).
    """
    p = Path(path)
    mat = read_mat(p, list(FIT_FIELDS) if fit_only else None)
    for key in ("Shape_Para", "Exp_Para", "Pose_Para"):
        if key not in mat:
            raise InputError(p, key, "missing")
    shape = check_array(mat["Shape_Para"], p, "Shape_Para", (n_shape,), squeeze=True).astype(
        np.float64
    )
    exp = check_array(mat["Exp_Para"], p, "Exp_Para", (n_exp,), squeeze=True).astype(np.float64)
    pose = check_array(mat["Pose_Para"], p, "Pose_Para", (7,), squeeze=True).astype(np.float64)
    if pose[6] <= 0:
        raise InputError(p, "Pose_Para", f"scale (7th value) must be positive, got {pose[6]}")
    pt2d = _opt(mat, p, "pt2d", (2, None))
    pt3d = _opt(mat, p, "pt3d_68", (3, 68))
    roi = None
    if "roi" in mat:
        roi = check_array(mat["roi"], p, "roi", (4,), squeeze=True).astype(np.float64)
    image = next((p.with_suffix(s) for s in IMAGE_SUFFIXES if p.with_suffix(s).is_file()), None)
    return FitSample(p.stem, image, p, shape, exp, pose, pt2d, pt3d, roi)


def list_fit_mats(folder: str | os.PathLike, pattern: str = "**/*.mat") -> list[Path]:
    """The ``.mat`` files of a source folder, sorted by relative path (the sample order).

    Symlinked subfolders (e.g. subsets linked in from another disk) are followed; a link to
    a folder that contains it (a cycle) is skipped. Hidden
    files and folders (``.name``) are skipped. ``pattern``: the default walks the tree with
    ``os.walk`` (one ``scandir`` per folder, no ``stat`` per file); any other is a ``glob``.
    """
    d = Path(folder)
    if pattern != "**/*.mat":
        if not d.is_dir():
            raise InputError(d, None, "source folder not found")
        return sorted(
            (p for p in d.glob(pattern) if p.is_file() and not p.name.startswith(".")),
            key=lambda q: q.relative_to(d).as_posix(),
        )
    return [d / r for r in list_fit_rels(d)]


def list_fit_rels(folder: str | os.PathLike) -> list[str]:
    """The ``.mat`` files of a source folder as sorted relative posix paths (what
    :func:`list_fit_mats` lists, as plain strings: a few times less memory than ``Path`` objects
    for a million samples)."""
    d = Path(folder)
    if not d.is_dir():
        raise InputError(d, None, "source folder not found")
    rels = []
    for top, dirs, files in os.walk(d, followlinks=True):
        here = os.path.realpath(top)
        keep = []
        for name in dirs:
            real = os.path.realpath(os.path.join(top, name))
            if not name.startswith(".") and not (
                here == real or here.startswith(real + os.sep)
            ):  # a link to an ancestor: a cycle
                keep.append(name)
        dirs[:] = keep
        rel_top = os.path.relpath(top, d)
        for f in files:
            if (
                f.endswith(".mat")
                and not f.startswith(".")
                and os.path.isfile(os.path.join(top, f))
            ):
                rels.append(f if rel_top == "." else f"{rel_top}/{f}".replace(os.sep, "/"))
    rels.sort()
    return rels


def orphan_images(
    folder: str | os.PathLike, pattern: str = "**/*", mats: list[Path] | None = None
) -> list[Path]:
    """Images of a source folder with no ``.mat`` beside them (sorted): samples without a fit.

    Args:
        mats: the folder's :func:`list_fit_mats` when already listed (saves a look-up per image).
    """
    d = Path(folder)
    if not d.is_dir():
        raise InputError(d, None, "source folder not found")
    stems = (
        None if mats is None else {Path(m).relative_to(d).with_suffix("").as_posix() for m in mats}
    )

    def has_mat(p: Path) -> bool:
        return (
            p.with_suffix(".mat").is_file()
            if stems is None
            else p.relative_to(d).with_suffix("").as_posix() in stems
        )

    return sorted(
        (p for p in d.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
         and p.is_file() and not has_mat(p)),
        key=lambda q: q.relative_to(d).as_posix(),
    )  # fmt: skip


def iter_source(
    folder: str | os.PathLike, n_shape: int | None = None, n_exp: int | None = None
) -> Iterator[FitSample | InputError]:
    """Yield each sample of a folder, or the :class:`InputError` that kept it from loading
    (so long builds can quarantine bad samples and go on)."""
    for p in list_fit_mats(folder):
        try:
            yield read_fit_mat(p, n_shape, n_exp)
        except InputError as exc:
            yield exc


@dataclass(frozen=True, eq=False)
class AFLW2000GT:
    """3DDFA's AFLW2000-3D benchmark arrays, rows in sorted file-name order.

    Attributes:
        pts68: (n, 3, 68) float32 ground-truth 68 landmarks (image x, y, z).
        pts21: (n, 2, 21) float32 AFLW 21-point annotation, or None.
        roi_box: (n, 4) float32 crop boxes, or None.
        yaw: (n,) float32 yaw in degrees, or None.
        pts68_reannotated: (n, 2, 68) float32 re-annotated 2D landmarks, or None.
    """

    pts68: np.ndarray
    pts21: np.ndarray | None
    roi_box: np.ndarray | None
    yaw: np.ndarray | None
    pts68_reannotated: np.ndarray | None = None


def load_aflw2000_gt(folder: str | os.PathLike) -> AFLW2000GT:
    """Read ``AFLW2000-3D.pts68.npy`` (required) and the optional ``pts21``, ``roi_box``,
    ``pose`` and re-annotated arrays from a folder; every present array must have n rows."""
    d = Path(folder)
    pts68 = load_npy(d / "AFLW2000-3D.pts68.npy", "pts68", (None, 3, 68), kind="f")
    n = pts68.shape[0]

    def opt(name: str, field: str, shape) -> np.ndarray | None:
        f = d / name
        return load_npy(f, field, shape, kind="f") if f.exists() else None

    return AFLW2000GT(
        pts68=pts68,
        pts21=opt("AFLW2000-3D.pts21.npy", "pts21", (n, 2, 21)),
        roi_box=opt("AFLW2000-3D_crop.roi_box.npy", "roi_box", (n, 4)),
        yaw=opt("AFLW2000-3D.pose.npy", "pose", (n,)),
        pts68_reannotated=opt("AFLW2000-3D-Reannotated.pts68.npy", "pts68_reannotated", (n, 2, 68)),
    )
