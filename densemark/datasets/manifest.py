"""The dataset's file format: names, columns, conventions, and ``manifest.json``.

:class:`Manifest` is the only code that reads or writes ``manifest.json``; the build, relabel,
the card, the torch dataset and the flows all go through it. A manifest lists every shard and
label sidecar with its sha256, so its own sha256 names the dataset.

:data:`VERSION` is recorded in the manifest, every shard and every sidecar, and enters every
fingerprint: readers refuse another version rather than guess at its layout. Version 2 means:
flipped labels exact on the centre UV columns; HDF5 without variable-length data, allocated in
column order; extra label sets only in sidecar files (one per shard and set), never in shards.
Version 3 means: the folder is a Hugging Face dataset repository (``README.md`` card with
``configs`` and ``dataset_info`` at its root, written from the manifest by
:mod:`densemark.datasets.hub`); chunks never cross splits and the Parquet shards are named as
the Hub names split files, ``data/<split>-<j>-of-<n>.parquet`` (HDF5 the same under ``hdf5/``,
label sidecars under ``labels/<set>/``); label arrays stored as (K, 3) nested fixed-size lists;
``image`` as the Hub's ``{bytes, path}`` struct; commit records, manifest, report and licence
outside every ``data_files`` pattern.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from densemark.core.atomic import write_json
from densemark.core.errors import InputError
from densemark.core.hashing import sha256_file

FORMAT = "densemark-dataset"
VERSION = 3
MANIFEST = "manifest.json"
REPORT = "report.json"
SUFFIX = {"parquet": ".parquet", "hdf5": ".h5"}
SHARD_DIR = {"parquet": "data", "hdf5": "hdf5"}  # Parquet under data/: what the Hub loads
LABELS_DIR = "labels"
SPLIT_ORDER = ("train", "val", "test")
CONVENTIONS = {
    "landmarks": "crop pixels, row-major (K, 3): x right, y down (0..res-1 inside the crop), z = crop-scaled depth shifted so the mesh minimum is 0 (PRNet position-map convention)",
    "kpt68": "the model's 68 keypoint vertices, same space as landmarks, (68, 3) row-major",
    "pose": "[pitch, yaw, roll] degrees (3DDFA); negated yaw and roll on flipped rows",
    "crop": "[scale, tx, ty, tz, size]: crop = scale * image + (tx, ty, tz); the same for a row and its flipped copy",
    "flip": "true: the image is the crop mirrored left-right, x -> res - 1 - x; landmark j is the mirror of the surface point at UV pixel (res-1-u, v) of landmark j's (u, v): the set's mirror partner, or on the two centre UV columns (self-paired in the mirror permutation) the neighbouring column; kpt68 by the iBUG 68-point mirror; pose_para/crop are the unflipped sample's",
    "pose_para": "300W-LP Pose_Para [pitch, yaw, roll, tx, ty, tz, s] (radians, source pixels)",
    "image": "JPEG bytes of the RGB res x res crop (Parquet: the Hub's image struct {bytes, path}, path null)",
    "valid": "false when a landmark lies outside the crop (n_outside counts them)",
}
COLUMNS = (
    "id", "source_id", "subset", "split", "flip", "source_file", "image", "landmarks", "kpt68", "pose", "crop",
    "shape_para", "exp_para", "pose_para", "source_size", "valid", "n_outside",
)  # fmt: skip
YAW_BINS = list(range(-90, 91, 15))
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def chunk_stem(split: str, j: int, n: int) -> str:
    """The file stem of the ``j``-th of ``n`` chunks of a split, as the Hub names split files:
    ``train-00000-of-00003``."""
    return f"{split}-{j:05d}-of-{n:05d}"


def shard_name(stem: str, fmt: str) -> str:
    """The shard of a chunk (stem :func:`chunk_stem`) in format ``fmt``, relative to the dataset
    folder: ``data/train-00000-of-00003.parquet`` / ``hdf5/train-00000-of-00003.h5``."""
    return f"{SHARD_DIR[fmt]}/{stem}{SUFFIX[fmt]}"


def record_name(k: int) -> str:
    """The commit record of chunk ``k``: ``part-00000.json`` (written after its shards)."""
    return f"part-{k:05d}.json"


def set_dir(set_name: str) -> str:
    """The folder of an extra label set's sidecars: ``labels/<set name, file-safe>``."""
    return f"{LABELS_DIR}/{_SAFE.sub('_', set_name)}"


def sidecar_name(shard: str, set_name: str) -> str:
    """The label sidecar of a shard for a landmark set, relative to the dataset folder:
    ``labels/<set>/train-00000-of-00003.parquet`` (or ``.h5``): the shard's file name in the
    set's own folder, outside the shards' ``data_files`` patterns."""
    return f"{set_dir(set_name)}/{Path(shard).name}"


def split_key(split: str) -> tuple[int, str]:
    """Sort key of split names: train, val, test, then any other alphabetically."""
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def label_column(set_name: str) -> str:
    """The column an extra landmark set's labels are stored under: ``landmarks__<name>``."""
    return f"landmarks__{set_name}"


@dataclass(frozen=True)
class Manifest:
    """``manifest.json`` of a finished build.

    Attributes:
        fingerprint: the build's fingerprint (params, model, template, set, source contents).
        rows, source_samples, quarantined: row, source sample and quarantine counts.
        counts: ``{group: {value: rows}}`` for subset, split, flip, subset_split, yaw_bins, valid.
        landmark_set: summary of the built set (name, sha256, n_points, kpt68, mirror_perm, ...).
        model: ``{sha256, uv_res, source}`` of the model the labels come from.
        res: crop side; flip: whether mirrored rows were made; formats: shard formats (sorted).
        columns: the columns of a row (built ones, then ``landmarks__<set>`` of extra sets).
        params: the ``build`` (without the output-neutral ``workers``, ``batch``), ``splits``
            and ``model`` sections the build ran with.
        notes: what the build chose to say (e.g. no mirrored rows).
        mirroring: which source samples got a mirrored row (``flip`` true) and why:
            ``{rule, mirrored_samples, twin_samples, reason}`` (``rule`` ``all``, ``none`` or
            ``skip_flip_twins``: samples with their ``_Flip`` twin in the source are not mirrored).
        files: one entry per shard ``{path, format, chunk, split, rows, bytes, sha256}``.
        report: ``{path, sha256}`` of ``report.json``.
        extra_sets: ``{name: set summary + column + files}``: label sets added by relabel, each
            with its sidecars ``{path, format, chunk, shard, rows, bytes, sha256}``.
        sha256: sha256 of the file's bytes when read or written (the dataset's identity);
            not part of the file.
        source: the file it was read from or written to (names it in errors); not part of the file.
    """

    fingerprint: str
    rows: int
    source_samples: int
    quarantined: int
    counts: dict[str, dict[str, int]]
    landmark_set: dict[str, Any]
    model: dict[str, Any]
    res: int
    flip: bool
    formats: list[str]
    columns: list[str]
    params: dict[str, Any]
    notes: list[str]
    files: list[dict[str, Any]]
    report: dict[str, str]
    extra_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    mirroring: dict[str, Any] = field(default_factory=dict)
    conventions: dict[str, str] = field(default_factory=lambda: dict(CONVENTIONS))
    format: str = FORMAT
    version: int = VERSION
    sha256: str | None = field(default=None, compare=False)
    source: str | None = field(default=None, compare=False)

    # -- file

    @staticmethod
    def path(folder: str | os.PathLike) -> Path:
        return Path(folder) / MANIFEST

    @classmethod
    def from_dict(
        cls, d: dict, source: str | os.PathLike | None = None, sha256: str | None = None
    ) -> Manifest:
        """A manifest from its JSON object; ``source`` names the file in errors.

        Raises:
            InputError: not a dataset manifest, another format version, or a field missing.
        """
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise InputError(source, "format", f"expected {FORMAT!r}, got {got!r}")
        if d.get("version") != VERSION:
            raise InputError(
                source,
                "version",
                f"format version {d.get('version')!r}; this code reads version {VERSION} (rebuild the dataset)",
            )
        names = [f.name for f in fields(cls) if f.name not in _NOT_IN_FILE]
        for key in names:
            if key not in d and key not in ("extra_sets", "mirroring", "conventions"):
                raise InputError(source, key, "missing")
        return cls(
            **{k: d[k] for k in names if k in d},
            sha256=sha256,
            source=None if source is None else os.fspath(source),
        )

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Manifest:
        """The manifest of a dataset folder.

        Raises:
            InputError: no manifest (not a finished dataset), not JSON, or not a dataset manifest.
        """
        p = cls.path(folder)
        if not p.is_file():
            raise InputError(p, None, "no manifest: not a finished dataset")
        raw = p.read_bytes()
        try:
            d = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(p, None, f"manifest is not valid JSON ({exc})") from exc
        return cls.from_dict(d, p, hashlib.sha256(raw).hexdigest())

    @classmethod
    def load_same(cls, folder: str | os.PathLike, fingerprint: str) -> Manifest | None:
        """The manifest in ``folder`` when it records a build of this ``fingerprint``, else None
        (none there, unreadable, another format or other inputs)."""
        try:
            m = cls.load(folder)
        except InputError:
            return None
        return m if m.fingerprint == fingerprint else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (every field but :attr:`sha256`)."""
        d = asdict(self)
        for k in _NOT_IN_FILE:
            d.pop(k)
        return d

    def write(self, folder: str | os.PathLike) -> Manifest:
        """Write ``manifest.json`` atomically (key-sorted: byte-stable); returns it with :attr:`sha256` set."""
        p = write_json(self.path(folder), self.to_dict())
        return replace(self, sha256=sha256_file(p), source=os.fspath(p))

    # -- contents

    @property
    def read_format(self) -> str:
        """The format readers use: Parquet when built, else the first."""
        return "parquet" if "parquet" in self.formats else self.formats[0]

    def shards(self, fmt: str | None = None) -> list[dict[str, Any]]:
        """The shard entries of one format (default :attr:`read_format`), in chunk order."""
        fmt = fmt or self.read_format
        return [e for e in self.files if e["format"] == fmt]

    def sidecar_files(self) -> list[dict[str, Any]]:
        """Every label sidecar entry of every extra set."""
        return [f for s in self.extra_sets.values() for f in s.get("files", [])]

    def label_set(self, column: str) -> dict[str, Any]:
        """The set summary of a label column (``landmarks`` or an extra set's ``landmarks__<name>``).

        Raises:
            InputError: no such column.
        """
        if column == "landmarks":
            return self.landmark_set
        sets = {v["column"]: v for v in self.extra_sets.values()}
        if column not in sets:
            raise InputError(
                self.source or MANIFEST,
                "columns",
                f"no column {column!r}; have landmarks, {', '.join(sets) or 'no extra sets'}",
            )
        return sets[column]

    def sidecars(self, column: str, fmt: str | None = None) -> list[str]:
        """The sidecar file of every shard of ``fmt`` (default :attr:`read_format`) holding an
        extra set's column, in shard order.

        Raises:
            InputError: no such column, or a shard without its sidecar.
        """
        fmt = fmt or self.read_format
        side = {f["shard"]: f["path"] for f in self.label_set(column).get("files", [])}
        missing = [e["path"] for e in self.shards(fmt) if e["path"] not in side]
        if missing:
            raise InputError(
                self.source or MANIFEST,
                "extra_sets",
                f"column {column!r} has no {fmt} sidecar for {missing[0]} (and {len(missing) - 1} more)",
            )
        return [side[e["path"]] for e in self.shards(fmt)]

    def with_extra_set(
        self, summary: dict[str, Any], column: str, files: list[dict[str, Any]]
    ) -> Manifest:
        """A copy recording an extra label set (replacing one of the same name), column last."""
        extra = dict(self.extra_sets)
        extra[summary["name"]] = {**summary, "column": column, "files": files}
        cols = [*[c for c in self.columns if c != column], column]
        return replace(self, extra_sets=dict(sorted(extra.items())), columns=cols, sha256=None)

    def metrics(self) -> dict[str, int]:
        """DVC metrics of a build: row, sample and quarantine counts, rows per split and flip."""
        c = self.counts
        m = {
            "rows": self.rows,
            "source_samples": self.source_samples,
            "quarantined": self.quarantined,
        }
        m.update({f"rows_{k}": v for k, v in c.get("split", {}).items()})
        m["rows_flipped"] = c.get("flip", {}).get("true", 0)
        m["rows_invalid"] = c.get("valid", {}).get("false", 0)
        return m


_NOT_IN_FILE = ("sha256", "source")


def count_rows(rows: list[dict[str, list]]) -> dict[str, dict[str, int]]:
    """The manifest's ``counts`` from per-chunk row summaries (``id``, ``subset``, ``split``,
    ``flip``, ``yaw`` degrees, ``valid``): rows per subset, split, flip, subset/split, yaw bin
    (:data:`YAW_BINS`, 15 degrees), valid; values sorted."""
    counts: dict[str, dict[str, int]] = {
        "subset": {},
        "split": {},
        "flip": {},
        "subset_split": {},
        "yaw_bins": {},
        "valid": {},
    }
    for r in rows:
        n = len(r["id"])
        flips, valid = [str(x).lower() for x in r["flip"]], [str(x).lower() for x in r["valid"]]
        bins = (
            np.clip(
                np.digitize(np.asarray(r["yaw"], np.float64), YAW_BINS) - 1, 0, len(YAW_BINS) - 2
            )
            if n
            else []
        )
        for key, vals in (("subset", r["subset"]), ("split", r["split"]), ("flip", flips), ("valid", valid),
                          ("subset_split", [f"{a}/{b}" for a, b in zip(r["subset"], r["split"], strict=True)]),
                          ("yaw_bins", [f"{YAW_BINS[b]}..{YAW_BINS[b + 1]}" for b in bins])):  # fmt: skip
            c = counts[key]
            for v in vals:
                c[v] = c.get(v, 0) + 1
    return {k: dict(sorted(v.items())) for k, v in counts.items()}
