"""Shard files: Parquet (pyarrow) and HDF5 (h5py), byte-identical for the same rows.

One shard holds the rows of one chunk. Both formats carry the same columns and a JSON
metadata record (key ``densemark`` in the Parquet key-value metadata, attribute ``densemark``
of the HDF5 root group), and both open with pyarrow / pandas / h5py alone:

* Parquet: ``image`` as the Hugging Face image struct ``{bytes: JPEG, path: null}``, point
  arrays (``landmarks``, ``kpt68``, ``posmap``, ``landmarks__<set>``) as (K, 3) nested
  fixed-size lists ``fixed_size_list<fixed_size_list<float32>[3]>[K]``, other fixed-width
  arrays as ``fixed_size_list``, 3DMM params as ``list<float64>``; the ``datasets`` features of
  the columns in the key-value metadata ``huggingface`` (so ``datasets`` decodes the images and
  (K, 3) labels of a lone file too); row groups of ``row_group_size`` rows for streaming; zstd;
  no timestamps.
* HDF5: one dataset per column, first axis = rows; label arrays shaped ``(n, K, 3)``; strings
  as fixed-width UTF-8 (NUL-padded); 3DMM parameter lists as ``(n, L)`` float64 when every row
  has the same length; ``image`` (and any ragged list) as one flat dataset plus
  ``<name>_offsets`` (n + 1,) int64, row ``i`` being ``flat[offsets[i]:offsets[i + 1]]``;
  chunked, gzip, ``track_times=False``, fixed ``libver``, every dataset allocated as it is
  written (see :func:`write_hdf5`); nothing in HDF5's global heap (variable-length data). The
  same rows give the same bytes, whichever thread writes them.

Every reader of shards and label sidecars goes through :class:`ShardReader` /
:func:`read_columns`, which give both formats' columns the same types (see
:meth:`ShardReader.read`).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np

from densemark.core.atomic import atomic_path

META_KEY = "densemark"
HF_KEY = "huggingface"  # the datasets library's features record in Parquet metadata

STR_COLUMNS = ("id", "source_id", "subset", "split", "source_file")
PARAM_LISTS = ("shape_para", "exp_para")  # 3DMM coefficient lists (HDF5: (n, L) when of one length)
OFFSETS = "_offsets"  # HDF5: suffix of a ragged column's (n + 1,) row offsets


def is_points(name: str) -> bool:
    """Whether a column holds (K, 3) points per row (stored (n, 3K) flat in memory)."""
    return name in ("landmarks", "kpt68", "posmap") or name.startswith("landmarks__")


def fsl(values: np.ndarray, dtype, inner: int | None = None) -> object:
    """A (n, ...) array as a pyarrow fixed_size_list column of its flattened rows; with ``inner``,
    each row as a fixed-size list of fixed-size lists of ``inner`` values ((n, 3K) -> (K, 3) rows)."""
    import pyarrow as pa

    v = np.ascontiguousarray(values, dtype)
    width = int(np.prod(v.shape[1:])) if v.ndim > 1 else 1
    flat = pa.array(v.reshape(-1), pa.from_numpy_dtype(v.dtype))
    if inner is None:
        return pa.FixedSizeListArray.from_arrays(flat, width)
    if width % inner:
        raise ValueError(f"rows of {width} values are not groups of {inner}")
    return pa.FixedSizeListArray.from_arrays(
        pa.FixedSizeListArray.from_arrays(flat, inner), width // inner
    )


def image_array(values: list[bytes]) -> object:
    """JPEG bytes as the Hugging Face image struct column ``{bytes, path}`` (path null)."""
    import pyarrow as pa

    return pa.StructArray.from_arrays(
        [pa.array(list(values), pa.binary()), pa.nulls(len(values), pa.string())],
        names=["bytes", "path"],
    )


def hf_feature(name: str, t) -> dict:
    """The ``datasets`` feature (its JSON form) of a column of pyarrow type ``t``: ``image`` an
    ``Image``, (fixed-size) lists ``List`` (with ``length``), scalars ``Value``."""
    import pyarrow as pa

    if name == "image":
        return {"_type": "Image"}
    if pa.types.is_fixed_size_list(t):
        return {"feature": hf_feature("", t.value_type), "length": t.list_size, "_type": "List"}
    if pa.types.is_list(t):
        return {"feature": hf_feature("", t.value_type), "_type": "List"}
    dtype = {
        "string": "string",
        "binary": "binary",
        "bool": "bool",
        "halffloat": "float16",
        "float": "float32",
        "double": "float64",
    }.get(str(t), str(t))
    return {"dtype": dtype, "_type": "Value"}


def hf_features(schema) -> dict:
    """``{column: feature}`` of a table schema (:func:`hf_feature`), in column order."""
    return {f.name: hf_feature(f.name, f.type) for f in schema}


def to_table(cols: dict[str, object], meta: dict):
    """A pyarrow Table from column data (see :func:`write_parquet`): point columns (n, 3K) as
    (K, 3) nested lists, ``image`` as the image struct, the ``densemark`` and ``huggingface``
    metadata records."""
    import pyarrow as pa

    arrays, names = [], []
    for name, val in cols.items():
        if name in STR_COLUMNS:
            arr = pa.array(list(val), pa.string())
        elif name == "image":
            arr = image_array(val)
        elif isinstance(val, list):  # ragged float64 lists (3DMM parameters)
            arr = pa.array([np.asarray(x, np.float64) for x in val], pa.list_(pa.float64()))
        else:
            v = np.asarray(val)
            arr = fsl(v, v.dtype, 3 if is_points(name) else None) if v.ndim > 1 else pa.array(v)
        arrays.append(arr)
        names.append(name)
    table = pa.Table.from_arrays(arrays, names=names)
    hf = {"info": {"features": hf_features(table.schema)}}
    dump = partial(json.dumps, sort_keys=True, separators=(",", ":"))
    return table.replace_schema_metadata(
        {META_KEY: dump(meta), HF_KEY: json.dumps(hf, separators=(",", ":"))}
    )


def write_parquet(
    path: str | Path, table, row_group_size: int, hook=None, compression: str = "zstd"
) -> Path:
    """Atomically write a Parquet shard from a Table (:func:`to_table`). ``hook(tmp)`` runs
    before the rename (tests kill the process there). ``compression``: zstd (shards; it still
    saves ~15 % on baseline-Huffman JPEG bytes) or none (label sidecars: float32 labels compress by a few per cent only)."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(
            table, tmp, row_group_size=row_group_size, compression=compression,
            use_dictionary=["subset", "split", "source_id"], write_statistics=False, store_schema=True,
        )  # fmt: skip
        if hook is not None:
            hook(tmp)
    return Path(path)


def _fixed_utf8(values) -> np.ndarray:
    """Strings as a fixed-width (NUL-padded) byte array, width = longest UTF-8 encoding (>= 1)."""
    enc = [str(v).encode() for v in values]
    return np.array(enc, dtype=f"S{max([1, *map(len, enc)])}")


def _flat(values: list, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Ragged rows as one flat (total,) array and (n + 1,) int64 offsets."""
    parts = [
        np.frombuffer(x, np.uint8) if isinstance(x, bytes) else np.asarray(x, dtype).reshape(-1)
        for x in values
    ]
    off = np.zeros(len(parts) + 1, np.int64)
    np.cumsum([len(x) for x in parts], out=off[1:])
    flat = np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)
    return flat, off


def write_hdf5(
    path: str | Path, cols: dict[str, object], meta: dict, level: int, hook=None
) -> Path:
    """Atomically write an HDF5 shard (same columns; label arrays reshaped to (n, K, 3); layout
    in the module docstring). No variable-length types; storage allocated in column order."""
    import h5py

    with atomic_path(path) as tmp:
        # no chunk cache (rdcc_nbytes=0) and a flush per dataset: every dataset's storage is
        # allocated when it is written, in column order. Otherwise a chunk is allocated when its
        # dataset closes, and h5py may defer that close while another thread holds its lock,
        # which reorders the file (seen in threaded Dask builds).
        with h5py.File(tmp, "w", libver=("earliest", "v110"), rdcc_nbytes=0) as f:
            f.attrs.create(
                META_KEY,
                np.bytes_(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()),
            )
            for name, val in cols.items():
                kw: dict = {"track_times": False}
                if name in STR_COLUMNS:
                    a = _fixed_utf8(val)
                    f.create_dataset(
                        name, data=a.astype(h5py.string_dtype("utf-8", a.dtype.itemsize)), **kw
                    ).flush()
                    continue
                if name == "image" or isinstance(val, list):
                    lens = {len(x) for x in val}
                    if name != "image" and len(lens) == 1:  # e.g. Shape_Para of one model: (n, L)
                        v = np.stack([np.asarray(x, np.float64) for x in val])
                    else:
                        flat, off = _flat(val, np.uint8 if name == "image" else np.float64)
                        f.create_dataset(name, data=flat, **kw).flush()
                        f.create_dataset(name + OFFSETS, data=off, **kw).flush()
                        continue
                else:
                    v = np.asarray(val)
                if v.ndim > 1 and is_points(name):
                    v = v.reshape(v.shape[0], v.shape[1] // 3, 3)
                if v.ndim > 1 and v.shape[0] and level:
                    kw.update(
                        chunks=(min(v.shape[0], 64), *v.shape[1:]),
                        compression="gzip",
                        compression_opts=level,
                        shuffle=True,
                    )
                f.create_dataset(name, data=v, **kw).flush()
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


# ----------------------------------------------------------------------------- reading


class ShardReader:
    """A shard or label sidecar opened for reading, Parquet or HDF5 (by its suffix).

    Opened on first use; :meth:`row` keeps one decoded Parquet row group, so reading the rows
    of a group one by one decodes it once. Not shared between processes (open one per process).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.format = "parquet" if self.path.suffix == ".parquet" else "hdf5"
        self._f = None
        self._offsets: dict[str, np.ndarray | None] = {}
        self._group: tuple[tuple, dict] | None = None
        self._ends: np.ndarray | None = None

    def _file(self):
        if self._f is None:
            if self.format == "parquet":
                import pyarrow.parquet as pq

                self._f = pq.ParquetFile(self.path)
            else:
                import h5py

                self._f = h5py.File(self.path, "r")
        return self._f

    def close(self) -> None:
        if self._f is not None and self.format == "hdf5":
            self._f.close()
        self._f, self._offsets, self._group, self._ends = None, {}, None, None

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def group_sizes(self) -> list[int]:
        """Rows per storage unit: Parquet row groups; HDF5: one unit of every row."""
        f = self._file()
        if self.format == "parquet":
            md = f.metadata
            return [md.row_group(g).num_rows for g in range(md.num_row_groups)]
        return [int(f["id"].shape[0])]

    def read(self, columns: list[str], rows=None) -> dict[str, object]:
        """Columns of the shard, alike for both formats.

        Args:
            columns: column names.
            rows: optional row indices (any order, repeats allowed); None: every row.

        Returns:
            ``{name: values}`` with n rows each: strings as a list of str, ``image`` as a list
            of bytes, arrays of fixed width (labels, pose, crop, ...) as (n, width) arrays of
            the stored dtype (labels flattened: (n, 3K)), coefficient lists as an (n, L)
            float64 array when every row has the same length else a list of (L_i,) float64
            arrays, scalars as (n,) arrays.
        """
        if self.format == "parquet":
            t = self._file().read(columns=columns)
            if rows is not None:
                import pyarrow as pa

                t = t.take(pa.array(np.asarray(rows, np.int64).reshape(-1)))
            return _table_columns(t, columns)
        return {c: self._h5(c, rows) for c in columns}

    def row(self, i: int, columns: list[str]) -> dict[str, object]:
        """Row ``i`` of the given columns (values as one row of :meth:`read`)."""
        if self._ends is None:
            self._ends = np.cumsum(self.group_sizes())
        ends = self._ends
        if not 0 <= i < (int(ends[-1]) if len(ends) else 0):
            raise IndexError(i)
        if self.format == "hdf5":
            return {c: v[0] for c, v in self.read(columns, [i]).items()}
        g = int(np.searchsorted(ends, i, side="right"))
        key = (g, tuple(columns))
        if self._group is None or self._group[0] != key:
            self._group = (
                key,
                _table_columns(self._file().read_row_group(g, columns=columns), columns),
            )
        j = i - (int(ends[g - 1]) if g else 0)
        return {c: v[j] for c, v in self._group[1].items()}

    def _h5(self, name: str, rows) -> object:
        f = self._file()
        if name not in self._offsets:
            self._offsets[name] = f[name + OFFSETS][()] if name + OFFSETS in f else None
        off = self._offsets[name]
        if off is not None:  # ragged: flat values + (n + 1,) offsets
            ds = f[name]
            if rows is None:
                flat = ds[()]
                vals = [flat[off[i] : off[i + 1]] for i in range(len(off) - 1)]
            else:
                vals = [
                    ds[int(off[i]) : int(off[i + 1])]
                    for i in np.asarray(rows, np.int64).reshape(-1)
                ]
            if ds.dtype == np.uint8:
                return [x.tobytes() for x in vals]
            return _uniform([np.asarray(x, np.float64) for x in vals])
        ds = f[name]
        v = ds[()] if rows is None else _take(ds, rows)
        if v.dtype.kind in "SO":
            return [x.decode() if isinstance(x, bytes) else str(x) for x in v]
        if name in PARAM_LISTS:
            return np.asarray(v, np.float64)
        return v.reshape(v.shape[0], -1) if v.ndim > 2 else v


def read_columns(path: str | Path, columns: list[str], rows=None) -> dict[str, object]:
    """Columns of one shard or sidecar (see :meth:`ShardReader.read`)."""
    with ShardReader(path) as r:
        return r.read(columns, rows)


def _take(ds, rows) -> np.ndarray:
    """``ds[rows]`` for any order of row indices (h5py wants them increasing and unique)."""
    r = np.asarray(rows, np.int64).reshape(-1)
    u, inv = np.unique(r, return_inverse=True)
    return ds[u][inv] if len(u) else ds[:0]


def _uniform(vals: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """Rows of one length as an (n, L) array, else the list itself."""
    if vals and len({len(x) for x in vals}) == 1:
        return np.stack(vals)
    return vals


def _table_columns(t, columns: list[str]) -> dict[str, object]:
    """A pyarrow Table's columns in the types of :meth:`ShardReader.read`."""
    import pyarrow as pa

    out: dict[str, object] = {}
    for name in columns:
        c = t.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(c.type):  # (K,) or nested (K, 3): flattened rows
            flat, width = c, 1
            while pa.types.is_fixed_size_list(flat.type):
                width *= flat.type.list_size
                flat = flat.flatten()
            out[name] = flat.to_numpy(zero_copy_only=False).reshape(len(c), width)
        elif pa.types.is_list(c.type):
            off = c.offsets.to_numpy()
            vals = c.values.to_numpy(zero_copy_only=False).astype(np.float64)
            lens = np.diff(off)
            if len(lens) and (lens == lens[0]).all():
                out[name] = vals[off[0] : off[-1]].reshape(len(c), int(lens[0]))
            else:
                out[name] = [vals[a:b] for a, b in zip(off[:-1], off[1:], strict=True)]
        elif pa.types.is_struct(c.type):  # the image struct {bytes, path}
            out[name] = c.field("bytes").to_pylist()
        elif (
            pa.types.is_binary(c.type)
            or pa.types.is_string(c.type)
            or pa.types.is_dictionary(c.type)
        ):
            out[name] = [x if isinstance(x, bytes) else str(x) for x in c.to_pylist()]
        else:
            out[name] = c.to_numpy(zero_copy_only=False)
    return out
