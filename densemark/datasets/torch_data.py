"""A PyTorch ``Dataset`` over built shards (Parquet, else HDF5), safe with DataLoader workers.

The index (which shard row is item ``i``) is read once from the shards' small columns; files
are opened lazily in each process (a worker forked or spawned by a ``DataLoader`` opens its own
handles, keyed by process id), and row groups are cached one per shard, so sequential and
shuffled access both work without loading a dataset into memory.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from densemark.core.errors import InputError
from densemark.datasets import shards

try:  # torch is optional for everything but this class's base
    from torch.utils.data import Dataset as _Base
except ModuleNotFoundError:  # pragma: no cover
    _Base = object


class ShardDataset(_Base):
    """Rows of a built dataset.

    Args:
        root: dataset folder (``manifest.json`` + shards).
        split: ``train`` / ``val`` / ``test``, or None for every row.
        column: the landmark column (``landmarks`` or ``landmarks__<set name>`` after a relabel).
        with_image: decode the JPEG (False: ``image`` is omitted, for label-only passes).

    ``ds[i]`` is ``dict(image=(H, W, 3) uint8 RGB, landmarks=(K, 3) float32, kpt68=(68, 3) float32,
    id=str, flip=bool, yaw=float degrees)``.

    Attributes:
        landmark_set: dict (name, sha256, n_points, kpt68 positions, mirror_perm) of ``column``'s set.
        manifest_sha256: SHA-256 of ``manifest.json`` (the dataset's identity).
        manifest: the manifest.
    """

    def __init__(self, root: str | os.PathLike, split: str | None = None, column: str = "landmarks", with_image: bool = True):
        self.root = Path(root)
        mpath = self.root / "manifest.json"
        if not mpath.is_file():
            raise InputError(mpath, None, "no manifest: not a finished dataset")
        raw = mpath.read_bytes()
        self.manifest = json.loads(raw)
        self.manifest_sha256 = hashlib.sha256(raw).hexdigest()
        if column == "landmarks":
            self.landmark_set = self.manifest["landmark_set"]
        else:
            sets = {v["column"]: v for v in self.manifest.get("extra_sets", {}).values()}
            if column not in sets:
                raise InputError(mpath, "columns", f"no column {column!r}; have landmarks, {', '.join(sets) or 'no extra sets'}")
            self.landmark_set = sets[column]
        self.split, self.column, self.with_image = split, column, with_image
        fmt = "parquet" if "parquet" in self.manifest["formats"] else "hdf5"
        self.format = fmt
        entries = [e for e in self.manifest["files"] if e["format"] == fmt]
        self.files = [self.root / e["path"] for e in entries]
        # an extra set's column lives in one sidecar per shard (same rows, same order); a dataset
        # relabelled before sidecars existed has it inside the shards (no "files" in its record)
        self.label_files = None
        if column != "landmarks" and "files" in self.landmark_set:
            side = {f["shard"]: f["path"] for f in self.landmark_set["files"]}
            if any(e["path"] not in side for e in entries):
                raise InputError(mpath, "extra_sets", f"column {column!r} has no {fmt} sidecar for every shard")
            self.label_files = [self.root / side[e["path"]] for e in entries]
        index = []
        for fi in range(len(self.files)):
            d = self._read(fi, ["split"] + (["id"] if self.label_files is not None else []), None)
            splits = d["split"]
            if self.label_files is not None:
                ids = self._read(fi, ["id"], None, self.label_files[fi])["id"]
                if ids != d["id"]:
                    raise InputError(self.label_files[fi], "id", f"rows do not match the shard {self.files[fi].name}")
            rows = np.arange(len(splits)) if split is None else np.flatnonzero(np.asarray(splits) == split)
            index.append(np.stack([np.full(len(rows), fi), rows], 1))
        self.index = np.concatenate(index).astype(np.int64) if index else np.zeros((0, 2), np.int64)
        self._pid = None
        self._handles: dict = {}
        self._cache: dict = {}

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        fi, row = (int(x) for x in self.index[i])
        lab = self.column if self.label_files is None else None
        cols = ["id", "flip", "pose", "kpt68", *([lab] if lab else []), *(["image"] if self.with_image else [])]
        r = self._row(fi, row, cols)
        if lab is None:
            r[self.column] = self._row(fi, row, [self.column], sidecar=True)[self.column]
        out = {
            "landmarks": np.asarray(r[self.column], np.float32).reshape(-1, 3),
            "kpt68": np.asarray(r["kpt68"], np.float32).reshape(68, 3),
            "id": str(r["id"]),
            "flip": bool(r["flip"]),
            "yaw": float(np.asarray(r["pose"]).reshape(3)[1]),
        }
        if self.with_image:
            from densemark.core.images import decode_jpeg

            out["image"] = decode_jpeg(bytes(r["image"]))
        return out

    def blocks(self) -> list[np.ndarray]:
        """Dataset indices grouped by the storage unit they are read in: one (M,) int64 array per
        Parquet row group (per HDF5 file), in file order. A sampler that keeps each block's rows
        together (see ``densemark.train.data.BlockShuffleSampler``) reads every block once per
        worker instead of once per row."""
        fi, row = self.index[:, 0], self.index[:, 1]
        unit = np.zeros(len(self), np.int64)
        if self.format == "parquet":
            import pyarrow.parquet as pq

            for f in np.unique(fi):
                md = pq.ParquetFile(self.files[int(f)]).metadata
                ends = np.cumsum([md.row_group(g).num_rows for g in range(md.num_row_groups)])
                sel = fi == f
                unit[sel] = np.searchsorted(ends, row[sel], side="right")
        key = fi * (1 << 32) + unit
        cuts = np.flatnonzero(np.diff(key)) + 1
        return [np.arange(len(self))[a:b] for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(self)], strict=True)] if len(self) else []

    # -- file access, per process

    def _check_pid(self) -> None:
        if self._pid != os.getpid():  # a new DataLoader worker: never share handles across processes
            self._pid, self._handles, self._cache = os.getpid(), {}, {}

    def _handle(self, fi: int, sidecar: bool = False):
        self._check_pid()
        key = (fi, sidecar)
        if key not in self._handles:
            path = self.label_files[fi] if sidecar else self.files[fi]
            if self.format == "parquet":
                import pyarrow.parquet as pq

                self._handles[key] = pq.ParquetFile(path)
            else:
                import h5py

                self._handles[key] = h5py.File(path, "r")
        return self._handles[key]

    def _read(self, fi: int, cols: list[str], rows, path: Path | None = None) -> dict:
        path = self.files[fi] if path is None else path
        if self.format == "parquet":
            import pyarrow.parquet as pq

            t = pq.read_table(path, columns=cols)
            return {c: t.column(c).to_pylist() for c in cols}
        import h5py

        with h5py.File(path, "r") as f:
            return {c: list(shards.h5_column(f, c)) for c in cols}

    def _row(self, fi: int, row: int, cols: list[str], sidecar: bool = False) -> dict:
        h = self._handle(fi, sidecar)
        if self.format == "hdf5":
            out = {}
            for c in cols:
                okey = (fi, sidecar, c + shards.OFFSETS)
                if okey not in self._handles:  # a ragged column's offsets, read once per process
                    self._handles[okey] = h[okey[2]][()] if okey[2] in h else None
                out[c] = shards.h5_row(h, c, row, self._handles[okey])
            return out
        md = h.metadata
        start = 0
        for g in range(md.num_row_groups):
            n = md.row_group(g).num_rows
            if row < start + n:
                break
            start += n
        key = (fi, sidecar, g, tuple(cols))
        if key not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[:2] != (fi, sidecar)}  # one row group per file
            self._cache[key] = h.read_row_group(g, columns=cols)
        t = self._cache[key]
        j = row - start
        out = {}
        for c in cols:
            col = t.column(c)
            v = col[j]
            if c in ("id",):
                out[c] = v.as_py()
            elif c == "image":
                out[c] = v.as_py()
            elif c == "flip":
                out[c] = v.as_py()
            else:
                out[c] = v.values.to_numpy(zero_copy_only=False)
        return out

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_handles"], d["_cache"], d["_pid"] = {}, {}, None
        return d
