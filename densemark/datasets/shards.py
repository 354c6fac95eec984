"""Shard files: Parquet (pyarrow) and HDF5 (h5py), byte-identical for the same rows.

One shard holds the rows of one chunk. Both formats carry the same columns and a JSON
metadata record (key ``densemark`` in the Parquet key-value metadata, attribute ``densemark``
of the HDF5 root group), and both open with pyarrow / pandas / h5py alone:

* Parquet: ``image`` binary (JPEG), label arrays as ``fixed_size_list<float32>``, 3DMM params as
  ``list<float64>``; row groups of ``row_group_size`` rows for streaming; zstd; no timestamps.
* HDF5: one dataset per column, first axis = rows; label arrays shaped ``(n, K, 3)``,
  ``image`` as variable-length uint8, strings as UTF-8; chunked, gzip, ``track_times=False``,
  fixed ``libver`` so the same rows give the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from densemark.core.atomic import atomic_path

META_KEY = "densemark"

STR_COLUMNS = ("id", "source_id", "subset", "split", "source_file")


def fsl(values: np.ndarray, dtype) -> object:
    """A (n, ...) array as a pyarrow fixed_size_list column of its flattened rows."""
    import pyarrow as pa

    v = np.ascontiguousarray(values, dtype)
    n = v.shape[0]
    width = int(np.prod(v.shape[1:])) if v.ndim > 1 else 1
    return pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), width) if n else pa.array([], pa.list_(pa.from_numpy_dtype(v.dtype), width))


def to_table(cols: dict[str, object], meta: dict):
    """A pyarrow Table from column data (see :func:`write_parquet`)."""
    import pyarrow as pa

    arrays, names = [], []
    for name, val in cols.items():
        if name in STR_COLUMNS:
            arr = pa.array(list(val), pa.string())
        elif name == "image":
            arr = pa.array(list(val), pa.binary())
        elif isinstance(val, list):  # ragged float64 lists (3DMM parameters)
            arr = pa.array([np.asarray(x, np.float64) for x in val], pa.list_(pa.float64()))
        else:
            v = np.asarray(val)
            arr = fsl(v, v.dtype) if v.ndim > 1 else pa.array(v)
        arrays.append(arr)
        names.append(name)
    table = pa.Table.from_arrays(arrays, names=names)
    return table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True, separators=(",", ":"))})


def write_parquet(path: str | Path, table, row_group_size: int, hook=None, compression: str = "zstd") -> Path:
    """Atomically write a Parquet shard from a Table (:func:`to_table`). ``hook(tmp)`` runs
    before the rename (tests kill the process there). ``compression``: zstd (shards; it still
    saves ~15 % on baseline-Huffman JPEG bytes) or e.g. lz4 (label sidecars: 3x faster on floats)."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(
            table, tmp, row_group_size=row_group_size, compression=compression,
            use_dictionary=["subset", "split", "source_id"], write_statistics=False, store_schema=True,
        )  # fmt: skip
        if hook is not None:
            hook(tmp)
    return Path(path)


def write_hdf5(path: str | Path, cols: dict[str, object], meta: dict, level: int, hook=None) -> Path:
    """Atomically write an HDF5 shard (same columns; label arrays reshaped to (n, K, 3))."""
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", libver=("earliest", "v110")) as f:
            f.attrs[META_KEY] = json.dumps(meta, sort_keys=True, separators=(",", ":"))
            for name, val in cols.items():
                kw: dict = {"track_times": False}
                if name in STR_COLUMNS:
                    f.create_dataset(name, data=np.array(list(val), dtype=object), dtype=h5py.string_dtype(), **kw)
                    continue
                if name == "image" or isinstance(val, list):
                    dt = h5py.vlen_dtype(np.uint8 if name == "image" else np.float64)
                    d = f.create_dataset(name, (len(val),), dtype=dt, **kw)
                    for i, x in enumerate(val):
                        d[i] = np.frombuffer(x, np.uint8) if name == "image" else np.asarray(x, np.float64)
                    continue
                v = np.asarray(val)
                if v.ndim > 1 and (name in ("landmarks", "kpt68", "posmap") or name.startswith("landmarks__")):
                    v = v.reshape(v.shape[0], v.shape[1] // 3, 3)
                if v.ndim > 1 and v.shape[0] and level:
                    kw.update(chunks=(min(v.shape[0], 64), *v.shape[1:]), compression="gzip", compression_opts=level, shuffle=True)
                f.create_dataset(name, data=v, **kw)
        if hook is not None:
            hook(tmp)
    return Path(path)


def read_meta(path: str | Path) -> dict | None:
    """The ``densemark`` metadata record of a shard, or None when unreadable."""
    p = Path(path)
    try:
        if p.suffix == ".parquet":
            import pyarrow.parquet as pq

            md = pq.read_schema(p).metadata or {}
            raw = md.get(META_KEY.encode())
            return None if raw is None else json.loads(raw)
        import h5py

        with h5py.File(p, "r") as f:
            raw = f.attrs.get(META_KEY)
            return None if raw is None else json.loads(raw)
    except Exception:  # noqa: BLE001 - a truncated or foreign file is simply not ours
        return None


def read_parquet_columns(path: str | Path, columns: list[str] | None = None) -> dict[str, object]:
    """Columns of a Parquet shard as numpy arrays ((n, width) for fixed-size lists) or lists."""
    import pyarrow.parquet as pq

    return table_columns(pq.read_table(path, columns=columns))


def table_columns(t) -> dict[str, object]:
    """A Table's columns as numpy arrays ((n, width) for fixed-size lists) or lists."""
    import pyarrow as pa

    out: dict[str, object] = {}
    for name in t.column_names:
        col = t.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            out[name] = col.values.to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
        elif pa.types.is_list(col.type):
            out[name] = [np.asarray(x, np.float64) for x in col.to_pylist()]
        elif pa.types.is_binary(col.type):
            out[name] = col.to_pylist()
        elif pa.types.is_string(col.type) or pa.types.is_dictionary(col.type):
            out[name] = [str(x) for x in col.to_pylist()]
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out
