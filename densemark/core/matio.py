"""Generic file readers and writers every part uses: MATLAB files (v5 and v7.3), ``.npy``
without pickles, and a byte-stable atomic ``.mat`` writer. Errors name the file and the field."""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
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
    try:
        with open(p, "rb") as f:  # one read: no separate existence and size checks
            data = f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise InputError(p, None, "file not found") from None
    if not data:
        raise InputError(p, None, "file is empty")
    if variable_names is not None:
        fast = read_v5_numeric(data, set(variable_names))
        if fast is not None:
            return fast
    try:
        return {
            k: v
            for k, v in sio.loadmat(io.BytesIO(data), variable_names=variable_names).items()
            if not k.startswith("__")
        }
    except NotImplementedError:  # v7.3 files are HDF5
        out = _read_mat73(p)
        return (
            out if variable_names is None else {k: v for k, v in out.items() if k in variable_names}
        )
    except Exception as exc:  # noqa: BLE001 - scipy raises many kinds on corrupt input
        raise InputError(
            p, None, f"cannot read as a MATLAB file ({type(exc).__name__}: {exc})"
        ) from exc


_MI_DTYPE = {
    1: "i1",
    2: "u1",
    3: "<i2",
    4: "<u2",
    5: "<i4",
    6: "<u4",
    7: "<f4",
    9: "<f8",
    12: "<i8",
    13: "<u8",
}
_NUMERIC_CLASSES = frozenset(range(6, 16))  # mxDOUBLE .. mxUINT64
_TAG = struct.Struct("<II")


def read_v5_numeric(data: bytes, names: set[str]) -> dict[str, np.ndarray] | None:
    """The named real numeric matrices of a little-endian MATLAB v5 file, parsed directly.

    The common case of 300W-LP / AFLW2000-3D fits (a few small, zlib-compressed matrices), at
    about half the time of ``scipy.io.loadmat``; variables not named are skipped after
    inflating their first bytes (the name). Arrays come back as scipy returns them (2D or more,
    the stored data type, the same values). Returns None for anything else (big-endian, a named
    variable that is complex, sparse, a cell, struct or char, a truncated or malformed file):
    the caller then uses scipy, which also words the errors.
    """
    if len(data) < 128 or data[126:128] != b"IM":
        return None
    out: dict[str, np.ndarray] = {}
    off, n = 128, len(data)
    try:
        while off + 8 <= n and len(out) < len(names):
            typ, nb = _TAG.unpack_from(data, off)
            if typ >> 16 or off + 8 + nb > n:
                return None
            body = data[off + 8 : off + 8 + nb]
            off += 8 + nb + ((-nb) % 8 if typ != 15 else 0)
            if typ == 15:  # miCOMPRESSED: inflate the header first, for the name
                z = zlib.decompressobj()
                head = z.decompress(body, 128)
                if _TAG.unpack_from(head, 0)[0] != 14:
                    continue
                (_, flags), _, (_, nm) = _v5_elements(head[8:], 3)
                name = nm.decode("latin-1")
                if name not in names:
                    continue
                if not _real_numeric(flags):  # a struct, cell, ...: scipy's (never inflate twice)
                    return None
                raw = (head + z.decompress(z.unconsumed_tail) + z.flush())[8:]
            elif typ == 14:  # miMATRIX, uncompressed
                raw = body
                name = _v5_elements(raw, 3)[2][1].decode("latin-1")
                if name not in names:
                    continue
            else:
                continue
            arr = _v5_matrix(raw)
            if arr is None:
                return None
            out[name] = arr
    except (struct.error, zlib.error, ValueError, IndexError, UnicodeDecodeError):
        return None
    return out


def _v5_elements(raw: bytes, n: int) -> list[tuple[int, bytes]]:
    """The first ``n`` sub-elements (type, payload) of a matrix body (small data elements included)."""
    els, o = [], 0
    for _ in range(n):
        t, nb = _TAG.unpack_from(raw, o)
        if t >> 16:  # small data element: type and size in 4 bytes, payload in the next 4
            els.append((t & 0xFFFF, raw[o + 4 : o + 4 + (t >> 16)]))
            o += 8
        else:
            els.append((t, raw[o + 8 : o + 8 + nb]))
            o += 8 + nb + (-nb) % 8
    return els


def _real_numeric(flags: bytes) -> bool:
    """Whether a matrix's array flags say real numeric (not complex, sparse, cell, struct, char)."""
    f0 = _TAG.unpack_from(flags, 0)[0]
    return (f0 & 0xFF) in _NUMERIC_CLASSES and not f0 & 0x0800


def _v5_matrix(raw: bytes) -> np.ndarray | None:
    """A real numeric matrix body as an ndarray (None: not one)."""
    (_, flags), (_, dims), _, (dt, payload) = _v5_elements(raw, 4)
    if not _real_numeric(flags) or dt not in _MI_DTYPE or len(dims) % 4:
        return None
    shape = struct.unpack(f"<{len(dims) // 4}i", dims)
    a = np.frombuffer(payload, _MI_DTYPE[dt])
    if len(shape) < 2 or a.size != int(np.prod(shape)):
        return None
    return a.reshape(shape, order="F").astype(a.dtype.newbyteorder("="), order="K", copy=True)


def _read_mat73(p: Path) -> dict[str, object]:
    import h5py

    try:
        with h5py.File(p, "r") as f:
            out: dict[str, object] = {}
            for k, v in f.items():
                if isinstance(v, h5py.Dataset):
                    out[k] = np.asarray(v).T  # MATLAB stores column-major
                else:
                    out[k] = {
                        kk: np.asarray(vv).T for kk, vv in v.items() if isinstance(vv, h5py.Dataset)
                    }
            return out
    except Exception as exc:  # noqa: BLE001
        raise InputError(p, None, f"cannot read as a MATLAB v7.3 file ({exc})") from exc


def save_npz_cache(path: PathLike, arrays: dict[str, object]) -> Path:
    """Atomically write arrays as an uncompressed ``.npz`` (a cache file: fast to load)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return Path(path)


def load_npz_cache(path: PathLike) -> dict[str, np.ndarray] | None:
    """Every array of a cache ``.npz`` (no pickles), or None when it is missing or unreadable
    (the caller then rebuilds it)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


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
