"""Generic file readers and writers every part uses: MATLAB files (v5 and v7.3), ``.npy``
without pickles, and a byte-stable atomic ``.mat`` writer. Errors name the file and the field."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import scipy.io as sio

from densemark.core.atomic import atomic_path
from densemark.core.errors import InputError
from densemark.core.validate import check_array

PathLike = str | os.PathLike


def read_mat(path: PathLike, variable_names: list[str] | None = None) -> dict[str, object]:
    """Load a MATLAB file (v5 through scipy; v7.3/HDF5 through h5py) into a dict of arrays
    (only ``variable_names`` when given: the others are skipped unparsed; absent ones are absent).

    Raises:
        InputError: the file is missing, empty, truncated or not a MATLAB file.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, None, "file not found")
    if p.stat().st_size == 0:
        raise InputError(p, None, "file is empty")
    try:
        return {k: v for k, v in sio.loadmat(p, variable_names=variable_names).items() if not k.startswith("__")}
    except NotImplementedError:  # v7.3 files are HDF5
        out = _read_mat73(p)
        return out if variable_names is None else {k: v for k, v in out.items() if k in variable_names}
    except Exception as exc:  # noqa: BLE001 - scipy raises many kinds on corrupt input
        raise InputError(p, None, f"cannot read as a MATLAB file ({type(exc).__name__}: {exc})") from exc


def _read_mat73(p: Path) -> dict[str, object]:
    import h5py

    try:
        with h5py.File(p, "r") as f:
            out: dict[str, object] = {}
            for k, v in f.items():
                if isinstance(v, h5py.Dataset):
                    out[k] = np.asarray(v).T  # MATLAB stores column-major
                else:
                    out[k] = {kk: np.asarray(vv).T for kk, vv in v.items() if isinstance(vv, h5py.Dataset)}
            return out
    except Exception as exc:  # noqa: BLE001
        raise InputError(p, None, f"cannot read as a MATLAB v7.3 file ({exc})") from exc


def load_npy(path: PathLike, field: str | None = None, shape=None, kind: str = "fiu") -> np.ndarray:
    """``np.load`` without pickles, wrapped in file/field errors."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, field, "file not found")
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise InputError(p, field, f"cannot read as .npy ({type(exc).__name__}: {exc})") from exc
    return check_array(arr, p, field or p.name, shape, kind=kind)



MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: densemark, Created by: densemark"


def atomic_savemat(path: PathLike, data: dict[str, object], oned_as: str = "row") -> Path:
    """``scipy.io.savemat`` (v5, compressed) to a temp file, then rename.

    scipy stamps the creation time into the 116-byte header; it is replaced by
    :data:`MAT_HEADER`, so the same arrays give byte-identical files.
    """
    buf = io.BytesIO()
    sio.savemat(buf, data, do_compression=True, oned_as=oned_as)
    raw = bytearray(buf.getvalue())
    raw[:116] = MAT_HEADER.ljust(116, b" ")
    with atomic_path(path) as tmp:
        tmp.write_bytes(bytes(raw))
    return Path(path)
