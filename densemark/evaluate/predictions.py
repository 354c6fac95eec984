"""The predictions file: any predictor's 68 points on AFLW2000-3D, scored by the same code.

Format: an ``.npz`` (no pickles) with

* ``names``: (N,) unicode strings, the image file stems (``image00002``), unique;
* ``points``: (N, 68, 2) or (N, 68, 3) float, the 68 points (standard 68-point order) in image
  pixels of the original image (x right, y down; z in the same pixel scale, any offset);
* ``one_based``: bool scalar, whether pixel coordinates count from 1 (MATLAB, as
  AFLW2000-3D's ground truth) or from 0 (the centre of the top-left pixel is (0, 0)).

Write one with ``numpy.savez(path, names=np.array(stems), points=pts, one_based=False)`` or
:func:`write_predictions` (byte-stable: fixed zip timestamps).
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from densemark.core.atomic import atomic_path
from densemark.core.errors import InputError
from densemark.core.validate import check_array

FIELDS = ("names", "points", "one_based")


@dataclass(frozen=True, eq=False)
class Predictions:
    """Predicted 68 points of N images.

    Attributes:
        names: (N,) str image stems.
        points: (N, 68, 2 or 3) float64 image pixels.
        one_based: whether pixels count from 1.
        path: the file they were read from (named in errors), or None.
    """

    names: np.ndarray
    points: np.ndarray
    one_based: bool
    path: Path | None = None

    def shifted_to(self, one_based: bool) -> np.ndarray:
        """(N, 68, D) points in the frame of ground truth that is ``one_based`` or not
        (x and y move by the difference of the origins; z does not)."""
        p = self.points.copy()
        p[..., :2] += float(one_based) - float(self.one_based)
        return p


def read_predictions(path: str | os.PathLike) -> Predictions:
    """Read and validate a predictions file.

    Raises:
        InputError: naming the file and the field (missing field, dtype, shape, NaN,
            duplicate or empty names).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, None, "predictions file not found")
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001 - np.load raises many kinds on bad input
        raise InputError(
            p, None, f"cannot read as an .npz without pickles ({type(exc).__name__}: {exc})"
        ) from exc
    for k in FIELDS:
        if k not in data:
            raise InputError(
                p, k, f"missing (the file has: {', '.join(sorted(data)) or 'nothing'})"
            )
    names = data["names"]
    if names.dtype.kind != "U" or names.ndim != 1:
        raise InputError(
            p, "names", f"expected a (N,) array of strings, got {names.dtype} {names.shape}"
        )
    if names.size == 0:
        raise InputError(p, "names", "is empty")
    if (names == "").any():
        raise InputError(p, "names", f"empty name at row {int(np.flatnonzero(names == '')[0])}")
    uniq, counts = np.unique(names, return_counts=True)
    if (counts > 1).any():
        raise InputError(p, "names", f"duplicate names: {', '.join(uniq[counts > 1][:5].tolist())}")
    pts = check_array(data["points"], p, "points", (names.size, 68, None), kind="fiu", finite=False)
    if pts.shape[2] not in (2, 3):
        raise InputError(p, "points", f"expected shape (N, 68, 2 or 3), got {pts.shape}")
    bad = ~np.isfinite(pts.astype(np.float64)).all(axis=(1, 2))
    if bad.any():
        raise InputError(
            p,
            "points",
            f"NaN or infinite values for {int(bad.sum())} images, first {names[bad][0]!r}",
        )
    ob = data["one_based"]
    if (
        ob.shape not in ((), (1,))
        or ob.dtype.kind not in "biu"
        or int(ob.reshape(-1)[0]) not in (0, 1)
    ):
        raise InputError(p, "one_based", f"expected a bool scalar, got {ob.dtype} {ob.shape}")
    return Predictions(names.astype(str), pts.astype(np.float64), bool(ob.reshape(-1)[0]), p)


def write_predictions(path: str | os.PathLike, names, points: np.ndarray, one_based: bool) -> Path:
    """Write a predictions file atomically; the same arrays give the same bytes.

    Args:
        names: (N,) image stems.
        points: (N, 68, 2 or 3) image pixels.
    """
    arrays = {
        "names": np.asarray(names, dtype=str),
        "points": np.asarray(points, np.float32),
        "one_based": np.asarray(bool(one_based)),
    }
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, a, allow_pickle=False)
            info = zipfile.ZipInfo(f"{k}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())
    return Path(path)
