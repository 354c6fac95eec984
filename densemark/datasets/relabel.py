"""The ``relabel`` stage: label columns of another landmark set for a built dataset.

The labels come from each row's stored 3DMM parameters and crop transform: no image is read,
decoded or rewritten, no mesh minimum searched. They go into one sidecar file per shard
(:func:`densemark.datasets.manifest.sidecar_name`: ``labels/<set>/<shard file name>``), recorded
in the manifest's ``extra_sets`` and loadable as the card's config of that set (``README.md``
rewritten from the manifest); the shards themselves are never touched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from densemark.core.atomic import remove_stale_temps
from densemark.core.errors import InputError
from densemark.core.hashing import sha256_file
from densemark.core.report import RunReport, StageResult
from densemark.datasets import shards
from densemark.datasets.build import keep_freed_memory
from densemark.datasets.hub import write_card
from densemark.datasets.labels import LabelGeometry
from densemark.datasets.manifest import (
    COLUMNS,
    CONVENTIONS,
    REPORT,
    VERSION,
    Manifest,
    label_column,
    set_dir,
    sidecar_name,
)
from densemark.datasets.plan import mirror_of, set_summary
from densemark.faces.params import ModelParams
from densemark.faces.stages import load_configured_model
from densemark.faces.template import load_template
from densemark.faces.uvmap import UVMap
from densemark.sampling.landmark_set import LandmarkSet

FIT_COLUMNS = ["id", "shape_para", "exp_para", "pose_para", "source_size", "crop", "flip"]


def run_relabel(
    model: ModelParams,
    *,
    dataset_dir: str | Path,
    set_path: str | Path,
    model_dir: str | Path,
    template_dir: str | Path,
    out_dir: str | Path | None = None,
    batch: int = 512,
) -> StageResult:
    """Add a ``landmarks__<set name>`` column for another landmark set (any density) to a built dataset.

    One sidecar per shard (columns ``id`` and ``landmarks__<name>``, the shard's rows in the
    shard's order; Parquet row groups as the shard's), written atomically and recorded in
    ``manifest.json`` ``extra_sets[<name>]`` (the set's summary, ``column`` and ``files`` with
    their sha256). A rerun with the same set rewrites the same bytes. With ``out_dir``, the
    dataset is first copied there (shards, records, report, earlier sidecars) and the sidecars
    written beside. Flipped rows get the mirrored labels when the new set has an exact mirror
    permutation, else NaN.

    Returns:
        outputs ``dataset`` (the folder) and ``manifest``; metrics ``rows`` (of the dataset)
        and ``sidecars`` (files written, every format); the updated :class:`Manifest` as ``value``.

    Raises:
        InputError: no manifest, another model than the dataset's, a set on another template,
            a set whose column would shadow a built one.
    """
    keep_freed_memory()  # per batch: (rows, batch) float64 products and their checks, reused
    src = Path(dataset_dir)
    manifest = Manifest.load(src)
    m = load_configured_model(model, model_dir)
    if m.content_hash() != manifest.model["sha256"]:
        raise InputError(
            model_dir, "model", "not the model the dataset was built with (sha256 differs)"
        )
    template = load_template(template_dir, res=model.uv_res)
    lset = LandmarkSet.load(set_path, template)
    uvm = UVMap.for_model(m, model.uv_res, model.cache_dir)
    geo = LabelGeometry(m, uvm, template, lset.ids, full_mesh=False, mirror_perm=mirror_of(lset))
    col = label_column(lset.name)
    if col in COLUMNS:
        raise InputError(set_path, "name", f"a set named {lset.name!r} would shadow a built column")
    dst = Path(out_dir) if out_dir is not None else src
    dst.mkdir(parents=True, exist_ok=True)
    side_dir = dst / set_dir(lset.name)
    for d in (dst, side_dir):
        if d.is_dir():
            remove_stale_temps(d)  # a killed relabel's half-written sidecars
    if dst.resolve() != src.resolve():
        keep = (
            [e["path"] for e in manifest.files]
            + [p.name for p in src.glob("part-*.json")]
            + [REPORT]
        )
        keep += [f["path"] for f in manifest.sidecar_files()]
        for name in keep:
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, dst / name)
    meta = {"format": "densemark-labels", "version": VERSION, "column": col, "landmark_set": {"name": lset.name, "sha256": lset.sha256(), "n_points": len(lset)},
            "dataset_fingerprint": manifest.fingerprint, "conventions": {col: CONVENTIONS["landmarks"]}}  # fmt: skip
    bp = manifest.params["build"]
    rep = RunReport("relabel", params={"model": model.recorded()}, extra={"set": set_summary(lset)})
    files = []
    for e in tqdm(manifest.files, desc="relabel", unit="shard", disable=None):
        q = dst / sidecar_name(e["path"], lset.name)
        data = shards.read_columns(dst / e["path"], FIT_COLUMNS)
        lab = relabel_rows(geo, data, lset, batch)
        cols = {"id": data["id"], col: lab.reshape(len(lab), -1)}
        shard_meta = {**meta, "shard": {"path": e["path"], "sha256": e["sha256"]}}
        if e["format"] == "parquet":
            shards.write_parquet(
                q, shards.to_table(cols, shard_meta), int(bp["row_group_size"]), compression="none"
            )  # label floats: lz4 saves ~4 % at 1.5x the write time
        else:
            shards.write_hdf5(q, cols, shard_meta, int(bp["hdf5_compression"]))
        files.append(
            {
                "path": q.relative_to(dst).as_posix(),
                "format": e["format"],
                "chunk": e["chunk"],
                "shard": e["path"],
                "rows": len(lab),
                "bytes": q.stat().st_size,
                "sha256": sha256_file(q),
            }
        )
        rep.count("sidecars")
    rep.count("rows", manifest.rows)
    out = manifest.with_extra_set(set_summary(lset), col, files).write(dst)
    outputs = {"dataset": dst, "manifest": Manifest.path(dst), **write_card(out, dst)}
    return StageResult(outputs=outputs, report=rep, metrics=dict(rep.counts), value=out)


def relabel(model: ModelParams, **kw) -> dict:
    """:func:`run_relabel` returning the updated manifest as a dict (what ``densemark relabel``
    prints from)."""
    return run_relabel(model, **kw).value.to_dict()


def relabel_rows(geo: LabelGeometry, data: dict, lset: LandmarkSet, batch: int) -> np.ndarray:
    """(n, K, 3) labels of a shard's rows (``data``: :data:`FIT_COLUMNS` as
    :func:`densemark.datasets.shards.read_columns` gives them); a flipped row mirrors its
    original's (computed once)."""
    n = len(data["flip"])
    flip = np.asarray(data["flip"], bool)
    row_of = {rid: i for i, rid in enumerate(data["id"]) if not flip[i]}
    src = np.array(
        [
            row_of.get(rid[: -len("/flip")], -1) if flip[i] else i
            for i, rid in enumerate(data["id"])
        ],
        np.int64,
    )
    todo = np.flatnonzero(
        src < 0
    )  # a flipped row without its original in the shard: computed itself
    src[todo] = todo
    need = np.unique(src)
    lab = np.empty((n, geo.n_points, 3), np.float32)
    flab = np.empty((n, geo.n_points, 3), np.float32) if lset.mirror_exact else None
    pose = np.asarray(data["pose_para"], np.float64).reshape(n, 7)
    h = np.asarray(data["source_size"], np.float64).reshape(n, 2)[:, 0]
    crop = np.asarray(data["crop"], np.float64).reshape(n, 5)
    for b0 in range(0, len(need), batch):
        rows = need[b0 : b0 + batch]
        c = geo.rows.coefficients(
            _stack(data["shape_para"], rows, geo.rows.k_shape),
            _stack(data["exp_para"], rows, geo.rows.k_exp),
            len(rows),
        )
        got = geo.relabel(c, pose[rows], h[rows], crop[rows])
        lab[rows] = got.landmarks
        if flab is not None:
            flab[rows] = got.flipped
    out = lab[src]
    if flip.any():
        out[flip] = flab[src[flip]] if flab is not None else np.nan
    return out


def _stack(values: list | np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """(len(rows), k) float64 coefficients of the given rows, truncated or zero-padded to k."""
    out = np.zeros((len(rows), k), np.float64)
    if isinstance(values, np.ndarray) and values.ndim == 2:
        w = min(k, values.shape[1])
        out[:, :w] = values[rows, :w]
        return out
    for j, i in enumerate(rows):
        r = np.asarray(values[i], np.float64)[:k]
        out[j, : r.size] = r
    return out
