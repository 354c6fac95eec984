"""A PyTorch ``Dataset`` over built shards (Parquet, else HDF5), safe with DataLoader workers.

The index (which shard row is item ``i``) is read once from the shards' small columns; files
are opened lazily in each process (a worker forked or spawned by a ``DataLoader`` opens its own
handles, keyed by process id), and row groups are cached one per open shard, so sequential and
shuffled access both work without loading a dataset into memory. At most
:attr:`ShardDataset.max_open` shards are open per process (least recently used closed first):
a process's memory does not grow with the number of shards it has read (300W-LP: ~500 shards,
each holding a decoded row group of a few MB).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from densemark.core.errors import InputError
from densemark.datasets import shards
from densemark.datasets.manifest import Manifest

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

    max_open = 8  # open shard readers per process (each keeps one decoded row group)

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        column: str = "landmarks",
        with_image: bool = True,
    ):
        self.root = Path(root)
        man = Manifest.load(self.root)
        self.manifest = man.to_dict()
        self.manifest_sha256 = man.sha256
        self.landmark_set = man.label_set(column)
        self.split, self.column, self.with_image = split, column, with_image
        self.format = man.read_format
        self.files = [self.root / e["path"] for e in man.shards()]
        # an extra set's column lives in one sidecar per shard (same rows, same order)
        self.label_files = (
            None if column == "landmarks" else [self.root / p for p in man.sidecars(column)]
        )
        index = []
        for fi, path in enumerate(self.files):
            d = shards.read_columns(
                path, ["split"] + (["id"] if self.label_files is not None else [])
            )
            if (
                self.label_files is not None
                and shards.read_columns(self.label_files[fi], ["id"])["id"] != d["id"]
            ):
                raise InputError(
                    self.label_files[fi], "id", f"rows do not match the shard {path.name}"
                )
            rows = (
                np.arange(len(d["split"]))
                if split is None
                else np.flatnonzero(np.asarray(d["split"]) == split)
            )
            index.append(np.stack([np.full(len(rows), fi), rows], 1))
        self.index = np.concatenate(index).astype(np.int64) if index else np.zeros((0, 2), np.int64)
        self._pid = None
        self._readers: OrderedDict = OrderedDict()
        self._blocks: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        fi, row = (int(x) for x in self.index[i])
        cols = ["id", "flip", "pose", "kpt68", *(["image"] if self.with_image else [])]
        if self.label_files is None:
            cols.append(self.column)
        r = self._reader(fi).row(row, cols)
        if self.label_files is not None:
            r[self.column] = self._reader(fi, sidecar=True).row(row, [self.column])[self.column]
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
        worker instead of once per row. Computed once per dataset (each shard's footer read
        once), not once per epoch."""
        if self._blocks is None:
            self._blocks = self._compute_blocks()
        return list(self._blocks)

    def _compute_blocks(self) -> list[np.ndarray]:
        fi, row = self.index[:, 0], self.index[:, 1]
        unit = np.zeros(len(self), np.int64)
        if self.format == "parquet":
            for f in np.unique(fi):
                with shards.ShardReader(self.files[int(f)]) as r:
                    ends = np.cumsum(r.group_sizes())
                sel = fi == f
                unit[sel] = np.searchsorted(ends, row[sel], side="right")
        key = fi * (1 << 32) + unit
        cuts = np.flatnonzero(np.diff(key)) + 1
        return (
            [
                np.arange(len(self))[a:b]
                for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(self)], strict=True)
            ]
            if len(self)
            else []
        )

    # -- file access, per process

    def _reader(self, fi: int, sidecar: bool = False) -> shards.ShardReader:
        if (
            self._pid != os.getpid()
        ):  # a new DataLoader worker: never share handles across processes
            self._pid, self._readers = os.getpid(), OrderedDict()
        key = (fi, sidecar)
        r = self._readers.get(key)
        if r is None:
            r = self._readers[key] = shards.ShardReader(
                self.label_files[fi] if sidecar else self.files[fi]
            )
            while len(self._readers) > max(
                int(self.max_open), 2
            ):  # a shard and its sidecar may both be in use
                self._readers.popitem(last=False)[1].close()
        else:
            self._readers.move_to_end(key)
        return r

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_readers"], d["_pid"] = OrderedDict(), None
        return d
